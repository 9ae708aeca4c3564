"""The model, optimizer, checkpoint and distributed step of a pretraining run.

`Trainer(config, strategy)` builds, inside `strategy.scope()`, the CFN pretext
model (models.build_encoder + build_pretext_model), the optimizer and a step
counter, and one `tf.train.Checkpoint(model, optimizer, step)` over them:
every variable of the model is tracked under `model/` (the backbone's blocks
are attributes, not lists), so a model-only restore works and nothing is
saved by path.

The step: each replica computes its per-example losses on its share of the
batch and divides their sum by the GLOBAL batch size; the optimizer
all-reduces the gradients with a SUM, so the update is that of the mean loss
over the global batch for any number of replicas. With init_decay, the
penalty init_decay/2 * sum((w - w0)^2) towards the initial weights joins the
loss that is differentiated (not the one reported); so do, with
variance_penalty / covariance_penalty, VICReg's terms on the backbone's
per-patch features (training.penalties). With frozen_blocks, conv blocks
1..N stay at their initialisation (models.freeze_blocks); with
random_kernels, the last N blocks' convolution kernels do, their BatchNorm
still training (models.keep_random_kernels). With pitch_copies
K, each batch holds groups of K pitch-shifted copies of a note
(audio_perm.pitch) and pitch_weight times a loss on the copies' pitch
scores joins the differentiated loss: pitch_loss "rank", their ranking loss
(the pretext objective's ranking over K items; soft_rank when the pretext
is classification), or "shift", score differences that must equal the
shift differences (audio_perm.pitch.shift_loss). With pitch_pretext "note"
the pretext's batch holds the notes as they are and the copies come as a
second batch that only the pitch term sees, normalised by BatchNorm's
moving statistics; with "note_batch" by their own batch's statistics,
without updating the moving ones (models.batch_statistics_only).
"""

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from audio_perm import config as config_lib
from audio_perm import distribute
from audio_perm import export as export_lib
from audio_perm import models
from audio_perm import objectives as objectives_lib
from audio_perm import patches as patches_lib
from audio_perm import permutations
from audio_perm import pitch as pitch_lib
from audio_perm.training import penalties

OPTIMIZERS = config_lib.OPTIMIZERS


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


def enable_determinism():
  """Deterministic ops, and one inter-op thread, for this whole process.

  Op determinism alone left two 300-step runs of the default recipe apart
  (max weight difference 0.18 after 20 steps, on 2 CPU cores): independent
  ops running concurrently on the inter-op pool change the order of
  floating-point work. With one inter-op thread (each op still uses the
  intra-op threads) the runs were bit-identical. The thread count can only
  be set before TensorFlow runs its first op: call this early (train.py does)
  or set TF_NUM_INTEROP_THREADS=1 in the environment.
  """
  tf.config.experimental.enable_op_determinism()
  if tf.config.threading.get_inter_op_parallelism_threads() == 1:
    return
  try:
    tf.config.threading.set_inter_op_parallelism_threads(1)
  except RuntimeError:
    logging.warning(
        "deterministic: TensorFlow was already running with several inter-op "
        "threads, so this run may differ from another in the last bits; set "
        "TF_NUM_INTEROP_THREADS=1 before starting for bit-identical runs.")


def onednn_enabled():
  """Whether TensorFlow runs its oneDNN CPU kernels (None if unknown)."""
  try:
    from tensorflow.python.util import _pywrap_util_port  # pylint: disable=g-import-not-at-top,g-direct-tensorflow-import
    return bool(_pywrap_util_port.IsMklEnabled())
  except (ImportError, AttributeError):
    return None


def warn_if_onednn_off():
  """One warning when training on CPU without TensorFlow's oneDNN kernels."""
  if tf.config.list_logical_devices("GPU") or onednn_enabled() is not False:
    return
  logging.warning(
      "TensorFlow's oneDNN CPU kernels are off (TF_ENABLE_ONEDNN_OPTS=0, or "
      "TensorFlow was imported before audio_perm): training steps take about "
      "2x longer; import audio_perm first or set TF_ENABLE_ONEDNN_OPTS=1.")


def multi_replica_determinism_warning(num_replicas):
  """The warning for --deterministic on several CPU replicas with oneDNN on.

  Two 2-replica runs of the same seed with oneDNN's kernels differed in the
  last bits once in a few tries (the replicas' ops share the intra-op
  threads); with TF_ENABLE_ONEDNN_OPTS=0 they are bit-identical
  (tests/training/test_determinism.py). None when this does not apply.
  """
  if (num_replicas < 2 or tf.config.list_logical_devices("GPU") or
      not onednn_enabled()):
    return None
  return (f"deterministic: {num_replicas} CPU replicas with TensorFlow's "
          "oneDNN kernels may differ from another run in the last bits; set "
          "TF_ENABLE_ONEDNN_OPTS=0 before starting for bit-identical "
          "multi-replica runs (steps about 2x slower).")


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
    if config.deterministic:
      enable_determinism()
    warn_if_onednn_off()
    self.strategy = strategy or tf.distribute.get_strategy()
    if config.deterministic:
      warning = multi_replica_determinism_warning(
          self.strategy.num_replicas_in_sync)
      if warning:
        logging.warning(warning)
    self.objective = objectives_lib.from_config(
        config.objective, config.frontend.num_patches)
    self.encoder_config = config.encoder
    self.global_batch_size = config.batch_size
    distribute.per_replica_batch_size(self.strategy, config.batch_size)
    config.check_pitch_copies(self.strategy.num_replicas_in_sync)
    self.pitch_copies = config.augment.pitch_copies
    self.pitch_objective = (self.make_pitch_objective(config)
                            if self.pitch_copies else None)
    if (config.jit_compile and config.encoder.normalization == "batch"
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
        self.model, self.encoder = self.build_model(config, patch_shape,
                                                    self.objective)
        optimizer = make_optimizer(config.optimizer.name,
                                   config.optimizer.learning_rate)
        if keras.mixed_precision.global_policy().name == "mixed_float16":
          optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        self.optimizer = optimizer
        self.optimizer.build(self.model.trainable_variables)
        self.step = tf.Variable(
            0, dtype=tf.int64, trainable=False, name="step",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.anchors = (self._make_anchors(self.model)
                        if config.optimizer.init_decay else None)
        # Mean pitch-ranking accuracy of the last train_function call (not
        # checkpointed).
        self.pitch_accuracy = tf.Variable(
            0.0, trainable=False, name="pitch_accuracy",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    finally:
      keras.mixed_precision.set_global_policy(previous_policy)
    # Every model variable (BatchNorm statistics included) is tracked under
    # model/; the optimizer's slots under optimizer/; with init_decay the
    # initial weights under anchors/ (a resumed run pulls towards the first
    # initialisation, not towards the weights it resumed from).
    tracked = dict(model=self.model, optimizer=self.optimizer, step=self.step)
    if self.anchors is not None:
      tracked["anchors"] = self.anchors
    self.checkpoint = tf.train.Checkpoint(**tracked)
    self._train_function = None
    self._finite_function = None

  @staticmethod
  def build_model(config, patch_shape=None, objective=None):
    """(pretext model, encoder) of `config`, seeded by config.seed.

    Args:
      config: TrainConfig.
      patch_shape: optional (patch_frames, patch_bins) instead of the
        frontend's.
      objective: the objectives.Objective (default: from config).
    """
    if objective is None:
      objective = objectives_lib.from_config(config.objective,
                                             config.frontend.num_patches)
    keras.utils.set_random_seed(config.seed)
    encoder = config.encoder.build_keras_encoder(patch_shape=patch_shape)
    models.freeze_blocks(encoder, config.optimizer.frozen_blocks)
    models.keep_random_kernels(encoder, config.optimizer.random_kernels)
    return models.build_pretext_model(
        encoder, objective.head_size,
        with_features=config.optimizer.uses_features,
        with_pitch=bool(config.augment.pitch_copies),
        pitch_features=config.optimizer.pitch_features), encoder

  @staticmethod
  def make_pitch_objective(config):
    """The ranking objective of the pitch copies (K items)."""
    settings = config.objective
    name = "soft_rank" if settings.name == "classification" else settings.name
    return objectives_lib.make_objective(
        name, config.augment.pitch_copies,
        regularization=settings.regularization,
        regularization_strength=settings.regularization_strength,
        perturbation_samples=settings.perturbation_samples,
        perturbation_sigma=settings.perturbation_sigma)

  def split_outputs(self, outputs):
    """(head outputs, features or None, pitch scores [batch] or None)."""
    if not (self.config.optimizer.uses_features or self.pitch_copies):
      return outputs, None, None
    outputs = list(outputs)
    head = outputs.pop(0)
    features = outputs.pop(0) if self.config.optimizer.uses_features else None
    pitch_scores = outputs.pop(0)[:, 0] if self.pitch_copies else None
    return head, features, pitch_scores

  @staticmethod
  def _make_anchors(model):
    """A tf.Module holding a frozen copy of each trainable weight, in order."""
    anchors = tf.Module(name="anchors")
    anchors.values = [
        tf.Variable(tf.identity(v.value), trainable=False,
                    name=v.path.replace("/", "_") + "_init")
        for v in model.trainable_variables]
    return anchors

  def init_penalty(self):
    """init_decay/2 * sum((w - w0)^2) over the trainable weights (float32)."""
    total = tf.add_n([
        tf.reduce_sum(tf.square(tf.cast(v.value, tf.float32) - anchor))
        for v, anchor in zip(self.model.trainable_variables,
                             self.anchors.values)])
    return 0.5 * self.config.optimizer.init_decay * total

  def scores(self, patches, training=False):
    """The pretext head's outputs [batch, head_size] (without the features
    the model also returns when a feature penalty is on)."""
    return self.split_outputs(self.model(patches, training=training))[0]

  def feature_penalty(self, features):
    """variance_penalty * variance + covariance_penalty * covariance terms
    (training.penalties) of the per-patch features [batch, n, d]."""
    variance, covariance = penalties.variance_covariance(features)
    optimizer = self.config.optimizer
    return (optimizer.variance_penalty * variance
            + optimizer.covariance_penalty * covariance)

  # --- the step -------------------------------------------------------------

  def pitch_loss(self, pitch_scores, pitch_shifts, seed):
    """(pitch_weight * the copies' term (pitch_loss: rank or shift) over the
    GLOBAL number of notes, the summed partial-ranks accuracy of the scores
    over this replica's notes).

    pitch_scores: float32 [batch]; pitch_shifts: float [batch], the copies'
    shifts in semitones (any values that order them will do for the rank
    loss), groups of pitch_copies consecutive examples.
    """
    copies = self.pitch_copies
    scores = tf.reshape(pitch_scores, [-1, copies])
    shifts = tf.reshape(tf.cast(pitch_shifts, tf.float32), [-1, copies])
    target = pitch_lib.shift_ranks(shifts)
    if self.config.optimizer.pitch_loss == "shift":
      per_note = pitch_lib.shift_loss(scores, shifts)
    else:
      per_note = self.pitch_objective.loss(scores, target, seed=seed)
    loss = tf.nn.compute_average_loss(
        per_note, global_batch_size=self.global_batch_size // copies)
    accuracy = tf.reduce_sum(self.pitch_objective.accuracy(scores, target))
    return self.config.optimizer.pitch_weight * loss, accuracy

  def copy_outputs(self, copy_patches):
    """The model's outputs on the second batch of copies
    (--pitch_pretext=note or note_batch), without updating BatchNorm's
    moving statistics."""
    if self.config.augment.pitch_pretext == "note_batch":
      with models.batch_statistics_only(self.model):
        return self.model(copy_patches, training=True)
    return self.model(copy_patches, training=False)

  def _compute(self, patches, target, seed, pitch_shifts=None,
               copy_patches=None):
    """Loss (mean over the GLOBAL batch), gradients, summed accuracy, and
    the pitch term's summed accuracy over the global number of notes (0
    without pitch copies). With copy_patches (--pitch_pretext=note or
    note_batch), the pitch scores are those of copy_patches, normalised by
    BatchNorm's moving statistics (note) or by their own batch's (note_batch),
    and the moving statistics are not updated by them; else those of
    patches."""
    pitch_accuracy = tf.constant(0.0)
    with tf.GradientTape() as tape:
      outputs, features, pitch_scores = self.split_outputs(
          self.model(patches, training=True))
      if copy_patches is not None:
        pitch_scores = self.split_outputs(self.copy_outputs(copy_patches))[2]
      per_example_loss = self.objective.loss(outputs, target, seed=seed)
      # Divide by the GLOBAL batch, not this replica's: the optimizer SUMS the
      # replicas' gradients, so the update is that of the global mean loss
      # for any number of replicas (a per-replica mean would scale it by the
      # replica count).
      loss = tf.nn.compute_average_loss(
          per_example_loss, global_batch_size=self.global_batch_size)
      scaled_loss = loss
      if self.anchors is not None:
        # Once per update: each replica adds its 1/replicas share, and the
        # optimizer sums the replicas' gradients. The reported loss stays
        # the pretext loss.
        scaled_loss += tf.nn.scale_regularization_loss(self.init_penalty())
      if self.config.optimizer.uses_features:
        # On the global batch's patches (penalties sums the statistics over
        # the replicas); each replica adds its 1/replicas share.
        scaled_loss += tf.nn.scale_regularization_loss(
            self.feature_penalty(features))
      if self.pitch_copies:
        pitch_term, pitch_accuracy = self.pitch_loss(
            pitch_scores, pitch_shifts, tf.reverse(seed, [0]))
        scaled_loss += pitch_term
        pitch_accuracy /= self.global_batch_size // self.pitch_copies
      if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
        scaled_loss = self.optimizer.scale_loss(scaled_loss)
    grads = tape.gradient(scaled_loss, self.model.trainable_variables)
    accuracy = tf.reduce_sum(self.objective.accuracy(outputs, target)) / (
        self.global_batch_size)
    return loss, grads, accuracy, pitch_accuracy

  def _replica_step(self, batch, step):
    patches, target = batch[0], batch[1]
    pitch_shifts = copy_patches = None
    if self.pitch_copies:
      # (patches, target, shifts), or with --pitch_pretext=note/note_batch
      # (patches, target, copies' patches, shifts).
      pitch_shifts = batch[-1]
      if self.config.augment.pitch_pretext != "copies":
        if len(batch) != 4:
          raise ValueError(
              f"--pitch_pretext={self.config.augment.pitch_pretext} needs "
              "batches of (patches, target, copies' patches, shifts), got "
              f"{len(batch)} elements; make_dataset_fn builds them.")
        copy_patches = batch[2]
    ctx = tf.distribute.get_replica_context()
    # Distinct perturbation noise per step and replica, reproducible.
    seed = tf.stack([tf.cast(self.config.seed, tf.int64),
                     step * 1024 + tf.cast(ctx.replica_id_in_sync_group,
                                           tf.int64)])
    loss, grads, accuracy, pitch_accuracy = self._compute_fn(
        patches, target, seed, pitch_shifts, copy_patches)
    self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
    return loss, accuracy, pitch_accuracy

  def train_function(self):
    """tf.function(iterator, num_steps) -> (mean loss, mean accuracy).

    With pitch copies, the mean pitch-ranking accuracy of the call is left in
    self.pitch_accuracy.

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
      pitch_sum = tf.constant(0.0)
      for _ in tf.range(num_steps):
        batch = next(iterator)
        loss, accuracy, pitch_accuracy = strategy.run(
            self._replica_step, args=(batch, self.step.read_value()))
        if self.pitch_copies:  # No extra all-reduce per step without them.
          pitch_sum += strategy.reduce(tf.distribute.ReduceOp.SUM,
                                       pitch_accuracy, None)
        # Each replica's value is already divided by the global batch.
        loss_sum += strategy.reduce(tf.distribute.ReduceOp.SUM, loss, None)
        accuracy_sum += strategy.reduce(tf.distribute.ReduceOp.SUM, accuracy,
                                        None)
        self.step.assign_add(1)
      count = tf.cast(num_steps, tf.float32)
      if self.pitch_copies:
        self.pitch_accuracy.assign(pitch_sum / count)
      return loss_sum / count, accuracy_sum / count

    self._train_function = train_steps
    return train_steps

  def weights_are_finite(self):
    """True when every model variable (weights and BatchNorm statistics) is
    finite. A loss can stay finite while an overflowing update has already
    turned the weights into NaN (the ranking layer saturates), so the loop
    checks both before it logs or saves a checkpoint."""
    if self._finite_function is None:
      variables = list(self.model.variables)

      @tf.function
      def finite():
        return tf.reduce_all([tf.reduce_all(tf.math.is_finite(v))
                              for v in variables])

      self._finite_function = finite
    return bool(self._finite_function())

  def distributed_iterator(self, dataset_fn):
    """Iterator of per-replica batches from dataset_fn(input_context)."""
    return iter(distribute.distribute_dataset(self.strategy, dataset_fn))

  # --- checkpoints and export ------------------------------------------------

  def restore(self, model_dir):
    """Restores the latest checkpoint of model_dir; returns its step (0)."""
    from audio_perm.training import checkpoints  # pylint: disable=g-import-not-at-top
    return checkpoints.restore_latest(self.checkpoint, self.step, model_dir)

  def export(self, export_dir):
    """Writes the encoder SavedModel from an undistributed float32 copy."""
    clone = self.encoder_config.build_keras_encoder()
    clone.set_weights([np.asarray(w) for w in self.encoder.get_weights()])
    return export_lib.export_encoder(clone, export_dir, self.encoder_config)

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
    outputs = self.scores(patches)
    predicted = self.objective.predicted_ranks(outputs)
    true = self.objective.target_ranks(target)
    shuffled = patches[..., 0]  # [1, n, h, w]
    grid = self.encoder_config.frontend.grid
    scheme = self.encoder_config.frontend.patching
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


