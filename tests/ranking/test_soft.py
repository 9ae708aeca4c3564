"""Tests for audio_perm.ranking.soft: soft_rank and soft_sort.

Outputs and vector-Jacobian products are checked against the sequential-PAV
reference in numpy (conftest.py), gradients against finite differences, and
the ops in every graph mode they must run in.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from audio_perm import ranking

DTYPES = (np.float32, np.float64)
DIRECTIONS = ("ASCENDING", "DESCENDING")
REGULARIZATIONS = ("l2", "kl")
STRENGTHS = (0.1, 1.0, 10.0)
# float32 results against the float64 reference.
TOL = {np.float32: dict(rtol=2e-4, atol=2e-4),
       np.float64: dict(rtol=1e-9, atol=1e-9)}


# ----------------------------------------------------------------------------
# soft_rank / soft_sort against the reference.


def test_published_examples():
  x = [[5., 1., 2.], [2., 1., 5.]]
  np.testing.assert_allclose(
      ranking.soft_rank(x, regularization_strength=2.0),
      [[3., 1.25, 1.75], [1.75, 1.25, 3.]], rtol=1e-6)
  np.testing.assert_allclose(
      ranking.soft_rank(x, regularization_strength=1.0),
      [[3., 1., 2.], [2., 1., 3.]], rtol=1e-6)
  np.testing.assert_allclose(
      ranking.soft_sort(x, regularization_strength=1.0),
      [[5 / 3, 8 / 3, 11 / 3]] * 2, rtol=1e-6)
  np.testing.assert_allclose(
      ranking.soft_sort(x, regularization_strength=0.1),
      [[1., 2., 5.]] * 2, rtol=1e-6)


@pytest.mark.parametrize("op", ["soft_rank", "soft_sort"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("regularization", REGULARIZATIONS)
@pytest.mark.parametrize("strength", STRENGTHS)
def test_matches_sequential_pav(op, dtype, direction, regularization,
                                strength, pav, sample_values, value_and_vjp):
  fn = getattr(ranking, op)
  ref = pav.soft_rank if op == "soft_rank" else pav.soft_sort
  x = sample_values(dtype)
  upstream = np.random.default_rng(1).normal(size=x.shape).astype(dtype)
  y, grad = value_and_vjp(fn, x, upstream, direction=direction,
                          regularization_strength=strength,
                          regularization=regularization)
  assert y.dtype == dtype and grad.dtype == dtype
  for row in range(x.shape[0]):
    expected, vjp = ref(x[row].astype(np.float64), direction, strength,
                        regularization)
    np.testing.assert_allclose(y[row], expected, **TOL[dtype])
    expected_grad = vjp(upstream[row].astype(np.float64))
    scale = 1.0 + np.abs(expected_grad).max()
    np.testing.assert_allclose(grad[row] / scale, expected_grad / scale,
                               **TOL[dtype])


@pytest.mark.parametrize("op", ["soft_rank", "soft_sort"])
@pytest.mark.parametrize("regularization", [
    "l2", pytest.param("kl", marks=pytest.mark.slow)])
def test_gradient_matches_finite_differences(op, regularization):
  fn = getattr(ranking, op)
  # Distinct, well separated values: the partition is locally constant.
  x = tf.constant([[0.3, -1.2, 0.9, 2.2, 0.1, -0.4, 1.4]] * 4, tf.float64)
  x = x * tf.constant([[1.0], [-0.7], [3.0], [0.2]], tf.float64)
  # (Both directions are checked against the reference's vjp above.)
  direction = "ASCENDING" if regularization == "l2" else "DESCENDING"
  theoretical, numerical = tf.test.compute_gradient(
      lambda v: fn(v, direction=direction, regularization_strength=0.7,
                   regularization=regularization), [x], delta=1e-6)
  np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-6)


@pytest.mark.parametrize("regularization", REGULARIZATIONS)
def test_limits(regularization, sample_values):
  x = sample_values(np.float64)[[0, 2, 0, 2]]  # distinct values
  n = x.shape[-1]
  np.testing.assert_allclose(
      ranking.soft_rank(x, regularization_strength=1e-4,
                        regularization=regularization),
      scipy.stats.rankdata(x, axis=-1), atol=1e-6)
  np.testing.assert_allclose(
      ranking.soft_rank(x, regularization_strength=1e6,
                        regularization=regularization),
      np.full_like(x, (n + 1) / 2), atol=1e-3)
  np.testing.assert_allclose(
      ranking.soft_sort(x, regularization_strength=1e-4,
                        regularization=regularization),
      np.sort(x, axis=-1), atol=1e-3)
  if regularization == "l2":
    np.testing.assert_allclose(
        ranking.soft_sort(x, regularization_strength=1e6),
        np.broadcast_to(x.mean(-1, keepdims=True), x.shape), atol=1e-3)


@pytest.mark.parametrize("regularization", REGULARIZATIONS)
def test_permutation_equivariance_and_leading_dims(regularization,
                                                   sample_values):
  x = sample_values(np.float64, seed=3)
  perm = np.random.default_rng(4).permutation(x.shape[-1])
  ranks = ranking.soft_rank(x, regularization=regularization).numpy()
  np.testing.assert_allclose(
      ranking.soft_rank(x[:, perm], regularization=regularization),
      ranks[:, perm], rtol=1e-12, atol=1e-12)
  # The soft sort does not depend on the order of the input.
  sorted_values = ranking.soft_sort(x, regularization=regularization).numpy()
  np.testing.assert_allclose(
      ranking.soft_sort(x[:, perm], regularization=regularization),
      sorted_values, rtol=1e-12, atol=1e-12)
  # Leading dimensions are batch dimensions.
  np.testing.assert_allclose(
      ranking.soft_rank(x.reshape(2, 2, -1), regularization=regularization),
      ranks.reshape(2, 2, -1), rtol=1e-12)


def test_ties_get_equal_ranks():
  x = np.array([[1., 3., 1., 1., 2., 3., 0.]] * 4)
  for regularization in REGULARIZATIONS:
    for strength in (1e-3, 1.0):
      ranks = ranking.soft_rank(x, regularization_strength=strength,
                                regularization=regularization).numpy()
      np.testing.assert_allclose(ranks, ranks[:1].repeat(4, 0))
      np.testing.assert_allclose(ranks[0, [0, 2, 3]], ranks[0, 0], rtol=1e-6)
      np.testing.assert_allclose(ranks[0, [1, 5]], ranks[0, 1], rtol=1e-6)
  # In the hard limit ties share the average of the ranks they span.
  np.testing.assert_allclose(
      ranking.soft_rank(x, regularization_strength=1e-4),
      scipy.stats.rankdata(x, axis=-1), atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_huge_and_tiny_magnitudes(dtype, pav):
  rng = np.random.default_rng(5)
  base = rng.permutation(7).astype(np.float64) - 3.0  # distinct
  expected_hard = scipy.stats.rankdata(base)
  for regularization in REGULARIZATIONS:
    for scale, strength in ((1e30, 1.0), (1e30, 1e-3), (1.0, 1e-30),
                            (1e-30, 1.0), (1e-30, 1e30)):
      x = np.tile((base * scale).astype(dtype), [4, 1])
      ranks = ranking.soft_rank(x, regularization_strength=strength,
                                regularization=regularization).numpy()
      sorted_values = ranking.soft_sort(
          x, regularization_strength=strength,
          regularization=regularization).numpy()
      assert np.all(np.isfinite(ranks)) and np.all(np.isfinite(sorted_values))
      if scale / strength > 1e3:  # far apart: the hard ranks
        np.testing.assert_allclose(ranks[0], expected_hard, rtol=1e-12)
      if scale / strength < 1e-3:  # all alike: the mean rank
        np.testing.assert_allclose(ranks, 4.0, rtol=1e-5)
  # One huge value next to small ones leaves the small ones' ranks intact.
  small = np.array([0.1, 0.3, 0.2, 0.25, 0.15, 0.05])
  expected, _ = pav.soft_rank(np.r_[1e6, small], "ASCENDING", 0.1, "l2")
  x = np.tile(np.r_[1e30, small].astype(dtype), [4, 1])
  np.testing.assert_allclose(
      ranking.soft_rank(x, regularization_strength=0.1)[0], expected,
      rtol=1e-5)


def test_single_item_and_empty():
  for regularization in REGULARIZATIONS:
    np.testing.assert_array_equal(
        ranking.soft_rank([[3.5], [-2.]], regularization=regularization),
        [[1.], [1.]])
    np.testing.assert_allclose(
        ranking.soft_sort([[3.5], [-2.]], regularization=regularization),
        [[3.5], [-2.]])
  assert ranking.soft_rank(tf.zeros([2, 0])).shape == (2, 0)


def test_dtypes_in_and_out(sample_values):
  x = sample_values(np.float32)
  expected = ranking.soft_rank(x).numpy()
  half = ranking.soft_rank(tf.constant(x, tf.float16))
  assert half.dtype == tf.float16
  np.testing.assert_allclose(half.numpy(), expected, atol=2e-2)
  ints = ranking.soft_rank(np.round(10 * x).astype(np.int32))
  assert ints.dtype == tf.float32
  np.testing.assert_allclose(
      ints, ranking.soft_rank(np.round(10 * x).astype(np.float32)))


@pytest.mark.parametrize("bad, message", [
    (dict(direction="UP"), "direction"),
    (dict(direction="ascending"), "direction"),
    (dict(regularization="l1"), "regularization"),
    (dict(regularization_strength=0.0), "regularization_strength"),
    (dict(regularization_strength=-1.0), "regularization_strength"),
    (dict(regularization_strength=float("nan")), "regularization_strength"),
    (dict(regularization_strength=float("inf")), "regularization_strength"),
    (dict(regularization_strength="big"), "regularization_strength"),
])
def test_bad_arguments(bad, message):
  for fn in (ranking.soft_rank, ranking.soft_sort):
    with pytest.raises(ValueError, match=message):
      fn([[1., 2.]], **bad)


def test_bad_values():
  for fn in (ranking.soft_rank, ranking.soft_sort, ranking.hard_rank):
    with pytest.raises(ValueError, match=r"\[batch, n\]"):
      fn(3.0)
    with pytest.raises(ValueError, match=r"\[batch, n\]"):
      fn([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="floating point"):
      fn(tf.constant([["a", "b"]]))


# ----------------------------------------------------------------------------
# Graph modes.


def _two_way(x, ops=(ranking.soft_rank, ranking.soft_sort)):
  """Soft ranks / sorts and their vjps for both regularizations at once."""
  outputs = []
  for op in ops:
    for regularization in REGULARIZATIONS:
      with tf.GradientTape() as tape:
        tape.watch(x)
        y = op(x, "DESCENDING", 0.5, regularization)
      outputs += [y, tape.gradient(y, x, output_gradients=x * x)]
  return outputs


@pytest.mark.slow
def test_eager_function_xla_data_agree(sample_values):
  x = tf.constant(sample_values(np.float32))
  expected = [t.numpy() for t in _two_way(x)]
  for jit in (False, True):
    got = tf.function(_two_way, jit_compile=jit)(x)
    for e, g in zip(expected, got):
      np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-6)
  # tf.data map, per example and on batches.
  dataset = tf.data.Dataset.from_tensor_slices(x).batch(4).map(
      lambda v: ranking.soft_rank(v, "DESCENDING", 0.5, "kl"))
  got = np.concatenate([b.numpy() for b in dataset])
  np.testing.assert_allclose(got, expected[2], rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_mirrored_strategy_agrees(sample_values, two_replicas):
  strategy = two_replicas
  x = np.concatenate([sample_values(np.float32),
                      -sample_values(np.float32)])  # [8, 7]
  two_way = lambda v: _two_way(v, ops=(ranking.soft_rank,))
  expected = [np.concatenate([a, b]) for a, b in zip(
      [t.numpy() for t in two_way(tf.constant(x[:4]))],
      [t.numpy() for t in two_way(tf.constant(x[4:]))])]
  dataset = strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensor_slices(x).batch(8))

  @tf.function
  def step(batch):
    return strategy.run(two_way, args=(batch,))

  for batch in dataset:
    per_replica = step(batch)
  for e, got in zip(expected, per_replica):
    local = np.concatenate([t.numpy() for t in
                            strategy.experimental_local_results(got)])
    np.testing.assert_allclose(local, e, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_saved_model_round_trip_in_fresh_process(tmp_path, sample_values):
  x = sample_values(np.float32)
  module = tf.Module()
  module.rank = tf.function(
      lambda v: {"ranks": ranking.soft_rank(v, "ASCENDING", 0.5, "l2"),
                 "kl": ranking.soft_rank(v, "ASCENDING", 0.5, "kl")},
      input_signature=[tf.TensorSpec([None, 7], tf.float32)])
  export_dir = str(tmp_path / "ranker")
  tf.saved_model.save(module, export_dir)
  np.save(tmp_path / "x.npy", x)
  # A process that never imports audio_perm loads and runs it.
  script = textwrap.dedent(f"""
      import numpy as np, tensorflow as tf
      m = tf.saved_model.load({export_dir!r})
      x = tf.constant(np.load({str(tmp_path / 'x.npy')!r}))
      with tf.GradientTape() as tape:
        tape.watch(x)
        out = m.rank(x)
      grad = tape.gradient(out["ranks"], x, output_gradients=x)
      np.save({str(tmp_path / 'out.npy')!r},
              np.stack([out["ranks"].numpy(), out["kl"].numpy(), grad.numpy()]))
  """)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  subprocess.run([sys.executable, "-c", script], check=True, env=env,
                 timeout=120)
  got = np.load(tmp_path / "out.npy")
  xt = tf.constant(x)
  with tf.GradientTape() as tape:
    tape.watch(xt)
    ranks = ranking.soft_rank(xt, "ASCENDING", 0.5, "l2")
  grad = tape.gradient(ranks, xt, output_gradients=xt)
  np.testing.assert_allclose(got[0], ranks, rtol=1e-6)
  np.testing.assert_allclose(
      got[1], ranking.soft_rank(x, "ASCENDING", 0.5, "kl"), rtol=1e-6)
  np.testing.assert_allclose(got[2], grad, rtol=1e-6, atol=1e-6)
