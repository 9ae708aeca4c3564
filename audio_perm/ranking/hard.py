"""Hard 1-based ranks along the last axis (not differentiable).

Ranks come from pairwise comparisons rather than a sort (vectorised, and much
faster than XLA's CPU sort at these sizes); hard_rank_rows is shared with the
perturbed ops.
"""

import tensorflow as tf

from audio_perm.ranking import checks
from audio_perm.ranking import rowwise


def hard_rank_rows(rows, ties):
  """Ascending 1-based hard ranks of [M, n] rows, in the rows' dtype.

  Pairwise comparisons rather than a sort (vectorised, and much faster than
  XLA's CPU sort at these sizes).

  Args:
    rows: [M, n] floating point.
    ties: "ordinal" or "average", as in hard_rank.

  Returns:
    [M, n] ranks.
  """
  if ties == "ordinal":
    # #smaller + #(equal and earlier) + 1
    return tf.cast(rowwise.descending_positions(-rows) + 1, rows.dtype)
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
  checks.check_direction(direction)
  checks.check_ties(ties)
  rows, dtype, shape = rowwise.as_rows(values)
  if direction == "DESCENDING":
    rows = -rows
  ranks = hard_rank_rows(tf.stop_gradient(rows), ties)
  return rowwise.restore(ranks, dtype, shape)
