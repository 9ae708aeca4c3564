"""soft_rank and soft_sort on long rows: the O(n) path and its switch point.

Rows longer than soft.LARGE_N take a sort and a sequential PAV loop instead
of pairwise counts and the min-max partition. Across the switch point both
paths are checked against the sequential-PAV reference (conftest.py) and
finite differences; on long rows the two paths are checked against each
other, in every graph mode.
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
from audio_perm.ranking import soft

SWITCH = soft.LARGE_N
OPS = ("soft_rank", "soft_sort")
REGULARIZATIONS = ("l2", "kl")
STRENGTHS = (0.1, 1.0, 10.0)
TOL = {np.float32: dict(rtol=2e-4, atol=2e-4),
       np.float64: dict(rtol=1e-9, atol=1e-9)}
# The fast tier checks each op and regularization in two of the four
# dtype x direction combinations; the slow tier adds the other two.
DTYPES = (np.float32, np.float64)
DIRECTIONS = ("ASCENDING", "DESCENDING")


@pytest.fixture
def long_row_path(monkeypatch):
  """Every row takes the O(n) path, however short (cheap to compile)."""
  monkeypatch.setattr(soft, "LARGE_N", 0)


def _rows(n, seed=0):
  """[3, n]: random, random with ties, spread out."""
  rng = np.random.default_rng(seed)
  return np.stack([rng.normal(size=n) * 2.0,
                   np.round(rng.normal(size=n) * 3.0),
                   rng.normal(size=n) * 30.0])


def _value_and_vjps(fn, x, upstream, strengths, **kwargs):
  """[(fn(x), its vjp) for each strength], eagerly (the op's XLA programs
  take the strength as a tensor, so they are compiled once)."""
  x = tf.constant(x)
  results = []
  for strength in strengths:
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = fn(x, regularization_strength=strength, **kwargs)
    grad = tape.gradient(y, x, output_gradients=upstream)
    results.append((y.numpy(), grad.numpy()))
  return results


def _check_against_reference(op, x, upstream, results, direction,
                             regularization, pav, skip_tied_sort_grad=()):
  """results[k] = (y, grad) at STRENGTHS[k] against the reference."""
  ref = pav.soft_rank if op == "soft_rank" else pav.soft_sort
  tol = TOL[x.dtype.type]
  for strength, (y, grad) in zip(STRENGTHS, results):
    assert y.dtype == x.dtype and grad.dtype == x.dtype
    for row in range(len(x)):
      where = f"n={x.shape[-1]} strength={strength} row={row}"
      expected, vjp = ref(x[row].astype(np.float64), direction, strength,
                          regularization)
      np.testing.assert_allclose(y[row], expected, **tol, err_msg=where)
      if op == "soft_sort" and row in skip_tied_sort_grad:
        # With ties soft_sort's partition is not unique, nor its gradient
        # (either path returns a subgradient).
        continue
      expected_grad = vjp(upstream[row].astype(np.float64))
      scale = 1.0 + np.abs(expected_grad).max()
      np.testing.assert_allclose(grad[row] / scale, expected_grad / scale,
                                 **tol, err_msg=where)


# ----------------------------------------------------------------------------
# The O(n) path forced on short rows: every configuration, cheaply.


def test_dispatch_by_length():
  """Rows longer than LARGE_N sort in sorting.sorted_positions (traced
  only: nothing is compiled); an unknown n traces both paths."""
  def functions(shape):
    concrete = tf.function(ranking.soft_rank).get_concrete_function(
        tf.TensorSpec(shape, tf.float32))
    return " ".join(f.signature.name for f in
                    concrete.graph.as_graph_def().library.function)

  assert "sorted_positions" not in functions([2, SWITCH])
  assert "sorted_positions" in functions([2, SWITCH + 1])
  unknown = functions([None, None])
  assert "sorted_positions" in unknown and "soft_rank_forward" in unknown


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("regularization", REGULARIZATIONS)
@pytest.mark.parametrize("dtype, direction", [
    (np.float32, "ASCENDING"), (np.float64, "DESCENDING"),
    # The fast tier checks two of the four dtype x direction pairs.
    pytest.param(np.float32, "DESCENDING", marks=pytest.mark.slow),
    pytest.param(np.float64, "ASCENDING", marks=pytest.mark.slow)])
def test_long_row_path_matches_sequential_pav(
    op, dtype, direction, regularization, pav, sample_values,
    long_row_path):
  x = sample_values(dtype)  # [4, 7]; row 1 has ties
  upstream = np.random.default_rng(1).normal(size=x.shape).astype(dtype)
  results = _value_and_vjps(getattr(ranking, op), x, upstream, STRENGTHS,
                            direction=direction,
                            regularization=regularization)
  _check_against_reference(op, x, upstream, results, direction,
                           regularization, pav)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("regularization", [
    "l2", pytest.param("kl", marks=pytest.mark.slow)])
def test_long_row_path_gradient_matches_finite_differences(
    op, regularization, long_row_path):
  _check_finite_differences(op, regularization, n=7)


@pytest.mark.parametrize("signature", [
    "jit_compile", "unknown_batch",
    pytest.param("unknown_n", marks=pytest.mark.slow),
    pytest.param("unknown_n_jit_compile", marks=pytest.mark.slow)])
def test_long_row_path_graph_modes_agree(signature, sample_values,
                                         long_row_path):
  # Two configurations cover both ops and both regularizations.
  _check_graph_modes(tf.constant(sample_values(np.float32)), signature,
                     configs=(("soft_rank", "l2"), ("soft_sort", "kl")))


# ----------------------------------------------------------------------------
# Real lengths: slow, the O(n^2) path's programs take long to compile.


@pytest.mark.slow
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("regularization", REGULARIZATIONS)
def test_across_the_switch_point(op, dtype, direction, regularization, pav):
  for n in (SWITCH - 1, SWITCH, SWITCH + 1):  # O(n^2), O(n^2), O(n) path
    x = _rows(n, seed=n).astype(dtype)
    upstream = np.random.default_rng(1).normal(size=x.shape).astype(dtype)
    results = _value_and_vjps(getattr(ranking, op), x, upstream, STRENGTHS,
                              direction=direction,
                              regularization=regularization)
    _check_against_reference(op, x, upstream, results, direction,
                             regularization, pav, skip_tied_sort_grad=(1,))


def _check_finite_differences(op, regularization, n):
  fn = getattr(ranking, op)
  # Distinct values: the partition is locally constant.
  x = tf.constant(np.random.default_rng(2).permutation(n)[None, :] *
                  np.array([[0.3], [-0.05]]), tf.float64)
  theoretical, numerical = tf.test.compute_gradient(
      lambda v: fn(v, direction="DESCENDING", regularization_strength=0.7,
                   regularization=regularization), [x], delta=1e-6)
  np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("regularization", REGULARIZATIONS)
def test_gradient_matches_finite_differences(op, regularization):
  _check_finite_differences(op, regularization, n=SWITCH + 3)


@pytest.mark.slow
def test_ties_on_long_rows():
  x = np.tile(np.round(np.random.default_rng(3).normal(size=200) * 2.0),
              [2, 1])
  for regularization in REGULARIZATIONS:
    ranks = ranking.soft_rank(x, regularization_strength=1e-3,
                              regularization=regularization).numpy()
    # In the hard limit ties share the average of the ranks they span.
    np.testing.assert_allclose(ranks, scipy.stats.rankdata(x, axis=-1),
                               atol=1e-6)
    ranks = ranking.soft_rank(x, regularization=regularization).numpy()
    for value in np.unique(x[0]):
      tied = ranks[0, x[0] == value]
      np.testing.assert_allclose(tied, tied[0], rtol=1e-9)


ALL_CONFIGS = tuple((op, r) for op in OPS for r in REGULARIZATIONS)


def _check_graph_modes(x, signature, configs=ALL_CONFIGS):
  """Ops and vjps in a graph (signature: which kind) equal them eagerly.

  configs: (op, regularization) pairs.
  """
  def outputs(x):
    result = []
    for op, regularization in configs:
      with tf.GradientTape() as tape:
        tape.watch(x)
        y = getattr(ranking, op)(x, "DESCENDING", 0.5, regularization)
      result += [y, tape.gradient(y, x, output_gradients=x * x)]
    return result

  expected = [t.numpy() for t in outputs(x)]
  shape = {"unknown_batch": [None, x.shape[-1]]}.get(signature, [None, None])
  spec = None if signature == "jit_compile" else [
      tf.TensorSpec(shape, x.dtype)]
  fn = tf.function(outputs, jit_compile="jit_compile" in signature,
                   input_signature=spec)
  for e, got in zip(expected, fn(x)):
    np.testing.assert_allclose(got, e, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("signature", [
    "jit_compile", "unknown_batch", "unknown_n", "unknown_n_jit_compile"])
def test_graph_modes_agree(signature):
  _check_graph_modes(tf.constant(_rows(SWITCH + 36, seed=5), tf.float32),
                     signature)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_paths_agree_on_long_rows(dtype, monkeypatch, pav):
  """n = 5000, where the O(n^2) path still fits in memory (~0.5 GB).

  In float64 the two paths agree. In float32 the O(n) path matches the
  float64 reference; the O(n^2) path does not for soft_rank kl (its float32
  range values lose ~1 rank here; it only runs up to n = 64, where they
  are exact), so it is compared in float64 only.
  """
  rng = np.random.default_rng(6)
  x = (rng.normal(size=(2, 5000)) * [[1.0], [100.0]]).astype(dtype)
  upstream = rng.normal(size=x.shape).astype(dtype)

  def run(op, regularization, large_n):
    monkeypatch.setattr(soft, "LARGE_N", large_n)
    return _value_and_vjps(getattr(ranking, op), x, upstream, (0.3,),
                           regularization=regularization)[0]

  for op in OPS:
    ref = pav.soft_rank if op == "soft_rank" else pav.soft_sort
    for regularization in REGULARIZATIONS:
      where = f"{op} {regularization}"
      y, grad = run(op, regularization, SWITCH)
      for row in range(2):
        expected, vjp = ref(x[row].astype(np.float64), "ASCENDING", 0.3,
                            regularization)
        expected_grad = vjp(upstream[row].astype(np.float64))
        scale = 1.0 + np.abs(expected_grad).max()
        if dtype == np.float32:  # ranks up to 5000: rounding ~ 5000 * 6e-8
          tol = dict(rtol=1e-5, atol=1e-3)
        else:
          tol = dict(rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(y[row], expected, **tol, err_msg=where)
        np.testing.assert_allclose(grad[row] / scale, expected_grad / scale,
                                   **tol, err_msg=where)
      if dtype == np.float64:
        y_square, grad_square = run(op, regularization, 10 ** 9)
        np.testing.assert_allclose(y, y_square, rtol=1e-9, atol=1e-9,
                                   err_msg=where)
        scale = 1.0 + np.abs(grad_square).max()
        np.testing.assert_allclose(grad / scale, grad_square / scale,
                                   rtol=1e-9, atol=1e-9, err_msg=where)


@pytest.mark.slow
def test_n_16384_in_linear_memory(tmp_path, pav):
  """[1, 16384] in a fresh process: the reference's values and vjp, and a
  peak memory far below the O(n^2) path's (+1.2 GB when measured)."""
  script = textwrap.dedent(f"""
      import resource, numpy as np, tensorflow as tf
      from audio_perm import ranking

      def both(v, g):
        with tf.GradientTape() as tape:
          tape.watch(v)
          y = ranking.soft_rank(v, regularization_strength=0.5)
        return y, tape.gradient(y, v, output_gradients=g)

      rng = np.random.default_rng(7)
      x = tf.constant(rng.normal(size=(1, 16384)), tf.float32)
      g = tf.constant(rng.normal(size=(1, 16384)), tf.float32)
      tf.function(both)(x[:, :8], g[:, :8])  # TensorFlow's own start-up
      before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
      y, grad = tf.function(both)(x, g)
      after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
      np.save({str(tmp_path / 'out.npy')!r},
              np.stack([x[0], g[0], y[0], grad[0]]))
      print((after - before) / 1024)  # MiB (ru_maxrss is in KiB)
  """)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  out = subprocess.run([sys.executable, "-c", script], check=True, env=env,
                       capture_output=True, text=True, timeout=600)
  peak_mib = float(out.stdout.split()[-1])
  # Includes compiling the XLA programs; the O(n^2) path needed ~1.2 GB.
  assert peak_mib < 400, peak_mib
  x, g, y, grad = np.load(tmp_path / "out.npy")
  expected, vjp = pav.soft_rank(x.astype(np.float64), "ASCENDING", 0.5,
                                "l2")
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-2)
  np.testing.assert_allclose(grad, vjp(g.astype(np.float64)), rtol=1e-4,
                             atol=1e-4)


@pytest.mark.slow
def test_saved_model_with_unknown_n_in_fresh_process(tmp_path):
  """A SavedModel traced for [None, None] ranks short and long rows (the
  tf.cond between the paths), loaded where audio_perm is not imported."""
  module = tf.Module()
  module.rank = tf.function(
      lambda v: {"l2": ranking.soft_rank(v, "ASCENDING", 0.5, "l2"),
                 "kl": ranking.soft_sort(v, "DESCENDING", 0.5, "kl")},
      input_signature=[tf.TensorSpec([None, None], tf.float32)])
  export_dir = str(tmp_path / "ranker")
  tf.saved_model.save(module, export_dir)
  inputs = {n: _rows(n, seed=n).astype(np.float32) for n in (7, SWITCH + 36)}
  for n, x in inputs.items():
    np.save(tmp_path / f"x{n}.npy", x)
  script = textwrap.dedent(f"""
      import numpy as np, tensorflow as tf
      m = tf.saved_model.load({export_dir!r})
      for n in {list(inputs)!r}:
        x = tf.constant(np.load({str(tmp_path)!r} + f"/x{{n}}.npy"))
        with tf.GradientTape() as tape:
          tape.watch(x)
          out = m.rank(x)
        grad = tape.gradient(out["l2"], x, output_gradients=x)
        np.save({str(tmp_path)!r} + f"/out{{n}}.npy",
                np.stack([out["l2"].numpy(), out["kl"].numpy(),
                          grad.numpy()]))
  """)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  subprocess.run([sys.executable, "-c", script], check=True, env=env,
                 timeout=300)
  for n, x in inputs.items():
    got = np.load(tmp_path / f"out{n}.npy")
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
      tape.watch(xt)
      ranks = ranking.soft_rank(xt, "ASCENDING", 0.5, "l2")
    grad = tape.gradient(ranks, xt, output_gradients=xt)
    np.testing.assert_allclose(got[0], ranks, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        got[1], ranking.soft_sort(x, "DESCENDING", 0.5, "kl"), rtol=1e-5,
        atol=1e-5)
    np.testing.assert_allclose(got[2], grad, rtol=1e-5, atol=1e-5)
