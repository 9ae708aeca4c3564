"""An evaluation's settings: probe, supervised baseline, protocol."""

import dataclasses
from typing import Optional, Tuple

from audio_perm.config.fields import check_fields
from audio_perm.config.fields import leaf
from audio_perm.config.fields import nested
from audio_perm.config.model import EncoderConfig

PROBES = ("mlp", "linear")
TASK_NAMES = ("instrument_family", "instrument", "pitch")
ENCODER_WORDS = ("random", "handcrafted", "supervised")

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
  probe: str = leaf("mlp", "enum", "mlp: 3 dense layers (as in the paper); "
                     "linear: one.", choices=PROBES)
  hidden_units: int = leaf(512, "integer", "Width of the MLP probe's hidden "
                            "layers.", check="positive")
  learning_rate: Optional[float] = leaf(None, "float", "Probe learning rate.",
                                         flag=None, check="positive")
  batch_size: int = leaf(64, "integer", "Probe batch size.", flag=None,
                          check="positive")
  max_epochs: int = leaf(300, "integer", "Probe epochs at most (early "
                          "stopping on a held-out part of the labelled "
                          "subset).", check="positive")
  patience: int = leaf(20, "integer", "Probe epochs without improvement "
                        "before stopping.", check="positive")
  holdout_fraction: float = leaf(0.2, "float", "Held-out share.", flag=None,
                                  check="fraction")
  weight_decay: float = leaf(1e-4, "float", "L2 penalty.", flag=None,
                              check="nonnegative")
  variance_floor: float = leaf(1.0, "float", "Standardisation floor.",
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
  steps: int = leaf(
      300, "integer",
      "Training steps of each supervised (no pretraining) model: one per task "
      "head, regime and seed, so 4 x regimes x seeds models. Slow on CPU: "
      "about 4 s per step at batch 32 and width 0.25 on 2 busy cores, i.e. "
      "~20 min per model at 300 steps (measured at width 0.25, the "
      "default). The labelled notes' audio is held in memory "
      "(256 KB per note).", check="positive")
  batch_size: int = leaf(32, "integer", "Batch size of the supervised "
                          "baseline.", check="positive")
  learning_rate: float = leaf(1e-3, "float", "Adam learning rate of the "
                               "supervised baseline.", flag=None,
                               check="positive")
  eval_every: int = leaf(25, "integer", "Steps between held-out checks.",
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
  encoders: Tuple[str, ...] = leaf(
      ("handcrafted",), "strings", "Comma list of encoders: SavedModel paths "
      "(train.py --export_dir) and/or random, handcrafted, supervised.",
      flag="encoder")
  dataset: str = leaf("nsynth/full", "string", "TFDS dataset name, already "
                       "prepared in --data_dir (never downloaded).")
  data_dir: Optional[str] = leaf(None, "string", "TFDS data_dir of --dataset "
                                  "(default: TFDS's).")
  dataset_dir: Optional[str] = leaf(
      None, "string", "A TFDS folder dataset (python -m data_prep.render "
      "--output_dir=DIR); overrides --dataset/--data_dir.")
  train_split: str = leaf("train", "string", "Split the labelled subsets are "
                           "drawn from.")
  test_split: str = leaf("test", "string", "Split the probes are scored on.")
  tasks: Tuple[str, ...] = leaf(TASK_NAMES, "strings", "Tasks: "
                                 "instrument_family, instrument, pitch.")
  num_labeled: Tuple[int, ...] = leaf(
      (1000,), "ints", "Label regimes: labelled examples per probe, e.g. "
      "100,300,1000.")
  seeds: int = leaf(3, "integer", "Number of seeds (subset, probe init); "
                     "mean and std over them.", check="positive")
  probe: ProbeConfig = nested(ProbeConfig, key_prefix="probe_")
  batch_size: int = leaf(64, "integer", "Notes per embedding batch.",
                          check="positive")
  architecture: Optional[EncoderConfig] = dataclasses.field(
      default=None, metadata=dict(help="", flag=None))
  encoder_seed: int = leaf(0, "integer", "Initialisation seed of the random "
                            "encoder.")
  supervised: SupervisedConfig = nested(SupervisedConfig,
                                         prefix="supervised_")
  progress: bool = leaf(True, "bool", "Show progress bars.")
  skip_corrupt: bool = leaf(
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
