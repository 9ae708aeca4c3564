"""The isotonic partition for long rows: sequential pool adjacent violators.

The min-max partition of audio_perm.ranking.isotonic does O(n^2) work and
memory per row. For long rows this module finds the same blocks in O(n): one
pool-adjacent-violators stack, run as an XLA while loop over every item of
every row in turn (a scalar loop, about 50 ns a step on CPU), with range
values read from precomputed [M, n + 1] sums:

* block_starts: the loop; bool [M, n] block starts, like
  isotonic.block_starts.
* mean_value (l2) and lse_value (kl): the value of one range [start, end),
  the point-query forms of isotonic.mean_values and isotonic.lse_values.
* suffix_mass: isotonic.suffix_mass by a loop, O(n) (the doubling there
  costs O(n log n), and XLA recomputed its steps: 6.6 ms against 1.2 ms at
  n = 16384).

Everything runs inside the XLA-compiled forward passes of
audio_perm.ranking.soft; the blocks then feed the same O(n) block
statistics and gradient as the short-row path. See docs/ranking.md.
"""

import math

import tensorflow as tf

from audio_perm.ranking import isotonic

# Range values are compared in float64 here whatever the input dtype: the
# loop is scalar, so precision is free, and the prefix sums of a long row
# are too large for float32 differences of short ranges.
_COMPARE = tf.float64


def block_starts(range_value, num_rows, n):
  """Blocks of the decreasing isotonic fit of every row, by sequential PAV.

  Items are pushed one at a time onto a stack of block starts; while the top
  two blocks are in order (value(below) <= value(top); ties pool, as in the
  min-max formula) they merge. All rows share one stack and one loop: a row's
  blocks are closed when its last item has been pushed, so no block crosses
  rows. At most 2n + 1 steps per row.

  Args:
    range_value: callable (start, end, base) -> scalar float64 value of the
      range [start, end) of the row whose first item is at `base`; all three
      are int32 scalars indexing the flattened [M, n + 1] layout
      (row r, position k at r * (n + 1) + k).
    num_rows: M, int32 scalar.
    n: items per row, a Python int or an int32 scalar (n >= 1).

  Returns:
    bool [M, n], True at the first position of each block.
  """
  row_length = n + 1  # positions 0 .. n of the [M, n + 1] layout
  total = num_rows * row_length
  spare = num_rows * n  # the stack holds at most M * n starts; then a spare
  zero = tf.constant(0)

  def step(item, base, top, floor, start, below_start, stack):
    # Blocks on the stack: starts stack[floor:top] for the current row; the
    # top block is [start, item), the one below it [below_start, start).
    merge = ((top - floor >= 2) &
             (range_value(below_start, start, base) <=
              range_value(start, item, base)))
    row_done = tf.equal(item - base, n)
    push = ~merge & ~row_done
    deeper = tf.gather(stack, tf.maximum(top - 3, 0))
    new_start = tf.where(merge, below_start, tf.where(push, item, start))
    new_below = tf.where(merge, deeper, tf.where(push, start, below_start))
    # A push writes its start; any other step writes new_below to the spare
    # slot. That makes every write wait for the read of `deeper`, which lets
    # XLA update the stack in place (an unordered read made it copy the
    # whole stack every step: 100x slower).
    slot = tf.where(push, top, spare)
    stack = tf.tensor_scatter_nd_update(
        stack, slot[None, None], tf.where(push, item, new_below)[None])
    top = top + tf.cast(push, tf.int32) - tf.cast(merge, tf.int32)
    next_row = row_done & ~merge
    floor = tf.where(next_row, top, floor)
    base = tf.where(next_row, base + row_length, base)
    item = item + tf.cast(~merge, tf.int32)
    return item, base, top, floor, new_start, new_below, stack

  stack = tf.zeros([spare + 1], tf.int32)
  _, _, top, _, _, _, stack = tf.while_loop(
      lambda item, *_: item < total, step,
      (zero, zero, zero, zero, zero, zero, stack))
  # The starts left on the stack, as flags in the [M, n + 1] layout.
  on_stack = tf.range(spare + 1) < top
  index = tf.where(on_stack, stack, total)  # total: a spare slot
  flags = tf.scatter_nd(index[:, None], tf.cast(on_stack, tf.int32),
                        [total + 1])
  return tf.reshape(flags[:total], [num_rows, row_length])[:, :-1] > 0


def suffix_mass(a):
  """isotonic.suffix_mass of long rows: g_j = 1 + exp(a_{j+1} - a_j) g_{j+1}.

  One scalar loop from the last item of the last row to the first item of
  the first; the ratio after each row's last item is 0, which restarts the
  recurrence (g = 1) at every row.

  Args:
    a: [M, n] non-increasing rows.

  Returns:
    [M, n + 1], with g_n = 0.
  """
  shape = tf.shape(a)
  ratio = tf.pad(tf.exp(a[:, 1:] - a[:, :-1]), [[0, 0], [0, 1]])  # [M, n]
  ratio = tf.reshape(ratio, [-1])
  size = tf.size(ratio)

  def step(index, after, mass):
    here = 1.0 + tf.gather(ratio, index) * after
    mass = tf.tensor_scatter_nd_update(mass, index[None, None], here[None])
    return index - 1, here, mass

  _, _, mass = tf.while_loop(
      lambda index, *_: index >= 0, step,
      (size - 1, tf.constant(0.0, a.dtype), tf.zeros([size], a.dtype)))
  return tf.pad(tf.reshape(mass, shape), [[0, 0], [0, 1]])


def mean_value(y):
  """range_value for l2: the mean of y over a range.

  Args:
    y: [M, n] rows, float64.

  Returns:
    range_value(start, end, base) for block_starts.
  """
  mean = tf.reduce_mean(y, axis=-1, keepdims=True)
  prefix = tf.reshape(isotonic.prefix_sums(y - mean), [-1])  # [M * (n + 1)]

  def range_value(start, end, base):
    del base
    total = tf.gather(prefix, end) - tf.gather(prefix, start)
    return total / tf.cast(end - start, _COMPARE)

  return range_value


def lse_value(a, b):
  """range_value for kl: logsumexp(a[range]) - logsumexp(b[range]).

  Args:
    a, b: pairs (x, suffix_mass(x)) of [M, n] non-increasing rows (float64)
      and their [M, n + 1] suffix masses, or callables (start, end) -> the
      logsumexp over positions [start, end) of a row in closed form (start,
      end: int32 scalars, positions within the row).

  Returns:
    range_value(start, end, base) for block_starts.
  """
  def data_side(x):
    if callable(x):
      return lambda start, end, base: x(start - base, end - base)
    x, mass = x
    mass = tf.reshape(mass, [-1])  # [M * (n + 1)]
    x = tf.reshape(tf.pad(x, [[0, 0], [0, 1]], constant_values=-math.inf),
                   [-1])

    def lse(start, end, base):
      # Suffix sums relative to the start: never overflow or underflow.
      del base
      x_start = tf.gather(x, start)
      return x_start + tf.math.log(
          tf.gather(mass, start) -
          tf.exp(tf.gather(x, end) - x_start) * tf.gather(mass, end))

    return lse

  lse_a, lse_b = data_side(a), data_side(b)

  def range_value(start, end, base):
    return lse_a(start, end, base) - lse_b(start, end, base)

  return range_value
