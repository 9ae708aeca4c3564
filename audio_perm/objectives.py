"""The four pretext objectives and the partial-ranks accuracy.

A pretext example is a set of n shuffled patches with, as target, either the
0-based rank vector of the shuffle (`ranks[i]` = position in the natural order
of the patch shown at position i; see audio_perm.permutations) or, for the
classification baseline, the index of the shuffle in a fixed set of K
permutations.

Objectives (`OBJECTIVES`), on the model's head output:
  * "soft_rank": 0.5 * ||soft_rank(scores) - (ranks + 1)||^2, the Fast Soft
    Ranking loss (Blondel et al. 2020). audio_perm.ranking returns 1-based
    ranks (1..n), so the 0-based targets are shifted by
    one; `regularization` ("l2" or "kl") and `regularization_strength` set the
    soft rank.
  * "perturbed_fy": the Fenchel-Young loss of perturbed ranks (Berthet et al.
    2020), whose gradient with respect to the scores is
    E[rank(scores + sigma Z)] - (ranks + 1), estimated with
    `perturbation_samples` draws at `perturbation_sigma`.
  * "mse": 0.5 * ||scores - (ranks + 1)||^2 (the scores regress the ranks
    directly; the same scale as "soft_rank").
  * "classification": softmax cross-entropy of K logits against the index of
    the shuffle in the fixed permutation set.

For the ranking objectives the head gives one score per patch and the
predicted (0-based) rank of a patch is its hard rank in ASCENDING order of the
scores minus one. For classification the predicted ranks are the permutation
of the set with the largest logit. Partial-ranks accuracy is the fraction of
patches whose predicted rank equals the target rank (chance: 1/n for a random
permutation).

All losses and accuracies are PER EXAMPLE ([batch]); the training step
averages them over the GLOBAL batch (see audio_perm.training).
"""

import dataclasses
from typing import Optional

import numpy as np
import tensorflow as tf

from audio_perm import config as config_lib
from audio_perm import permutations
from audio_perm import ranking

OBJECTIVES = config_lib.OBJECTIVES
RANKING_OBJECTIVES = config_lib.RANKING_OBJECTIVES
REGULARIZATIONS = config_lib.REGULARIZATIONS


def predicted_ranks(scores):
  """0-based hard ranks of scores in ascending order.

  Args:
    scores: float [batch, n].

  Returns:
    int32 [batch, n]: the patch with the smallest score gets rank 0.
  """
  ranks = ranking.hard_rank(tf.cast(scores, tf.float32),
                            direction="ASCENDING")
  return tf.cast(tf.round(ranks), tf.int32) - 1


def partial_ranks_accuracy(predicted, target):
  """Fraction of patches whose predicted rank is the target rank.

  Args:
    predicted: int [batch, n] 0-based predicted ranks.
    target: int [batch, n] 0-based target ranks.

  Returns:
    float32 [batch].
  """
  equal = tf.equal(tf.cast(predicted, tf.int32), tf.cast(target, tf.int32))
  return tf.reduce_mean(tf.cast(equal, tf.float32), axis=-1)


def soft_rank_loss(scores, target_ranks, regularization="l2",
                   regularization_strength=1.0):
  """0.5 * ||soft_rank(scores) - (target_ranks + 1)||^2 per example.

  Args:
    scores: float [batch, n].
    target_ranks: int [batch, n], 0-based.
    regularization: "l2" or "kl".
    regularization_strength: > 0; smaller is closer to the hard rank.

  Returns:
    float32 [batch].
  """
  soft = ranking.soft_rank(
      tf.cast(scores, tf.float32), direction="ASCENDING",
      regularization_strength=regularization_strength,
      regularization=regularization)
  diff = soft - (tf.cast(target_ranks, tf.float32) + 1.0)
  return 0.5 * tf.reduce_sum(tf.square(diff), axis=-1)


def mse_loss(scores, target_ranks):
  """0.5 * ||scores - (target_ranks + 1)||^2 per example.  [B, n] -> [B]."""
  diff = tf.cast(scores, tf.float32) - (tf.cast(target_ranks, tf.float32)
                                        + 1.0)
  return 0.5 * tf.reduce_sum(tf.square(diff), axis=-1)


def perturbed_fy_loss(scores, target_ranks, num_samples, sigma, seed=None):
  """Fenchel-Young loss with perturbed ranks, per example.  [B, n] -> [B]."""
  return ranking.fenchel_young_rank_loss(
      tf.cast(scores, tf.float32), tf.cast(target_ranks, tf.float32) + 1.0,
      num_samples=num_samples, sigma=sigma, noise="normal", seed=seed)


def classification_loss(logits, labels):
  """Softmax cross-entropy, per example.  [B, K] logits, int [B] -> [B]."""
  return tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.cast(labels, tf.int32), logits=tf.cast(logits, tf.float32))


@dataclasses.dataclass(frozen=True, eq=False)
class Objective:
  """A pretext objective: head size, per-example loss, predicted ranks.

  Build it with `make_objective`. Attributes:
    name: one of OBJECTIVES.
    num_patches: n.
    regularization, regularization_strength: soft_rank settings.
    perturbation_samples, perturbation_sigma: perturbed_fy settings.
    permutation_set: int32 np.ndarray [K, n] for classification, else None.
  """
  name: str
  num_patches: int
  regularization: str = "l2"
  regularization_strength: float = 1.0
  perturbation_samples: int = 100
  perturbation_sigma: float = 1.0
  permutation_set: Optional[np.ndarray] = None

  @property
  def head_size(self):
    """n scores for ranking objectives, K logits for classification."""
    if self.name == "classification":
      return int(self.permutation_set.shape[0])
    return self.num_patches

  def target_ranks(self, target):
    """0-based target ranks int32 [batch, n] of a batch's target."""
    if self.name == "classification":
      return tf.gather(tf.constant(self.permutation_set, tf.int32),
                       tf.cast(target, tf.int32))
    return tf.cast(target, tf.int32)

  def loss(self, outputs, target, seed=None):
    """Per-example loss float32 [batch].

    Args:
      outputs: float [batch, head_size], the head output.
      target: int32 [batch, n] ranks, or int32 [batch] set indices.
      seed: optional shape-[2] int seed for the perturbations (perturbed_fy).
    """
    if self.name == "soft_rank":
      return soft_rank_loss(outputs, target, self.regularization,
                            self.regularization_strength)
    if self.name == "perturbed_fy":
      return perturbed_fy_loss(outputs, target, self.perturbation_samples,
                               self.perturbation_sigma, seed=seed)
    if self.name == "mse":
      return mse_loss(outputs, target)
    return classification_loss(outputs, target)

  def predicted_ranks(self, outputs):
    """0-based predicted ranks int32 [batch, n] from the head output."""
    if self.name == "classification":
      index = tf.argmax(outputs, axis=-1, output_type=tf.int32)
      return tf.gather(tf.constant(self.permutation_set, tf.int32), index)
    return predicted_ranks(outputs)

  def accuracy(self, outputs, target):
    """Partial-ranks accuracy float32 [batch]."""
    return partial_ranks_accuracy(self.predicted_ranks(outputs),
                                  self.target_ranks(target))


def make_objective(name, num_patches, *, regularization="l2",
                   regularization_strength=1.0, perturbation_samples=100,
                   perturbation_sigma=1.0, num_permutations=100,
                   permutation_set=None, permutation_seed=0):
  """Validates settings and builds an `Objective`.

  Args:
    name: one of OBJECTIVES.
    num_patches: n >= 2.
    regularization: "l2" or "kl" (soft_rank).
    regularization_strength: > 0 (soft_rank).
    perturbation_samples: > 0 (perturbed_fy).
    perturbation_sigma: > 0 (perturbed_fy).
    num_permutations: K, size of the fixed set (classification); K <= n!.
    permutation_set: optional int [K, n] set to use instead of building one.
    permutation_seed: seed of the greedy Hamming set.

  Raises:
    ValueError: naming the bad value, for any invalid setting.
  """
  settings = config_lib.ObjectiveConfig(
      name=name, regularization=regularization,
      regularization_strength=regularization_strength,
      num_permutations=num_permutations,
      perturbation_samples=perturbation_samples,
      perturbation_sigma=perturbation_sigma)
  if name == "classification" and permutation_set is not None:
    # A given set replaces num_permutations: check the rest only.
    settings = dataclasses.replace(settings, num_permutations=2)
  settings.validate(num_patches)
  if name == "classification":
    if permutation_set is None:
      permutation_set, _ = permutations.hamming_permutation_set(
          num_permutations, num_patches, seed=permutation_seed)
    permutation_set = np.asarray(permutation_set, np.int32)
    if permutation_set.ndim != 2 or permutation_set.shape[1] != num_patches:
      raise ValueError(f"permutation_set must be [K, {num_patches}], got "
                       f"shape {permutation_set.shape}.")
  else:
    permutation_set = None
  return Objective(name, num_patches, regularization,
                   float(regularization_strength), int(perturbation_samples),
                   float(perturbation_sigma), permutation_set)


def from_config(settings, num_patches, permutation_set=None):
  """make_objective from a config.ObjectiveConfig."""
  return make_objective(
      settings.name, num_patches, regularization=settings.regularization,
      regularization_strength=settings.regularization_strength,
      perturbation_samples=settings.perturbation_samples,
      perturbation_sigma=settings.perturbation_sigma,
      num_permutations=settings.num_permutations,
      permutation_set=permutation_set)
