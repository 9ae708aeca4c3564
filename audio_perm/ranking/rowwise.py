"""Row-wise helpers: [..., n] <-> [M, n], batched gathers, pairwise orders.

Every op in audio_perm.ranking ranks along the last axis of a tensor with any
leading dimensions. as_rows validates the input and flattens it to [M, n]
rows in the compute dtype; restore undoes that. The stable decreasing order
of each row comes from pairwise integer comparisons rather than a sort: for
the n used here this is several times faster than XLA's CPU sort, and XLA
fuses the unrolled columns into one vectorised loop.
"""

import tensorflow as tf

# Pairwise integer counts are unrolled over the n columns up to this n (one
# fused, vectorised XLA loop); above it they are [M, n, n] reductions.
_UNROLL_MAX_COUNTS = 128


def as_rows(values, name="values"):
  """Validates `values` and flattens the leading dimensions.

  Args:
    values: tensor-like [..., n] with at least two dimensions.
    name: the argument's name, for error messages.

  Returns:
    (rows, dtype, shape): rows [M, n] in the compute dtype (float32 for half
    and integer inputs), the output dtype, and the input shape for restore.

  Raises:
    ValueError: for a non-numeric dtype or a rank below 2.
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


def restore(rows, dtype, shape, drop_last=False):
  """Inverse of as_rows: [M, n] (or [M] with drop_last) -> input shape."""
  shape, static = shape
  if drop_last:
    shape, static = shape[:-1], static[:-1]
  out = tf.reshape(rows, shape)
  out.set_shape(static)
  return tf.cast(out, dtype)


def num_items(rows):
  """n as a Python int when static, else a scalar int32 tensor."""
  n = rows.shape[-1]
  return n if n is not None else tf.shape(rows)[-1]


def gather(x, index):
  """x[m, index[m, i]] for every row m: [M, k], int [M, n] -> [M, n]."""
  return tf.gather(x, index, batch_dims=1)


def _count(n, term):
  """sum over p of the int32 [M, n] tensors term(p), p = 0 .. n - 1.

  Returns None when n is unknown or above _UNROLL_MAX_COUNTS; the caller then
  reduces over an [M, n, n] tensor instead.
  """
  if n is not None and n <= _UNROLL_MAX_COUNTS:
    total = term(0)
    for p in range(1, n):
      total += term(p)
    return total
  return None


def descending_positions(x):
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


def inverse_permutation(pos):
  """int32 [M, n] -> [M, n]: order[:, p] = the item at position p."""
  n = pos.shape[-1]
  index = tf.range(n if n is not None else tf.shape(pos)[-1])[None, :]
  order = _count(n, lambda i: tf.where(tf.equal(pos[:, i:i + 1], index), i, 0))
  if order is None:
    hit = tf.equal(pos[:, None, :], index[:, :, None])  # [M, p, i]
    order = tf.reduce_sum(tf.where(hit, index[:, None, :], 0), axis=-1)
  return order
