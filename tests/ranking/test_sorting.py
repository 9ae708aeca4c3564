"""Tests for audio_perm.ranking.sorting: the stable order of long rows.

sorted_positions must give exactly the order of the pairwise counts in
rowwise (decreasing, ties by position, -0.0 equal to 0.0), which numpy's
stable argsort of -x also gives, on both of its branches: the bitonic
network (float32, static n) and tf.argsort (float64, or n unknown).
"""

import numpy as np
import pytest
import tensorflow as tf

from audio_perm.ranking import rowwise
from audio_perm.ranking import sorting


def _rows(n, dtype, seed=0):
  """[4, n]: random, many ties, zeros of both signs, a constant row."""
  rng = np.random.default_rng(seed)
  rows = np.stack([rng.normal(size=n),
                   np.round(rng.normal(size=n) * 2.0),
                   rng.choice([0.0, -0.0, 1.0, -1e-30], size=n),
                   np.full(n, 3.0)])
  return rows.astype(dtype)


def _expected(x):
  # numpy sees -0.0 == 0.0; a stable sort of -x keeps ties by position.
  return np.argsort(-x, axis=-1, kind="stable")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 65, 100])  # 100: padded to 128
def test_order_is_stable_decreasing(dtype, n):
  x = _rows(n, dtype)
  pos, order = sorting.sorted_positions(tf.constant(x))
  np.testing.assert_array_equal(order, _expected(x))
  # pos is the inverse permutation of order.
  np.testing.assert_array_equal(
      np.take_along_axis(pos.numpy(), order.numpy(), axis=-1),
      np.broadcast_to(np.arange(n), x.shape))
  if n <= 100:  # the same as the pairwise counts of the short-row path
    np.testing.assert_array_equal(
        pos, rowwise.descending_positions(tf.constant(x)))


def test_extreme_float32_values():
  # XLA on CPU compares subnormals as zero (so does the pairwise count);
  # the packed keys must agree with it.
  tiny = np.finfo(np.float32).tiny
  big = np.finfo(np.float32).max
  x = np.array([[big, -big, tiny, -tiny, 0.0, -0.0, 1.0, -1.0, tiny, big,
                 1e-45, -1e-45] * 6], np.float32)
  pos, _ = sorting.sorted_positions(tf.constant(x))
  np.testing.assert_array_equal(
      pos, rowwise.descending_positions(tf.constant(x)))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_unknown_length(jit_compile):
  x = _rows(70, np.float32, seed=1)
  unknown = tf.function(sorting.sorted_positions.python_function,
                        jit_compile=jit_compile,
                        input_signature=[tf.TensorSpec([None, None],
                                                       tf.float32)])
  pos, order = unknown(tf.constant(x))
  np.testing.assert_array_equal(order, _expected(x))
  np.testing.assert_array_equal(pos, sorting.sorted_positions(x)[0])
