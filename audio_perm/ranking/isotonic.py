"""The isotonic step in sorted space, graph-native and XLA-compilable.

A decreasing isotonic fit of a sorted row is constant on blocks of
consecutive positions; the value of a block [j, k) is a mean ("l2",
mean_values) or a difference of log-sum-exps ("kl", lse_values). This module
finds the blocks without a data-dependent shape or trip count:

* block_starts: the partition by the min-max formula evaluated at block
  boundaries, from a `range_values(j)` callable giving the value of every
  range starting or ending at cut j, [M, n + 1] elementwise.
* block_bounds: each position's block [start, end) from the block starts.
* segment_sum, block_logsumexp, mean_values' block_mean: block statistics
  from prefix sums (or suffix sums of exp, never underflowing or cancelling).

All functions take [M, n] rows and are traced inside the XLA-compiled forward
and backward passes of audio_perm.ranking.soft. See docs/ranking.md for the
derivation and the alternatives that were measured.
"""

import math

import tensorflow as tf

from audio_perm.ranking import rowwise

# Up to this many items the partition loop is unrolled into one fused XLA
# loop; beyond it (or for an unknown n) a while loop keeps the program small.
_UNROLL_MAX_ITEMS = 32


def prefix_sums(x):
  """[M, n] -> [M, n + 1] prefix sums with a leading 0."""
  return tf.pad(tf.cumsum(x, axis=-1), [[0, 0], [1, 0]])


def suffix_mass(a):
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


def block_starts(range_values, n, dtype):
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


def column(x, j):
  """x[:, j:j + 1] for a Python int or scalar tensor j."""
  if isinstance(j, int):
    return x[:, j:j + 1]
  return tf.gather(x, j[None], axis=1)


def mean_values(y, dtype):
  """range_values for l2: the mean of y over each range.

  Prefix sums of y minus its row mean, compared in `dtype`: a wrong decision
  at a near-tie moves the output by no more than that rounding error.

  Returns:
    (range_values, block_mean) where block_mean(start, end) is the mean of
    y over [start, end) from the same (work dtype) prefix sums.
  """
  mean = tf.reduce_mean(y, axis=-1, keepdims=True)
  exact = prefix_sums(y - mean)  # [M, n + 1], work dtype
  prefix = tf.cast(exact, dtype)
  n = y.shape[-1]
  cuts = tf.cast(tf.range(n + 1 if n is not None else tf.shape(prefix)[-1]),
                 dtype)[None, :]

  def range_values(j):
    at_j = column(prefix, j)
    j = tf.cast(j, dtype)
    # (P_k - P_j) / (k - j), each side written out so that XLA fuses it.
    after = (prefix - at_j) / tf.maximum(cuts - j, 1.0)
    before = (at_j - prefix) / tf.maximum(j - cuts, 1.0)
    return after, before

  def block_mean(start, end):
    total = rowwise.gather(exact, end) - rowwise.gather(exact, start)
    return total / tf.cast(end - start, exact.dtype) + mean

  return range_values, block_mean


def lse_values(a, b, dtype):
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
    mass = tf.cast(suffix_mass(x), dtype)
    x = tf.pad(x, [[0, 0], [0, 1]], constant_values=-math.inf)

    def lse(j):
      x_j, g_j = column(x, j), column(mass, j)
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


def block_bounds(starts):
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
  return rowwise.gather(first, block - 1), rowwise.gather(first, block)


def block_logsumexp(a, start, end, mass=None):
  """logsumexp of a decreasing row a over each position's block.

  Args:
    a: [M, n] non-increasing rows.
    start, end: int32 [M, n], each position's block [start, end).
    mass: suffix_mass(a) if already computed, [M, n + 1].

  Returns:
    [M, n]: logsumexp(a[start:end]) at every position.
  """
  if mass is None:
    mass = suffix_mass(a)
  padded = tf.pad(a, [[0, 0], [0, 1]], constant_values=-math.inf)
  a_end = rowwise.gather(padded, end)
  a_start = rowwise.gather(a, start)
  return a_start + tf.math.log(
      rowwise.gather(mass, start) -
      tf.exp(a_end - a_start) * rowwise.gather(mass, end))


def segment_sum(x, start, end):
  """Sum of x over each position's block [start, end): [M, n] -> [M, n]."""
  prefix = prefix_sums(x)
  return rowwise.gather(prefix, end) - rowwise.gather(prefix, start)
