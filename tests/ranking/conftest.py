"""The independent reference for the audio_perm.ranking tests, as fixtures.

The reference is a sequential pool-adjacent-violators solver in numpy, written
here from the definition of the problem (Blondel et al. 2020: sort, isotonic
regression, un-sort), with its vector-Jacobian product written by hand. XLA
compiles one program per (shape, dtype, direction, regularization), so the
tests share one [4, 7] shape (`sample_values`) where they can.
"""

import types

import numpy as np
import pytest
import scipy.special
import tensorflow as tf


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


def _blocks(starts):
  """bool [n] block starts -> [(start, end), ...]."""
  first = list(np.flatnonzero(starts))
  return list(zip(first, first[1:] + [len(starts)]))


# Non-increasing rows whose suffix masses overflow or underflow when summed
# naively; the second row restarts where the first ends.
_SUFFIX_MASS_ROWS = np.array(
    [[3.0, 2.0, 2.0, -1e3, -1e3 - 1.0, -1e30, -1e30],
     [1e30, 1e30, 0.5, 0.0, -0.5, -1.0, -2.0]])


def _suffix_mass_case():
  """(rows [2, 7], g [2, 8]): g_j = sum_{p >= j} exp(a_p - a_j), g_n = 0."""
  a = _SUFFIX_MASS_ROWS
  expected = np.zeros((a.shape[0], a.shape[1] + 1))
  for row in range(a.shape[0]):
    for j in range(a.shape[1]):
      expected[row, j] = np.exp(a[row, j:] - a[row, j]).sum()
  return a.copy(), expected


@pytest.fixture(scope="session")
def pav():
  """The numpy reference: .decreasing (PAV), .soft_rank, .soft_sort.

  pav.soft_rank(row, direction, strength, regularization) and pav.soft_sort
  return (output [n], vjp), vjp mapping an upstream [n] to the gradient [n].
  pav.blocks(starts) lists a block-start mask's (start, end) pairs;
  pav.suffix_mass_case() gives rows and their suffix masses, brute force.
  """
  return types.SimpleNamespace(decreasing=pav_decreasing,
                               soft_rank=ref_soft_rank,
                               soft_sort=ref_soft_sort,
                               blocks=_blocks,
                               suffix_mass_case=_suffix_mass_case)


@pytest.fixture(scope="session")
def sample_values():
  """The shared test rows: sample_values(dtype, seed=0) -> [4, 7] array.

  Rows: random, random with ties, spread out, nearly tied.
  """
  return _values


@pytest.fixture(scope="session")
def value_and_vjp():
  """value_and_vjp(fn, x, upstream, **kwargs) -> (fn(x), its vjp), numpy."""
  return _value_and_vjp
