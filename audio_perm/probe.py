"""Probes on frozen embeddings: labelled subsets, label remapping, MLP/linear probes.

The evaluation protocol (the paper's, Section III): a frozen encoder turns every
note into an embedding; a small probe is trained on a few labelled examples of
the train split and scored on the test split. This module holds the parts that
only see arrays:

* `stratified_subset`: the labelled subset, drawn per seed, with each class
  represented in proportion to its frequency in the pool (largest remainder).
* `holdout_split`: the part of the labelled subset kept aside for early
  stopping. The test split is never used for training or model selection.
* `remap_labels`: sparse label ids (NSynth's instrument ids go up to 1005 with
  gaps) to dense indices; labels absent from the reference set map to -1.
* `make_targets`, `build_head`, `loss_function`, `decode_outputs`: a probe's
  targets (dense class indices, or standardised regression targets), its
  dense layers and loss, and the way back to label units; the supervised
  baseline (audio_perm.evaluation.supervised) trains the same head.
* `fit_probe`: a 3-layer MLP (`probe="mlp"`, as in the paper) or a linear model
  (`probe="linear"`) on standardised inputs, for classification or regression,
  trained with Adam in a compiled loop (one `tf.function` call per epoch) and
  early-stopped on the held-out part of the labelled subset.
* `accuracy`, `mean_squared_error`: the downstream metrics.

Test examples whose class never occurs in the labelled subset cannot be
predicted by a classifier trained on that subset; they still count, as errors,
so that accuracies are comparable across encoders and subsets.
"""

import collections
import dataclasses
from typing import Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from audio_perm import config as config_lib

PROBES = config_lib.PROBES
TASK_TYPES = ("classification", "regression")


def _as_1d(values, name):
  values = np.asarray(values)
  if values.ndim != 1:
    raise ValueError(
        f"{name} must be 1-D [num_examples], got shape {values.shape}.")
  return values


def remap_labels(reference_labels, *other_labels):
  """Maps sparse label ids to dense indices 0..num_classes-1.

  Args:
    reference_labels: [num_examples] labels defining the classes (sorted
      unique values become indices 0, 1, ...).
    *other_labels: further [num_other] label arrays mapped with the same
      table; values absent from `reference_labels` map to -1.

  Returns:
    (dense_reference [num_examples] int64, tuple of dense others (int64, -1 for
    unknown classes), classes [num_classes] the sorted original ids, such that
    classes[dense] == original wherever dense >= 0).
  """
  reference_labels = _as_1d(reference_labels, "reference_labels")
  classes, dense_reference = np.unique(reference_labels, return_inverse=True)
  dense_others = []
  for labels in other_labels:
    labels = _as_1d(labels, "labels")
    position = np.searchsorted(classes, labels)
    position = np.clip(position, 0, max(len(classes) - 1, 0))
    known = (classes[position] == labels) if len(classes) else np.zeros(
        labels.shape, bool)
    dense_others.append(np.where(known, position, -1).astype(np.int64))
  return dense_reference.astype(np.int64), tuple(dense_others), classes


def stratified_subset(labels, num_labeled, seed):
  """Draws `num_labeled` distinct indices, stratified by label.

  Each class c with n_c of the N pool examples gets floor(num_labeled * n_c / N)
  examples, and the remaining slots go to the classes with the largest
  fractional parts (ties broken at random): the largest-remainder rule, so
  every class count is within one of its proportional share. Within a class
  the examples are drawn uniformly without replacement. Deterministic for a
  seed.

  Args:
    labels: [N] labels of the pool (any values np.unique can sort; integers
      for the tasks here, including pitch).
    num_labeled: how many indices to draw, 1 <= num_labeled <= N.
    seed: int seed.

  Returns:
    int64 [num_labeled] distinct indices into `labels`, in random order.
  """
  labels = _as_1d(labels, "labels")
  num_examples = labels.shape[0]
  if not 1 <= num_labeled <= num_examples:
    raise ValueError(
        f"num_labeled={num_labeled} must be between 1 and the number of "
        f"examples available ({num_examples}); pass a smaller --num_labeled or "
        "use a larger split.")
  rng = np.random.default_rng(seed)
  _, dense, counts = np.unique(labels, return_inverse=True,
                               return_counts=True)
  quotas = num_labeled * counts / num_examples
  allocation = np.floor(quotas).astype(np.int64)
  remainder = num_labeled - int(allocation.sum())
  if remainder > 0:
    # Largest fractional part first; a random key breaks ties.
    fractions = quotas - allocation
    order = np.lexsort((rng.random(len(counts)), -fractions))
    allocation[order[:remainder]] += 1
  chosen = []
  for class_index, count in enumerate(allocation):
    if count:
      members = np.flatnonzero(dense == class_index)
      chosen.append(rng.choice(members, size=count, replace=False))
  chosen = np.concatenate(chosen).astype(np.int64)
  return rng.permutation(chosen)


def holdout_split(labels, holdout_fraction, seed):
  """Splits a labelled subset into a fitting part and an early-stopping part.

  The held-out part is itself stratified by label (`stratified_subset`) and has
  round(holdout_fraction * n) examples, at least 1; the fitting part keeps at
  least 1.

  Args:
    labels: [n] labels of the labelled subset, n >= 2.
    holdout_fraction: in (0, 1).
    seed: int seed.

  Returns:
    (fit_indices, holdout_indices), int64 arrays into `labels`, disjoint,
    covering all n.
  """
  labels = _as_1d(labels, "labels")
  num_examples = labels.shape[0]
  if not 0.0 < holdout_fraction < 1.0:
    raise ValueError(
        f"holdout_fraction={holdout_fraction} must be in (0, 1).")
  if num_examples < 2:
    raise ValueError(
        f"A labelled subset of {num_examples} example(s) cannot be split into "
        "a fitting part and an early-stopping part; use num_labeled >= 2.")
  num_holdout = int(round(holdout_fraction * num_examples))
  num_holdout = min(max(num_holdout, 1), num_examples - 1)
  holdout = stratified_subset(labels, num_holdout, seed)
  fit = np.setdiff1d(np.arange(num_examples), holdout)
  return fit.astype(np.int64), np.sort(holdout)


def accuracy(labels, predictions):
  """Fraction of exact matches. labels, predictions: [N] -> float."""
  labels = _as_1d(labels, "labels")
  predictions = _as_1d(predictions, "predictions")
  if labels.shape != predictions.shape or not labels.size:
    raise ValueError(
        f"accuracy needs two non-empty arrays of one shape, got {labels.shape} "
        f"and {predictions.shape}.")
  return float(np.mean(labels == predictions))


def mean_squared_error(targets, predictions):
  """Mean of (targets - predictions)^2. [N], [N] -> float."""
  targets = _as_1d(targets, "targets").astype(np.float64)
  predictions = _as_1d(predictions, "predictions").astype(np.float64)
  if targets.shape != predictions.shape or not targets.size:
    raise ValueError(
        "mean_squared_error needs two non-empty arrays of one shape, got "
        f"{targets.shape} and {predictions.shape}.")
  return float(np.mean((targets - predictions) ** 2))


ProbeConfig = config_lib.ProbeConfig


class FittedProbe:
  """A trained probe: its standardisation and its dense layers' weights.

  `predict(features [N, D])` returns [N] original label ids (classification)
  or float predictions in the target's units (regression). The forward pass
  (ReLU hidden layers, linear output) is evaluated in numpy.

  Attributes:
    weights: [kernel_1, bias_1, ..., kernel_L, bias_L] of the dense layers.
    classes: [num_classes] original ids of the output units (classification).
    epochs_trained, best_epoch: where training stopped and which epoch's
      weights were kept.
  """

  def __init__(self, weights, task_type, feature_mean, feature_scale,
               classes=None, target_mean=0.0, target_scale=1.0,
               epochs_trained=0, best_epoch=0):
    self.weights = [np.asarray(w, np.float32) for w in weights]
    self.task_type = task_type
    self.feature_mean = feature_mean
    self.feature_scale = feature_scale
    self.classes = classes
    self.target_mean = target_mean
    self.target_scale = target_scale
    self.epochs_trained = epochs_trained
    self.best_epoch = best_epoch

  def outputs(self, features):
    """Logits [N, num_classes] or standardised predictions [N, 1]."""
    features = np.asarray(features, np.float32)
    if features.ndim != 2 or features.shape[1] != self.feature_mean.shape[0]:
      raise ValueError(
          f"predict expects features [N, {self.feature_mean.shape[0]}], got "
          f"{features.shape}.")
    x = (features - self.feature_mean) / self.feature_scale
    num_layers = len(self.weights) // 2
    for layer in range(num_layers):
      x = x @ self.weights[2 * layer] + self.weights[2 * layer + 1]
      if layer < num_layers - 1:
        x = np.maximum(x, 0.0)
    return x

  def predict(self, features):
    return decode_outputs(self.outputs(features), self.task_type,
                          self.classes, self.target_mean, self.target_scale)


def standardization(features, variance_floor=1.0):
  """Per-feature (mean, scale) for standardising inputs.

  scale_j = sqrt(var_j + variance_floor * mean_k var_k); a scale of 0 (all
  features constant) becomes 1.

  Args:
    features: float [n, dim].
    variance_floor: >= 0, in units of the mean feature variance.

  Returns:
    (mean float32 [dim], scale float32 [dim]).
  """
  features = np.asarray(features, np.float64)
  mean = features.mean(axis=0)
  variance = features.var(axis=0)
  scale = np.sqrt(variance + variance_floor * variance.mean())
  scale = np.where(scale > 1e-12, scale, 1.0)
  return mean.astype(np.float32), scale.astype(np.float32)


# ------------------------------------------- heads and targets (shared with
# evaluation.supervised, which trains the same head on a CFN end to end)


@dataclasses.dataclass(frozen=True)
class Targets:
  """What a head is trained to output, and the way back to label units.

  Attributes:
    task_type: "classification" or "regression".
    values: int32 [n] dense class indices (classification) or float32 [n, 1]
      standardised targets (regression).
    output_dim: outputs of the head: the number of classes, or 1.
    classes: [num_classes] original ids of the output units (classification);
      None for regression.
    mean, scale: regression targets are (label - mean) / scale, statistics of
      the fitting part; 0 and 1 for classification.
  """
  task_type: str
  values: np.ndarray
  output_dim: int
  classes: Optional[np.ndarray] = None
  mean: float = 0.0
  scale: float = 1.0

  def decode(self, outputs):
    """Head outputs [N, output_dim] -> predictions [N] (decode_outputs)."""
    return decode_outputs(outputs, self.task_type, self.classes, self.mean,
                          self.scale)


def make_targets(labels, task_type, fit_index):
  """The training targets of a labelled subset.

  Classification: labels remapped to dense indices (`remap_labels`).
  Regression: labels standardised with the mean and standard deviation of the
  fitting part (a standard deviation of 0 becomes 1).

  Args:
    labels: [n] class ids or numeric targets.
    task_type: "classification" or "regression".
    fit_index: int [n_fit] indices of the fitting part.

  Returns:
    A Targets.
  """
  labels = _as_1d(labels, "labels")
  if task_type == "classification":
    dense, _, classes = remap_labels(labels)
    return Targets(task_type, dense.astype(np.int32), len(classes), classes)
  if task_type != "regression":
    raise ValueError(
        f"Unknown task_type {task_type!r}; choose one of {TASK_TYPES}.")
  values = labels.astype(np.float64)
  mean = float(values[fit_index].mean())
  scale = float(values[fit_index].std()) or 1.0
  standardised = ((values - mean) / scale).astype(np.float32)[:, None]
  return Targets(task_type, standardised, 1, None, mean, scale)


def decode_outputs(outputs, task_type, classes=None, target_mean=0.0,
                   target_scale=1.0):
  """Head outputs -> predictions in the labels' units.

  Args:
    outputs: [N, num_classes] logits or [N, 1] standardised predictions.
    task_type: "classification" or "regression".
    classes: [num_classes] original ids (classification).
    target_mean, target_scale: the regression targets' standardisation.

  Returns:
    [N] original class ids, or float64 [N] predictions in target units.
  """
  if task_type == "classification":
    return classes[np.argmax(outputs, axis=-1)]
  return np.asarray(outputs)[:, 0].astype(np.float64) * target_scale + (
      target_mean)


def loss_function(task_type):
  """The head's training loss: cross-entropy on logits, or MSE."""
  if task_type == "classification":
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  return keras.losses.MeanSquaredError()


def build_head(input_dim, output_dim, config, weight_decay=None):
  """The probe's dense layers: [batch, input_dim] -> [batch, output_dim].

  Two hidden ReLU layers of config.hidden_units and a linear output
  (config.probe == "mlp"), or the output layer alone ("linear").

  Args:
    input_dim: features per example.
    output_dim: number of classes, or 1 for regression.
    config: a ProbeConfig.
    weight_decay: L2 penalty on the kernels (in the model's `losses`);
      None: config.weight_decay.

  Returns:
    A keras.Sequential, built (it starts with a keras.Input).
  """
  if weight_decay is None:
    weight_decay = config.weight_decay
  regularizer = keras.regularizers.L2(weight_decay) if weight_decay else None
  layers = [keras.Input((input_dim,))]
  num_hidden = 2 if config.probe == "mlp" else 0
  for _ in range(num_hidden):
    layers.append(keras.layers.Dense(config.hidden_units, activation="relu",
                                     kernel_regularizer=regularizer))
  layers.append(keras.layers.Dense(output_dim, kernel_regularizer=regularizer))
  return keras.Sequential(layers)


class _Trainer:
  """A probe model, its optimizer and its compiled epoch, reused across fits.

  Tracing the epoch function costs more than training a small probe, so one
  trainer is kept per (shape, task type, probe settings) and re-initialised
  for every fit (`reset`): its weights from the fit's seed, the optimizer's
  moments and step count to zero. A fit with a given seed thus starts from the
  same state whether the trainer is new or reused.
  """

  def __init__(self, input_dim, output_dim, task_type, config):
    self.model = build_head(input_dim, output_dim, config)
    self.dense_layers = [layer for layer in self.model.layers
                         if isinstance(layer, keras.layers.Dense)]
    self.loss_fn = loss_function(task_type)
    if task_type == "classification":
      target_spec = tf.TensorSpec([None], tf.int32)
    else:
      target_spec = tf.TensorSpec([None, 1], tf.float32)
    self.optimizer = keras.optimizers.Adam(config.effective_learning_rate)
    self.optimizer.build(self.model.trainable_variables)
    self.batch_size = config.batch_size
    feature_spec = tf.TensorSpec([None, input_dim], tf.float32)
    self.run_epoch = tf.function(
        self._run_epoch,
        input_signature=[feature_spec, target_spec, feature_spec, target_spec,
                         tf.TensorSpec([None], tf.int32)])

  def reset(self, seed):
    for index, layer in enumerate(self.dense_layers):
      is_output = index == len(self.dense_layers) - 1
      initializer = keras.initializers.GlorotUniform(
          seed=seed + (100 if is_output else index))
      layer.kernel.assign(initializer(layer.kernel.shape))
      layer.bias.assign(np.zeros(layer.bias.shape, np.float32))
    for variable in self.optimizer.variables:
      if not variable.path.endswith("learning_rate"):
        variable.assign(np.zeros(variable.shape, variable.dtype))

  def _run_epoch(self, x_fit, y_fit, x_val, y_val, order):
    model, batch_size = self.model, self.batch_size
    num_batches = (tf.shape(order)[0] + batch_size - 1) // batch_size
    for batch in tf.range(num_batches):
      index = order[batch * batch_size:(batch + 1) * batch_size]
      with tf.GradientTape() as tape:
        loss = self.loss_fn(tf.gather(y_fit, index),
                            model(tf.gather(x_fit, index), training=True))
        if model.losses:
          loss += tf.add_n(model.losses)
      gradients = tape.gradient(loss, model.trainable_variables)
      self.optimizer.apply_gradients(
          zip(gradients, model.trainable_variables))
    return self.loss_fn(y_val, model(x_val, training=False))


_TRAINERS = collections.OrderedDict()
_MAX_TRAINERS = 16


def _trainer(input_dim, output_dim, task_type, config):
  key = (input_dim, output_dim, task_type, config.probe, config.hidden_units,
         config.effective_learning_rate, config.batch_size,
         config.weight_decay)
  if key in _TRAINERS:
    _TRAINERS.move_to_end(key)
  else:
    _TRAINERS[key] = _Trainer(input_dim, output_dim, task_type, config)
    while len(_TRAINERS) > _MAX_TRAINERS:
      _TRAINERS.popitem(last=False)
  return _TRAINERS[key]


def _train(trainer, x_fit, y_fit, x_val, y_val, config, seed):
  """Minibatch Adam with early stopping on the held-out loss.

  One epoch (every minibatch of a shuffled pass) is a single tf.function call,
  which keeps the per-epoch overhead to a few milliseconds.

  Returns:
    (weights of the best epoch (list of numpy arrays), epochs_trained,
    best_epoch).
  """
  trainer.reset(seed)
  model = trainer.model
  x_fit, y_fit = tf.constant(x_fit), tf.constant(y_fit)
  x_val, y_val = tf.constant(x_val), tf.constant(y_val)
  rng = np.random.default_rng(seed)
  num_fit = int(x_fit.shape[0])
  best_loss = np.inf
  best_weights = model.get_weights()
  best_epoch = 0
  epoch = 0
  for epoch in range(1, config.max_epochs + 1):
    order = tf.constant(rng.permutation(num_fit), tf.int32)
    val_loss = float(trainer.run_epoch(x_fit, y_fit, x_val, y_val, order))
    if val_loss < best_loss:
      best_loss, best_epoch = val_loss, epoch
      best_weights = model.get_weights()
    elif epoch - best_epoch >= config.patience:
      break
  return best_weights, epoch, best_epoch


def fit_probe(features, labels, task_type, seed=0,
              config: Optional[ProbeConfig] = None) -> FittedProbe:
  """Trains a probe on a labelled subset.

  The subset is split (stratified, `holdout_split`) into a fitting part and a
  held-out part for early stopping; inputs are standardised with the fitting
  part's statistics (`standardization`); regression targets are standardised
  likewise and predictions mapped back to the target's units.

  Args:
    features: float [n, dim] embeddings of the labelled subset.
    labels: [n] integer class ids (classification; any sparse ids: they are
      remapped to dense indices internally) or numeric targets (regression).
    task_type: "classification" or "regression".
    seed: int; fixes the split, the initialisation and the minibatch order.
    config: a ProbeConfig (defaults when None).

  Returns:
    A FittedProbe.
  """
  config = (config or ProbeConfig()).validate()
  if task_type not in TASK_TYPES:
    raise ValueError(
        f"Unknown task_type {task_type!r}; choose one of {TASK_TYPES}.")
  features = np.asarray(features, np.float32)
  labels = _as_1d(labels, "labels")
  if features.ndim != 2 or features.shape[0] != labels.shape[0]:
    raise ValueError(
        f"features must be [n, dim] with n == len(labels) = {labels.shape[0]}, "
        f"got {features.shape}.")
  if not np.all(np.isfinite(features)):
    raise ValueError(
        "The embeddings contain NaN or infinite values; the encoder is broken "
        "or its input was not audio.")

  fit_index, val_index = holdout_split(labels, config.holdout_fraction, seed)
  feature_mean, feature_scale = standardization(features[fit_index],
                                                config.variance_floor)
  standardised = (features - feature_mean) / feature_scale

  targets = make_targets(labels, task_type, fit_index)
  trainer = _trainer(features.shape[1], targets.output_dim, task_type, config)
  weights, epochs_trained, best_epoch = _train(
      trainer, standardised[fit_index], targets.values[fit_index],
      standardised[val_index], targets.values[val_index], config, seed)
  return FittedProbe(weights, task_type, feature_mean, feature_scale,
                     classes=targets.classes, target_mean=targets.mean,
                     target_scale=targets.scale,
                     epochs_trained=epochs_trained, best_epoch=best_epoch)


def score(task_type, labels, predictions):
  """The metric of a task type: {"accuracy": float} or {"mse": float}."""
  if task_type == "classification":
    return {"accuracy": accuracy(labels, predictions)}
  return {"mse": mean_squared_error(labels, predictions)}


def fit_and_score(train_features, train_labels, test_features, test_labels,
                  task_type, seed=0, config=None):
  """fit_probe on the labelled subset, then its metric on the test split.

  Args:
    train_features: [n, dim] embeddings of the labelled subset.
    train_labels: [n] its labels.
    test_features: [m, dim] embeddings of the test split.
    test_labels: [m] its labels (original ids; classes never seen in the
      labelled subset count as errors).
    task_type: "classification" or "regression".
    seed, config: as fit_probe.

  Returns:
    {"accuracy": float} or {"mse": float}.
  """
  fitted = fit_probe(train_features, train_labels, task_type, seed, config)
  return score(task_type, test_labels, fitted.predict(test_features))


def summarize(values: Sequence[float]) -> Tuple[float, float]:
  """(mean, sample standard deviation) of per-seed values; std 0 for one."""
  values = np.asarray(values, np.float64)
  if not values.size:
    raise ValueError("summarize needs at least one value.")
  std = float(values.std(ddof=1)) if values.size > 1 else 0.0
  return float(values.mean()), std
