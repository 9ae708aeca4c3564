"""soft_rank and soft_sort (Blondel et al., ICML 2020) with exact gradients.

soft_rank(values) is the projection of theta = +-values / strength onto the
permutahedron of w = (n, ..., 1): after sorting theta decreasingly into s it
is s - v, with v the decreasing isotonic regression of s - w ("l2") or its KL
analogue ("kl"). soft_sort is the same isotonic problem with the roles of
w / strength and s swapped. The isotonic step is audio_perm.ranking.isotonic
for rows of up to LARGE_N items (pairwise counts and the min-max partition,
O(n^2) but vectorised); longer rows are sorted by audio_perm.ranking.sorting
and partitioned by the sequential loop of audio_perm.ranking.pav (O(n)).
Both paths share the block statistics and the gradient.

Forward and backward passes are XLA-compiled functions (jit_compile=True)
even inside a graph that is not: the TensorFlow kernels' per-op overhead
would otherwise dominate at these sizes. The gradient is analytic
(tf.custom_gradient): block averaging ("l2") or block-softmax weighting
("kl") over the partition saved by the forward pass. See docs/ranking.md for
the conventions, the precision and the measurements behind these choices.
"""

import tensorflow as tf

from audio_perm.ranking import checks
from audio_perm.ranking import isotonic
from audio_perm.ranking import pav
from audio_perm.ranking import rowwise
from audio_perm.ranking import sorting

# Work dtype of the [M, n] vectors (prefix sums, block statistics): cheap at
# these sizes, and it keeps block means exact for float32 inputs.
_WORK = tf.float64

# Rows longer than this take the O(n) path: a sort and a sequential
# pool-adjacent-violators loop (audio_perm.ranking.pav) instead of pairwise
# counts and the O(n^2) min-max partition. Measured in docs/ranking.md.
LARGE_N = 64


def _bounded_gaps(u, strength):
  """Sorted values rescaled by 1 / strength, with huge gaps shrunk.

  No block of the soft-rank isotonic problem ("l2" or "kl") can straddle a
  gap wider than 2n + 2 between consecutive sorted values of theta = u /
  strength (its two sides would violate the pooling condition), and shifting
  the values on one side of such a gap changes neither the blocks nor the
  within-block deviations the output is made of. Shrinking those gaps to
  2n + 2 bounds the row's range by 2n^2 whatever the magnitudes (1e30 next to
  1e-3): prefix sums stay exact and nothing overflows.

  Args:
    u: [M, n] decreasing rows, work dtype.
    strength: scalar, work dtype.

  Returns:
    [M, n] decreasing theta' with theta'[:, 0] = 0.
  """
  n = tf.cast(tf.shape(u)[-1], _WORK)
  gaps = tf.minimum((u[:, :-1] - u[:, 1:]) / strength, 2.0 * n + 2.0)
  return -tf.cumsum(tf.pad(gaps, [[0, 0], [1, 0]]), axis=-1)


def _weight_sum(start, end, n):
  """Sum of w_p = n - p over [start, end), work dtype."""
  start = tf.cast(start, _WORK)
  end = tf.cast(end, _WORK)
  return (end - start) * (n - (start + end - 1.0) / 2.0)


def _sort(x, order):
  """(pos, order) of the stable decreasing order of [M, n] rows.

  order: None (count pairs: the short-row path) or (pos, order) already
  sorted by the long-row path.
  """
  if order is not None:
    return order
  pos = rowwise.descending_positions(x)
  return pos, rowwise.inverse_permutation(pos)


def _pav_starts(x, range_value):
  """Block starts of [M, n] rows by the long-row path."""
  return pav.block_starts(range_value, tf.shape(x)[0], rowwise.num_items(x))


@tf.function(jit_compile=True, autograph=False)
def _soft_rank_forward(x, strength, sign, kl, sorted_order):
  """Soft ranks of [M, n] rows and what the vjp needs (XLA-compiled).

  sorted_order: None for the O(n^2) path, or (pos, order) of sign * x from
  sorting.sorted_positions for the O(n) path (sequential PAV). Both give the
  same partition, up to rounding at near-ties.
  """
  shape = tf.shape(x)
  n = tf.cast(shape[1], _WORK)
  large = sorted_order is not None
  pos, order = _sort(sign * x, sorted_order)
  u = rowwise.gather(tf.cast(sign * x, _WORK), order)  # decreasing
  theta = _bounded_gaps(u, strength)  # [M, n]
  index = tf.cast(tf.range(shape[1]), _WORK)[None, :]
  w = n - index  # (n, ..., 1)
  mass = pav.suffix_mass(theta) if kl and large else None
  if kl and large:
    # Block value logsumexp_B(theta) - log(sum_B w).
    starts = _pav_starts(x, pav.lse_value(
        (theta, mass), lambda a, b: tf.math.log(_weight_sum(a, b, n))))
  elif kl:
    # Block value logsumexp_B(theta) - log(sum_B w); compared in the input
    # precision (theta' is bounded, see _bounded_gaps).
    compare = x.dtype
    cuts = tf.cast(tf.range(shape[1] + 1), compare)[None, :]
    n_c = tf.cast(n, compare)
    cum_w = cuts * n_c - cuts * (cuts - 1.0) / 2.0  # sum of w below a cut

    def log_weight(j):
      at_j = isotonic.column(cum_w, j)
      return (tf.math.log(tf.maximum(cum_w - at_j, 1.0)),
              tf.math.log(tf.maximum(at_j - cum_w, 1.0)))

    range_values = isotonic.lse_values(theta, log_weight, compare)
    starts = isotonic.block_starts(range_values, x.shape[-1], compare)
  if kl:
    start, end = isotonic.block_bounds(starts)
    # r = sum_B(w) * softmax_B(theta)
    weight = tf.exp(theta - isotonic.block_logsumexp(theta, start, end,
                                                     mass))
    sorted_ranks = _weight_sum(start, end, n) * weight
  else:
    range_values, block_mean = isotonic.mean_values(theta - w, x.dtype)
    if large:
      starts = _pav_starts(x, pav.mean_value(theta - w))
    else:
      starts = isotonic.block_starts(range_values, x.shape[-1], x.dtype)
    start, end = isotonic.block_bounds(starts)
    sorted_ranks = theta - block_mean(start, end)  # the projection: s - v
    weight = tf.zeros_like(theta)
  ranks = tf.cast(rowwise.gather(sorted_ranks, pos), x.dtype)
  return ranks, pos, order, start, end, tf.cast(weight, x.dtype)


@tf.function(jit_compile=True, autograph=False)
def _soft_rank_backward(upstream, ranks, strength, pos, order, start, end,
                        weight, sign, kl):
  """vjp of _soft_rank_forward: block averaging (l2) / softmax (kl)."""
  if kl:
    upstream = upstream * ranks
  g = tf.cast(rowwise.gather(upstream, order), _WORK)  # sorted order
  total = isotonic.segment_sum(g, start, end)
  if kl:
    g = g - tf.cast(weight, _WORK) * total
  else:
    g = g - total / tf.cast(end - start, _WORK)
  grad = rowwise.gather(g, pos) * (sign / strength)
  return tf.cast(grad, upstream.dtype)


@tf.function(jit_compile=True, autograph=False)
def _soft_sort_forward(x, strength, sign, kl, sorted_order):
  """Soft sort of [M, n] rows and what the vjp needs (XLA-compiled).

  sorted_order: as _soft_rank_forward.
  """
  shape = tf.shape(x)
  n = tf.cast(shape[1], _WORK)
  large = sorted_order is not None
  pos, order = _sort(sign * x, sorted_order)
  u = rowwise.gather(tf.cast(sign * x, _WORK), order)  # decreasing
  index = tf.cast(tf.range(shape[1]), _WORK)[None, :]
  w = n - index
  # Float64 comparisons: soft sort has no gap bound to keep the sums small.
  if kl:
    cuts = tf.cast(tf.range(shape[1] + 1), _WORK)[None, :]
    log_norm_1 = tf.math.log(-tf.math.expm1(-1.0 / strength))

    def log_norm(length):
      # logsumexp(-q / strength for q in [0, length)), length >= 1.
      return tf.math.log(-tf.math.expm1(-length / strength)) - log_norm_1

    def lse_w(j):
      # logsumexp(w / strength) over [j, k) and [k, j), w_p = n - p.
      j = tf.cast(j, _WORK)
      after = (n - j) / strength + log_norm(tf.maximum(cuts - j, 1.0))
      before = (n - cuts) / strength + log_norm(tf.maximum(j - cuts, 1.0))
      return after, before

    mass = pav.suffix_mass(u) if large else None
    if large:
      def lse_w_range(start, end):  # logsumexp(w / strength) over a range
        start = tf.cast(start, _WORK)
        return ((n - start) / strength +
                log_norm(tf.cast(end, _WORK) - start))

      starts = _pav_starts(x, pav.lse_value(lse_w_range, (u, mass)))
    else:
      values = isotonic.lse_values(lse_w, u, _WORK)
      starts = isotonic.block_starts(values, x.shape[-1], _WORK)
    start, end = isotonic.block_bounds(starts)
    single = tf.equal(end - start, 1)
    lse_u = tf.where(single, u,
                     isotonic.block_logsumexp(u, start, end, mass))
    # log softmax_B(w / strength) at q = (start - q) / strength - log_norm.
    log_soft_w = ((tf.cast(start, _WORK) - index) / strength -
                  log_norm(tf.cast(end - start, _WORK)))
    sorted_values = log_soft_w + lse_u
    weight = tf.where(single, tf.ones_like(u), tf.exp(u - lse_u))
  else:
    # Blocks of iso(w / strength - u); scaled by min(1, strength) so that
    # neither term overflows (a positive scale keeps the blocks).
    y = tf.minimum(1.0 / strength, 1.0) * w - tf.minimum(strength, 1.0) * u
    if large:
      starts = _pav_starts(x, pav.mean_value(y))
    else:
      range_values, _ = isotonic.mean_values(y, _WORK)
      starts = isotonic.block_starts(range_values, x.shape[-1], _WORK)
    start, end = isotonic.block_bounds(starts)
    count = tf.cast(end - start, _WORK)
    mean_u = tf.where(tf.equal(end - start, 1), u,
                      isotonic.segment_sum(u, start, end) / count)
    # mean_B(u) + (w_q - mean_B(w)) / strength
    spread = (tf.cast(start + end, _WORK) - 1.0) / 2.0 - index
    sorted_values = mean_u + spread / strength
    weight = 1.0 / count
  sorted_values = tf.cast(sign * sorted_values, x.dtype)
  return sorted_values, pos, start, end, tf.cast(weight, x.dtype)


@tf.function(jit_compile=True, autograph=False)
def _soft_sort_backward(upstream, pos, start, end, weight):
  """vjp of _soft_sort_forward: block sums spread by the block weights."""
  total = isotonic.segment_sum(tf.cast(upstream, _WORK), start, end)
  g = tf.cast(weight, _WORK) * total
  return tf.cast(rowwise.gather(g, pos), upstream.dtype)


def soft_rank(values, direction="ASCENDING", regularization_strength=1.0,
              regularization="l2"):
  r"""Soft ranks along the last axis (Blondel et al. 2020).

  The projection of +-values / regularization_strength onto the permutahedron
  of (n, ..., 1) ("l2"), or its KL analogue ("kl"). As the strength goes to 0
  the result tends to the hard ranks, as it grows to the mean rank (n + 1) / 2.

  Example:
    soft_rank([[5., 1., 2.], [2., 1., 5.]], regularization_strength=1.0)
    == [[3., 1., 2.], [2., 1., 3.]]
    soft_rank([[5., 1., 2.], [2., 1., 5.]], regularization_strength=2.0)
    == [[3., 1.25, 1.75], [1.75, 1.25, 3.]]

  Args:
    values: [batch, n] (any leading dimensions) floating point values.
    direction: "ASCENDING" (rank 1 = smallest) or "DESCENDING" (rank 1 =
      largest).
    regularization_strength: positive float; smaller is closer to hard ranks.
    regularization: "l2" (Euclidean projection; isotonic regression) or "kl".

  Returns:
    [batch, n] soft ranks in [1, n] (1-based), the dtype of `values`.
    Differentiable with an exact analytic gradient.

  Raises:
    ValueError: for an unknown direction / regularization, a non-positive
      strength, or values of rank < 2.
  """
  def make_op(strength_t, sign, kl):
    @tf.custom_gradient
    def _op(x):
      ranks, pos, order, start, end, weight = _by_length(
          _soft_rank_forward, x, strength_t, sign, kl)

      def vjp(upstream):
        return _soft_rank_backward(upstream, ranks, strength_t, pos, order,
                                   start, end, weight, sign, kl)

      return ranks, vjp

    return _op

  return _apply_rowwise(values, direction, regularization,
                        regularization_strength, "ASCENDING", make_op)


def soft_sort(values, direction="ASCENDING", regularization_strength=1.0,
              regularization="l2"):
  r"""Soft sort along the last axis (Blondel et al. 2020).

  Example:
    soft_sort([[5., 1., 2.], [2., 1., 5.]], regularization_strength=1.0)
    == [[1.6667, 2.6667, 3.6667]] * 2
    soft_sort([[5., 1., 2.], [2., 1., 5.]], regularization_strength=0.1)
    == [[1., 2., 5.]] * 2

  Args:
    values: [batch, n] (any leading dimensions) floating point values.
    direction: "ASCENDING" (output increasing) or "DESCENDING".
    regularization_strength: positive float; smaller is closer to a hard sort,
      larger pulls every output towards the mean of the row ("l2").
    regularization: "l2" or "kl".

  Returns:
    [batch, n] softly sorted values, the dtype of `values`; differentiable
    with an exact analytic gradient.

  Raises:
    ValueError: as soft_rank.
  """
  def make_op(strength_t, sign, kl):
    @tf.custom_gradient
    def _op(x):
      sorted_values, pos, start, end, weight = _by_length(
          _soft_sort_forward, x, strength_t, sign, kl)

      def vjp(upstream):
        return _soft_sort_backward(upstream, pos, start, end, weight)

      return sorted_values, vjp

    return _op

  return _apply_rowwise(values, direction, regularization,
                        regularization_strength, "DESCENDING", make_op)


def _by_length(forward, x, strength, sign, kl):
  """forward(...) on the O(n) path if n > LARGE_N, else the O(n^2) one.

  Decided when tracing where n is static, else at run time by a tf.cond
  (both paths are traced; under XLA the shape is known when compiling and
  only the path taken is kept). The long-row path sorts in a function of
  its own, so that one compiled sort serves every direction, op and
  regularization of a shape.
  """
  def large():
    # The gradient is the custom one; without stop_gradient a recording
    # tape would make TensorFlow differentiate the forward's loops too
    # (pav.suffix_mass has float outputs), which needs TensorList
    # accumulators XLA cannot compile.
    rows = tf.stop_gradient(x)
    return forward(rows, strength, sign, kl,
                   sorting.sorted_positions(sign * rows))

  def small():
    return forward(x, strength, sign, kl, None)

  n = x.shape[-1]
  if n is not None:
    return large() if n > LARGE_N else small()
  return tf.cond(tf.shape(x)[-1] > LARGE_N, large, small)


def _apply_rowwise(values, direction, regularization, regularization_strength,
                   positive_direction, make_op):
  """Checks the options, then applies make_op(strength, sign, kl) row-wise.

  The shared frame of soft_rank and soft_sort: validation, [..., n] -> rows
  [batch, n] in the working dtype and back, empty rows, and the direction as
  a sign (+1 for `positive_direction`).
  """
  strength = checks.check_soft_args(direction, regularization,
                                    regularization_strength)
  rows, dtype, shape = rowwise.as_rows(values)
  if rows.shape[-1] == 0:
    return rowwise.restore(rows, dtype, shape)
  sign = 1.0 if direction == positive_direction else -1.0
  op = make_op(tf.constant(strength, _WORK), sign, regularization == "kl")
  return rowwise.restore(op(rows), dtype, shape)
