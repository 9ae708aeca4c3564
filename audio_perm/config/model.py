"""The encoder's settings: frontend, architecture, objective, optimizer."""

import dataclasses
import math
from typing import Optional, Tuple

from audio_perm import patches as patches_lib
from audio_perm import spectrogram
from audio_perm.config.fields import check_fields
from audio_perm.config.fields import flatten
from audio_perm.config.fields import leaf
from audio_perm.config.fields import nested
from audio_perm.config.fields import replace
from audio_perm.config.fields import unflatten

OBJECTIVES = ("soft_rank", "perturbed_fy", "mse", "classification")
RANKING_OBJECTIVES = ("soft_rank", "perturbed_fy", "mse")
REGULARIZATIONS = ("l2", "kl")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
NORMALIZATIONS = ("example", "batch", "none")
STANDARDIZATIONS = ("example", "patch")
POOLINGS = ("global", "time")
# Conv blocks in the backbone (models.PatchBackbone: conv1..conv5).
NUM_BLOCKS = 5
STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker",
              "tpu")


# ---------------------------------------------------------------- frontend


@dataclasses.dataclass
class FrontendConfig:
  """Waveform -> log spectrogram -> patches (audio_perm.patches.frontend)."""
  # The default recipe (docs/recipe_sweep.md, rounds 33-35): tiles keep
  # what the untrained network already reads from frequency position and
  # time; the paper's 10 frequency bands are --patching=frequency.
  patching: str = leaf("time_frequency", "enum",
                        "How the spectrogram is cut into patches (the "
                        "paper: frequency).",
                        choices=patches_lib.SCHEMES)
  num_patches: int = leaf(10, "integer", "Patches per example.",
                           check="positive")
  grid: Optional[Tuple[int, int]] = leaf(
      None, "grid", "rows,cols of the time_frequency grid (rows along "
      "frequency); default: the most square factorisation.")
  # A training augmentation: each example is a random crop of crop_frames
  # spectrogram frames. The encoder's patch shape follows it, so the export
  # (and evaluation) feed the CENTRED crop of the same length.
  crop_frames: Optional[int] = leaf(
      None, "integer", "Train on a random crop of this many spectrogram "
      "frames per example (an augmentation; 398 frames per 4 s note). The "
      "exported encoder takes the CENTRED crop of the same length, since its "
      "patch shape depends on it. Default: all frames.", check="positive")
  frequency_scale: str = leaf(
      "linear", "enum", "Frequency axis of the spectrogram: the 513 linear "
      "FFT bins (the paper), or 256 log-spaced bins from 27.5 Hz to 8 kHz "
      "(~31 per octave), on which a note's harmonic pattern has the same "
      "shape at every pitch and ordering bands depends on it.",
      choices=spectrogram.FREQUENCY_SCALES)
  num_samples: int = leaf(spectrogram.NUM_SAMPLES, "integer",
                           "Waveform length the encoder is built for.",
                           flag=None, check="positive")
  # Against edge shortcuts: neighbouring patches share no edge when each is
  # cut at a random offset inside its cell while training (the exported
  # encoder takes the centred cut; audio_perm.patches.cut_patches).
  patch_gap: int = leaf(
      0, "integer", "Bins (frequency bands), frames (time slices) or both "
      "(time_frequency tiles) cut off each patch: pretraining takes each "
      "patch at a random offset inside its cell, so neighbours share no edge; "
      "the exported encoder takes the centred cut. 0: whole cells.",
      check="nonnegative")

  def __post_init__(self):
    if self.grid is not None:
      self.grid = tuple(int(g) for g in self.grid)

  def validate(self):
    check_fields(self)
    if self.grid is not None and self.patching != "time_frequency":
      raise ValueError(f"grid={list(self.grid)} only applies to "
                       f"patching=time_frequency, not {self.patching!r}; drop "
                       f"--grid or use --patching=time_frequency.")
    # Raises for unknown schemes, grids that do not multiply to num_patches
    # and more patches than bins/frames.
    self.patch_shape()
    return self

  def patch_shape(self):
    """(patch_frames, patch_bins) of the frontend's patches."""
    return patches_lib.frontend_patch_shape(
        self.patching, self.num_patches, self.grid,
        num_samples=self.num_samples, crop_frames=self.crop_frames,
        patch_gap=self.patch_gap, frequency_scale=self.frequency_scale)


# ----------------------------------------------------------------- encoder


@dataclasses.dataclass
class EncoderConfig:
  """Architecture and frontend of an encoder.

  The defaults are THE default architecture: train.py trains it and eval.py's
  random/supervised baselines build it when no SavedModel says otherwise.
  """
  frontend: FrontendConfig = nested(FrontendConfig)
  # Small enough to train on a CPU; 0.25 kept more of pretraining's gain
  # than 0.125 and steadied the random twins (docs/recipe_sweep.md, round 31).
  width: float = leaf(0.25, "float",
                       "Channel multiplier of the conv backbone (1.0: "
                       "AlexNet sizes 96-384).", check="positive")
  embedding_dim: int = leaf(256, "integer", "Size of the embedding (first "
                             "fully connected layer).", check="positive")
  normalization: str = leaf("batch", "enum",
                             "Normalisation in the conv backbone.",
                             choices=NORMALIZATIONS)
  input_standardization: str = leaf(
      "example", "enum", "The encoder's first step: standardise each "
      "example over all of its patches (keeps the patches' relative levels) "
      "or each patch on its own (removes level, a shortcut for ordering "
      "frequency bands, from the pretext task and from the embedding).",
      choices=STANDARDIZATIONS)
  pooling: str = leaf(
      "global", "enum", "How each patch's last conv map becomes its "
      "features: averaged over frames and bins (global) or over frames only "
      "(time), which keeps the frequency position inside the patch (pitch) "
      "at a larger fc1.", choices=POOLINGS)

  def validate(self):
    check_fields(self)
    self.frontend.validate()
    return self

  def patch_shape(self):
    return self.frontend.patch_shape()

  def replace(self, **flat):
    """A copy with flat settings replaced, e.g. num_patches=4, width=1.0."""
    return replace(self, **flat)

  def to_dict(self):
    """The flat dict written as encoder_config.json."""
    return flatten(self)

  @classmethod
  def from_dict(cls, values):
    """From a flat dict (encoder_config.json, flags.json); extra keys ignored."""
    return unflatten(cls, values)

  def build_keras_encoder(self, name="encoder", patch_shape=None):
    """A fresh patches -> embedding keras.Model (models.build_encoder).

    patch_shape: (patch_frames, patch_bins) instead of the frontend's.
    """
    from audio_perm import models  # pylint: disable=g-import-not-at-top
    return models.build_encoder(
        self.frontend.num_patches,
        self.patch_shape() if patch_shape is None else patch_shape,
        width=self.width, embedding_dim=self.embedding_dim,
        normalization=self.normalization,
        input_standardization=self.input_standardization,
        pooling=self.pooling, name=name)


# --------------------------------------------------------------- objective


@dataclasses.dataclass
class ObjectiveConfig:
  """The pretext loss (audio_perm.objectives)."""
  name: str = leaf("perturbed_fy", "enum", "Pretext objective.",
                    flag="objective", choices=OBJECTIVES)
  regularization: str = leaf("l2", "enum", "soft_rank regularisation.",
                              choices=REGULARIZATIONS)
  regularization_strength: float = leaf(
      1.0, "float", "soft_rank regularisation strength.", check="positive")
  num_permutations: int = leaf(
      100, "integer", "Size K of the fixed Hamming permutation set "
      "(classification).", check="positive")
  perturbation_samples: int = leaf(100, "integer", "Noise draws per example "
                                    "(perturbed_fy).", check="positive")
  perturbation_sigma: float = leaf(1.0, "float", "Noise scale (perturbed_fy).",
                                    check="positive")

  # Which objective each setting belongs to (for warnings about ignored flags).
  _USED_BY = {"perturbation_samples": "perturbed_fy",
              "perturbation_sigma": "perturbed_fy",
              "regularization": "soft_rank",
              "regularization_strength": "soft_rank",
              "num_permutations": "classification"}

  def validate(self, num_patches):
    check_fields(self)
    if not isinstance(num_patches, int) or num_patches < 2:
      raise ValueError(f"num_patches must be an integer >= 2 to have an order "
                       f"to learn, got {num_patches!r}.")
    if self.name == "classification":
      if self.num_permutations < 2:
        raise ValueError(f"num_permutations must be an integer >= 2, got "
                         f"{self.num_permutations!r}.")
      if self.num_permutations > math.factorial(num_patches):
        raise ValueError(
            f"num_permutations={self.num_permutations} exceeds the "
            f"{num_patches}! = {math.factorial(num_patches)} permutations of "
            f"num_patches={num_patches}; use at most that many.")
    return self

  def ignored_settings(self, explicitly_set=()):
    """Messages for settings given explicitly that this objective ignores."""
    return [f"--{name} is ignored: it only applies to --objective={used}, "
            f"not {self.name}."
            for name, used in self._USED_BY.items()
            if name in explicitly_set and self.name != used]


@dataclasses.dataclass
class OptimizerConfig:
  name: str = leaf("adam", "enum", "Optimizer.", flag="optimizer",
                    choices=OPTIMIZERS)
  learning_rate: float = leaf(1e-3, "float", "Constant learning rate (the "
                               "paper: 1e-6).", check="positive")
  init_decay: float = leaf(
      10.0, "float", "Pull the weights towards their random initialisation: "
      "adds init_decay/2 * sum((w - w0)^2) over every trainable weight to "
      "the loss (L2-SP; an anti-collapse option outside the paper, see "
      "docs/recipe_sweep.md). 0: off.", check="nonnegative")
  frozen_blocks: int = leaf(
      0, "integer", "Keep conv blocks 1..N at their random initialisation: "
      "not trained, and their BatchNorm layers normalise with their initial "
      "statistics, so these blocks compute exactly what the random twin's "
      "do (an option outside the paper, see docs/recipe_sweep.md). 0: every "
      "block trains; at most 5.", check="nonnegative")
  random_kernels: int = leaf(
      0, "integer", "Keep the convolution kernels of the LAST N conv blocks "
      "at their random initialisation, while the blocks below train: their "
      "BatchNorm layers still normalise with the batch's statistics (their "
      "inputs change as the blocks below learn), keep their moving "
      "averages, and learn their scale and offset (an option outside the "
      "paper, see docs/recipe_sweep.md). 0: off; with --frozen_blocks, "
      "the two together at most 5.", check="nonnegative")
  variance_penalty: float = leaf(
      5.0, "float", "Weight of VICReg's variance term on the backbone's "
      "per-patch features over the batch's patches: mean over features of "
      "relu(1 - std), so that no feature collapses (training.penalties; an "
      "anti-collapse option outside the paper). 0: off.",
      check="nonnegative")
  covariance_penalty: float = leaf(
      1.0, "float", "Weight of VICReg's covariance term on the same "
      "features: the sum of squared off-diagonal covariances / features, so "
      "that they decorrelate (keeps the rank). 0: off.", check="nonnegative")

  pitch_weight: float = leaf(
      1.0, "float", "Weight of the pitch-ranking term of --pitch_copies "
      "(ignored without it).", check="nonnegative")
  pitch_features: str = leaf(
      "backbone", "enum", "What the --pitch_copies' score reads: 'backbone' "
      "(the per-patch conv features averaged over the patches) or "
      "'embedding' (fc1, the encoder's output that evaluation and export "
      "use).", choices=("backbone", "embedding"))
  pitch_loss: str = leaf(
      "rank", "enum", "The --pitch_copies' term: 'rank' (the copies ranked "
      "by their scores with the pretext's differentiable ranking) or "
      "'shift' (each pair's score difference asked to equal its shift "
      "difference in semitones, Huber loss: the score must follow how far the "
      "pitch moved, not only its order; audio_perm.pitch.shift_loss).",
      choices=("rank", "shift"))

  @property
  def uses_features(self):
    """True when a term needs the backbone's per-patch features."""
    return bool(self.variance_penalty or self.covariance_penalty)
