"""Anti-collapse terms on the per-patch features (outside the paper).

The variance and covariance terms of VICReg (Bardes, Ponce & LeCun, ICLR
2022), applied to what the backbone gives each patch: the rows are the
B * n patches of the GLOBAL batch, the columns the backbone's pooled
features (before fc1). With the default batch of 16 and 10 patches that is
160 rows for 64 features at width 0.25, enough to estimate a covariance; the
embedding (fc1, 256 values per example, 16 rows a batch) is not. Under a
tf.distribute strategy with several replicas the mean and covariance are
summed over the replicas (as synchronised BatchNorm does, and as VICReg
gathers its GPUs' embeddings), so that any number of replicas gives the
terms, and the update, of one replica holding the whole batch.

  variance   = mean_j relu(1 - sqrt(var_j + eps))   (hinge on each feature's
               standard deviation over the rows: keeps every feature alive)
  covariance = sum_{i != j} cov_ij^2 / d            (decorrelates features:
               keeps the rank)

`cov` is the unbiased covariance over the rows (rows - 1 in the denominator,
as in VICReg); var_j is its diagonal.
"""

import tensorflow as tf

# VICReg's epsilon inside the square root (a finite gradient at var = 0).
EPSILON = 1e-4


def variance_covariance(features):
  """(variance term, covariance term) of features [..., d], float32 scalars.

  Every leading axis is a row (e.g. [batch, patches, d] -> batch * patches
  rows). Needs at least 2 rows in all. Inside a replica context with several
  replicas in sync, the rows are those of every replica (two all-reduces:
  the sums for the mean, then the centred cross products; gradients flow
  back to each replica's rows through them).
  """
  features = tf.cast(features, tf.float32)
  d = tf.shape(features)[-1]
  rows = tf.reshape(features, [-1, d])
  context = tf.distribute.get_replica_context()
  if context is None or context.num_replicas_in_sync == 1:
    count = tf.cast(tf.shape(rows)[0], tf.float32)
    centred = rows - tf.reduce_mean(rows, axis=0, keepdims=True)
    products = tf.matmul(centred, centred, transpose_a=True)
  else:
    total, count = context.all_reduce(
        tf.distribute.ReduceOp.SUM,
        [tf.reduce_sum(rows, axis=0),
         tf.cast(tf.shape(rows)[0], tf.float32)])
    centred = rows - total / count
    products = context.all_reduce(
        tf.distribute.ReduceOp.SUM,
        tf.matmul(centred, centred, transpose_a=True))
  covariance = products / (count - 1.0)
  variance = tf.linalg.diag_part(covariance)
  variance_term = tf.reduce_mean(tf.nn.relu(1.0 - tf.sqrt(variance + EPSILON)))
  off_diagonal = covariance - tf.linalg.diag(variance)
  covariance_term = (tf.reduce_sum(tf.square(off_diagonal))
                     / tf.cast(d, tf.float32))
  return variance_term, covariance_term
