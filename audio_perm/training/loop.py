"""The training stack: config, model/optimizer under a strategy, the loop.

`TrainConfig` holds every setting of a pretraining run (train.py's flags map
one to one onto its fields). `train(config)` runs it:

  1. validates the config (ValueError naming the bad value);
  2. checks model_dir: its flags.json (the resolved config, written by the
     chief) must match this config except for the RUNTIME_FIELDS (how long,
     how often, on what hardware); a different run is refused unless
     `overwrite=True`, which deletes it;
  3. builds the CFN pretext model, the optimizer and a step counter inside
     `strategy.scope()` and restores the latest checkpoint (step, model,
     optimizer state) if there is one;
  4. trains with a custom loop: one `tf.function` call runs
     `steps_per_execution` steps (a tf.range loop around `strategy.run`),
     each replica computing its per-example losses on its share of the batch
     and dividing their sum by the GLOBAL batch size, so that the gradients,
     which the optimizer all-reduces with a SUM over replicas, are those of
     the mean loss over the global batch whatever the number of replicas;
  5. every `checkpoint_every` steps writes a checkpoint (tf.train.
     CheckpointManager, the last 3 kept), so a killed run restarted with the
     same command resumes and loses at most one interval; logs TensorBoard
     scalars (loss, partial_ranks_accuracy, learning_rate,
     examples_per_second) every `log_every` steps and images of a shuffled,
     a re-ordered (by the predicted ranks) and the original spectrogram every
     `image_every` steps under model_dir/train; shows a Keras progress bar;
  6. exports the encoder as a SavedModel (audio_perm.export) to export_dir.

A finished run (checkpoint step >= train_steps) is not retrained; it is only
re-exported when the export is missing or older than the checkpoint.

The input pipeline is not checkpointed: a resumed run starts a fresh pipeline
whose shuffling seed is derived from (seed, step), so it does not replay the
examples of the first interval.

Multi-worker: every worker runs the same code. The chief (worker 0) writes
flags.json, summaries, checkpoints in model_dir and the export; the others
write their checkpoints (which they must, since saving takes part in the
collective protocol) to model_dir/.worker_<id> and delete them at the end.
"""

import dataclasses
import inspect
import json
import math
import os
import shutil
import time
from typing import Optional, Tuple

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from audio_perm import distribute
from audio_perm import export as export_lib
from audio_perm import models
from audio_perm import objectives as objectives_lib
from audio_perm import patches as patches_lib
from audio_perm import permutations

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
FLAGS_FILENAME = "flags.json"
EXPORT_INFO_FILENAME = "export_info.json"
# Fields that may change between a run and its resumption: they say how long,
# how often and on what hardware, not what is learned.
RUNTIME_FIELDS = ("model_dir", "export_dir", "train_steps",
                  "steps_per_execution", "checkpoint_every", "log_every",
                  "image_every", "strategy", "tpu", "jit_compile", "verbose",
                  "skip_corrupt")


# The default architecture and frontend come from export.EncoderConfig, the
# one place they are written: eval.py's `random` and `supervised` baselines
# (built from EncoderConfig() when no SavedModel is listed) then match what
# `python train.py` trains by default.
_ENCODER_DEFAULTS = export_lib.EncoderConfig()


@dataclasses.dataclass
class TrainConfig:
  """A pretraining run; see train.py for each field's meaning.

  The architecture fields (patching, num_patches, grid, crop_frames, width,
  embedding_dim, normalization) default to export.EncoderConfig's.
  """
  data_dir: Optional[str] = None
  train_pattern: Optional[str] = None
  model_dir: str = os.path.join("runs", "default")
  export_dir: Optional[str] = None
  patching: str = _ENCODER_DEFAULTS.patching
  num_patches: int = _ENCODER_DEFAULTS.num_patches
  grid: Optional[Tuple[int, int]] = _ENCODER_DEFAULTS.grid
  # A training augmentation: each example is a random crop of crop_frames
  # spectrogram frames. The encoder's patch shape follows it, so the export
  # (and evaluation) feed the CENTRED crop of the same length.
  crop_frames: Optional[int] = _ENCODER_DEFAULTS.crop_frames
  objective: str = "perturbed_fy"
  regularization: str = "l2"
  regularization_strength: float = 1.0
  num_permutations: int = 100
  perturbation_samples: int = 100
  perturbation_sigma: float = 1.0
  batch_size: int = 16
  learning_rate: float = 1e-3
  optimizer: str = "adam"
  train_steps: int = 300
  steps_per_execution: int = 1
  checkpoint_every: int = 50
  log_every: int = 10
  image_every: int = 50
  width: float = _ENCODER_DEFAULTS.width
  embedding_dim: int = _ENCODER_DEFAULTS.embedding_dim
  normalization: str = _ENCODER_DEFAULTS.normalization
  strategy: str = "auto"
  tpu: Optional[str] = None
  mixed_precision: bool = False
  jit_compile: bool = False
  seed: int = 0
  verbose: bool = True
  # Read each TFRecord file up to its first corrupt record and skip the rest
  # (data.pretext_dataset(skip_corrupt=True)); a runtime setting, so a run
  # stopped by a corrupt file resumes with it.
  skip_corrupt: bool = False

  def __post_init__(self):
    if self.grid is not None and not isinstance(self.grid, tuple):
      self.grid = tuple(self.grid)

  @property
  def resolved_export_dir(self):
    return self.export_dir or os.path.join(self.model_dir, "encoder")

  def encoder_config(self):
    """The EncoderConfig (architecture + frontend) of this run."""
    return export_lib.EncoderConfig(
        patching=self.patching, num_patches=self.num_patches, grid=self.grid,
        width=self.width, embedding_dim=self.embedding_dim,
        normalization=self.normalization, crop_frames=self.crop_frames)

  def to_dict(self):
    values = dataclasses.asdict(self)
    values["grid"] = list(self.grid) if self.grid is not None else None
    return values

  @classmethod
  def from_dict(cls, values):
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})

  def validate(self, check_data=True):
    """Raises ValueError, naming the bad value, for settings that make no sense.

    Also checks that the patches fit the spectrogram and, with `check_data`,
    that the data source exists.
    """
    for name in ("num_patches", "batch_size", "train_steps",
                 "steps_per_execution", "checkpoint_every", "log_every",
                 "image_every", "embedding_dim", "num_permutations",
                 "perturbation_samples"):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    for name in ("learning_rate", "width", "regularization_strength",
                 "perturbation_sigma"):
      value = getattr(self, name)
      if not (isinstance(value, (int, float)) and value > 0
              and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number, got {value!r}.")
    if self.crop_frames is not None and (
        not isinstance(self.crop_frames, int)
        or isinstance(self.crop_frames, bool) or self.crop_frames <= 0):
      raise ValueError(f"crop_frames must be a positive integer or None, got "
                       f"{self.crop_frames!r}.")
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got "
                       f"{self.optimizer!r}.")
    if self.normalization not in models.NORMALIZATIONS:
      raise ValueError(f"normalization must be one of {models.NORMALIZATIONS},"
                       f" got {self.normalization!r}.")
    if self.strategy not in distribute.STRATEGIES:
      raise ValueError(f"strategy must be one of {distribute.STRATEGIES}, got"
                       f" {self.strategy!r}.")
    if self.grid is not None and self.patching != "time_frequency":
      raise ValueError(f"grid={list(self.grid)} only applies to "
                       f"patching=time_frequency, not {self.patching!r}; drop "
                       f"--grid or use --patching=time_frequency.")
    # Patch shape (raises for unknown schemes, grids that do not multiply to
    # num_patches and more patches than bins/frames).
    self.encoder_config().patch_shape()
    objectives_lib.make_objective(
        self.objective, self.num_patches, regularization=self.regularization,
        regularization_strength=self.regularization_strength,
        perturbation_samples=self.perturbation_samples,
        perturbation_sigma=self.perturbation_sigma,
        num_permutations=self.num_permutations,
        permutation_set=np.zeros((1, self.num_patches), np.int32))
    if (self.objective == "classification"
        and self.num_permutations > math.factorial(self.num_patches)):
      raise ValueError(
          f"num_permutations={self.num_permutations} exceeds the "
          f"{self.num_patches}! = {math.factorial(self.num_patches)} "
          f"permutations of num_patches={self.num_patches}; use at most "
          "that many.")
    if self.data_dir and self.train_pattern:
      raise ValueError(f"Give either data_dir ({self.data_dir!r}) or "
                       f"train_pattern ({self.train_pattern!r}), not both.")
    if check_data:
      check_data_source(self.data_dir, self.train_pattern)

  def ignored_settings(self, explicitly_set=()):
    """Messages for settings given explicitly that this objective ignores."""
    ignored = {
        "perturbation_samples": "perturbed_fy",
        "perturbation_sigma": "perturbed_fy",
        "regularization": "soft_rank",
        "regularization_strength": "soft_rank",
        "num_permutations": "classification",
    }
    return [f"--{name} is ignored: it only applies to --objective={used}, "
            f"not {self.objective}."
            for name, used in ignored.items()
            if name in explicitly_set and self.objective != used]


def check_data_source(data_dir, train_pattern):
  """ValueError saying how to make the data when it is missing."""
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
  if not tf.io.gfile.isdir(data_dir) or not tf.io.gfile.exists(
      os.path.join(data_dir, "dataset_info.json")):
    raise ValueError(
        f"data_dir={data_dir!r} is not a dataset folder (no "
        f"dataset_info.json); make one with `python -m data_prep.render "
        f"--output_dir={data_dir}`, or omit --data_dir to use the default "
        f"dataset.")


def make_optimizer(name, learning_rate):
  """A Keras optimizer by name, with a constant learning rate."""
  if name == "adam":
    return keras.optimizers.Adam(learning_rate)
  if name == "adamw":
    return keras.optimizers.AdamW(learning_rate)
  if name == "sgd":
    return keras.optimizers.SGD(learning_rate, momentum=0.9)
  if name == "rmsprop":
    return keras.optimizers.RMSprop(learning_rate)
  raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}.")


def mixed_precision_policy():
  """"mixed_float16" on GPUs, "mixed_bfloat16" on CPUs and TPUs."""
  if tf.config.list_logical_devices("GPU"):
    return "mixed_float16"
  return "mixed_bfloat16"


def make_dataset_fn(config, permutation_set=None):
  """input_context -> per-replica tf.data.Dataset of (patches, target)."""
  from audio_perm import data  # pylint: disable=g-import-not-at-top
  target = ("classification" if config.objective == "classification"
            else "ranks")

  def dataset_fn(input_context, seed=config.seed):
    # batch_size is the GLOBAL batch: pretext_dataset batches by
    # input_context.get_per_replica_batch_size(batch_size) itself.
    return data.pretext_dataset(
        data_dir=config.data_dir, file_pattern=config.train_pattern,
        split="train", batch_size=config.batch_size, patching=config.patching,
        num_patches=config.num_patches, grid=config.grid,
        crop_frames=config.crop_frames, target=target,
        permutation_set=permutation_set, shuffle=True, seed=seed,
        input_context=input_context, repeat=True,
        skip_corrupt=config.skip_corrupt)

  return dataset_fn


class Trainer:
  """Model, optimizer, checkpoint and the distributed train function.

  Args:
    config: TrainConfig (validated by the caller).
    strategy: tf.distribute.Strategy (default: the default strategy).
    patch_shape: optional (patch_frames, patch_bins) overriding the frontend's
      (synthetic inputs in tests and benchmarks; such a model cannot export).
  """

  def __init__(self, config, strategy=None, patch_shape=None):
    self.config = config
    self.strategy = strategy or tf.distribute.get_strategy()
    self.objective = objectives_lib.make_objective(
        config.objective, config.num_patches,
        regularization=config.regularization,
        regularization_strength=config.regularization_strength,
        perturbation_samples=config.perturbation_samples,
        perturbation_sigma=config.perturbation_sigma,
        num_permutations=config.num_permutations, permutation_seed=0)
    self.encoder_config = config.encoder_config()
    self.global_batch_size = config.batch_size
    distribute.per_replica_batch_size(self.strategy, config.batch_size)
    if (config.jit_compile and config.normalization == "batch"
        and self.strategy.num_replicas_in_sync > 1):
      raise ValueError(
          "jit_compile with normalization=batch over "
          f"{self.strategy.num_replicas_in_sync} replicas: synchronised "
          "BatchNorm cannot all-reduce inside an XLA cluster; use "
          "normalization=example or no jit_compile.")
    previous_policy = keras.mixed_precision.global_policy()
    if config.mixed_precision:
      keras.mixed_precision.set_global_policy(mixed_precision_policy())
    try:
      with self.strategy.scope():
        keras.utils.set_random_seed(config.seed)
        if patch_shape is None:
          self.encoder = self.encoder_config.build_keras_encoder()
        else:
          self.encoder = models.build_encoder(
              config.num_patches, patch_shape, width=config.width,
              embedding_dim=config.embedding_dim,
              normalization=config.normalization)
        self.model = models.build_pretext_model(self.encoder,
                                                self.objective.head_size)
        optimizer = make_optimizer(config.optimizer, config.learning_rate)
        if keras.mixed_precision.global_policy().name == "mixed_float16":
          optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        self.optimizer = optimizer
        self.optimizer.build(self.model.trainable_variables)
        self.step = tf.Variable(
            0, dtype=tf.int64, trainable=False, name="step",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    finally:
      keras.mixed_precision.set_global_policy(previous_policy)
    # The trainable weights reach the checkpoint through the optimizer (the
    # backbone's nested layer lists are not tracked as checkpoint children);
    # the variables no optimizer holds, BatchNorm's moving statistics, are
    # listed by path, so that a resumed run and --export_only get them too.
    # Models without any keep the checkpoint layout they always had.
    extra = {}
    statistics = {v.path: v for v in self.model.non_trainable_variables}
    if statistics:
      extra["non_trainable"] = statistics
    self.checkpoint = tf.train.Checkpoint(
        model=self.model, optimizer=self.optimizer, step=self.step, **extra)
    self._train_function = None

  # --- the step -------------------------------------------------------------

  def _compute(self, patches, target, seed):
    """Loss (mean over the GLOBAL batch), gradients, summed accuracy."""
    with tf.GradientTape() as tape:
      outputs = self.model(patches, training=True)
      per_example_loss = self.objective.loss(outputs, target, seed=seed)
      # Divide by the GLOBAL batch, not this replica's: the optimizer SUMS the
      # replicas' gradients, so the update is that of the global mean loss
      # for any number of replicas (a per-replica mean would scale it by the
      # replica count).
      loss = tf.nn.compute_average_loss(
          per_example_loss, global_batch_size=self.global_batch_size)
      scaled_loss = loss
      if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
        scaled_loss = self.optimizer.scale_loss(loss)
    grads = tape.gradient(scaled_loss, self.model.trainable_variables)
    accuracy = tf.reduce_sum(self.objective.accuracy(outputs, target)) / (
        self.global_batch_size)
    return loss, grads, accuracy

  def _replica_step(self, batch, step):
    patches, target = batch
    ctx = tf.distribute.get_replica_context()
    # Distinct perturbation noise per step and replica, reproducible.
    seed = tf.stack([tf.cast(self.config.seed, tf.int64),
                     step * 1024 + tf.cast(ctx.replica_id_in_sync_group,
                                           tf.int64)])
    loss, grads, accuracy = self._compute_fn(patches, target, seed)
    self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
    return loss, accuracy

  def train_function(self):
    """tf.function(iterator, num_steps) -> (mean loss, mean accuracy).

    Runs num_steps (a scalar int32 tensor, so no retracing) optimisation
    steps on the global batches drawn from the distributed iterator.
    """
    if self._train_function is not None:
      return self._train_function
    # XLA compiles the forward and backward pass of one replica; the
    # optimizer update (which all-reduces gradients across replicas) stays
    # outside. Without XLA the computation is inlined into the outer
    # tf.function: a nested one would forbid cross-replica syncs inside it
    # (synchronised BatchNorm).
    self._compute_fn = (tf.function(self._compute, jit_compile=True)
                        if self.config.jit_compile else self._compute)
    strategy = self.strategy

    @tf.function
    def train_steps(iterator, num_steps):
      loss_sum = tf.constant(0.0)
      accuracy_sum = tf.constant(0.0)
      for _ in tf.range(num_steps):
        batch = next(iterator)
        loss, accuracy = strategy.run(self._replica_step,
                                      args=(batch, self.step.read_value()))
        # Each replica's value is already divided by the global batch.
        loss_sum += strategy.reduce(tf.distribute.ReduceOp.SUM, loss, None)
        accuracy_sum += strategy.reduce(tf.distribute.ReduceOp.SUM, accuracy,
                                        None)
        self.step.assign_add(1)
      count = tf.cast(num_steps, tf.float32)
      return loss_sum / count, accuracy_sum / count

    self._train_function = train_steps
    return train_steps

  def distributed_iterator(self, dataset_fn):
    """Iterator of per-replica batches from dataset_fn(input_context)."""
    return iter(distribute.distribute_dataset(self.strategy, dataset_fn))

  # --- checkpoints and export ------------------------------------------------

  def restore(self, model_dir):
    """Restores the latest checkpoint of model_dir; returns its step (0)."""
    latest = tf.train.latest_checkpoint(model_dir)
    if latest is None:
      return 0
    status = self.checkpoint.restore(latest)
    try:
      status.assert_existing_objects_matched()
    except AssertionError:
      if "non_trainable" in {name.split("/", 1)[0] for name, _ in
                             tf.train.list_variables(latest)}:
        raise
      raise ValueError(
          f"Checkpoint {latest!r} holds no BatchNorm moving statistics (it "
          "was written before they were checkpointed), so it cannot be "
          "resumed or re-exported faithfully; its encoder/ export, written "
          "at the end of training, is complete. Retrain with --overwrite to "
          "resume from checkpoints.") from None
    return int(self.step.numpy())

  def export(self, export_dir):
    """Writes the encoder SavedModel from an undistributed float32 copy."""
    clone = self.encoder_config.build_keras_encoder()
    clone.set_weights([np.asarray(w) for w in self.encoder.get_weights()])
    c = self.encoder_config
    return export_lib.export_encoder(
        clone, export_dir, c.patching, c.num_patches, c.grid, c.crop_frames,
        c.num_samples, config=c)

  # --- images --------------------------------------------------------------

  def spectrogram_images(self, patches, target):
    """Images [3, bins', frames', 1] in [0, 1]: shuffled, re-ordered, original.

    Args:
      patches: float [batch, n, h, w, 1] shuffled patches (the first example
        is drawn).
      target: the batch's target.
    """
    patches = patches[:1]
    target = target[:1]
    outputs = self.model(patches, training=False)
    predicted = self.objective.predicted_ranks(outputs)
    true = self.objective.target_ranks(target)
    shuffled = patches[..., 0]  # [1, n, h, w]
    grid = self.encoder_config.grid
    scheme = self.encoder_config.patching
    views = [shuffled,
             permutations.unshuffle_patches(shuffled, predicted),
             permutations.unshuffle_patches(shuffled, true)]
    images = tf.concat(
        [patches_lib.assemble_patches(v, scheme, grid) for v in views],
        axis=0)  # [3, frames, bins]
    images = tf.reverse(tf.transpose(images, [0, 2, 1]), axis=[1])
    low = tf.reduce_min(images)
    images = (images - low) / (tf.reduce_max(images) - low + 1e-6)
    return images[..., tf.newaxis]  # [3, bins, frames, 1], low freq at bottom


def _plugin_metadata(plugin_name):
  metadata = summary_pb2.SummaryMetadata()
  metadata.plugin_data.plugin_name = plugin_name
  return metadata


def write_scalar(name, value, step):
  """A TensorBoard scalar through core TF (tensorboard need not be installed).

  Writes what tf.summary.scalar writes: a float32 scalar tagged for the
  "scalars" plugin, to the default summary writer.
  """
  return tf.summary.write(name, tf.constant(value, tf.float32), step=step,
                          metadata=_plugin_metadata("scalars"))


def write_images(name, images, step):
  """TensorBoard images ([k, height, width, 1] in [0, 1]) through core TF.

  The tensor is what tf.summary.image writes: [width, height, png...] strings
  tagged for the "images" plugin.
  """
  images = tf.convert_to_tensor(images)
  encoded = tf.map_fn(
      lambda image: tf.io.encode_png(
          tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0),
                  tf.uint8)),
      images, fn_output_signature=tf.string)
  shape = tf.shape(images)
  tensor = tf.concat([tf.strings.as_string([shape[2], shape[1]]), encoded],
                     axis=0)
  return tf.summary.write(name, tensor, step=step,
                          metadata=_plugin_metadata("images"))


def _read_json(path):
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _write_json(path, values):
  with tf.io.gfile.GFile(path, "w") as f:
    json.dump(values, f, indent=2, sort_keys=True)


def check_model_dir(config, overwrite=False, write=True):
  """Refuses a model_dir that holds a different run; writes flags.json.

  Args:
    config: TrainConfig.
    overwrite: delete a different run found in model_dir instead of refusing.
    write: write flags.json (the chief only).

  Raises:
    ValueError: model_dir holds a run whose flags differ (other than
      RUNTIME_FIELDS), listing the differences.
  """
  path = os.path.join(config.model_dir, FLAGS_FILENAME)
  if tf.io.gfile.exists(path):
    saved = _read_json(path)
    current = config.to_dict()
    diffs = [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}"
             for k in sorted(set(saved) | set(current))
             if k not in RUNTIME_FIELDS and saved.get(k) != current.get(k)]
    if diffs:
      if not overwrite:
        raise ValueError(
            f"model_dir={config.model_dir!r} holds a run with different "
            f"flags ({'; '.join(diffs)}); use another --model_dir, or "
            f"--overwrite to delete that run.")
      if write:
        shutil.rmtree(config.model_dir)
  elif (overwrite and write and tf.io.gfile.exists(config.model_dir)
        and tf.train.latest_checkpoint(config.model_dir)):
    shutil.rmtree(config.model_dir)
  if write:
    tf.io.gfile.makedirs(config.model_dir)
    _write_json(path, config.to_dict())


def _export_is_current(export_dir, step):
  info = os.path.join(export_dir, EXPORT_INFO_FILENAME)
  return (tf.io.gfile.exists(os.path.join(export_dir, "saved_model.pb"))
          and tf.io.gfile.exists(info) and _read_json(info).get("step") == step)


def _export(trainer, config, step, log):
  export_dir = config.resolved_export_dir
  trainer.export(export_dir)
  _write_json(os.path.join(export_dir, EXPORT_INFO_FILENAME),
              {"step": step, "model_dir": config.model_dir})
  log(f"Exported the encoder (step {step}) to {export_dir}")
  return export_dir


def train(config, strategy=None, *, dataset_fn=None, overwrite=False,
          export_only=False, log=print):
  """Runs (or resumes, or just exports) a pretraining run.

  Args:
    config: TrainConfig.
    strategy: a tf.distribute.Strategy; None builds one from config.strategy.
    dataset_fn: optional input_context -> dataset of (patches, target)
      per-replica batches (default: audio_perm.data.pretext_dataset over
      config's data); it may take a `seed` keyword, set per resumption.
    overwrite: replace a different run found in model_dir.
    export_only: only export the latest checkpoint, with the architecture
      recorded in model_dir's flags.json when there is one (config then only
      gives model_dir and export_dir).
    log: function for one-line messages.

  Returns:
    dict: step (final), history (list of dicts of the logged scalars),
    export_dir (or None if this task does not export), trained (bool),
    trainer (the Trainer, holding model, encoder and optimizer).

  Raises:
    ValueError: bad settings, missing data, a model_dir holding another run,
      or export_only without a checkpoint.
  """
  saved_flags = os.path.join(config.model_dir, FLAGS_FILENAME)
  if export_only and tf.io.gfile.exists(saved_flags):
    # Export what was trained: the run's own flags, only where to export
    # coming from this call.
    config = TrainConfig.from_dict(dict(
        _read_json(saved_flags), model_dir=config.model_dir,
        export_dir=config.export_dir, verbose=config.verbose))
  config.validate(check_data=dataset_fn is None and not export_only)
  if strategy is None:
    strategy = distribute.get_strategy(config.strategy, config.tpu)
  chief = distribute.is_chief(strategy)
  if not export_only:
    check_model_dir(config, overwrite=overwrite, write=chief)
  trainer = Trainer(config, strategy)
  step = trainer.restore(config.model_dir)
  result = dict(step=step, history=[], export_dir=None, trained=False,
                trainer=trainer)
  if export_only:
    if step == 0:
      raise ValueError(f"--export_only: model_dir={config.model_dir!r} has no "
                       "checkpoint; train first.")
    if chief:
      result["export_dir"] = _export(trainer, config, step, log)
    return result
  if step >= config.train_steps:
    log(f"Run in {config.model_dir} already trained ({step} steps >= "
        f"train_steps={config.train_steps}); not training.")
    if chief:
      if _export_is_current(config.resolved_export_dir, step):
        log(f"Export at {config.resolved_export_dir} is up to date.")
        result["export_dir"] = config.resolved_export_dir
      else:
        result["export_dir"] = _export(trainer, config, step, log)
    return result
  if step:
    log(f"Resuming from the checkpoint at step {step} in {config.model_dir}.")

  if dataset_fn is None:
    dataset_fn = make_dataset_fn(config, trainer.objective.permutation_set)
  try:
    resumed_fn = _with_seed(dataset_fn, config.seed * 1_000_003 + step)
  except TypeError:
    resumed_fn = dataset_fn
  iterator = trainer.distributed_iterator(resumed_fn)
  train_fn = trainer.train_function()

  task_type, task_id = distribute.task_info(strategy)
  checkpoint_dir = (config.model_dir if chief else os.path.join(
      config.model_dir, f".worker_{task_type}_{task_id}"))
  manager = tf.train.CheckpointManager(trainer.checkpoint, checkpoint_dir,
                                       max_to_keep=3)
  writer = (tf.summary.create_file_writer(os.path.join(config.model_dir,
                                                       "train"))
            if chief else tf.summary.create_noop_writer())
  progbar = (keras.utils.Progbar(config.train_steps, stateful_metrics=[
      "loss", "partial_ranks_accuracy", "examples_per_second"])
             if chief and config.verbose else None)
  image_batch = None
  log_loss = log_accuracy = 0.0
  log_count = 0
  log_start = time.perf_counter()
  while step < config.train_steps:
    # One execution never crosses a checkpoint or log boundary.
    chunk = min(config.steps_per_execution, config.train_steps - step,
                config.checkpoint_every - step % config.checkpoint_every,
                config.log_every - step % config.log_every)
    loss, accuracy = train_fn(iterator, tf.constant(chunk, tf.int32))
    loss, accuracy = float(loss), float(accuracy)
    step += chunk
    log_loss += loss * chunk
    log_accuracy += accuracy * chunk
    log_count += chunk
    if not math.isfinite(loss):
      raise FloatingPointError(
          f"Loss is {loss} at step {step}; lower --learning_rate.")
    if step % config.log_every == 0 or step == config.train_steps:
      elapsed = time.perf_counter() - log_start
      scalars = {
          "loss": log_loss / log_count,
          "partial_ranks_accuracy": log_accuracy / log_count,
          "learning_rate": float(keras.ops.convert_to_numpy(
              trainer.optimizer.learning_rate)),
          "examples_per_second": log_count * config.batch_size / elapsed,
      }
      with writer.as_default():
        for name, value in scalars.items():
          write_scalar(name, value, step)
      result["history"].append(dict(step=step, **scalars))
      if progbar is not None:
        progbar.update(step, [(k, v) for k, v in scalars.items()
                              if k != "learning_rate"])
      log_loss = log_accuracy = 0.0
      log_count = 0
      log_start = time.perf_counter()
    if chief and (step % config.image_every == 0
                  or step == config.train_steps):
      if image_batch is None:
        image_batch = next(iter(dataset_fn(tf.distribute.InputContext())))
      images = trainer.spectrogram_images(*image_batch)
      with writer.as_default():
        write_images("spectrogram/shuffled_reordered_original", images, step)
    if step % config.checkpoint_every == 0 or step == config.train_steps:
      manager.save(checkpoint_number=step)
  writer.flush()
  result.update(step=step, trained=True)
  if not chief:
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return result
  result["export_dir"] = _export(trainer, config, step, log)
  return result


def _with_seed(dataset_fn, seed):
  """dataset_fn with its `seed` keyword bound (TypeError if it has none)."""
  if "seed" not in inspect.signature(dataset_fn).parameters:
    raise TypeError("dataset_fn takes no seed")

  def seeded(input_context):
    return dataset_fn(input_context, seed=seed)

  return seeded


def load_trained_encoder(model_dir):
  """(keras encoder, EncoderConfig) of a run, from flags.json + checkpoint.

  Args:
    model_dir: a train.py model_dir.

  Raises:
    ValueError: no flags.json or no checkpoint in model_dir.
  """
  path = os.path.join(model_dir, FLAGS_FILENAME)
  if not tf.io.gfile.exists(path):
    raise ValueError(f"{model_dir!r} has no {FLAGS_FILENAME}: not a train.py "
                     "model_dir.")
  config = TrainConfig.from_dict(_read_json(path))
  config.model_dir = model_dir
  trainer = Trainer(config, tf.distribute.get_strategy())
  if trainer.restore(model_dir) == 0:
    raise ValueError(f"{model_dir!r} has no checkpoint.")
  return trainer.encoder, trainer.encoder_config

