"""Tests for audio_perm.ranking.pav: the long-row partition loop.

block_starts with mean_value (l2) and lse_value (kl) must find the blocks of
the sequential-PAV reference in numpy (conftest.py) row by row, with no block
crossing rows, and the same blocks as the min-max partition of
audio_perm.ranking.isotonic.
"""

import numpy as np
import pytest
import tensorflow as tf

from audio_perm.ranking import isotonic
from audio_perm.ranking import pav as loop  # `pav` is the reference fixture
from audio_perm.ranking import rowwise


def _rows(n, seed):
  """[5, n]: scales 0.1 to 30, ties, and one row that is all one block."""
  rng = np.random.default_rng(seed)
  y = rng.normal(size=(3, n)) * np.array([[0.1], [3.0], [30.0]])
  return np.concatenate([y, np.round(rng.normal(size=(1, n))),
                         np.arange(n, dtype=np.float64)[None, :]])


def _l2_starts(y):
  return loop.block_starts(loop.mean_value(y), tf.shape(y)[0],
                           rowwise.num_items(y))


@pytest.mark.parametrize("n", [1, 2, 9, 70])
def test_l2_matches_sequential_pav(n, pav):
  y = _rows(n, seed=n)
  starts = tf.function(_l2_starts, jit_compile=True)(tf.constant(y))
  for row in range(len(y)):
    _, blocks = pav.decreasing(y[row])
    assert pav.blocks(starts[row].numpy()) == blocks, row
  # The min-max partition of the short-row path agrees.
  range_values, _ = isotonic.mean_values(tf.constant(y), tf.float64)
  np.testing.assert_array_equal(
      starts, isotonic.block_starts(range_values, n, tf.float64))


def test_rows_do_not_share_blocks(pav):
  # Each row increasing, so each is one block; stacked, the second row's
  # values are above the first's: pooled across rows they would merge.
  y = np.stack([np.arange(9.0), np.arange(9.0) + 100.0, -np.arange(9.0)])
  starts = _l2_starts(tf.constant(y)).numpy()
  assert [pav.blocks(row) for row in starts] == [
      [(0, 9)], [(0, 9)], [(k, k + 1) for k in range(9)]]


def test_unknown_shape():
  y = _rows(12, seed=3)
  expected = _l2_starts(tf.constant(y))
  for jit_compile in (False, True):
    unknown = tf.function(_l2_starts, jit_compile=jit_compile,
                          autograph=False,
                          input_signature=[tf.TensorSpec([None, None],
                                                         tf.float64)])
    np.testing.assert_array_equal(unknown(tf.constant(y)), expected)


def test_kl_matches_sequential_pav(pav):
  rng = np.random.default_rng(4)
  n = 40
  a = -np.sort(-rng.normal(size=(4, n)) * [[0.1], [1.0], [5.0], [30.0]],
               axis=-1)  # non-increasing rows
  b = np.log(np.arange(n, 0, -1.0))

  def log_weight(start, end):  # the same b in closed form
    start, end = tf.cast(start, tf.float64), tf.cast(end, tf.float64)
    return tf.math.log((end - start) * (n - (start + end - 1.0) / 2.0))

  def data(x):
    x = tf.constant(x)
    return x, loop.suffix_mass(x)

  for side in (data(np.tile(b, [4, 1])), log_weight):
    value = loop.lse_value(data(a), side)
    starts = loop.block_starts(value, 4, n)
    for row in range(4):
      _, blocks = pav.decreasing(a[row], b, "kl")
      assert pav.blocks(starts[row].numpy()) == blocks, row


def test_suffix_mass_matches_doubling(pav):
  a, expected = pav.suffix_mass_case()
  got = tf.function(loop.suffix_mass, jit_compile=True)(tf.constant(a))
  np.testing.assert_allclose(got, expected, rtol=1e-12)
  np.testing.assert_allclose(got, isotonic.suffix_mass(tf.constant(a)),
                             rtol=1e-12)
