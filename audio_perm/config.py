"""Every setting of the project, its default and its validation, once.

Nested dataclasses, one per concern:

  FrontendConfig    waveform -> patches (patching, num_patches, grid, ...)
  EncoderConfig     the CFN encoder: a FrontendConfig plus width,
                    embedding_dim, normalization
  ObjectiveConfig   the pretext loss (objective, regularization, ...)
  OptimizerConfig   optimizer and learning rate
  TrainConfig       a pretraining run: data, encoder, objective, optimizer and
                    the run's rhythm (steps, checkpoints, strategy, seed)
  ProbeConfig       the downstream probe
  SupervisedConfig  the no-pretraining baseline's training budget
  EvalConfig        an evaluation: encoders, data, tasks, regimes, probe,
                    supervised baseline

Each leaf field carries its help text and its flag name in its metadata, so
that train.py, eval.py, the study and the diagnostics define their absl flags
from here (`define_flags`, `from_flags`) and never re-type a default. The
flat view of a config (`flatten` / `unflatten`: flag name -> value) is what
flags.json and encoder_config.json hold. `paper_train_config()` is the paper's
setting; configs/paper.flags is generated from it (`paper_flagfile()`).

Validation raises ValueError naming the bad value (and the flag).
"""

import dataclasses
import math
import os
from typing import Optional, Tuple

from audio_perm import patches as patches_lib
from audio_perm import spectrogram

OBJECTIVES = ("soft_rank", "perturbed_fy", "mse", "classification")
RANKING_OBJECTIVES = ("soft_rank", "perturbed_fy", "mse")
REGULARIZATIONS = ("l2", "kl")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
NORMALIZATIONS = ("example", "batch", "none")
STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker",
              "tpu")
PROBES = ("mlp", "linear")
TASK_NAMES = ("instrument_family", "instrument", "pitch")
ENCODER_WORDS = ("random", "handcrafted", "supervised")


# ------------------------------------------------------------------ fields
# Metadata keys: help, kind (string/integer/float/bool/enum/grid/ints/strings),
# flag (its name; None: not a flag), choices, runtime (may change when a run
# resumes), check (positive/nonnegative/fraction).


def _leaf(default, kind, help_text, *, flag=True, choices=None,
          runtime=False, check=None):
  metadata = dict(help=help_text, kind=kind, flag=flag, choices=choices,
                  runtime=runtime, check=check)
  return dataclasses.field(default=default, metadata=metadata)


def _nested(cls, help_text="", prefix="", key_prefix=None):
  """A nested config field.

  prefix goes before the flag names of its leaves; key_prefix (default:
  prefix) before the flat names of its leaves that are not flags, so that
  they cannot clash with the outer config's.
  """
  return dataclasses.field(
      default_factory=cls,
      metadata=dict(help=help_text, nested=True, prefix=prefix,
                    key_prefix=prefix if key_prefix is None else key_prefix))


def _flag_name(field, prefix=""):
  name = field.metadata.get("flag", True)
  if name is None:
    return None
  return prefix + (field.name if name is True else name)


def _leaves(cls, prefix="", key_prefix=""):
  """(field path, field, flat name) of every leaf of `cls`, in order."""
  for field in dataclasses.fields(cls):
    meta = field.metadata
    if meta.get("nested"):
      for path, leaf, key in _leaves(field.default_factory,
                                     prefix + meta["prefix"],
                                     key_prefix + meta["key_prefix"]):
        yield (field.name,) + path, leaf, key
    else:
      yield ((field.name,), field,
             _flag_name(field, prefix) or key_prefix + field.name)


def _get(config, path):
  for name in path:
    config = getattr(config, name)
  return config


def _check_value(name, value, kind, check, choices):
  """ValueError naming `name` when `value` breaks the field's rule."""
  if value is None:
    return
  if kind == "enum" and value not in choices:
    raise ValueError(f"{name} must be one of {', '.join(choices)}, got "
                     f"{value!r}.")
  if kind == "integer" and (not isinstance(value, int)
                            or isinstance(value, bool)):
    raise ValueError(f"{name} must be an integer, got {value!r}.")
  if kind == "float" and (not isinstance(value, (int, float))
                          or isinstance(value, bool)
                          or not math.isfinite(value)):
    raise ValueError(f"{name} must be a finite number, got {value!r}.")
  if check == "positive" and not value > 0:
    raise ValueError(f"{name} must be positive, got {value!r}.")
  if check == "nonnegative" and not value >= 0:
    raise ValueError(f"{name} must be >= 0, got {value!r}.")
  if check == "fraction" and not 0.0 < value < 1.0:
    raise ValueError(f"{name} must be in (0, 1), got {value!r}.")


def check_fields(config, prefix=""):
  """Checks every leaf of `config` (and nested configs) against its rule."""
  for path, field, key in _leaves(type(config), prefix, prefix):
    meta = field.metadata
    _check_value(key, _get(config, path), meta.get("kind"), meta.get("check"),
                 meta.get("choices"))


def flatten(config):
  """{flat name: value} over the leaves of a (nested) config.

  A leaf's flat name is its flag name, or (not a flag) its field name after
  the key prefixes of the configs it is nested in.
  """
  values = {}
  for path, _, key in _leaves(type(config)):
    if key in values:
      raise ValueError(f"{type(config).__name__}: {key!r} appears twice in "
                       "the flat view.")
    value = _get(config, path)
    values[key] = list(value) if isinstance(value, tuple) else value
  return values


def unflatten(cls, values):
  """The inverse of `flatten`: a config of type `cls`; unknown keys ignored."""
  kwargs = {}
  for path, _, key in _leaves(cls):
    if key in values:
      value = values[key]
      node = kwargs
      for name in path[:-1]:
        node = node.setdefault(name, {})
      node[path[-1]] = tuple(value) if isinstance(value, list) else value
  return _build(cls, kwargs)


def _build(cls, kwargs):
  nested = {f.name: f.default_factory for f in dataclasses.fields(cls)
            if f.metadata.get("nested")}
  return cls(**{name: _build(nested[name], value) if name in nested else value
                for name, value in kwargs.items()})


def replace(config, **flat):
  """A copy of `config` with flat (flag-named) settings replaced.

  E.g. replace(train_config, seed=1, width=1.0, num_patches=4).

  Raises:
    ValueError: a name that is not one of the config's settings.
  """
  values = flatten(config)
  unknown = set(flat) - set(values)
  if unknown:
    raise ValueError(f"Unknown {type(config).__name__} settings "
                     f"{sorted(unknown)}.")
  values.update(flat)
  return unflatten(type(config), values)


def runtime_names(cls):
  """Flat names of the fields that may change when a run resumes."""
  return tuple(key for _, field, key in _leaves(cls)
               if field.metadata.get("runtime"))


# ---------------------------------------------------------------- frontend


@dataclasses.dataclass
class FrontendConfig:
  """Waveform -> log spectrogram -> patches (audio_perm.patches.frontend)."""
  patching: str = _leaf("frequency", "enum",
                        "How the spectrogram is cut into patches.",
                        choices=patches_lib.SCHEMES)
  num_patches: int = _leaf(10, "integer", "Patches per example.",
                           check="positive")
  grid: Optional[Tuple[int, int]] = _leaf(
      None, "grid", "rows,cols of the time_frequency grid (rows along "
      "frequency); default: the most square factorisation.")
  # A training augmentation: each example is a random crop of crop_frames
  # spectrogram frames. The encoder's patch shape follows it, so the export
  # (and evaluation) feed the CENTRED crop of the same length.
  crop_frames: Optional[int] = _leaf(
      None, "integer", "Train on a random crop of this many spectrogram "
      "frames per example (an augmentation; 398 frames per 4 s note). The "
      "exported encoder takes the CENTRED crop of the same length, since its "
      "patch shape depends on it. Default: all frames.", check="positive")
  num_samples: int = _leaf(spectrogram.NUM_SAMPLES, "integer",
                           "Waveform length the encoder is built for.",
                           flag=None, check="positive")

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
        num_samples=self.num_samples, crop_frames=self.crop_frames)


# ----------------------------------------------------------------- encoder


@dataclasses.dataclass
class EncoderConfig:
  """Architecture and frontend of an encoder.

  The defaults are THE default architecture: train.py trains it and eval.py's
  random/supervised baselines build it when no SavedModel says otherwise.
  """
  frontend: FrontendConfig = _nested(FrontendConfig)
  width: float = _leaf(0.125, "float",  # Small enough to train on a CPU.
                       "Channel multiplier of the conv backbone (1.0: "
                       "AlexNet sizes 96-384).", check="positive")
  embedding_dim: int = _leaf(256, "integer", "Size of the embedding (first "
                             "fully connected layer).", check="positive")
  normalization: str = _leaf("batch", "enum",
                             "Normalisation in the conv backbone.",
                             choices=NORMALIZATIONS)

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

  def build_keras_encoder(self, name="encoder"):
    """A fresh patches -> embedding keras.Model (models.build_encoder)."""
    from audio_perm import models  # pylint: disable=g-import-not-at-top
    return models.build_encoder(
        self.frontend.num_patches, self.patch_shape(), width=self.width,
        embedding_dim=self.embedding_dim, normalization=self.normalization,
        name=name)


# --------------------------------------------------------------- objective


@dataclasses.dataclass
class ObjectiveConfig:
  """The pretext loss (audio_perm.objectives)."""
  name: str = _leaf("perturbed_fy", "enum", "Pretext objective.",
                    flag="objective", choices=OBJECTIVES)
  regularization: str = _leaf("l2", "enum", "soft_rank regularisation.",
                              choices=REGULARIZATIONS)
  regularization_strength: float = _leaf(
      1.0, "float", "soft_rank regularisation strength.", check="positive")
  num_permutations: int = _leaf(
      100, "integer", "Size K of the fixed Hamming permutation set "
      "(classification).", check="positive")
  perturbation_samples: int = _leaf(100, "integer", "Noise draws per example "
                                    "(perturbed_fy).", check="positive")
  perturbation_sigma: float = _leaf(1.0, "float", "Noise scale (perturbed_fy).",
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
  name: str = _leaf("adam", "enum", "Optimizer.", flag="optimizer",
                    choices=OPTIMIZERS)
  learning_rate: float = _leaf(1e-3, "float", "Constant learning rate (the "
                               "paper: 1e-6).", check="positive")


# ---------------------------------------------------------------- training


@dataclasses.dataclass
class TrainConfig:
  """A pretraining run (train.py's flags map one to one onto its leaves)."""
  data_dir: Optional[str] = _leaf(
      None, "string", "Folder dataset (made by python -m data_prep.render). "
      "Default: the embedded default dataset, rendered on first use.")
  train_pattern: Optional[str] = _leaf(
      None, "string", "Alternative to --data_dir: a glob of Magenta NSynth "
      "TFRecord files.")
  model_dir: str = _leaf(os.path.join("runs", "default"), "string",
                         "Checkpoints, flags.json, TensorBoard logs.",
                         runtime=True)
  export_dir: Optional[str] = _leaf(
      None, "string", "Where the encoder SavedModel goes (default "
      "model_dir/encoder).", runtime=True)
  encoder: EncoderConfig = _nested(EncoderConfig)
  objective: ObjectiveConfig = _nested(ObjectiveConfig)
  optimizer: OptimizerConfig = _nested(OptimizerConfig)
  batch_size: int = _leaf(16, "integer", "GLOBAL batch size, split over the "
                          "replicas.", check="positive")
  train_steps: int = _leaf(300, "integer", "Total optimisation steps.",
                           runtime=True, check="positive")
  steps_per_execution: int = _leaf(1, "integer", "Steps run inside one "
                                   "tf.function call.", runtime=True,
                                   check="positive")
  checkpoint_every: int = _leaf(50, "integer", "Steps between checkpoints.",
                                runtime=True, check="positive")
  log_every: int = _leaf(10, "integer", "Steps between TensorBoard scalars / "
                         "progress updates.", runtime=True, check="positive")
  image_every: int = _leaf(50, "integer", "Steps between TensorBoard "
                           "spectrogram images.", runtime=True,
                           check="positive")
  strategy: str = _leaf("auto", "enum", "tf.distribute strategy "
                        "(multi_worker reads TF_CONFIG).", runtime=True,
                        choices=STRATEGIES)
  tpu: Optional[str] = _leaf(None, "string", "TPU name or address "
                             "(strategy tpu/auto).", runtime=True)
  mixed_precision: bool = _leaf(False, "bool", "mixed_float16 on GPU, "
                                "mixed_bfloat16 on CPU/TPU.")
  jit_compile: bool = _leaf(False, "bool", "XLA-compile the forward/backward "
                            "pass.", runtime=True)
  seed: int = _leaf(0, "integer", "Seed of weights, data and noise.")
  # On by default: it cost +1.2 % and -4.9 % per step in two runs of
  # benchmarks/train.py on 2 CPU cores (noise), and makes every run repeatable.
  deterministic: bool = _leaf(
      True, "bool", "Bit-reproducible runs: TensorFlow's op determinism and "
      "an input pipeline whose parallel stages keep their order, so the same "
      "command and seed give the same checkpoints and encoder on the same "
      "hardware and software. Incompatible with --jit_compile.")
  verbose: bool = _leaf(True, "bool", "Show the progress bar.", runtime=True)
  # Read each TFRecord file up to its first corrupt record and skip the rest
  # (data.pretext_dataset(skip_corrupt=True)); a runtime setting, so a run
  # stopped by a corrupt file resumes with it.
  skip_corrupt: bool = _leaf(
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
      deterministic=False)


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
  return "\n".join(header + lines(_PAPER_FLAGS) + middle
                   + lines(_OUR_PAPER_FLAGS)) + "\n"


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


# -------------------------------------------------------------- evaluation


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
  """How a probe is built and trained.

  Attributes:
    probe: "mlp" (3 dense layers: two hidden ReLU layers and the output, as in
      the paper) or "linear" (the output layer alone).
    hidden_units: width of the MLP's hidden layers.
    learning_rate: Adam learning rate; None: 1e-3 for "mlp", 1e-2 for
      "linear" (a linear model on a few hundred examples takes few steps per
      epoch and converges too slowly at 1e-3).
    batch_size: minibatch size.
    max_epochs: upper bound on epochs.
    patience: stop after this many epochs without a lower held-out loss; the
      weights of the best epoch are kept.
    holdout_fraction: share of the labelled subset held out for early stopping.
    weight_decay: L2 penalty on the kernels (0 disables it).
    variance_floor: inputs are standardised as (x - mean_j) / sqrt(var_j +
      variance_floor * mean_k(var_k)), statistics of the fitting part. The
      floor keeps features that are nearly constant on a small labelled subset
      (quiet spectrogram bins, rarely active ReLU units) from being scaled up
      by orders of magnitude and swamping the probe on the test split; 0 gives
      plain standardisation.
  """
  probe: str = _leaf("mlp", "enum", "mlp: 3 dense layers (as in the paper); "
                     "linear: one.", choices=PROBES)
  hidden_units: int = _leaf(512, "integer", "Width of the MLP probe's hidden "
                            "layers.", check="positive")
  learning_rate: Optional[float] = _leaf(None, "float", "Probe learning rate.",
                                         flag=None, check="positive")
  batch_size: int = _leaf(64, "integer", "Probe batch size.", flag=None,
                          check="positive")
  max_epochs: int = _leaf(300, "integer", "Probe epochs at most (early "
                          "stopping on a held-out part of the labelled "
                          "subset).", check="positive")
  patience: int = _leaf(20, "integer", "Probe epochs without improvement "
                        "before stopping.", check="positive")
  holdout_fraction: float = _leaf(0.2, "float", "Held-out share.", flag=None,
                                  check="fraction")
  weight_decay: float = _leaf(1e-4, "float", "L2 penalty.", flag=None,
                              check="nonnegative")
  variance_floor: float = _leaf(1.0, "float", "Standardisation floor.",
                                flag=None, check="nonnegative")

  @property
  def effective_learning_rate(self):
    if self.learning_rate is not None:
      return self.learning_rate
    return 1e-3 if self.probe == "mlp" else 1e-2

  def validate(self):
    check_fields(self)
    return self


@dataclasses.dataclass(frozen=True)
class SupervisedConfig:
  """Training budget of the `supervised` (no pretraining) baseline.

  The held-out loss is checked every `eval_every` steps and the best weights
  (BatchNorm statistics included) are kept.
  """
  steps: int = _leaf(
      300, "integer",
      "Training steps of each supervised (no pretraining) model: one per task "
      "head, regime and seed, so 4 x regimes x seeds models. Slow on CPU: "
      "about 4 s per step at batch 32 and width 0.25 on 2 busy cores, i.e. "
      "~20 min per model at 300 steps (measured at width 0.25; the default "
      "0.125 is cheaper). The labelled notes' audio is held in memory "
      "(256 KB per note).", check="positive")
  batch_size: int = _leaf(32, "integer", "Batch size of the supervised "
                          "baseline.", check="positive")
  learning_rate: float = _leaf(1e-3, "float", "Adam learning rate of the "
                               "supervised baseline.", flag=None,
                               check="positive")
  eval_every: int = _leaf(25, "integer", "Steps between held-out checks.",
                          flag=None, check="positive")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """Everything `evaluation.evaluate` needs; eval.py fills it from flags.

  Attributes:
    encoders: SavedModel paths and/or words of ENCODER_WORDS.
    dataset: TFDS name (with data_dir) when dataset_dir is None.
    data_dir: TFDS data_dir (None: TFDS's default).
    dataset_dir: a TFDS folder dataset (overrides dataset/data_dir).
    train_split, test_split: split names.
    tasks: names from TASK_NAMES.
    num_labeled: label regimes (labelled examples drawn from train_split).
    seeds: number of seeds (0..seeds-1): subsets, probe init and order.
    probe: a ProbeConfig.
    batch_size: notes per embedding batch.
    architecture: EncoderConfig of the random and supervised encoders; None:
      the encoder_config.json of the first SavedModel listed, else
      EncoderConfig().
    encoder_seed: initialisation seed of the random encoder.
    supervised: budget of the supervised baseline.
    progress: show progress bars.
    skip_corrupt: read each TFRecord shard up to its first corrupt record and
      skip the rest; without it a corrupt shard is an error naming the file.
  """
  encoders: Tuple[str, ...] = _leaf(
      ("handcrafted",), "strings", "Comma list of encoders: SavedModel paths "
      "(train.py --export_dir) and/or random, handcrafted, supervised.",
      flag="encoder")
  dataset: str = _leaf("nsynth/full", "string", "TFDS dataset name, already "
                       "prepared in --data_dir (never downloaded).")
  data_dir: Optional[str] = _leaf(None, "string", "TFDS data_dir of --dataset "
                                  "(default: TFDS's).")
  dataset_dir: Optional[str] = _leaf(
      None, "string", "A TFDS folder dataset (python -m data_prep.render "
      "--output_dir=DIR); overrides --dataset/--data_dir.")
  train_split: str = _leaf("train", "string", "Split the labelled subsets are "
                           "drawn from.")
  test_split: str = _leaf("test", "string", "Split the probes are scored on.")
  tasks: Tuple[str, ...] = _leaf(TASK_NAMES, "strings", "Tasks: "
                                 "instrument_family, instrument, pitch.")
  num_labeled: Tuple[int, ...] = _leaf(
      (1000,), "ints", "Label regimes: labelled examples per probe, e.g. "
      "100,300,1000.")
  seeds: int = _leaf(3, "integer", "Number of seeds (subset, probe init); "
                     "mean and std over them.", check="positive")
  probe: ProbeConfig = _nested(ProbeConfig, key_prefix="probe_")
  batch_size: int = _leaf(64, "integer", "Notes per embedding batch.",
                          check="positive")
  architecture: Optional[EncoderConfig] = dataclasses.field(
      default=None, metadata=dict(help="", flag=None))
  encoder_seed: int = _leaf(0, "integer", "Initialisation seed of the random "
                            "encoder.")
  supervised: SupervisedConfig = _nested(SupervisedConfig,
                                         prefix="supervised_")
  progress: bool = _leaf(True, "bool", "Show progress bars.")
  skip_corrupt: bool = _leaf(
      False, "bool", "Read each TFRecord shard up to its first corrupt record "
      "and skip the rest (fewer notes) instead of stopping with an error "
      "naming the shard.")

  def validate(self):
    """Checks what can be checked without data; raises ValueError."""
    if not self.encoders:
      raise ValueError("--encoder is empty; pass a SavedModel path or one of "
                       f"{', '.join(ENCODER_WORDS)}.")
    if len(set(self.encoders)) != len(self.encoders):
      raise ValueError(
          f"--encoder lists an encoder twice: {','.join(self.encoders)}.")
    if not self.tasks:
      raise ValueError(f"--tasks is empty; choose from "
                       f"{', '.join(TASK_NAMES)}.")
    for task in self.tasks:
      if task not in TASK_NAMES:
        raise ValueError(f"Unknown task {task!r} in --tasks; choose from "
                         f"{', '.join(TASK_NAMES)}.")
    if len(set(self.tasks)) != len(self.tasks):
      raise ValueError(f"--tasks lists a task twice: {self.tasks}.")
    if not self.num_labeled:
      raise ValueError("--num_labeled is empty; pass e.g. 1000.")
    if len(set(self.num_labeled)) != len(self.num_labeled):
      raise ValueError(
          f"--num_labeled lists a regime twice: {list(self.num_labeled)}.")
    for num in self.num_labeled:
      if int(num) < 2:
        raise ValueError(
            f"--num_labeled={num}: each regime needs at least 2 labelled "
            "examples (one to fit, one to stop early on).")
    if self.seeds < 1:
      raise ValueError(f"--seeds={self.seeds} must be >= 1.")
    if self.batch_size < 1:
      raise ValueError(f"--batch_size={self.batch_size} must be >= 1.")
    check_fields(self.supervised, prefix="supervised_")
    self.probe.validate()
    if self.architecture is not None:
      self.architecture.validate()
    return self


# ------------------------------------------------------------------- flags


def define_flags(cls, flag_values=None, *, optional=False, help_prefix="",
                 exclude=()):
  """Defines one absl flag per flag-named leaf of `cls` (recursively).

  Args:
    cls: a config dataclass.
    flag_values: absl FlagValues (default: absl.flags.FLAGS).
    optional: every flag defaults to None ("not given"): for overrides such as
      eval.py's architecture flags.
    help_prefix: put before every help text.
    exclude: flag names not to define.

  Returns:
    The flag names defined.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  flag_values = flags.FLAGS if flag_values is None else flag_values
  definers = {"enum": flags.DEFINE_enum, "string": flags.DEFINE_string,
              "integer": flags.DEFINE_integer, "float": flags.DEFINE_float,
              "bool": flags.DEFINE_bool, "grid": flags.DEFINE_list,
              "ints": flags.DEFINE_list, "strings": flags.DEFINE_list}
  names = []
  for _, field, name in _leaves(cls):
    meta = field.metadata
    if _flag_name(field) is None or name in exclude:
      continue
    default = None if optional else field.default
    if meta["kind"] in ("grid", "ints", "strings") and default is not None:
      default = [str(v) for v in default]
    args = (name, default) + ((list(meta["choices"]),)
                              if meta["kind"] == "enum" else ())
    definers[meta["kind"]](*args, help_prefix + meta["help"],
                           flag_values=flag_values)
    names.append(name)
  return names


def _parse_list(name, kind, values):
  values = [v.strip() for v in values if v.strip()]
  if kind == "strings":
    return tuple(values)
  try:
    ints = tuple(int(v) for v in values)
  except ValueError:
    ints = None
  if kind == "grid" and (ints is None or len(ints) != 2):
    raise ValueError(f"--{name} must be two integers rows,cols, got "
                     f"{','.join(values)!r}.")
  if ints is None:
    raise ValueError(f"--{name}={','.join(values)} must be a comma list of "
                     "integers.")
  return ints


def flag_overrides(cls, flag_values=None, *, only_present=False):
  """{flat name: value} of the parsed flags of `cls`'s leaves.

  Args:
    cls: a config dataclass whose flags `define_flags` defined.
    flag_values: absl FlagValues (default: absl.flags.FLAGS).
    only_present: only flags with a value (those defined with optional=True
      default to None).

  Raises:
    ValueError: a malformed list flag (--grid, --num_labeled).
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  flag_values = flags.FLAGS if flag_values is None else flag_values
  values = {}
  for _, field, name in _leaves(cls):
    if _flag_name(field) is None or name not in flag_values:
      continue
    value = flag_values[name].value
    if only_present and value is None:
      continue
    if field.metadata["kind"] in ("grid", "ints", "strings") and (
        value is not None):
      value = _parse_list(name, field.metadata["kind"], value)
    values[name] = value
  return values


def from_flags(cls, flag_values=None, base=None):
  """A `cls` config from the parsed flags (over `base`'s other settings)."""
  values = flatten(base) if base is not None else {}
  values.update(flag_overrides(cls, flag_values))
  return unflatten(cls, values)


def main(argv):
  if argv[1:] == ["--paper_flags"]:
    print(paper_flagfile(), end="")
    return 0
  print("usage: python -m audio_perm.config --paper_flags", flush=True)
  return 2


if __name__ == "__main__":
  import sys  # pylint: disable=g-import-not-at-top
  sys.exit(main(sys.argv))
