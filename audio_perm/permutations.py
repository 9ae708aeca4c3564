"""Permutations of patches: uniform sampling, fixed Hamming sets, ranks.

Conventions (used everywhere in the package):
  * A permutation `perm` of n patches shuffles them as
    shuffled[i] = original[perm[i]].
  * The TARGET rank vector `ranks[i]` is the 0-based position, in the natural
    order, of the patch shown at position i. With the convention above this is
    the permutation itself (ranks == perm), so the identity has ranks
    (0, 1, ..., n-1); `unshuffle_patches(shuffled, ranks)` puts the patches
    back with original[ranks[i]] = shuffled[i].
  * audio_perm.ranking uses 1-based ranks (1..n); add 1
    to these targets before comparing with its outputs.

Fixed sets (the classification baseline, Noroozi & Favaro 2016):
`hamming_permutation_set` picks K permutations greedily, each new one
maximising its minimum Hamming distance (number of positions that differ) to
those already chosen. The candidates are all n! permutations when
n! <= max(MAX_EXHAUSTIVE_CANDIDATES, num_candidates) (n <= 8 with the
defaults), otherwise a pool of `num_candidates` (default 100,000) distinct
permutations drawn uniformly at random for the seed, so that K=1000 at n=10 takes a few seconds instead of
scanning 3.6 million candidates per pick. The first permutation is the first
candidate of a seeded shuffle of the pool; ties go to the earliest candidate
of that shuffled pool, so the set is deterministic for a seed.
"""

import itertools
import math

import numpy as np
import tensorflow as tf

MAX_EXHAUSTIVE_CANDIDATES = 40320  # 8!
DEFAULT_NUM_CANDIDATES = 100000


def _as_stateless_seed(seed):
  """An int or a shape-[2] integer tensor -> a shape-[2] int64 seed."""
  if isinstance(seed, int):
    return tf.constant([seed, 0], tf.int64)
  seed = tf.convert_to_tensor(seed)
  if seed.shape.rank == 0:
    return tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
  if seed.shape.rank != 1 or (seed.shape[0] is not None and seed.shape[0] != 2):
    raise ValueError(
        f"seed must be an int or a shape-[2] integer tensor, got shape "
        f"{seed.shape}.")
  return tf.cast(seed, tf.int64)


def sample_permutations(batch_size, num_patches, seed):
  """Permutations drawn uniformly from all n!, on graph.

  The argsort of i.i.d. full-range 64-bit random integers (ties have
  probability < n^2 / 2^64) is uniform over the n! orders.

  Args:
    batch_size: number of permutations (int or scalar int tensor).
    num_patches: n (static int).
    seed: int or shape-[2] integer tensor (stateless RNG seed); the same seed
      gives the same permutations.

  Returns:
    int32 [batch_size, num_patches].
  """
  if int(num_patches) < 1:
    raise ValueError(f"num_patches={num_patches} must be >= 1.")
  keys = tf.random.stateless_uniform(
      [batch_size, int(num_patches)], seed=_as_stateless_seed(seed),
      minval=None, maxval=None, dtype=tf.int64)
  return tf.argsort(keys, axis=-1, stable=True)  # int32


def shuffle_patches(patches, perm):
  """shuffled[b, i] = patches[b, perm[b, i]].

  Args:
    patches: [batch, n, ...].
    perm: int [batch, n].

  Returns:
    [batch, n, ...], same dtype as patches.
  """
  return tf.gather(patches, perm, axis=1, batch_dims=1)


def inverse_permutation(perm):
  """inv such that inv[b, perm[b, i]] = i.  int [batch, n] -> int32 [batch, n]."""
  return tf.argsort(perm, axis=-1, stable=True)


def ranks_from_permutation(perm):
  """Target rank vector of a shuffle by `perm`: ranks == perm (0-based)."""
  return tf.cast(perm, tf.int32)


def permutation_from_ranks(ranks):
  """The shuffle whose target ranks are `ranks` (the same vector)."""
  return tf.cast(ranks, tf.int32)


def unshuffle_patches(shuffled, ranks):
  """Puts shuffled patches back in natural order using their target ranks.

  original[b, ranks[b, i]] = shuffled[b, i].

  Args:
    shuffled: [batch, n, ...].
    ranks: int [batch, n], 0-based target ranks.

  Returns:
    [batch, n, ...] in natural order.
  """
  return tf.gather(shuffled, inverse_permutation(ranks), axis=1, batch_dims=1)


def is_rank_vector(ranks):
  """Bool [batch]: each row is a permutation of 0..n-1."""
  ranks = tf.convert_to_tensor(ranks)
  n = tf.shape(ranks)[-1]
  sorted_ranks = tf.sort(ranks, axis=-1)
  return tf.reduce_all(
      tf.equal(sorted_ranks, tf.range(n, dtype=ranks.dtype)), axis=-1)


def hamming_distances(perms_a, perms_b):
  """Pairwise Hamming distances, numpy: [A, n], [B, n] -> int [A, B]."""
  perms_a = np.asarray(perms_a)
  perms_b = np.asarray(perms_b)
  return (perms_a[:, None, :] != perms_b[None, :, :]).sum(-1)


def _candidate_pool(num_patches, num_candidates, rng):
  """Distinct candidate permutations [P, n] (int8), seeded order."""
  total = math.factorial(num_patches)
  if total <= max(MAX_EXHAUSTIVE_CANDIDATES, num_candidates):
    pool = np.array(list(itertools.permutations(range(num_patches))),
                    dtype=np.int8).reshape(total, num_patches)
    return pool[rng.permutation(total)]
  # Random distinct permutations: argsort of uniform keys, deduplicated
  # (collisions are rare for n! >> num_candidates), keeping the drawn order.
  pool = np.argsort(rng.random((int(num_candidates * 1.05) + 16,
                                num_patches)), axis=1).astype(np.int8)
  _, first = np.unique(pool, axis=0, return_index=True)
  pool = pool[np.sort(first)]
  return pool[:num_candidates]


def hamming_permutation_set(num_permutations, num_patches, seed=0,
                            num_candidates=DEFAULT_NUM_CANDIDATES):
  """K permutations chosen greedily for maximal minimum Hamming distance.

  Args:
    num_permutations: K, how many permutations to choose.
    num_patches: n.
    seed: int; the same seed gives the same set.
    num_candidates: size of the random candidate pool when n! is larger than
      MAX_EXHAUSTIVE_CANDIDATES and than num_candidates (see module docstring).

  Returns:
    (perms, min_hamming_distance): int32 np.ndarray [K, n] (rows distinct, in
    the order chosen; perms[k] is the permutation of class k) and the minimum
    Hamming distance over all pairs of the set (n, the maximum possible, when
    K == 1).

  Raises:
    ValueError: if K < 1, n < 1, K > n!, or K > the candidate pool.
  """
  num_permutations = int(num_permutations)
  num_patches = int(num_patches)
  if num_patches < 1:
    raise ValueError(f"num_patches={num_patches} must be >= 1.")
  total = math.factorial(num_patches)
  if num_permutations < 1 or num_permutations > total:
    raise ValueError(
        f"A fixed set of {num_permutations} permutations of {num_patches} "
        f"patches is impossible: there are only {num_patches}! = {total} "
        f"permutations; use 1 <= num_permutations <= {total}.")
  rng = np.random.default_rng(seed)
  pool = _candidate_pool(num_patches, num_candidates, rng)
  if num_permutations > len(pool):
    raise ValueError(
        f"num_permutations={num_permutations} exceeds the candidate pool of "
        f"{len(pool)}; raise num_candidates.")
  chosen = np.empty(num_permutations, dtype=np.int64)
  chosen[0] = 0
  # min_dist[j] = min Hamming distance of candidate j to the chosen set.
  min_dist = (pool != pool[0]).sum(1, dtype=np.int16)
  picked_dist = [num_patches]
  for k in range(1, num_permutations):
    j = int(np.argmax(min_dist))  # First maximum: deterministic ties.
    chosen[k] = j
    picked_dist.append(int(min_dist[j]))
    np.minimum(min_dist, (pool != pool[j]).sum(1, dtype=np.int16),
               out=min_dist)
  perms = pool[chosen].astype(np.int32)
  return perms, int(min(picked_dist))
