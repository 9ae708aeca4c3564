"""The `supervised` baseline: the CFN trained from scratch on a labelled subset.

The paper's "Without Pretraining": the same encoder architecture, randomly
initialised, trained end to end with the probe's head (audio_perm.probe's
`build_head`, `make_targets`, `loss_function`) on the labelled subset alone.
The subset is split as for the probes (`probe.holdout_split`); the held-out
loss, checked every `SupervisedConfig.eval_every` steps, picks the step whose
weights are kept: ALL of them, BatchNorm moving statistics included.
"""

from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from audio_perm import config as config_lib
from audio_perm import export
from audio_perm import probe as probe_lib
from audio_perm.evaluation import encoders as encoders_lib


class SupervisedModel:
  """A CFN and head trained on a labelled subset; callable like a probe.

  `model(waveforms float32 [m, samples])` returns [m] predictions: original
  class ids (classification) or values in the target's units (regression).

  Attributes:
    encoder: keras.Model waveform [batch, samples] -> embedding [batch, dim],
      holding the best step's weights.
    head: keras.Sequential embedding -> outputs (probe.build_head).
    targets: the probe.Targets it was trained on (classes, scaling).
    steps_to_best: the step whose weights were kept (0: the initial ones).
  """

  def __init__(self, encoder, head, targets, num_samples, steps_to_best=0,
               batch_size=64):
    self.encoder = encoder
    self.head = head
    self.targets = targets
    self.steps_to_best = steps_to_best
    self._batch_size = batch_size
    self._outputs = tf.function(
        lambda waveforms: head(encoder(waveforms, training=False),
                               training=False),
        input_signature=[tf.TensorSpec([None, num_samples], tf.float32)])

  def outputs(self, waveforms):
    """Head outputs [m, output_dim] of waveforms float32 [m, samples]."""
    waveforms = np.asarray(waveforms, np.float32)
    chunks = [self._outputs(tf.constant(
        waveforms[i:i + self._batch_size])).numpy()
              for i in range(0, len(waveforms), self._batch_size)]
    return np.concatenate(chunks, axis=0)

  def __call__(self, waveforms):
    return self.targets.decode(self.outputs(waveforms))


def fit_supervised(audio, labels, task_type, seed, architecture,
                   probe_config: Optional[probe_lib.ProbeConfig] = None,
                   config: Optional[config_lib.SupervisedConfig] = None):
  """Trains the CFN and a probe-shaped head end to end on a labelled subset.

  Args:
    audio: float32 [n, samples] waveforms of the labelled subset.
    labels: [n] class ids (classification) or targets (regression).
    task_type: "classification" or "regression".
    seed: int; initialisation, split and minibatch order.
    architecture: export.EncoderConfig of the CFN.
    probe_config: the head: 2 hidden layers ("mlp") or none ("linear"), and
      the held-out share (default ProbeConfig()).
    config: SupervisedConfig (step budget; default SupervisedConfig()).

  Returns:
    A SupervisedModel holding the weights of the step with the lowest
    held-out loss.
  """
  if task_type not in probe_lib.TASK_TYPES:
    raise ValueError(f"Unknown task_type {task_type!r}; choose one of "
                     f"{probe_lib.TASK_TYPES}.")
  probe_config = probe_config or probe_lib.ProbeConfig()
  config = config or config_lib.SupervisedConfig()
  labels = np.asarray(labels)
  audio = np.asarray(audio, np.float32)
  fit_index, val_index = probe_lib.holdout_split(
      labels, probe_config.holdout_fraction, seed)
  num_samples = int(audio.shape[1])
  architecture = encoders_lib.checked_architecture(architecture, num_samples)
  keras.utils.set_random_seed(int(seed))  # Initial weights.
  encoder = export.build_waveform_model(architecture)
  targets = probe_lib.make_targets(labels, task_type, fit_index)
  # The probe's head, without its L2 penalty: nothing else in the CFN
  # trained end to end has one.
  head = probe_lib.build_head(architecture.embedding_dim, targets.output_dim,
                              probe_config, weight_decay=0.0)
  loss_fn = probe_lib.loss_function(task_type)
  variables = encoder.trainable_variables + head.trainable_variables
  optimizer = keras.optimizers.Adam(config.learning_rate)
  optimizer.build(variables)

  waveform_spec = tf.TensorSpec([None, num_samples], tf.float32)
  target_spec = tf.TensorSpec([None] + list(targets.values.shape[1:]),
                              tf.as_dtype(targets.values.dtype))

  @tf.function(input_signature=[waveform_spec, target_spec])
  def train_step(waveforms, target):
    with tf.GradientTape() as tape:
      outputs = head(encoder(waveforms, training=True), training=True)
      loss = loss_fn(target, outputs)
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

  model = SupervisedModel(encoder, head, targets, num_samples)

  def snapshot():
    # Every weight, not only the trainable ones: BatchNorm's moving mean and
    # variance must come from the same step as the kernels they normalise.
    return encoder.get_weights(), head.get_weights()

  rng = np.random.default_rng(seed)
  batch_size = min(config.batch_size, len(fit_index))
  order, position = rng.permutation(fit_index), 0
  best_loss, best_step = np.inf, 0
  best_weights = snapshot()
  val_audio = audio[val_index]
  val_targets = tf.constant(targets.values[val_index])
  for step in range(1, config.steps + 1):
    if position + batch_size > len(order):
      order, position = rng.permutation(fit_index), 0
    batch = order[position:position + batch_size]
    position += batch_size
    train_step(tf.constant(audio[batch]), tf.constant(targets.values[batch]))
    if step % config.eval_every == 0 or step == config.steps:
      val_loss = float(loss_fn(val_targets, model.outputs(val_audio)))
      if val_loss < best_loss:
        best_loss, best_step = val_loss, step
        best_weights = snapshot()
  encoder.set_weights(best_weights[0])
  head.set_weights(best_weights[1])
  model.steps_to_best = best_step
  return model
