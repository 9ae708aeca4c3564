"""audio_perm.permutations: uniformity, conventions, greedy Hamming sets."""

import itertools
import math
import time

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from audio_perm import permutations


def _brute_force_min_distance(perms):
  d = (perms[:, None, :] != perms[None, :, :]).sum(-1)
  return d[np.triu_indices(len(perms), 1)].min()


def test_sample_permutations_uniform_over_all_24_orders():
  num_samples = 24000
  perms = permutations.sample_permutations(num_samples, 4, seed=123).numpy()
  assert perms.dtype == np.int32 and perms.shape == (num_samples, 4)
  index = {p: i for i, p in enumerate(itertools.permutations(range(4)))}
  counts = np.bincount([index[tuple(p)] for p in perms], minlength=24)
  assert counts.min() > 0
  # Chi-square goodness of fit to uniform over 4! = 24 classes (fixed seed).
  _, p_value = scipy.stats.chisquare(counts)
  assert p_value > 1e-3, counts
  # The test has power: a biased sampler (first element never 3) fails it.
  biased = counts.copy()
  biased[[i for p, i in index.items() if p[0] == 3]] = 0
  assert scipy.stats.chisquare(biased * num_samples // biased.sum())[1] < 1e-6


def test_sample_permutations_deterministic_for_seed_and_graph_native():
  a = permutations.sample_permutations(64, 10, seed=7).numpy()
  b = permutations.sample_permutations(64, 10, seed=7).numpy()
  c = permutations.sample_permutations(64, 10, seed=8).numpy()
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert np.all(np.sort(a, axis=1) == np.arange(10))

  @tf.function
  def sample(seed):
    return permutations.sample_permutations(64, 10, seed)

  d = sample(tf.constant([7, 0], tf.int64)).numpy()
  np.testing.assert_array_equal(a, d)
  assert np.all(permutations.is_rank_vector(d).numpy())


def test_shuffle_convention_and_exact_unshuffle():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((5, 6, 3, 2)).astype(np.float32)
  perm = permutations.sample_permutations(5, 6, seed=1).numpy()
  shuffled = permutations.shuffle_patches(x, perm).numpy()
  for b in range(5):
    for i in range(6):
      np.testing.assert_array_equal(shuffled[b, i], x[b, perm[b, i]])
  ranks = permutations.ranks_from_permutation(perm).numpy()
  np.testing.assert_array_equal(ranks, perm)
  np.testing.assert_array_equal(
      permutations.unshuffle_patches(shuffled, ranks).numpy(), x)
  inv = permutations.inverse_permutation(perm).numpy()
  for b in range(5):
    np.testing.assert_array_equal(inv[b][perm[b]], np.arange(6))
  np.testing.assert_array_equal(
      permutations.permutation_from_ranks(ranks).numpy(), perm)
  identity = np.tile(np.arange(6, dtype=np.int32), (5, 1))
  np.testing.assert_array_equal(
      permutations.shuffle_patches(x, identity).numpy(), x)


def test_is_rank_vector():
  got = permutations.is_rank_vector(
      np.array([[0, 1, 2], [2, 0, 1], [0, 0, 2], [1, 2, 3]])).numpy()
  np.testing.assert_array_equal(got, [True, True, False, False])


@pytest.mark.parametrize("num_permutations,num_patches,seed", [
    (2, 3, 0), (3, 3, 1), (6, 3, 0), (24, 4, 0), (50, 6, 3), (30, 9, 0),
])
def test_hamming_set_reports_brute_force_min_distance(num_permutations,
                                                      num_patches, seed):
  perms, dist = permutations.hamming_permutation_set(
      num_permutations, num_patches, seed=seed)
  assert perms.shape == (num_permutations, num_patches)
  assert perms.dtype == np.int32
  assert np.all(np.sort(perms, axis=1) == np.arange(num_patches))
  assert len({tuple(p) for p in perms}) == num_permutations
  assert dist == _brute_force_min_distance(perms)


def test_hamming_set_reaches_known_optima():
  # n=3: two permutations can differ everywhere (distance 3), and so can
  # three (the cyclic shifts); all six have minimum distance 2.
  for seed in range(5):
    assert permutations.hamming_permutation_set(2, 3, seed)[1] == 3
    assert permutations.hamming_permutation_set(3, 3, seed)[1] == 3
  assert permutations.hamming_permutation_set(6, 3)[1] == 2
  # Any two distinct permutations are at distance >= 2, and n=4 admits a
  # pair at distance 4 (a derangement).
  assert permutations.hamming_permutation_set(2, 4)[1] == 4


def test_hamming_set_deterministic_and_refuses_too_many():
  a, _ = permutations.hamming_permutation_set(20, 7, seed=5)
  b, _ = permutations.hamming_permutation_set(20, 7, seed=5)
  c, _ = permutations.hamming_permutation_set(20, 7, seed=6)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  with pytest.raises(ValueError, match=r"25 permutations of 4 .* 4! = 24"):
    permutations.hamming_permutation_set(25, 4)
  with pytest.raises(ValueError, match="num_permutations=0|permutations"):
    permutations.hamming_permutation_set(0, 4)


@pytest.mark.slow
def test_hamming_set_1000_of_10_in_seconds():
  start = time.perf_counter()
  perms, dist = permutations.hamming_permutation_set(1000, 10, seed=0)
  elapsed = time.perf_counter() - start
  assert elapsed < 30, elapsed  # ~2.5 s alone; generous for a loaded CI box.
  assert perms.shape == (1000, 10)
  assert dist == _brute_force_min_distance(perms)
  # Greedy max-min beats random draws of the same size by a clear margin.
  rng = np.random.default_rng(0)
  random_set = np.argsort(rng.random((1000, 10)), axis=1)
  assert dist > _brute_force_min_distance(random_set)
  assert math.factorial(10) > permutations.DEFAULT_NUM_CANDIDATES
