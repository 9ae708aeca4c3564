"""Tests for audio_perm.ranking against independent references.

The reference is a sequential pool-adjacent-violators solver in numpy, written
here from the definition of the problem (Blondel et al. 2020: sort, isotonic
regression, un-sort), with its vector-Jacobian product written by hand. XLA
compiles one program per (shape, dtype, direction, regularization), so the
tests share one [4, 7] shape where they can.
"""

import math
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import scipy.special
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
# Reference: sequential PAV in numpy.


def _logsumexp(x):
  return scipy.special.logsumexp(x)


def pav_decreasing(y, w=None, regularization="l2"):
  """argmin over v_1 >= ... >= v_n by sequential pool adjacent violators.

  l2: 0.5 ||v - y||^2; kl: <exp(y - v), 1> + <exp(w), v>.
  Returns (solution [n], blocks as (start, end) pairs).
  """
  def value(start, end):
    if regularization == "l2":
      return np.mean(y[start:end])
    return _logsumexp(y[start:end]) - _logsumexp(w[start:end])

  blocks = []
  for i in range(len(y)):
    blocks.append([i, i + 1, value(i, i + 1)])
    while len(blocks) > 1 and blocks[-2][2] <= blocks[-1][2]:
      start, end = blocks[-2][0], blocks[-1][1]
      blocks[-2:] = [[start, end, value(start, end)]]
  solution = np.empty(len(y))
  for start, end, v in blocks:
    solution[start:end] = v
  return solution, [(b[0], b[1]) for b in blocks]


def _softmax(x):
  e = np.exp(x - np.max(x))
  return e / e.sum()


def ref_soft_rank(values, direction, strength, regularization):
  """Soft ranks of one row and their vjp (projection onto the permutahedron)."""
  values = np.asarray(values, np.float64)
  n = len(values)
  sign = 1.0 if direction == "ASCENDING" else -1.0
  theta = sign * values / strength
  perm = np.argsort(-theta, kind="stable")
  s = theta[perm]
  w = np.arange(n, 0, -1).astype(np.float64)
  if regularization == "l2":
    v, blocks = pav_decreasing(s - w)
  else:
    v, blocks = pav_decreasing(s, np.log(w), "kl")
  out = np.empty(n)
  out[perm] = s - v
  if regularization == "kl":
    out = np.exp(out)

  def vjp(g):
    g = np.asarray(g, np.float64)
    if regularization == "kl":
      g = g * out
    gs = g[perm]
    res = gs.copy()
    for start, end in blocks:
      if regularization == "l2":
        res[start:end] -= gs[start:end].mean()
      else:
        res[start:end] -= _softmax(s[start:end]) * gs[start:end].sum()
    grad = np.empty(n)
    grad[perm] = res
    return grad * sign / strength

  return out, vjp


def ref_soft_sort(values, direction, strength, regularization):
  """Soft sort of one row and its vjp."""
  values = np.asarray(values, np.float64)
  n = len(values)
  sign = 1.0 if direction == "DESCENDING" else -1.0
  a = np.arange(n, 0, -1) / strength
  signed = sign * values
  perm = np.argsort(-signed, kind="stable")
  s = signed[perm]
  if regularization == "l2":
    v, blocks = pav_decreasing(a - s)
  else:
    v, blocks = pav_decreasing(a, s, "kl")
  out = sign * (a - v)

  def vjp(g):
    g = np.asarray(g, np.float64)
    res = np.empty(n)
    for start, end in blocks:
      if regularization == "l2":
        res[start:end] = g[start:end].mean()
      else:
        res[start:end] = _softmax(s[start:end]) * g[start:end].sum()
    grad = np.empty(n)
    grad[perm] = res
    return grad

  return out, vjp


def _values(dtype, seed=0):
  """[4, 7] rows: random, random with ties, spread out, nearly tied."""
  rng = np.random.default_rng(seed)
  rows = [rng.normal(size=7) * 2.0,
          np.round(rng.normal(size=7)),  # ties
          rng.normal(size=7) * 20.0,
          1.0 + 0.01 * rng.normal(size=7)]
  return np.stack(rows).astype(dtype)


def _value_and_vjp(fn, x, upstream, **kwargs):
  x = tf.constant(x)
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = fn(x, **kwargs)
  return y.numpy(), tape.gradient(y, x, output_gradients=upstream).numpy()


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
                                strength):
  fn = getattr(ranking, op)
  ref = ref_soft_rank if op == "soft_rank" else ref_soft_sort
  x = _values(dtype)
  upstream = np.random.default_rng(1).normal(size=x.shape).astype(dtype)
  y, grad = _value_and_vjp(fn, x, upstream, direction=direction,
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
@pytest.mark.parametrize("regularization", REGULARIZATIONS)
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


def test_long_rows_and_unknown_length():
  """n > 32 (a while loop over cuts) and a trace with an unknown n.

  Between them the two cases cover both ops and both kinds of range values.
  """
  rng = np.random.default_rng(12)
  x = rng.normal(size=(2, 40)) * np.array([[1.0], [10.0]])
  upstream = rng.normal(size=x.shape)
  for op, ref, regularization in ((ranking.soft_rank, ref_soft_rank, "l2"),
                                  (ranking.soft_sort, ref_soft_sort, "kl")):
    y, grad = _value_and_vjp(op, x, upstream, regularization=regularization)
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

  x = tf.constant(_values(np.float64))
  unknown = tf.function(
      mixed, input_signature=[tf.TensorSpec([None, None], tf.float64)])
  for e, g in zip(mixed(x), unknown(x)):
    np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("regularization", REGULARIZATIONS)
def test_limits(regularization):
  x = _values(np.float64)[[0, 2, 0, 2]]  # distinct values
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
def test_permutation_equivariance_and_leading_dims(regularization):
  x = _values(np.float64, seed=3)
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
def test_huge_and_tiny_magnitudes(dtype):
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
  expected, _ = ref_soft_rank(np.r_[1e6, small], "ASCENDING", 0.1, "l2")
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


def test_dtypes_in_and_out():
  x = _values(np.float32)
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


def test_eager_function_xla_data_agree():
  x = tf.constant(_values(np.float32))
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


def test_mirrored_strategy_agrees():
  devices = tf.config.list_logical_devices("CPU")
  assert len(devices) >= 2, "conftest configures two logical CPUs"
  strategy = tf.distribute.MirroredStrategy([d.name for d in devices[:2]])
  x = np.concatenate([_values(np.float32), -_values(np.float32)])  # [8, 7]
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


def test_saved_model_round_trip_in_fresh_process(tmp_path):
  x = _values(np.float32)
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


# ----------------------------------------------------------------------------
# Hard and perturbed ranks, Fenchel-Young loss.


def test_hard_rank():
  x = np.array([[0.5, -1., 0.5, 2., 0.5], [3., 2., 1., 0., -1.]])
  np.testing.assert_array_equal(
      ranking.hard_rank(x, ties="average"), scipy.stats.rankdata(x, axis=-1))
  np.testing.assert_array_equal(
      ranking.hard_rank(x), scipy.stats.rankdata(x, "ordinal", axis=-1))
  np.testing.assert_array_equal(
      ranking.hard_rank(x, "DESCENDING"),
      scipy.stats.rankdata(-x, "ordinal", axis=-1))
  with pytest.raises(ValueError, match="ties"):
    ranking.hard_rank(x, ties="dense")


@pytest.mark.parametrize("noise", ranking.NOISES)
def test_perturbed_ranks_two_items(noise):
  # n = 2: E[rank of item 0] = 1 + P(x0 + s z0 > x1 + s z1), in closed form.
  sigma = 0.8
  x = np.array([[0.3, -0.2], [-0.5, 0.1], [0.0, 0.0]])
  d = (x[:, 0] - x[:, 1]) / sigma
  if noise == "normal":
    prob = scipy.stats.norm.cdf(d / math.sqrt(2.0))
    dprob = scipy.stats.norm.pdf(d / math.sqrt(2.0)) / math.sqrt(2.0) / sigma
  else:  # the difference of two Gumbels is logistic
    prob = scipy.special.expit(d)
    dprob = prob * (1 - prob) / sigma
  xt = tf.constant(x)
  with tf.GradientTape() as tape:
    tape.watch(xt)
    ranks = ranking.perturbed_ranks(xt, 20000, sigma, noise=noise, seed=7)
    first = ranks[:, 0]
  grad = tape.gradient(first, xt).numpy()
  np.testing.assert_allclose(ranks[:, 0], 1.0 + prob, atol=0.02)
  np.testing.assert_allclose(ranks[:, 1], 2.0 - prob, atol=0.02)
  np.testing.assert_allclose(grad[:, 0], dprob, atol=0.05)
  np.testing.assert_allclose(grad[:, 1], -dprob, atol=0.05)


def test_perturbed_ranks_reproducible_and_small_noise():
  x = _values(np.float32)[[0, 2]]
  a = ranking.perturbed_ranks(x, 8, 0.5, seed=3)
  np.testing.assert_array_equal(a, ranking.perturbed_ranks(x, 8, 0.5, seed=3))
  assert not np.array_equal(a, ranking.perturbed_ranks(x, 8, 0.5, seed=4))
  compiled = tf.function(
      lambda v: ranking.perturbed_ranks(v, 8, 0.5, seed=3), jit_compile=True)
  np.testing.assert_array_equal(compiled(x), compiled(x))
  np.testing.assert_allclose(
      ranking.perturbed_ranks(x, 4, 1e-6, seed=1),
      scipy.stats.rankdata(x, axis=-1))


def test_fenchel_young_loss():
  rng = np.random.default_rng(8)
  scores = tf.constant(rng.normal(size=(5, 6)), tf.float32)
  target = np.stack([rng.permutation(6) + 1 for _ in range(5)])
  with tf.GradientTape() as tape:
    tape.watch(scores)
    loss = ranking.fenchel_young_rank_loss(scores, target, num_samples=50,
                                           sigma=0.5, seed=11)
  grad = tape.gradient(loss, scores, output_gradients=tf.range(1., 6.))
  assert loss.shape == (5,)
  assert np.all(loss.numpy() >= 0.0)
  expected = ranking.perturbed_ranks(scores, 50, 0.5, seed=11) - target
  np.testing.assert_allclose(grad, np.arange(1., 6.)[:, None] * expected,
                             rtol=1e-5, atol=1e-5)
  # Scores far apart in the target's order: no loss, no gradient.
  perfect = tf.constant(100.0 * target, tf.float32)
  np.testing.assert_allclose(
      ranking.fenchel_young_rank_loss(perfect, target, sigma=0.5, seed=1), 0.0)
  # Under XLA, reproducible for a seed.
  compiled = tf.function(
      lambda s: ranking.fenchel_young_rank_loss(s, target, seed=2),
      jit_compile=True)
  np.testing.assert_array_equal(compiled(scores), compiled(scores))
  with pytest.raises(ValueError, match="target_ranks"):
    ranking.fenchel_young_rank_loss(scores, target[:, :3])
  for bad in (dict(num_samples=0), dict(sigma=0.0), dict(noise="cauchy"),
              dict(seed="x")):
    with pytest.raises(ValueError):
      ranking.fenchel_young_rank_loss(scores, target, **bad)


# ----------------------------------------------------------------------------
# Keras wrappers.


def test_soft_rank_layer_in_a_saved_model(tmp_path):
  inputs = keras.Input([7])
  outputs = ranking.SoftRank("DESCENDING", 0.5, "kl")(keras.layers.Dense(7)(
      inputs))
  model = keras.Model(inputs, outputs)
  x = _values(np.float32)
  expected = model(x).numpy()
  path = str(tmp_path / "model.keras")
  model.save(path)
  restored = keras.models.load_model(path)
  np.testing.assert_allclose(restored(x), expected, rtol=1e-6)
  layer = restored.layers[-1]
  assert isinstance(layer, ranking.SoftRank)
  assert (layer.direction, layer.regularization_strength,
          layer.regularization) == ("DESCENDING", 0.5, "kl")
  with pytest.raises(ValueError, match="direction"):
    ranking.SoftRank(direction="up")


def test_loss_classes():
  rng = np.random.default_rng(9)
  scores = rng.normal(size=(4, 5)).astype(np.float32)
  target = np.stack([rng.permutation(5) + 1 for _ in range(4)])
  loss = ranking.SoftRankLoss(regularization_strength=0.3, reduction=None)
  per_example = loss(target, scores).numpy()
  expected = 0.5 * np.sum(
      (ranking.soft_rank(scores, regularization_strength=0.3).numpy()
       - target) ** 2, axis=-1)
  np.testing.assert_allclose(per_example, expected, rtol=1e-6)
  mean = ranking.SoftRankLoss(regularization_strength=0.3)(target, scores)
  np.testing.assert_allclose(mean, expected.mean(), rtol=1e-6)

  fy = ranking.FenchelYoungRankLoss(num_samples=20, sigma=0.3, seed=5,
                                    reduction="sum")
  value = fy(target, scores)
  assert value.shape == () and value.numpy() >= 0.0
  for obj in (loss, fy):
    config = keras.saving.serialize_keras_object(obj)
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is type(obj)
    assert clone.get_config() == obj.get_config()
  # Fresh noise on every call, the same sequence for the same seed.
  a = ranking.FenchelYoungRankLoss(num_samples=3, seed=5, reduction=None)
  b = ranking.FenchelYoungRankLoss(num_samples=3, seed=5, reduction=None)
  first = a(target, scores).numpy()
  np.testing.assert_array_equal(first, b(target, scores))
  assert not np.array_equal(first, a(target, scores))


def test_losses_train_a_model():
  """A few gradient steps on a learnable ranking lower both losses."""
  rng = np.random.default_rng(10)
  features = rng.normal(size=(64, 7)).astype(np.float32)
  target = (np.argsort(np.argsort(features, -1), -1) + 1).astype(np.float32)
  for loss in (ranking.SoftRankLoss(), ranking.FenchelYoungRankLoss(
      num_samples=10, sigma=0.3, seed=0)):
    model = keras.Sequential([keras.Input([7]), keras.layers.Dense(7)])
    model.compile(keras.optimizers.Adam(0.05), loss=loss, jit_compile=False)
    history = model.fit(features, target, batch_size=4, epochs=4, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
