"""A pretraining run's settings, and the paper's."""

import dataclasses
import os
from typing import Optional

from audio_perm.config.fields import check_fields
from audio_perm.config.fields import flatten
from audio_perm.config.fields import leaf
from audio_perm.config.fields import nested
from audio_perm.config.fields import replace
from audio_perm.config.fields import unflatten
from audio_perm.config.model import EncoderConfig
from audio_perm.config.model import FrontendConfig
from audio_perm.config.model import NUM_BLOCKS
from audio_perm.config.model import ObjectiveConfig
from audio_perm.config.model import OptimizerConfig
from audio_perm.config.model import STRATEGIES

# ----------------------------------------------------------- augmentations


@dataclasses.dataclass
class AugmentConfig:
  """Pretext augmentations against shortcuts (pretraining only).

  Each draws a fresh random value per example (or patch) in the input
  pipeline; export, evaluation and diagnostics see the natural features.
  Units are those of the log magnitudes (natural log: 1.0 is a factor e,
  8.7 dB).
  """
  gain_jitter: float = leaf(
      3.0, "float", "Add to each patch's log magnitudes a random offset, "
      "uniform in [-gain_jitter, gain_jitter], while pretraining, so that "
      "level cannot order the patches but still reaches the encoder. 0: off.",
      check="nonnegative")
  tilt_jitter: float = leaf(
      2.0, "float", "Add a random spectral tilt while pretraining: a line "
      "over the frequency bins from -t to +t, t uniform in [-tilt_jitter, "
      "tilt_jitter] per example. 0: off.", check="nonnegative")
  eq_jitter: float = leaf(
      2.0, "float", "Add a smooth random EQ while pretraining: three "
      "cosines over the frequency bins (1 to 3 half-periods, random phases) "
      "with amplitudes uniform in [-eq_jitter/2, eq_jitter/2]. 0: off.",
      check="nonnegative")
  pitch_copies: int = leaf(
      0, "integer", "Show each note as this many pitch-shifted copies "
      "(resampled by 2^(s/12), s uniform in [-pitch_range, pitch_range] "
      "semitones, each copy shuffled and jittered on its own) and add the "
      "pitch-ranking term: the copies ranked by pitch from a linear score of "
      "their backbone features averaged over patches (audio_perm.pitch; an "
      "option outside the paper, see docs/recipe_sweep.md). The batch then "
      "holds batch_size / pitch_copies notes. 0: off; else 2 or more, "
      "dividing each replica's batch.", check="nonnegative")
  pitch_range: float = leaf(
      3.0, "float", "Largest pitch shift of the --pitch_copies, in "
      "semitones (at most 12).", check="positive")
  pitch_band: str = leaf(
      "common", "enum", "The band of the --pitch_copies: 'common' (every "
      "copy low-passed to 8 kHz * 2^(-pitch_range/12), the band they all "
      "fill, so that the top of the band cannot order them) or 'full' (each "
      "keeps what resampling leaves it: a copy shifted down by s is empty "
      "above 8 kHz * 2^(-s/12)). Copies shifted up are low-passed before "
      "resampling either way, so that nothing folds back.",
      choices=("common", "full"))
  pitch_envelope: str = leaf(
      "shifted", "enum", "The smooth spectro-temporal envelope of the "
      "--pitch_copies: 'shifted' (what resampling gives: the envelope moves "
      "with the partials and the note shortens) or 'original' (each copy "
      "keeps the note's own, smoothed over 33 bins per frame, so only where "
      "the partials lie tells the copies apart; audio_perm.pitch).",
      choices=("shifted", "original"))
  pitch_pretext: str = leaf(
      "copies", "enum", "What the permutation pretext sees with "
      "--pitch_copies: 'copies' (each copy is also a pretext example, so "
      "pretraining sees only resampled, envelope-corrected and band-limited "
      "notes) or 'note' (the pretext sees the notes as they are, a batch of "
      "batch_size, and a second batch of batch_size copies feeds only the "
      "pitch term, through BatchNorm's moving statistics so that those stay "
      "the natural notes'; about twice the compute per step) or "
      "'note_batch' (as 'note', but the copies are normalised by their own "
      "batch's statistics, as in training, and the moving statistics are "
      "still the natural notes' alone).",
      choices=("copies", "note", "note_batch"))

  def active(self):
    return any((self.gain_jitter, self.tilt_jitter, self.eq_jitter))


# ---------------------------------------------------------------- training


@dataclasses.dataclass
class TrainConfig:
  """A pretraining run (train.py's flags map one to one onto its leaves)."""
  data_dir: Optional[str] = leaf(
      None, "string", "Folder dataset (made by python -m data_prep.render). "
      "Default: the embedded default dataset, rendered on first use.")
  train_pattern: Optional[str] = leaf(
      None, "string", "Alternative to --data_dir: a glob of Magenta NSynth "
      "TFRecord files.")
  model_dir: str = leaf(os.path.join("runs", "default"), "string",
                         "Checkpoints, flags.json, TensorBoard logs.",
                         runtime=True)
  export_dir: Optional[str] = leaf(
      None, "string", "Where the encoder SavedModel goes (default "
      "model_dir/encoder).", runtime=True)
  encoder: EncoderConfig = nested(EncoderConfig)
  objective: ObjectiveConfig = nested(ObjectiveConfig)
  optimizer: OptimizerConfig = nested(OptimizerConfig)
  augment: AugmentConfig = nested(AugmentConfig)
  batch_size: int = leaf(16, "integer", "GLOBAL batch size, split over the "
                          "replicas.", check="positive")
  train_steps: int = leaf(300, "integer", "Total optimisation steps.",
                           runtime=True, check="positive")
  steps_per_execution: int = leaf(1, "integer", "Steps run inside one "
                                   "tf.function call.", runtime=True,
                                   check="positive")
  checkpoint_every: int = leaf(50, "integer", "Steps between checkpoints.",
                                runtime=True, check="positive")
  log_every: int = leaf(10, "integer", "Steps between TensorBoard scalars / "
                         "progress updates.", runtime=True, check="positive")
  image_every: int = leaf(50, "integer", "Steps between TensorBoard "
                           "spectrogram images.", runtime=True,
                           check="positive")
  strategy: str = leaf("auto", "enum", "tf.distribute strategy "
                        "(multi_worker reads TF_CONFIG).", runtime=True,
                        choices=STRATEGIES)
  tpu: Optional[str] = leaf(None, "string", "TPU name or address "
                             "(strategy tpu/auto).", runtime=True)
  mixed_precision: bool = leaf(False, "bool", "mixed_float16 on GPU, "
                                "mixed_bfloat16 on CPU/TPU.")
  jit_compile: bool = leaf(False, "bool", "XLA-compile the forward/backward "
                            "pass.", runtime=True)
  seed: int = leaf(0, "integer", "Seed of weights, data and noise.")
  # Off by default: bit-identical runs need one inter-op thread, and 60-step
  # train.py runs took 158 s and 157 s with it against 109 s and 64 s
  # without (2 shared CPU cores, start-up included). The study's smoke and
  # cpu scales turn it on.
  deterministic: bool = leaf(
      False, "bool", "Bit-reproducible runs: TensorFlow's op determinism, "
      "one inter-op thread and an input pipeline whose parallel stages keep "
      "their order (about 2x slower steps on 2 CPU cores), so the same "
      "command and seed give the same checkpoints and encoder on the same "
      "hardware and software. Incompatible with --jit_compile.")
  verbose: bool = leaf(True, "bool", "Show the progress bar.", runtime=True)
  # Read each TFRecord file up to its first corrupt record and skip the rest
  # (data.pretext_dataset(skip_corrupt=True)); a runtime setting, so a run
  # stopped by a corrupt file resumes with it.
  skip_corrupt: bool = leaf(
      False, "bool", "Read each TFRecord file up to its first corrupt record "
      "and skip the rest of it (a warning per skip) instead of stopping; may "
      "be added when resuming a run.", runtime=True)

  @property
  def resolved_export_dir(self):
    return self.export_dir or os.path.join(self.model_dir, "encoder")

  @property
  def frontend(self):
    return self.encoder.frontend

  def to_dict(self):
    """The flat dict written as flags.json (flag name -> value)."""
    return flatten(self)

  @classmethod
  def from_dict(cls, values):
    """From a flat dict such as flags.json; unknown keys ignored."""
    return unflatten(cls, values)

  @classmethod
  def saved_values(cls, values):
    """A run's flags.json as a full flat dict.

    A flag that the file predates held the value it had when the run was
    written: its default then, which is today's except for the
    RECIPE_EXTRAS (0, off, until they became the default recipe).
    """
    return {**cls().to_dict(), **RECIPE_EXTRAS_OFF, **values}

  def replace(self, **flat):
    """A copy with flat (flag-named) settings replaced, e.g. seed=1, width=1."""
    return replace(self, **flat)

  def validate(self, check_data=True):
    """Raises ValueError, naming the bad value, for settings that make no sense.

    Also checks that the patches fit the spectrogram and, with `check_data`,
    that the data source exists.
    """
    check_fields(self)
    self.encoder.validate()
    self.objective.validate(self.frontend.num_patches)
    if self.optimizer.frozen_blocks > NUM_BLOCKS:
      raise ValueError(
          f"frozen_blocks={self.optimizer.frozen_blocks}: the backbone has "
          f"{NUM_BLOCKS} conv blocks; give 0 to {NUM_BLOCKS}.")
    optimizer = self.optimizer
    if optimizer.frozen_blocks + optimizer.random_kernels > NUM_BLOCKS:
      raise ValueError(
          f"frozen_blocks={optimizer.frozen_blocks} and random_kernels="
          f"{optimizer.random_kernels} cover more than the backbone's "
          f"{NUM_BLOCKS} conv blocks; keep their sum at most {NUM_BLOCKS}.")
    self.check_pitch_copies()
    if self.deterministic and self.jit_compile:
      raise ValueError(
          "deterministic and jit_compile together: XLA has no deterministic "
          "max-pool gradient; drop --jit_compile (or pass --nodeterministic).")
    if self.data_dir and self.train_pattern:
      raise ValueError(f"Give either data_dir ({self.data_dir!r}) or "
                       f"train_pattern ({self.train_pattern!r}), not both.")
    if check_data:
      check_data_source(self.data_dir, self.train_pattern)
    return self

  def check_pitch_copies(self, num_replicas=1):
    """ValueError naming the flag unless the pitch copies fit the batch."""
    copies = self.augment.pitch_copies
    if not copies:
      return
    if copies < 2:
      raise ValueError(f"pitch_copies={copies}: the pitch term ranks at "
                       "least 2 copies of a note; give 0 (off) or 2 or more.")
    from audio_perm import pitch  # pylint: disable=g-import-not-at-top
    pitch.check_range(self.augment.pitch_range)
    replicas = max(1, int(num_replicas))
    if self.batch_size % (copies * replicas):
      unit = copies * replicas
      suggested = max(unit, self.batch_size // unit * unit)
      raise ValueError(
          f"pitch_copies={copies} must divide each replica's batch "
          f"(batch_size={self.batch_size} over {replicas} replica(s)); "
          f"e.g. --batch_size={suggested}.")

  def ignored_settings(self, explicitly_set=()):
    return self.objective.ignored_settings(explicitly_set)


def check_data_source(data_dir, train_pattern):
  """ValueError saying how to make the data when it is missing."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from audio_perm import data  # pylint: disable=g-import-not-at-top
  if train_pattern:
    if not tf.io.gfile.glob(train_pattern):
      raise ValueError(
          f"train_pattern={train_pattern!r} matches no file; give a glob of "
          "NSynth TFRecord files, e.g. /data/nsynth-train.tfrecord*.")
    return
  if not data_dir:
    raise ValueError("No data: give data_dir (a folder dataset made by "
                     "`python -m data_prep.render --output_dir=DIR`) or "
                     "train_pattern.")
  data.check_folder_dataset(
      data_dir, "data_dir",
      otherwise="omit --data_dir to use the default dataset")


# The default recipe's settings outside the paper (docs/recipe_sweep.md,
# rounds 33-35), which train.py turns on by default and the paper's setting
# turns off: augmentations against the pretext's shortcuts, the pull towards
# the initialisation and VICReg's variance/covariance terms.
RECIPE_EXTRAS = ("gain_jitter", "tilt_jitter", "eq_jitter", "init_decay",
                 "variance_penalty", "covariance_penalty")
# Their off values (flat settings), as in the paper and before the recipe.
RECIPE_EXTRAS_OFF = dict.fromkeys(RECIPE_EXTRAS, 0.0)


def paper_train_config():
  """The paper's pretraining setting (Carr et al., IEEE SPL 2021).

  From the paper: 10 frequency bands, permutations from all n!, Perturbed F-Y
  (its best objective), Adam, learning rate 1e-6, batch 32, 1000 epochs of
  NSynth's training set (289,205 notes / 32 = 9,038 steps per epoch). Ours
  (the paper does not give them): AlexNet channel widths (width 1.0), the
  embedding size, the normalisation, the perturbation settings and the
  checkpoint/log rhythm.
  """
  return TrainConfig(
      encoder=EncoderConfig(
          frontend=FrontendConfig(patching="frequency", num_patches=10),
          width=1.0, embedding_dim=1024, normalization="batch"),
      objective=ObjectiveConfig(name="perturbed_fy", perturbation_samples=100,
                                perturbation_sigma=1.0),
      optimizer=OptimizerConfig(name="adam", learning_rate=1e-6),
      batch_size=32, train_steps=9_038_000, checkpoint_every=5000,
      log_every=100, image_every=5000,
      # Accelerators: deterministic GPU kernels can cost more there; opt in.
      deterministic=False).replace(**RECIPE_EXTRAS_OFF)


# Flags of configs/paper.flags: the paper's own first, then ours.
_PAPER_FLAGS = ("patching", "num_patches", "objective", "optimizer",
                "learning_rate", "batch_size", "train_steps")
_OUR_PAPER_FLAGS = ("width", "embedding_dim", "normalization",
                    "perturbation_samples", "perturbation_sigma",
                    "checkpoint_every", "log_every", "image_every",
                    "deterministic")


def paper_flagfile():
  """The text of configs/paper.flags, generated from paper_train_config()."""
  values = paper_train_config().to_dict()

  def lines(names):
    return [f"--{name}={_flag_text(values[name])}" for name in names]

  header = [
      "# The paper's pretraining settings (Carr et al., IEEE SPL 2021), for",
      "#   python train.py --flagfile=configs/paper.flags \\",
      "#     --train_pattern='/data/nsynth/nsynth-train.tfrecord*' "
      "--model_dir=runs/paper",
      "# (or --data_dir=DIR of a folder dataset). Flags given after the "
      "flagfile win.",
      "# Generated from audio_perm.config.paper_train_config() by",
      "#   python -m audio_perm.config --paper_flags > configs/paper.flags",
      "#",
      "# From the paper: 10 frequency bands, permutations from all n!, "
      "Perturbed F-Y",
      "# (its best objective), Adam, learning rate 1e-6, batch 32, 1000 "
      "epochs of the",
      "# NSynth training set (289,205 notes / 32 = 9,038 steps per epoch).",
  ]
  middle = [
      "# Not given by the paper (our choices): the AlexNet channel widths "
      "(96-384),",
      "# the embedding size, the normalisation, the perturbation settings, "
      "the",
      "# checkpoint/log rhythm, and op determinism off on accelerators.",
  ]
  off = [
      "# Outside the paper and on in train.py's defaults (docs/recipe_sweep.md):",
      "# augmentations against the pretext's shortcuts, the pull towards the",
      "# initialisation and VICReg's variance/covariance terms; off here.",
  ]
  return "\n".join(header + lines(_PAPER_FLAGS) + middle
                   + lines(_OUR_PAPER_FLAGS) + off
                   + lines(RECIPE_EXTRAS)) + "\n"


def _flag_text(value):
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, float):
    if value.is_integer():
      return f"{value:.1f}"
    return f"{value:g}".replace("e-0", "e-").replace("e+0", "e+")
  if isinstance(value, (list, tuple)):
    return ",".join(str(v) for v in value)
  return str(value)
