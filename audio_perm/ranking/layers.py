"""Keras 3 wrappers of the ranking ops: a layer and two losses.

SoftRank is soft_rank as a layer; SoftRankLoss and FenchelYoungRankLoss take
1-BASED target ranks as y_true and scores as y_pred and return per-example
losses. Each is registered with keras.saving (package "audio_perm") and has a
get_config, so models and losses that use them save and reload.
"""

import keras
import tensorflow as tf

from audio_perm.ranking import checks
from audio_perm.ranking import perturbed
from audio_perm.ranking import soft


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
    self.regularization_strength = checks.check_soft_args(
        direction, regularization, regularization_strength)
    self.direction = direction
    self.regularization = regularization

  def call(self, inputs):
    return soft.soft_rank(inputs, self.direction,
                          self.regularization_strength, self.regularization)

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
    self.regularization_strength = checks.check_soft_args(
        direction, regularization, regularization_strength)
    self.direction = direction
    self.regularization = regularization

  def call(self, y_true, y_pred):
    ranks = soft.soft_rank(y_pred, self.direction,
                           self.regularization_strength, self.regularization)
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
    self.num_samples, self.sigma = checks.check_perturbed_args(
        direction, noise, num_samples, sigma)
    checks.check_python_seed(seed)
    self.noise = noise
    self.seed = seed
    self.direction = direction
    self._seed_generator = keras.random.SeedGenerator(seed)

  def call(self, y_true, y_pred):
    seed = self._seed_generator.next()
    return perturbed.fenchel_young_rank_loss(
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
