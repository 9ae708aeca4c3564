"""Differentiable ranking and sorting, graph-native TensorFlow.

Soft ranks and soft sorts ("Fast Differentiable Sorting and Ranking", Blondel
et al., ICML 2020) with the signature and semantics of the paper's reference
operators (`soft_rank(values, direction, regularization_strength,
regularization)`, 1-based ranks, "l2" and "kl"), so that code written for
them runs unchanged; plus hard ranks, perturbed ranks and a Fenchel-Young
ranking loss (Berthet et al., NeurIPS 2020), and Keras 3 wrappers.

Conventions
-----------
* `values` are `[batch, n]`; any number of leading dimensions is allowed and
  the ranking is always along the last axis. float16 / bfloat16 inputs are
  computed in float32 and cast back; integer inputs are ranked as float32.
* Ranks are 1-BASED: with `direction="ASCENDING"` the
  smallest value gets rank 1 and the largest rank n. (The data pipeline's
  targets are 0-based; add 1 before comparing with anything here.)
* `soft_sort(..., direction="ASCENDING")` returns the values sorted ascending.
* A single item (n = 1) has rank 1 and sorts to itself. Ties: tied values get
  identical soft ranks (the projection is permutation-equivariant), which in the
  hard limit is the average of the ranks they span; `hard_rank` breaks ties by
  position by default (`ties="ordinal"`) or averages them (`ties="average"`).
* `values` must be finite. soft_rank is safe for any finite magnitudes and
  strengths (the soft ranks of values far apart relative to the strength are
  the hard ranks, of values close together the mean rank (n + 1) / 2); soft
  sort accumulates in float64, so only float64 inputs near finfo.max / n can
  overflow.

How the projection is computed
------------------------------
soft_rank(values) is the projection of theta = +-values / strength onto the
permutahedron of w = (n, ..., 1): after sorting theta decreasingly into s it
is s - v, with v the decreasing isotonic regression of s - w ("l2") or its KL
analogue ("kl"). soft_sort is the same isotonic problem with the roles of
w / strength and s swapped. An isotonic solution is constant on blocks of
consecutive sorted positions; the value of a block [j, k) is mean(y[j:k])
("l2") or logsumexp(s[j:k]) - logsumexp(w'[j:k]) ("kl"). Nothing here has a
data-dependent shape or trip count, so it runs unchanged in eager mode,
tf.function, XLA, tf.data, tf.distribute and a SavedModel:

1. Sort by pairwise integer comparisons (position = number of items ahead),
   O(n^2) but vectorised; XLA's CPU sort is several times slower here.
2. (soft_rank) Shrink gaps wider than 2n + 2 between consecutive sorted
   theta: no block can straddle such a gap and shifting one side of it changes
   nothing in the output, so the row's range becomes O(n^2) whatever the
   input magnitudes (no overflow, no cancellation in prefix sums).
3. Partition by the min-max formula evaluated at block boundaries: cut m
   separates two blocks iff every range ending at m has a larger value than
   every range starting at m (m is then a vertex of the least concave
   majorant of the cumulative-sum diagram). Ties pool, as sequential PAV
   does. All range values come from one prefix-sum row (l2) or from suffix
   sums of exp relative to the range start (kl, never underflowing or
   cancelling); one pass over the n + 1 range starts keeps the running
   minimum / maximum per cut, elementwise over [batch, n + 1], which XLA
   fuses into one vectorised loop (unrolled up to n = 32, a while loop over
   chunks of 8 cuts above).
4. Block bounds from a segment minimum of positions, block statistics from
   float64 prefix sums, each output taken relative to its block (singleton
   blocks give exact hard ranks), and the un-sort as a gather.

The gradient is analytic (tf.custom_gradient): the vector-Jacobian product of
the isotonic step is block averaging (l2) or block-softmax weighting (kl), a
few O(n) operations on the saved partition. Forward and backward are
XLA-compiled functions (jit_compile=True) even inside a graph that is not: the
TensorFlow kernels' per-op overhead would otherwise dominate at these sizes.
Both are exact (to rounding) away from the measure-zero set where the
partition changes; there the blocks of the computed solution define the
(one-sided) derivative. For soft_sort with "kl" the weights are the softmax
of the block's values, which finite differences confirm.

Alternatives measured while choosing this (2 loaded CPU cores, float32,
[2048, 32] unless said): a batched sequential pool-adjacent-violators loop
(tf.while_loop over items and merges; the benchmark keeps it) takes ~5x this
forward pass, its per-iteration work being tiny; rounds of parallel pooling
(all violating pairs at once, a handful of rounds, each needing a scan) took
3-5x forward+backward; sorting with XLA's sort alone took longer than this
whole forward pass; dense [n, n] block masks in float were ~20x. XLA on CPU
may recompute a fused producer in each of its consumers, so the pairwise
counts are unrolled column by column and the block bounds come from a
segment minimum (pairwise counts there were 1.3x slower at n = 32, 2x at
n = 64); each choice was timed. Work is O(n^2) per row: up to n = 32 this is
faster than a compiled sequential loop called from the graph, at n = 64 it
takes about 1.7x as long, and the gap grows with n (see benchmarks/ranking.py
for the figures).

Precision: block statistics are accumulated in float64 for every input
dtype; the partition's range values are compared in the input precision for
soft_rank (a wrong decision at a near-tie moves the output by no more than the
rounding error) and in float64 for soft_sort.
"""

import math

import keras
import numpy as np
import tensorflow as tf

DIRECTIONS = ("ASCENDING", "DESCENDING")
REGULARIZATIONS = ("l2", "kl")
NOISES = ("normal", "gumbel")
TIES = ("ordinal", "average")


# ----------------------------------------------------------------------------
# Validation.


def _check_direction(direction):
  if direction not in DIRECTIONS:
    raise ValueError(
        f"direction must be one of {DIRECTIONS}, got {direction!r}.")


def _check_regularization(regularization):
  if regularization not in REGULARIZATIONS:
    raise ValueError(
        f"regularization must be one of {REGULARIZATIONS}, got "
        f"{regularization!r}.")


def _check_strength(regularization_strength):
  """Returns the strength as a Python float, or raises ValueError."""
  try:
    strength = float(regularization_strength)
  except (TypeError, ValueError):
    raise ValueError(
        "regularization_strength must be a positive Python number, got "
        f"{regularization_strength!r}.") from None
  if not (strength > 0.0 and math.isfinite(strength)):
    raise ValueError(
        "regularization_strength must be positive and finite, got "
        f"{regularization_strength!r}; small values approach hard ranks, "
        "large values the mean rank.")
  return strength


def _check_soft_args(direction, regularization, regularization_strength):
  """Validates soft_rank/soft_sort's options; returns the strength (float)."""
  _check_direction(direction)
  _check_regularization(regularization)
  return _check_strength(regularization_strength)


def _check_noise(noise):
  if noise not in NOISES:
    raise ValueError(f"noise must be one of {NOISES}, got {noise!r}.")


def _check_ties(ties):
  if ties not in TIES:
    raise ValueError(f"ties must be one of {TIES}, got {ties!r}.")


def _check_num_samples(num_samples):
  try:
    ok = (not isinstance(num_samples, bool) and
          int(num_samples) == num_samples and int(num_samples) >= 1)
  except (TypeError, ValueError):
    ok = False
  if not ok:
    raise ValueError(
        f"num_samples must be a positive integer, got {num_samples!r}.")
  return int(num_samples)


def _check_sigma(sigma):
  try:
    value = float(sigma)
  except (TypeError, ValueError):
    raise ValueError(
        f"sigma must be a positive Python number, got {sigma!r}.") from None
  if not (value > 0.0 and math.isfinite(value)):
    raise ValueError(f"sigma must be positive and finite, got {sigma!r}.")
  return value


def _as_rows(values, name="values"):
  """Validates `values` and flattens the leading dimensions.

  Args:
    values: tensor-like [..., n] with at least two dimensions.
    name: the argument's name, for error messages.

  Returns:
    (rows, dtype, shape): rows [M, n] in the compute dtype (float32 for half
    and integer inputs), the output dtype, and the input shape for _restore.
  """
  values = tf.convert_to_tensor(values)
  dtype = values.dtype
  if dtype.is_integer:
    values = tf.cast(values, tf.float32)
    dtype = tf.float32
  elif not dtype.is_floating:
    raise ValueError(
        f"{name} must be a floating point tensor, got dtype {dtype.name}.")
  rank = values.shape.rank
  if rank is None or rank < 2:
    raise ValueError(
        f"{name} must have shape [batch, n] (rank >= 2; the ranking is along "
        f"the last axis), got shape {values.shape}. For a single vector use "
        f"{name}[None, :].")
  compute_dtype = tf.float32 if dtype in (tf.float16, tf.bfloat16) else dtype
  static = values.shape
  shape = static if static.is_fully_defined() else tf.shape(values)
  n = static[-1] if static[-1] is not None else tf.shape(values)[-1]
  rows = tf.reshape(tf.cast(values, compute_dtype), [-1, n])  # [M, n]
  return rows, dtype, (shape, static)


def _restore(rows, dtype, shape, drop_last=False):
  """Inverse of _as_rows: [M, n] (or [M] with drop_last) -> input shape."""
  shape, static = shape
  if drop_last:
    shape, static = shape[:-1], static[:-1]
  out = tf.reshape(rows, shape)
  out.set_shape(static)
  return tf.cast(out, dtype)


def _num_items(rows):
  """n as a Python int when static, else a scalar int32 tensor."""
  n = rows.shape[-1]
  return n if n is not None else tf.shape(rows)[-1]


# ----------------------------------------------------------------------------
# The isotonic step, in sorted space.

# Work dtype of the [M, n] vectors (prefix sums, block statistics): cheap at
# these sizes, and it keeps block means exact for float32 inputs.
_WORK = tf.float64

# Up to this many items the partition loop is unrolled into one fused XLA
# loop; beyond it (or for an unknown n) a while loop keeps the program small.
_UNROLL_MAX_ITEMS = 32


# Pairwise integer counts below are unrolled over the n columns up to this n
# (one fused, vectorised XLA loop); above it they are [M, n, n] reductions.
_UNROLL_MAX_COUNTS = 128


def _count(n, term):
  """sum over p of the int32 [M, n] tensors term(p), p = 0 .. n - 1."""
  if n is not None and n <= _UNROLL_MAX_COUNTS:
    total = term(0)
    for p in range(1, n):
      total += term(p)
    return total
  return None


def _descending_positions(x):
  """Position of every item in the stable decreasing order of its row.

  Pairwise integer comparisons (O(n^2), vectorised) instead of a sort: for
  the n used here this is several times faster than XLA's CPU sort.

  Args:
    x: [M, n].

  Returns:
    int32 [M, n]: pos[:, i] = number of items sorted before item i (larger,
    or equal and earlier).
  """
  n = x.shape[-1]
  index = tf.range(n if n is not None else tf.shape(x)[-1])[None, :]

  def ahead(j):  # whether item j sorts before each item i
    x_j = x[:, j:j + 1]
    return tf.cast((x_j > x) | ((x_j == x) & (j < index)), tf.int32)

  pos = _count(n, ahead)
  if pos is None:
    other = x[:, None, :]  # [M, 1, j]
    mine = x[:, :, None]  # [M, i, 1]
    earlier = index[0][None, :] < index[0][:, None]  # [i, j]: j before i
    ahead_all = (other > mine) | ((other == mine) & earlier)  # [M, i, j]
    pos = tf.reduce_sum(tf.cast(ahead_all, tf.int32), axis=-1)
  return pos


def _inverse_permutation(pos):
  """int32 [M, n] -> [M, n]: order[:, p] = the item at position p."""
  n = pos.shape[-1]
  index = tf.range(n if n is not None else tf.shape(pos)[-1])[None, :]
  order = _count(n, lambda i: tf.where(tf.equal(pos[:, i:i + 1], index), i, 0))
  if order is None:
    hit = tf.equal(pos[:, None, :], index[:, :, None])  # [M, p, i]
    order = tf.reduce_sum(tf.where(hit, index[:, None, :], 0), axis=-1)
  return order


def _prefix(x):
  """[M, n] -> [M, n + 1] prefix sums with a leading 0."""
  return tf.pad(tf.cumsum(x, axis=-1), [[0, 0], [1, 0]])


def _suffix_mass(a):
  """Suffix sums of exp(a) relative to each start, for a decreasing row.

  g_j = sum_{p >= j} exp(a_p - a_j) obeys g_j = 1 + exp(a_{j+1} - a_j) g_{j+1};
  the affine recurrence is solved by doubling (log2(n) steps, no
  transcendental inside, values in [1, n], nothing to overflow or cancel).

  Args:
    a: [M, n] non-increasing rows.

  Returns:
    [M, n + 1], with g_n = 0.
  """
  ratio = tf.exp(a[:, 1:] - a[:, :-1])  # [M, n - 1], in [0, 1]
  ratio = tf.pad(ratio, [[0, 0], [0, 1]])  # r_{n-1} = 0
  # Invariant: g_j = offset_j + scale_j * g_{j + shift}.
  offset = tf.ones_like(a)
  scale = ratio
  n = a.shape[-1]

  def step(offset, scale, shift):
    pad = [[0, 0], [0, shift]]
    later_offset = tf.pad(offset[:, shift:], pad)
    later_scale = tf.pad(scale[:, shift:], pad)
    return offset + scale * later_offset, scale * later_scale

  if n is not None:
    shift = 1
    while shift < n:
      offset, scale = step(offset, scale, shift)
      shift *= 2
  else:
    # Unknown n (shifts must be static under XLA): the same sums from
    # suffix log-sum-exps (an O(n^2) reduce-window, slower but exact).
    suffix = tf.math.cumulative_logsumexp(a, axis=-1, reverse=True)
    offset = tf.exp(suffix - a)
  return tf.pad(offset, [[0, 0], [0, 1]])


def _block_starts(range_values, n, dtype):
  """Blocks of a decreasing isotonic fit from the value of every range.

  Boundary m (0 < m < n) separates two blocks iff every range ending at m has
  a larger optimal value than every range starting at m (the min-max formula
  of isotonic regression at block boundaries; ties pool, as sequential PAV
  does). The loop over cuts j keeps, for every cut, the running minimum of
  the values of ranges [j, k) (k > j) and the running maximum of those of
  ranges [k, j) (k < j), elementwise over [M, n + 1], which XLA fuses.

  Args:
    range_values: callable j -> (after, before), both [M, n + 1] of `dtype`:
      after[:, k] the value of [j, k) (read for k > j), before[:, k] that of
      [k, j) (read for k < j). j is a Python int or a scalar int32 tensor.
    n: the static number of items, or None.
    dtype: dtype of the values.

  Returns:
    bool [M, n], True at the first position of each block.
  """
  inf = tf.constant(math.inf, dtype)
  after, _ = range_values(0)
  cuts = tf.range(n + 1 if n is not None else tf.shape(after)[-1])[None, :]

  def update(j, ending, starting):
    after, before = range_values(j)
    ending = tf.minimum(ending, tf.where(cuts > j, after, inf))
    starting = tf.maximum(starting, tf.where(cuts < j, before, -inf))
    return ending, starting

  ending = tf.fill(tf.shape(after), inf)
  starting = tf.fill(tf.shape(after), -inf)
  if n is not None and n <= _UNROLL_MAX_ITEMS:
    for j in range(n + 1):
      ending, starting = update(j, ending, starting)
  else:
    chunk = 8  # cuts per iteration: a loop step per cut was 10% slower
    num_cuts = tf.shape(after)[-1]

    def body(j, ending, starting):
      for step in range(chunk):
        # Cuts past the end repeat the last one (harmless for min / max).
        ending, starting = update(tf.minimum(j + step, num_cuts - 1),
                                  ending, starting)
      return j + chunk, ending, starting

    _, ending, starting = tf.while_loop(
        lambda j, *_: j < num_cuts, body,
        (tf.constant(0), ending, starting))
  # No range ends at cut 0, so ending[:, 0] = inf and position 0 starts a
  # block. (A slice, not a concatenation: XLA would recompute the loop.)
  return (ending > starting)[:, :-1]


def _column(x, j):
  """x[:, j:j + 1] for a Python int or scalar tensor j."""
  if isinstance(j, int):
    return x[:, j:j + 1]
  return tf.gather(x, j[None], axis=1)


def _mean_values(y, dtype):
  """range_values for l2: the mean of y over each range.

  Prefix sums of y minus its row mean, compared in `dtype`: a wrong decision
  at a near-tie moves the output by no more than that rounding error.

  Returns:
    (range_values, block_mean) where block_mean(start, end) is the mean of
    y over [start, end) from the same (work dtype) prefix sums.
  """
  mean = tf.reduce_mean(y, axis=-1, keepdims=True)
  exact = _prefix(y - mean)  # [M, n + 1], work dtype
  prefix = tf.cast(exact, dtype)
  n = y.shape[-1]
  cuts = tf.cast(tf.range(n + 1 if n is not None else tf.shape(prefix)[-1]),
                 dtype)[None, :]

  def range_values(j):
    at_j = _column(prefix, j)
    j = tf.cast(j, dtype)
    # (P_k - P_j) / (k - j), each side written out so that XLA fuses it.
    after = (prefix - at_j) / tf.maximum(cuts - j, 1.0)
    before = (at_j - prefix) / tf.maximum(j - cuts, 1.0)
    return after, before

  def block_mean(start, end):
    total = _gather(exact, end) - _gather(exact, start)
    return total / tf.cast(end - start, exact.dtype) + mean

  return range_values, block_mean


def _lse_values(a, b, dtype):
  """range_values for kl: logsumexp(a[range]) - logsumexp(b[range]).

  Args:
    a, b: [M, n] non-increasing rows (work dtype), or callables giving the
      [M, n + 1] logsumexp of ranges [j, k) and [k, j) in closed form.
    dtype: dtype of the values.
  """
  def data_side(x):
    if callable(x):
      return x
    x = tf.cast(x, dtype)
    mass = tf.cast(_suffix_mass(x), dtype)
    x = tf.pad(x, [[0, 0], [0, 1]], constant_values=-math.inf)

    def lse(j):
      x_j, g_j = _column(x, j), _column(mass, j)
      after = x_j + tf.math.log(g_j - tf.exp(x - x_j) * mass)
      before = x + tf.math.log(mass - tf.exp(x_j - x) * g_j)
      return after, before

    return lse

  lse_a, lse_b = data_side(a), data_side(b)

  def range_values(j):
    after_a, before_a = lse_a(j)
    after_b, before_b = lse_b(j)
    return after_a - after_b, before_a - before_b

  return range_values


def _block_bounds(starts):
  """First and one-past-last sorted position of every position's block.

  With b = cumsum(starts) the 1-based block of each position, a segment
  minimum of the positions gives each block's first position; a block ends
  where the next one starts. (A scatter, O(n) per row: pairwise counts or
  running maxima were 2-4x slower, partly because XLA fused the partition
  loop into them and recomputed it per use.)

  Args:
    starts: bool [M, n], True where a block starts (position 0 always).

  Returns:
    (start, end) int32 [M, n].
  """
  block = tf.cumsum(tf.cast(starts, tf.int32), axis=-1)  # [M, n], 1-based
  shape = tf.shape(starts)
  rows, n = shape[0], shape[1]
  index = tf.broadcast_to(tf.range(n)[None, :], shape)
  segment = block - 1 + n * tf.range(rows)[:, None]  # [M, n]
  first = tf.math.unsorted_segment_min(
      tf.reshape(index, [-1]), tf.reshape(segment, [-1]), rows * n)
  first = tf.minimum(tf.reshape(first, shape), n)  # unused blocks: n
  first = tf.pad(first, [[0, 0], [0, 1]], constant_values=n)  # [M, n + 1]
  return _gather(first, block - 1), _gather(first, block)


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


def _gather(x, index):
  return tf.gather(x, index, batch_dims=1)


def _block_logsumexp(a, start, end):
  """logsumexp of a decreasing row a over each position's block."""
  mass = _suffix_mass(a)
  a_end = _gather(tf.pad(a, [[0, 0], [0, 1]], constant_values=-math.inf), end)
  a_start = _gather(a, start)
  return a_start + tf.math.log(
      _gather(mass, start) - tf.exp(a_end - a_start) * _gather(mass, end))


def _weight_sum(start, end, n):
  """Sum of w_p = n - p over [start, end), work dtype."""
  start = tf.cast(start, _WORK)
  end = tf.cast(end, _WORK)
  return (end - start) * (n - (start + end - 1.0) / 2.0)


def _segment_sum(x, start, end):
  """Sum of x over each position's block [start, end): [M, n] -> [M, n]."""
  prefix = _prefix(x)
  return _gather(prefix, end) - _gather(prefix, start)


@tf.function(jit_compile=True, autograph=False)
def _soft_rank_forward(x, strength, sign, kl):
  """Soft ranks of [M, n] rows and what the vjp needs (XLA-compiled)."""
  shape = tf.shape(x)
  n = tf.cast(shape[1], _WORK)
  pos = _descending_positions(sign * x)
  order = _inverse_permutation(pos)
  u = _gather(tf.cast(sign * x, _WORK), order)  # decreasing
  theta = _bounded_gaps(u, strength)  # [M, n]
  index = tf.cast(tf.range(shape[1]), _WORK)[None, :]
  w = n - index  # (n, ..., 1)
  if kl:
    # Block value logsumexp_B(theta) - log(sum_B w); compared in the input
    # precision (theta' is bounded, see _bounded_gaps).
    compare = x.dtype
    cuts = tf.cast(tf.range(shape[1] + 1), compare)[None, :]
    n_c = tf.cast(n, compare)
    cum_w = cuts * n_c - cuts * (cuts - 1.0) / 2.0  # sum of w below a cut

    def log_weight(j):
      at_j = _column(cum_w, j)
      return (tf.math.log(tf.maximum(cum_w - at_j, 1.0)),
              tf.math.log(tf.maximum(at_j - cum_w, 1.0)))

    starts = _block_starts(_lse_values(theta, log_weight, compare),
                           x.shape[-1], compare)
    start, end = _block_bounds(starts)
    # r = sum_B(w) * softmax_B(theta)
    weight = tf.exp(theta - _block_logsumexp(theta, start, end))
    sorted_ranks = _weight_sum(start, end, n) * weight
  else:
    range_values, block_mean = _mean_values(theta - w, x.dtype)
    starts = _block_starts(range_values, x.shape[-1], x.dtype)
    start, end = _block_bounds(starts)
    sorted_ranks = theta - block_mean(start, end)  # the projection: s - v
    weight = tf.zeros_like(theta)
  ranks = tf.cast(_gather(sorted_ranks, pos), x.dtype)
  return ranks, pos, order, start, end, tf.cast(weight, x.dtype)


@tf.function(jit_compile=True, autograph=False)
def _soft_rank_backward(upstream, ranks, strength, pos, order, start, end,
                        weight, sign, kl):
  """vjp of _soft_rank_forward: block averaging (l2) / softmax (kl)."""
  if kl:
    upstream = upstream * ranks
  g = tf.cast(_gather(upstream, order), _WORK)  # sorted order
  total = _segment_sum(g, start, end)
  if kl:
    g = g - tf.cast(weight, _WORK) * total
  else:
    g = g - total / tf.cast(end - start, _WORK)
  grad = _gather(g, pos) * (sign / strength)
  return tf.cast(grad, upstream.dtype)


@tf.function(jit_compile=True, autograph=False)
def _soft_sort_forward(x, strength, sign, kl):
  """Soft sort of [M, n] rows and what the vjp needs (XLA-compiled)."""
  shape = tf.shape(x)
  n = tf.cast(shape[1], _WORK)
  pos = _descending_positions(sign * x)
  order = _inverse_permutation(pos)
  u = _gather(tf.cast(sign * x, _WORK), order)  # decreasing
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

    values = _lse_values(lse_w, u, _WORK)
    starts = _block_starts(values, x.shape[-1], _WORK)
    start, end = _block_bounds(starts)
    single = tf.equal(end - start, 1)
    lse_u = tf.where(single, u, _block_logsumexp(u, start, end))
    # log softmax_B(w / strength) at q = (start - q) / strength - log_norm.
    log_soft_w = ((tf.cast(start, _WORK) - index) / strength -
                  log_norm(tf.cast(end - start, _WORK)))
    sorted_values = log_soft_w + lse_u
    weight = tf.where(single, tf.ones_like(u), tf.exp(u - lse_u))
  else:
    # Blocks of iso(w / strength - u); scaled by min(1, strength) so that
    # neither term overflows (a positive scale keeps the blocks).
    y = tf.minimum(1.0 / strength, 1.0) * w - tf.minimum(strength, 1.0) * u
    starts = _block_starts(_mean_values(y, _WORK)[0], x.shape[-1], _WORK)
    start, end = _block_bounds(starts)
    count = tf.cast(end - start, _WORK)
    mean_u = tf.where(tf.equal(end - start, 1), u,
                      _segment_sum(u, start, end) / count)
    # mean_B(u) + (w_q - mean_B(w)) / strength
    spread = (tf.cast(start + end, _WORK) - 1.0) / 2.0 - index
    sorted_values = mean_u + spread / strength
    weight = 1.0 / count
  sorted_values = tf.cast(sign * sorted_values, x.dtype)
  return sorted_values, pos, start, end, tf.cast(weight, x.dtype)


@tf.function(jit_compile=True, autograph=False)
def _soft_sort_backward(upstream, pos, start, end, weight):
  """vjp of _soft_sort_forward: block sums spread by the block weights."""
  total = _segment_sum(tf.cast(upstream, _WORK), start, end)
  g = tf.cast(weight, _WORK) * total
  return tf.cast(_gather(g, pos), upstream.dtype)


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
  strength = _check_soft_args(direction, regularization,
                              regularization_strength)
  rows, dtype, shape = _as_rows(values)
  if rows.shape[-1] == 0:
    return _restore(rows, dtype, shape)
  sign = 1.0 if direction == "ASCENDING" else -1.0
  kl = regularization == "kl"
  strength_t = tf.constant(strength, _WORK)

  @tf.custom_gradient
  def _op(x):
    ranks, pos, order, start, end, weight = _soft_rank_forward(
        x, strength_t, sign, kl)

    def vjp(upstream):
      return _soft_rank_backward(upstream, ranks, strength_t, pos, order,
                                 start, end, weight, sign, kl)

    return ranks, vjp

  return _restore(_op(rows), dtype, shape)


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
  strength = _check_soft_args(direction, regularization,
                              regularization_strength)
  rows, dtype, shape = _as_rows(values)
  if rows.shape[-1] == 0:
    return _restore(rows, dtype, shape)
  sign = 1.0 if direction == "DESCENDING" else -1.0
  kl = regularization == "kl"
  strength_t = tf.constant(strength, _WORK)

  @tf.custom_gradient
  def _op(x):
    sorted_values, pos, start, end, weight = _soft_sort_forward(
        x, strength_t, sign, kl)

    def vjp(upstream):
      return _soft_sort_backward(upstream, pos, start, end, weight)

    return sorted_values, vjp

  return _restore(_op(rows), dtype, shape)


# ----------------------------------------------------------------------------
# Hard ranks, perturbed ranks, Fenchel-Young loss.


def _hard_rank_rows(rows, ties):
  """Ascending 1-based hard ranks of [M, n] rows, in the rows' dtype.

  Pairwise comparisons rather than a sort (vectorised, and much faster than
  XLA's CPU sort at these sizes).
  """
  if ties == "ordinal":
    # #smaller + #(equal and earlier) + 1
    return tf.cast(_descending_positions(-rows) + 1, rows.dtype)
  # average: #smaller + (#equal + 1) / 2
  others = rows[:, None, :]  # [M, 1, n]
  mine = rows[:, :, None]  # [M, n, 1]
  smaller = tf.reduce_sum(tf.cast(others < mine, rows.dtype), axis=-1)
  equal = tf.reduce_sum(tf.cast(tf.equal(others, mine), rows.dtype), axis=-1)
  return smaller + (equal + 1.0) / 2.0


def hard_rank(values, direction="ASCENDING", ties="ordinal"):
  """Hard 1-based ranks along the last axis.

  Args:
    values: [batch, n] (any leading dimensions).
    direction: "ASCENDING" (rank 1 = smallest) or "DESCENDING".
    ties: "ordinal": tied values get distinct ranks, the earlier position the
      lower rank (so the result is always a permutation of 1..n); "average":
      tied values share the mean of the ranks they span (the limit of soft_rank
      as the strength goes to 0).

  Returns:
    [batch, n] ranks as the dtype of `values` (float32 for integer input),
    holding integers (or halves for averaged ties). Not differentiable.
  """
  _check_direction(direction)
  _check_ties(ties)
  rows, dtype, shape = _as_rows(values)
  if direction == "DESCENDING":
    rows = -rows
  return _restore(_hard_rank_rows(tf.stop_gradient(rows), ties), dtype, shape)


def _seed_tensor(seed):
  """A stateless-RNG seed: int32 [2].

  None draws a fresh seed from TensorFlow's global generator (not
  reproducible); a Python int is mapped deterministically; a tensor must have
  shape [2].
  """
  if seed is None:
    return tf.random.uniform([2], minval=0, maxval=2**31 - 1, dtype=tf.int32)
  if isinstance(seed, bool):
    raise ValueError("seed must be None, an int or an int tensor of shape "
                     f"[2], got {seed!r}.")
  if isinstance(seed, int):
    modulus = 2**31 - 1
    return tf.constant([seed % modulus, (seed // modulus) % modulus],
                       tf.int32)
  seed = tf.convert_to_tensor(seed)
  if not seed.dtype.is_integer or seed.shape.rank != 1 or (
      seed.shape[0] is not None and seed.shape[0] != 2):
    raise ValueError(
        "seed must be None, an int or an int tensor of shape [2], got "
        f"{seed!r}.")
  if seed.dtype != tf.int32:
    seed = tf.cast(tf.math.floormod(tf.cast(seed, tf.int64), 2**31 - 1),
                   tf.int32)
  return seed


def _sample_noise(shape, noise, seed, dtype):
  """Noise Z and the gradient of its negative log density at Z.

  Args:
    shape: the noise shape.
    noise: "normal" (density exp(-z^2 / 2)) or "gumbel" (exp(-z - exp(-z))).
    seed: int32 [2] stateless seed.
    dtype: float dtype.

  Returns:
    (z, grad_nu) of `shape`.
  """
  if noise == "normal":
    z = tf.random.stateless_normal(shape, seed=seed, dtype=dtype)
    return z, z
  tiny = float(np.finfo(tf.as_dtype(dtype).as_numpy_dtype).tiny)
  u = tf.random.stateless_uniform(shape, seed=seed, minval=tiny, maxval=1.0,
                                  dtype=dtype)
  z = -tf.math.log(-tf.math.log(u))
  return z, 1.0 + tf.math.log(u)  # 1 - exp(-z)


def perturbed_ranks(values, num_samples, sigma, noise="normal", seed=None,
                    direction="ASCENDING"):
  """Expected hard ranks under additive noise (Berthet et al. 2020).

  E_Z[hard_rank(values + sigma * Z)] by Monte Carlo over `num_samples` draws,
  with the perturbed-optimizer Jacobian estimate
  E[hard_rank(values + sigma Z) grad_nu(Z)^T] / sigma as its gradient
  (grad_nu(z) = z for normal noise, 1 - exp(-z) for Gumbel).

  Args:
    values: [batch, n] (any leading dimensions).
    num_samples: number of noise draws.
    sigma: noise scale (> 0).
    noise: "normal" or "gumbel".
    seed: None (fresh noise on every call), a Python int, or an int tensor of
      shape [2]; the same seed and shape give the same noise (stateless RNG,
      also under XLA).
    direction: "ASCENDING" or "DESCENDING".

  Returns:
    [batch, n] expected 1-based ranks, the dtype of `values`.
  """
  _check_direction(direction)
  _check_noise(noise)
  num_samples = _check_num_samples(num_samples)
  sigma = _check_sigma(sigma)
  rows, dtype, shape = _as_rows(values)
  seed = _seed_tensor(seed)
  sign = 1.0 if direction == "ASCENDING" else -1.0

  @tf.custom_gradient
  def _op(x):
    m, n = tf.shape(x)[0], _num_items(x)
    z, grad_nu = _sample_noise([num_samples, m, n], noise, seed, x.dtype)
    perturbed = sign * x[None] + sigma * z  # [S, M, n]
    ranks = tf.reshape(
        _hard_rank_rows(tf.reshape(perturbed, [-1, n]), "ordinal"),
        tf.shape(perturbed))  # [S, M, n]

    def grad(upstream):
      projected = tf.reduce_sum(ranks * upstream[None], axis=-1, keepdims=True)
      return sign * tf.reduce_mean(projected * grad_nu, axis=0) / sigma

    return tf.reduce_mean(ranks, axis=0), grad

  return _restore(_op(rows), dtype, shape)


def fenchel_young_rank_loss(scores, target_ranks, num_samples=100, sigma=1.0,
                            noise="normal", seed=None, direction="ASCENDING"):
  r"""Fenchel-Young loss of perturbed ranks (Berthet et al. 2020), per example.

  With y_s = hard_rank(scores + sigma z_s) the value is the mean over samples
  of <y_s - target, scores + sigma z_s>, which is >= 0 for a target that is a
  permutation of 1..n (rank vectors maximise that inner product), is an
  unbiased estimate of the Fenchel-Young loss up to a term that does not
  depend on the scores, and whose gradient is

      d loss / d scores = mean_s y_s - target  (= E[perturbed ranks] - target)

  implemented as a custom gradient (for DESCENDING the sign flips).

  Args:
    scores: [batch, n] (any leading dimensions).
    target_ranks: [batch, n] 1-based target ranks (a permutation of 1..n per
      row), int or float.
    num_samples: number of noise draws.
    sigma: noise scale (> 0).
    noise: "normal" or "gumbel".
    seed: as in perturbed_ranks.
    direction: "ASCENDING" (rank n = largest score) or "DESCENDING".

  Returns:
    [batch] per-example losses (the leading dimensions of `scores`), the dtype
    of `scores`. Reduce and scale them as the training loop needs.
  """
  _check_direction(direction)
  _check_noise(noise)
  num_samples = _check_num_samples(num_samples)
  sigma = _check_sigma(sigma)
  rows, dtype, shape = _as_rows(scores, "scores")
  target = tf.convert_to_tensor(target_ranks)
  if not (target.dtype.is_integer or target.dtype.is_floating):
    raise ValueError(
        f"target_ranks must be numeric, got dtype {target.dtype.name}.")
  scores_shape = tf.convert_to_tensor(scores).shape
  if not target.shape.is_compatible_with(scores_shape):
    raise ValueError(
        f"target_ranks must have the shape of scores {scores_shape}, got "
        f"{target.shape}.")
  target = tf.reshape(tf.cast(target, rows.dtype), tf.shape(rows))  # [M, n]
  seed = _seed_tensor(seed)
  sign = 1.0 if direction == "ASCENDING" else -1.0

  @tf.custom_gradient
  def _op(x):
    m, n = tf.shape(x)[0], _num_items(x)
    z, _ = _sample_noise([num_samples, m, n], noise, seed, x.dtype)
    perturbed = sign * x[None] + sigma * z  # [S, M, n]
    ranks = tf.reshape(
        _hard_rank_rows(tf.reshape(perturbed, [-1, n]), "ordinal"),
        tf.shape(perturbed))  # [S, M, n]
    loss = tf.reduce_mean(
        tf.reduce_sum((ranks - target[None]) * perturbed, axis=-1), axis=0)
    expected = tf.reduce_mean(ranks, axis=0)  # [M, n]

    def grad(upstream):
      return sign * upstream[:, None] * (expected - target)

    return loss, grad

  loss = _op(rows)  # [M]
  return _restore(loss, dtype, shape, drop_last=True)  # [batch]


# ----------------------------------------------------------------------------
# Keras 3 wrappers.


@keras.saving.register_keras_serializable(package="audio_perm")
class SoftRank(keras.layers.Layer):
  """Soft ranks of the last axis as a layer: [batch, n] -> [batch, n].

  Args:
    direction: "ASCENDING" or "DESCENDING".
    regularization_strength: positive float.
    regularization: "l2" or "kl".
    **kwargs: keras.layers.Layer arguments (name, dtype, ...).
  """

  def __init__(self, direction="ASCENDING", regularization_strength=1.0,
               regularization="l2", **kwargs):
    super().__init__(**kwargs)
    self.regularization_strength = _check_soft_args(
        direction, regularization, regularization_strength)
    self.direction = direction
    self.regularization = regularization

  def call(self, inputs):
    return soft_rank(inputs, self.direction, self.regularization_strength,
                     self.regularization)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    config = super().get_config()
    config.update({
        "direction": self.direction,
        "regularization_strength": self.regularization_strength,
        "regularization": self.regularization,
    })
    return config


@keras.saving.register_keras_serializable(package="audio_perm")
class SoftRankLoss(keras.losses.Loss):
  """0.5 * ||soft_rank(scores) - target||^2 summed over the n items.

  `y_true` holds 1-BASED target ranks [batch, n] (add 1 to the data
  pipeline's 0-based ranks); `y_pred` the scores [batch, n]. `call` returns
  per-example losses [batch]; `reduction` follows Keras (None / "none" keeps
  them, e.g. to scale by the global batch size in a distributed step).

  Args:
    direction: "ASCENDING" or "DESCENDING".
    regularization_strength: positive float.
    regularization: "l2" or "kl".
    reduction: Keras loss reduction.
    name: loss name.
    dtype: Keras loss dtype (defaults to floatx).
  """

  def __init__(self, direction="ASCENDING", regularization_strength=1.0,
               regularization="l2", reduction="sum_over_batch_size",
               name="soft_rank_loss", dtype=None):
    super().__init__(name=name, reduction=reduction, dtype=dtype)
    self.regularization_strength = _check_soft_args(
        direction, regularization, regularization_strength)
    self.direction = direction
    self.regularization = regularization

  def call(self, y_true, y_pred):
    ranks = soft_rank(y_pred, self.direction, self.regularization_strength,
                      self.regularization)
    y_true = tf.cast(y_true, ranks.dtype)
    return 0.5 * tf.reduce_sum(tf.square(ranks - y_true), axis=-1)

  def get_config(self):
    config = super().get_config()
    config.update({
        "direction": self.direction,
        "regularization_strength": self.regularization_strength,
        "regularization": self.regularization,
    })
    return config


@keras.saving.register_keras_serializable(package="audio_perm")
class FenchelYoungRankLoss(keras.losses.Loss):
  """Fenchel-Young loss with perturbed ranks (fenchel_young_rank_loss).

  `y_true` holds 1-BASED target ranks [batch, n]; `y_pred` the scores. The
  gradient with respect to the scores is E[hard_rank(scores + sigma Z)] -
  target. `call` returns per-example losses [batch].

  Noise: the loss owns a keras.random.SeedGenerator (seeded with `seed`, or
  randomly when None) and draws a fresh stateless seed on every call, so runs
  with the same seed see the same noise (within one execution mode: XLA and
  the TensorFlow kernels draw different streams). The generator holds a
  variable: create the loss inside `strategy.scope()` when distributing.

  Args:
    num_samples: noise draws per example.
    sigma: noise scale (> 0).
    noise: "normal" or "gumbel".
    seed: None or a Python int.
    direction: "ASCENDING" or "DESCENDING".
    reduction: Keras loss reduction.
    name: loss name.
    dtype: Keras loss dtype.
  """

  def __init__(self, num_samples=100, sigma=1.0, noise="normal", seed=None,
               direction="ASCENDING", reduction="sum_over_batch_size",
               name="fenchel_young_rank_loss", dtype=None):
    super().__init__(name=name, reduction=reduction, dtype=dtype)
    _check_direction(direction)
    _check_noise(noise)
    if seed is not None and (isinstance(seed, bool) or
                             not isinstance(seed, int)):
      raise ValueError(f"seed must be None or a Python int, got {seed!r}.")
    self.num_samples = _check_num_samples(num_samples)
    self.sigma = _check_sigma(sigma)
    self.noise = noise
    self.seed = seed
    self.direction = direction
    self._seed_generator = keras.random.SeedGenerator(seed)

  def call(self, y_true, y_pred):
    seed = self._seed_generator.next()
    return fenchel_young_rank_loss(
        y_pred, y_true, num_samples=self.num_samples, sigma=self.sigma,
        noise=self.noise, seed=seed, direction=self.direction)

  def get_config(self):
    config = super().get_config()
    config.update({
        "num_samples": self.num_samples,
        "sigma": self.sigma,
        "noise": self.noise,
        "seed": self.seed,
        "direction": self.direction,
    })
    return config
