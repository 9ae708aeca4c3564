"""Tests for audio_perm.objectives: the four pretext losses and the metric."""

import math

import numpy as np
import pytest
import tensorflow as tf

from audio_perm import config as config_lib
from audio_perm import objectives
from audio_perm import permutations
from audio_perm import training


def _ranks0(scores):
  """0-based ascending ranks, numpy (no ties in the tests)."""
  return np.argsort(np.argsort(scores, axis=-1), axis=-1)


def _random_case(batch=4, n=6, seed=0):
  rng = np.random.default_rng(seed)
  scores = rng.normal(size=(batch, n)).astype(np.float32)
  target = np.stack([rng.permutation(n) for _ in range(batch)]).astype(
      np.int32)
  return scores, target


def test_predicted_ranks_and_accuracy_match_numpy():
  scores, target = _random_case(batch=16, n=7)
  predicted = objectives.predicted_ranks(scores).numpy()
  np.testing.assert_array_equal(predicted, _ranks0(scores))
  accuracy = objectives.partial_ranks_accuracy(predicted, target).numpy()
  np.testing.assert_allclose(accuracy, (predicted == target).mean(-1))
  # Perfect scores: any increasing function of the target.
  perfect = objectives.partial_ranks_accuracy(
      objectives.predicted_ranks(np.exp(target.astype(np.float32))), target)
  np.testing.assert_array_equal(perfect.numpy(), 1.0)


def test_mse_loss_matches_numpy():
  scores, target = _random_case()
  want = 0.5 * ((scores - (target + 1)) ** 2).sum(-1)
  np.testing.assert_allclose(objectives.mse_loss(scores, target).numpy(),
                             want, rtol=1e-6)


def test_classification_loss_matches_numpy():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(5, 9)).astype(np.float32)
  labels = rng.integers(0, 9, size=5).astype(np.int32)
  log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  want = -log_softmax[np.arange(5), labels]
  np.testing.assert_allclose(
      objectives.classification_loss(logits, labels).numpy(), want, rtol=1e-5)


@pytest.mark.parametrize("regularization", ["l2", "kl"])
def test_soft_rank_loss_limits(regularization):
  """Small strength: the hard-rank loss; large strength (l2): mean ranks."""
  scores, target = _random_case(n=5, seed=2)
  scores = np.abs(scores) + 0.5 if regularization == "kl" else scores
  hard = 0.5 * ((_ranks0(scores) - target) ** 2).sum(-1)
  got = objectives.soft_rank_loss(scores * 100, target, regularization,
                                  1e-3).numpy()
  np.testing.assert_allclose(got, hard, rtol=1e-4, atol=1e-3)
  if regularization == "l2":
    n = scores.shape[1]
    flat = 0.5 * (((n + 1) / 2 - (target + 1)) ** 2).sum(-1)
    got = objectives.soft_rank_loss(scores, target, "l2", 1e6).numpy()
    np.testing.assert_allclose(got, flat, rtol=1e-4)


def test_soft_rank_loss_gradient_matches_finite_differences():
  scores, target = _random_case(batch=1, n=5, seed=3)
  scores = tf.constant(scores)  # float32, as in training

  def loss(s):
    return objectives.soft_rank_loss(s, target, "l2", 0.5)

  # The loss is piecewise quadratic: a central difference is exact while the
  # block partition of the projection does not change within +-delta.
  theoretical, numerical = tf.test.compute_gradient(loss, [scores], delta=1e-2)
  np.testing.assert_allclose(theoretical[0], numerical[0], atol=2e-3)
  assert np.abs(theoretical[0]).max() > 1e-3


def test_perturbed_fy_gradient_is_expected_ranks_minus_target():
  """d loss / d scores = E[rank(scores + sigma Z)] - (target + 1)."""
  scores, target = _random_case(batch=3, n=5, seed=4)
  sigma = 0.7
  scores_t = tf.constant(scores)
  with tf.GradientTape() as tape:
    tape.watch(scores_t)
    loss = objectives.perturbed_fy_loss(scores_t, target, num_samples=4000,
                                        sigma=sigma, seed=[1, 2])
  grad = tape.gradient(loss, scores_t).numpy()
  rng = np.random.default_rng(5)
  noisy = scores[:, None, :] + sigma * rng.normal(size=(3, 20000, 5))
  expected_ranks = (_ranks0(noisy) + 1).mean(axis=1)
  np.testing.assert_allclose(grad, expected_ranks - (target + 1), atol=0.1)


def test_classification_predicted_ranks_go_through_the_set():
  perm_set, _ = permutations.hamming_permutation_set(6, 4, seed=0)
  objective = objectives.make_objective("classification", 4,
                                        permutation_set=perm_set)
  assert objective.head_size == 6
  logits = np.full((2, 6), -5.0, np.float32)
  logits[0, 3] = 5.0
  logits[1, 0] = 5.0
  labels = np.array([3, 2], np.int32)
  np.testing.assert_array_equal(objective.predicted_ranks(logits).numpy(),
                                perm_set[[3, 0]])
  want = (perm_set[[3, 0]] == perm_set[[3, 2]]).mean(-1)
  np.testing.assert_allclose(objective.accuracy(logits, labels).numpy(), want)


@pytest.mark.parametrize("kwargs,match", [
    (dict(name="sinkhorn"), "objective"),
    (dict(num_patches=1), "num_patches"),
    (dict(name="classification", num_patches=4, num_permutations=25), "4!"),
    (dict(regularization="l1"), "regularization"),
    (dict(regularization_strength=0.0), "regularization_strength"),
    (dict(perturbation_samples=0), "perturbation_samples"),
    (dict(perturbation_sigma=-1.0), "perturbation_sigma"),
])
def test_bad_settings_raise_value_error(kwargs, match):
  args = dict(name="soft_rank", num_patches=5)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    objectives.make_objective(**args)


def _learnable_dataset_fn(num_patches, patch_shape, batch_size,
                          permutation_set=None):
  """Patches whose mean level reveals their natural position, shuffled."""

  def make_batch(index):
    seed = tf.stack([index, tf.constant(7, tf.int64)])
    noise = tf.random.stateless_normal(
        [batch_size, num_patches] + list(patch_shape) + [1], seed=seed)
    levels = tf.reshape(tf.range(num_patches, dtype=tf.float32),
                        [1, num_patches, 1, 1, 1])
    patches = levels + 0.5 * noise  # [B, n, h, w, 1], natural order
    if permutation_set is None:
      perm = permutations.sample_permutations(batch_size, num_patches,
                                              seed + 1)
      target = perm
    else:
      target = tf.random.stateless_uniform(
          [batch_size], seed + 2, maxval=len(permutation_set), dtype=tf.int32)
      perm = tf.gather(tf.constant(permutation_set), target)
    return permutations.shuffle_patches(patches, perm), target

  def dataset_fn(input_context):
    del input_context
    return tf.data.Dataset.range(10**6).map(make_batch)

  return dataset_fn


@pytest.mark.parametrize("objective", [
    o if o == "mse" else pytest.param(o, marks=pytest.mark.slow)
    for o in objectives.OBJECTIVES])
def test_accuracy_rises_well_above_chance_on_a_learnable_case(objective):
  num_patches, patch_shape, batch_size = 5, (6, 6), 32
  config = training.TrainConfig().replace(
      objective=objective, num_patches=num_patches, batch_size=batch_size,
      learning_rate=3e-3, width=1 / 16, embedding_dim=32, num_permutations=24,
      perturbation_samples=20, train_steps=60, patching="frequency",
      # The objective alone: none of the default recipe's extra terms.
      **config_lib.RECIPE_EXTRAS_OFF)
  trainer = training.Trainer(config, patch_shape=patch_shape)
  dataset_fn = _learnable_dataset_fn(num_patches, patch_shape, batch_size,
                                     trainer.objective.permutation_set)
  iterator = trainer.distributed_iterator(dataset_fn)
  train_fn = trainer.train_function()
  first_loss, first_accuracy = (float(v) for v in train_fn(
      iterator, tf.constant(5)))
  for _ in range(10):
    loss, accuracy = (float(v) for v in train_fn(iterator, tf.constant(5)))
  chance = 1 / num_patches
  assert accuracy > 3 * chance, (first_accuracy, accuracy)
  assert loss < first_loss
  assert math.isfinite(loss)
