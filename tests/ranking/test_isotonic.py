"""Tests for audio_perm.ranking.isotonic, the isotonic step in sorted space.

The partition (block_starts, block_bounds) and the block statistics are
checked directly against the sequential-PAV reference in numpy (conftest.py),
and end to end through soft_rank / soft_sort on the kernel's other branches:
rows longer than the unrolled partition loop and an unknown n.
"""

import numpy as np
import pytest
import scipy.special
import tensorflow as tf

from audio_perm import ranking
from audio_perm.ranking import isotonic


def _l2_fit(y, n):
  """Decreasing l2 isotonic fit of [M, n] rows: (solution, starts)."""
  range_values, block_mean = isotonic.mean_values(y, tf.float64)
  starts = isotonic.block_starts(range_values, n, tf.float64)
  start, end = isotonic.block_bounds(starts)
  return block_mean(start, end), starts


@pytest.mark.parametrize("n", [1, 7, 40])  # 40: the while loop over cuts
def test_l2_partition_matches_sequential_pav(n, pav):
  rng = np.random.default_rng(n)
  y = np.concatenate([rng.normal(size=(3, n)) * [[1.0], [10.0], [0.1]],
                      np.round(rng.normal(size=(1, n)))])  # last row: ties
  solution, starts = _l2_fit(tf.constant(y), n)
  for row in range(4):
    expected, blocks = pav.decreasing(y[row])
    np.testing.assert_allclose(solution[row], expected, rtol=1e-10,
                               atol=1e-10)
    if row < 3:  # without ties the partition is unique
      assert pav.blocks(starts[row].numpy()) == blocks
  # The same with n unknown when traced.
  unknown = tf.function(lambda v: _l2_fit(v, None)[0],
                        input_signature=[tf.TensorSpec([None, None],
                                                       tf.float64)])
  np.testing.assert_allclose(unknown(tf.constant(y)), solution, rtol=1e-12,
                             atol=1e-12)


def test_kl_partition_and_block_logsumexp_match_sequential_pav(pav):
  rng = np.random.default_rng(3)
  n = 7
  a = -np.sort(-rng.normal(size=(4, n)) * [[0.1], [1.0], [5.0], [30.0]],
               axis=-1)  # non-increasing rows
  b = np.tile(np.log(np.arange(n, 0, -1.0)), [4, 1])
  a_t, b_t = tf.constant(a), tf.constant(b)
  starts = isotonic.block_starts(isotonic.lse_values(a_t, b_t, tf.float64),
                                 n, tf.float64)
  start, end = isotonic.block_bounds(starts)
  lse_a = isotonic.block_logsumexp(a_t, start, end).numpy()
  solution = lse_a - isotonic.block_logsumexp(b_t, start, end).numpy()
  for row in range(4):
    expected, blocks = pav.decreasing(a[row], b[row], "kl")
    assert pav.blocks(starts[row].numpy()) == blocks
    np.testing.assert_allclose(solution[row], expected, rtol=1e-10,
                               atol=1e-10)
    for first, last in blocks:
      np.testing.assert_allclose(lse_a[row, first:last],
                                 scipy.special.logsumexp(a[row, first:last]),
                                 rtol=1e-12)


def test_block_bounds_and_segment_sum():
  starts = tf.constant([[True, False, False, True, False, True, True],
                        [True, False, False, False, False, False, False]])
  start, end = isotonic.block_bounds(starts)
  np.testing.assert_array_equal(start, [[0, 0, 0, 3, 3, 5, 6], [0] * 7])
  np.testing.assert_array_equal(end, [[3, 3, 3, 5, 5, 6, 7], [7] * 7])
  x = tf.constant([[1., 2., 3., 4., 5., 6., 7.]] * 2, tf.float64)
  np.testing.assert_allclose(isotonic.segment_sum(x, start, end),
                             [[6, 6, 6, 9, 9, 6, 7], [28] * 7])


def test_suffix_mass_has_no_overflow_or_underflow(pav):
  a, expected = pav.suffix_mass_case()
  np.testing.assert_allclose(isotonic.suffix_mass(tf.constant(a)), expected,
                             rtol=1e-12)
  # An unknown n takes the log-sum-exp branch. It is exact for moderate
  # magnitudes only: at 1e20 and beyond, log(2) of a tie is absorbed.
  unknown = tf.function(isotonic.suffix_mass, input_signature=[
      tf.TensorSpec([None, None], tf.float64)])
  moderate = np.clip(a, -50.0, 50.0)
  expected = np.zeros((2, 8))
  for row in range(2):
    for j in range(7):
      expected[row, j] = np.exp(moderate[row, j:] - moderate[row, j]).sum()
  np.testing.assert_allclose(unknown(tf.constant(moderate)), expected,
                             rtol=1e-12)


@pytest.mark.slow
def test_long_rows_and_unknown_length(pav, sample_values, value_and_vjp):
  """n > 32 (a while loop over cuts) and a trace with an unknown n.

  Between them the two cases cover both ops and both kinds of range values.
  """
  rng = np.random.default_rng(12)
  x = rng.normal(size=(2, 40)) * np.array([[1.0], [10.0]])
  upstream = rng.normal(size=x.shape)
  for op, ref, regularization in ((ranking.soft_rank, pav.soft_rank, "l2"),
                                  (ranking.soft_sort, pav.soft_sort, "kl")):
    y, grad = value_and_vjp(op, x, upstream, regularization=regularization)
    for row in range(2):
      expected, vjp = ref(x[row], "ASCENDING", 1.0, regularization)
      np.testing.assert_allclose(y[row], expected, rtol=1e-9, atol=1e-9)
      np.testing.assert_allclose(grad[row], vjp(upstream[row]), rtol=1e-9,
                                 atol=1e-9)

  def mixed(v):
    outputs = []
    for op, regularization in ((ranking.soft_rank, "kl"),
                               (ranking.soft_sort, "l2")):
      with tf.GradientTape() as tape:
        tape.watch(v)
        y = op(v, "DESCENDING", 0.5, regularization)
      outputs += [y, tape.gradient(y, v, output_gradients=v * v)]
    return outputs

  x = tf.constant(sample_values(np.float64))
  unknown = tf.function(
      mixed, input_signature=[tf.TensorSpec([None, None], tf.float64)])
  for e, g in zip(mixed(x), unknown(x)):
    np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-9)
