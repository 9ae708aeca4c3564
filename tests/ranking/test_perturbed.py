"""Tests for audio_perm.ranking.hard and .perturbed.

hard_rank against scipy.stats.rankdata; perturbed ranks and their gradient
against closed forms for two items; the Fenchel-Young loss against its
defining properties (non-negative, gradient E[perturbed ranks] - target).
"""

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import tensorflow as tf

from audio_perm import ranking


def test_hard_rank():
  x = np.array([[0.5, -1., 0.5, 2., 0.5], [3., 2., 1., 0., -1.]])
  np.testing.assert_array_equal(
      ranking.hard_rank(x, ties="average"), scipy.stats.rankdata(x, axis=-1))
  np.testing.assert_array_equal(
      ranking.hard_rank(x), scipy.stats.rankdata(x, "ordinal", axis=-1))
  np.testing.assert_array_equal(
      ranking.hard_rank(x, "DESCENDING"),
      scipy.stats.rankdata(-x, "ordinal", axis=-1))
  with pytest.raises(ValueError, match="ties"):
    ranking.hard_rank(x, ties="dense")


@pytest.mark.parametrize("noise", ranking.NOISES)
def test_perturbed_ranks_two_items(noise):
  # n = 2: E[rank of item 0] = 1 + P(x0 + s z0 > x1 + s z1), in closed form.
  sigma = 0.8
  x = np.array([[0.3, -0.2], [-0.5, 0.1], [0.0, 0.0]])
  d = (x[:, 0] - x[:, 1]) / sigma
  if noise == "normal":
    prob = scipy.stats.norm.cdf(d / math.sqrt(2.0))
    dprob = scipy.stats.norm.pdf(d / math.sqrt(2.0)) / math.sqrt(2.0) / sigma
  else:  # the difference of two Gumbels is logistic
    prob = scipy.special.expit(d)
    dprob = prob * (1 - prob) / sigma
  xt = tf.constant(x)
  with tf.GradientTape() as tape:
    tape.watch(xt)
    ranks = ranking.perturbed_ranks(xt, 20000, sigma, noise=noise, seed=7)
    first = ranks[:, 0]
  grad = tape.gradient(first, xt).numpy()
  np.testing.assert_allclose(ranks[:, 0], 1.0 + prob, atol=0.02)
  np.testing.assert_allclose(ranks[:, 1], 2.0 - prob, atol=0.02)
  np.testing.assert_allclose(grad[:, 0], dprob, atol=0.05)
  np.testing.assert_allclose(grad[:, 1], -dprob, atol=0.05)


def test_perturbed_ranks_reproducible_and_small_noise(sample_values):
  x = sample_values(np.float32)[[0, 2]]
  a = ranking.perturbed_ranks(x, 8, 0.5, seed=3)
  np.testing.assert_array_equal(a, ranking.perturbed_ranks(x, 8, 0.5, seed=3))
  assert not np.array_equal(a, ranking.perturbed_ranks(x, 8, 0.5, seed=4))
  compiled = tf.function(
      lambda v: ranking.perturbed_ranks(v, 8, 0.5, seed=3), jit_compile=True)
  np.testing.assert_array_equal(compiled(x), compiled(x))
  np.testing.assert_allclose(
      ranking.perturbed_ranks(x, 4, 1e-6, seed=1),
      scipy.stats.rankdata(x, axis=-1))


def test_fenchel_young_loss():
  rng = np.random.default_rng(8)
  scores = tf.constant(rng.normal(size=(5, 6)), tf.float32)
  target = np.stack([rng.permutation(6) + 1 for _ in range(5)])
  with tf.GradientTape() as tape:
    tape.watch(scores)
    loss = ranking.fenchel_young_rank_loss(scores, target, num_samples=50,
                                           sigma=0.5, seed=11)
  grad = tape.gradient(loss, scores, output_gradients=tf.range(1., 6.))
  assert loss.shape == (5,)
  assert np.all(loss.numpy() >= 0.0)
  expected = ranking.perturbed_ranks(scores, 50, 0.5, seed=11) - target
  np.testing.assert_allclose(grad, np.arange(1., 6.)[:, None] * expected,
                             rtol=1e-5, atol=1e-5)
  # Scores far apart in the target's order: no loss, no gradient.
  perfect = tf.constant(100.0 * target, tf.float32)
  np.testing.assert_allclose(
      ranking.fenchel_young_rank_loss(perfect, target, sigma=0.5, seed=1), 0.0)
  # Under XLA, reproducible for a seed.
  compiled = tf.function(
      lambda s: ranking.fenchel_young_rank_loss(s, target, seed=2),
      jit_compile=True)
  np.testing.assert_array_equal(compiled(scores), compiled(scores))
  with pytest.raises(ValueError, match="target_ranks"):
    ranking.fenchel_young_rank_loss(scores, target[:, :3])
  for bad in (dict(num_samples=0), dict(sigma=0.0), dict(noise="cauchy"),
              dict(seed="x")):
    with pytest.raises(ValueError):
      ranking.fenchel_young_rank_loss(scores, target, **bad)
