"""The stable decreasing order of long rows, in O(n log n) or so.

rowwise.descending_positions counts pairs: O(n^2) work, and [M, n, n]
memory above n = 128. For long rows sorted_positions sorts instead, with
the same order (decreasing, ties by position, -0.0 equal to 0.0):

* float32 rows of static length: a bitonic network over int64 keys that
  pack the value's order-preserving bits above the position, so that every
  compare-exchange is a min and a max of whole vectors (no comparator
  calls); 2-4x faster than XLA's CPU sort.
* anything else (float64, an unknown length): tf.argsort, which XLA keeps
  stable.

See docs/ranking.md for the measurements.
"""

import tensorflow as tf


@tf.function(jit_compile=True, autograph=False)
def sorted_positions(x):
  """Stable decreasing order of [M, n] rows and its inverse (XLA-compiled).

  Args:
    x: [M, n] finite values.

  Returns:
    (pos, order), int32 [M, n] each: pos[:, i] the position of item i in
    the order (as rowwise.descending_positions), order[:, p] the item at
    position p (as rowwise.inverse_permutation).
  """
  x = tf.where(tf.equal(x, 0), tf.zeros_like(x), x)  # -0.0 -> 0.0
  if x.dtype == tf.float32 and x.shape[-1] is not None:
    order = _bitonic_order(x)
  else:
    order = tf.argsort(x, axis=-1, direction="DESCENDING", stable=True)
  return _inverse(order), order


def _inverse(order):
  """The inverse permutation of each row by a scatter: O(n)."""
  shape = tf.shape(order)
  rows, n = shape[0], shape[1]
  flat = tf.reshape(order + n * tf.range(rows)[:, None], [-1, 1])  # [M * n, 1]
  index = tf.reshape(tf.broadcast_to(tf.range(n)[None, :], shape), [-1])
  return tf.reshape(tf.scatter_nd(flat, index, [rows * n]), shape)


def _packed_keys(x):
  """int64 keys that order float32 [M, n] rows as (value, -position)."""
  bits = tf.bitcast(x, tf.int32)
  # Flip the magnitude bits of negative values: then integer order is
  # float order (-0.0 was mapped to 0.0 before).
  key = tf.bitwise.bitwise_xor(
      bits, tf.bitwise.bitwise_and(tf.bitwise.right_shift(bits, 31),
                                   0x7fffffff))
  position = tf.range(x.shape[-1], dtype=tf.int64)[None, :]
  # Larger key: larger value, or equal value and earlier position.
  return tf.bitwise.left_shift(tf.cast(key, tf.int64), 32) + (
      0xffffffff - position)


def _bitonic_order(x):
  """Stable decreasing order of float32 [M, n] rows (static n)."""
  n = x.shape[-1]
  size = 1
  while size < n:
    size *= 2
  rows = tf.shape(x)[0]
  keys = tf.pad(_packed_keys(x), [[0, 0], [0, size - n]],
                constant_values=tf.int64.min)  # padding sorts last
  merge = 2  # length of the bitonic sequences being merged
  while merge <= size:
    half = merge // 2
    while half >= 1:
      pairs = tf.reshape(keys, [rows, size // (2 * half), 2, half])
      first, second = pairs[:, :, 0, :], pairs[:, :, 1, :]
      # Groups sort decreasingly where their first index has bit `merge`
      # clear, increasingly elsewhere.
      group = tf.range(size // (2 * half)) * (2 * half)
      down = tf.equal(tf.bitwise.bitwise_and(group, merge), 0)[None, :, None]
      high, low = tf.maximum(first, second), tf.minimum(first, second)
      keys = tf.reshape(
          tf.stack([tf.where(down, high, low), tf.where(down, low, high)],
                   axis=2), [rows, size])  # [M, size]
      half //= 2
    merge *= 2
  position = tf.bitwise.bitwise_and(keys[:, :n], 0xffffffff)
  return tf.cast(0xffffffff - position, tf.int32)
