"""Differentiable ranking and sorting, graph-native TensorFlow.

Soft ranks and soft sorts ("Fast Differentiable Sorting and Ranking", Blondel
et al., ICML 2020) with the signature and semantics of the paper's reference
operators (1-based ranks, "l2" and "kl"), hard ranks, perturbed ranks and a
Fenchel-Young ranking loss (Berthet et al., NeurIPS 2020), and Keras 3
wrappers. `values` are [batch, n] (any leading dimensions) and are ranked
along the last axis; everything runs the same in eager mode, tf.function,
XLA, tf.data, tf.distribute and a SavedModel.

Modules:

  soft       soft_rank, soft_sort: forward, backward, custom gradients
  isotonic   the isotonic step in sorted space (partition, block statistics)
  pav        the partition of long rows: a sequential PAV loop, O(n)
  sorting    the stable order of long rows by a sort, O(n log n)
  hard       hard_rank
  perturbed  perturbed_ranks, fenchel_young_rank_loss
  layers     SoftRank, SoftRankLoss, FenchelYoungRankLoss (Keras 3)
  checks     argument validation; DIRECTIONS, REGULARIZATIONS, NOISES, TIES
  rowwise    [..., n] <-> [M, n] rows, batched gathers, pairwise orders

Conventions, the algorithm, precision and the measurements behind its
design: docs/ranking.md.
"""

from audio_perm.ranking.checks import DIRECTIONS
from audio_perm.ranking.checks import NOISES
from audio_perm.ranking.checks import REGULARIZATIONS
from audio_perm.ranking.checks import TIES
from audio_perm.ranking.hard import hard_rank
from audio_perm.ranking.layers import FenchelYoungRankLoss
from audio_perm.ranking.layers import SoftRank
from audio_perm.ranking.layers import SoftRankLoss
from audio_perm.ranking.perturbed import fenchel_young_rank_loss
from audio_perm.ranking.perturbed import perturbed_ranks
from audio_perm.ranking.soft import soft_rank
from audio_perm.ranking.soft import soft_sort

__all__ = [
    "DIRECTIONS",
    "NOISES",
    "REGULARIZATIONS",
    "TIES",
    "FenchelYoungRankLoss",
    "SoftRank",
    "SoftRankLoss",
    "fenchel_young_rank_loss",
    "hard_rank",
    "perturbed_ranks",
    "soft_rank",
    "soft_sort",
]
