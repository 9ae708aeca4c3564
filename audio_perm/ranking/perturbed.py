"""Perturbed ranks and the Fenchel-Young ranking loss (Berthet et al. 2020).

perturbed_ranks is E_Z[hard_rank(values + sigma * Z)] by Monte Carlo, with
the perturbed-optimizer Jacobian estimate as its gradient;
fenchel_young_rank_loss is the matching per-example loss, whose gradient is
E[perturbed ranks] - target. Noise is drawn with stateless RNG ops from a
seed, so the same seed and shape give the same noise, also under XLA.
"""

import numpy as np
import tensorflow as tf

from audio_perm.ranking import checks
from audio_perm.ranking import hard
from audio_perm.ranking import rowwise


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


def _perturbed_hard_ranks(x, num_samples, sigma, noise, seed, sign):
  """Hard ranks of num_samples noisy copies of [M, n] rows.

  Args:
    x: [M, n] scores.
    num_samples: S, the number of noise draws.
    sigma: noise scale.
    noise: "normal" or "gumbel".
    seed: int32 [2] stateless seed.
    sign: 1.0 (ASCENDING) or -1.0 (DESCENDING).

  Returns:
    (perturbed, ranks, grad_nu), each [S, M, n]: sign * x + sigma * z, its
    ordinal ascending hard ranks, and the noise's grad_nu (_sample_noise).
  """
  m, n = tf.shape(x)[0], rowwise.num_items(x)
  z, grad_nu = _sample_noise([num_samples, m, n], noise, seed, x.dtype)
  perturbed = sign * x[None] + sigma * z  # [S, M, n]
  ranks = tf.reshape(
      hard.hard_rank_rows(tf.reshape(perturbed, [-1, n]), "ordinal"),
      tf.shape(perturbed))  # [S, M, n]
  return perturbed, ranks, grad_nu


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
  num_samples, sigma = checks.check_perturbed_args(direction, noise,
                                                   num_samples, sigma)
  rows, dtype, shape = rowwise.as_rows(values)
  seed = _seed_tensor(seed)
  sign = 1.0 if direction == "ASCENDING" else -1.0

  @tf.custom_gradient
  def _op(x):
    _, ranks, grad_nu = _perturbed_hard_ranks(x, num_samples, sigma, noise,
                                              seed, sign)

    def grad(upstream):
      projected = tf.reduce_sum(ranks * upstream[None], axis=-1, keepdims=True)
      return sign * tf.reduce_mean(projected * grad_nu, axis=0) / sigma

    return tf.reduce_mean(ranks, axis=0), grad

  return rowwise.restore(_op(rows), dtype, shape)


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
  num_samples, sigma = checks.check_perturbed_args(direction, noise,
                                                   num_samples, sigma)
  rows, dtype, shape = rowwise.as_rows(scores, "scores")
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
    perturbed, ranks, _ = _perturbed_hard_ranks(x, num_samples, sigma, noise,
                                                seed, sign)
    loss = tf.reduce_mean(
        tf.reduce_sum((ranks - target[None]) * perturbed, axis=-1), axis=0)
    expected = tf.reduce_mean(ranks, axis=0)  # [M, n]

    def grad(upstream):
      return sign * upstream[:, None] * (expected - target)

    return loss, grad

  loss = _op(rows)  # [M]
  return rowwise.restore(loss, dtype, shape, drop_last=True)  # [batch]
