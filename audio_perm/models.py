"""Context-free network (CFN) encoder, heads and the pretext model.

The CFN (Noroozi & Favaro 2016) applies ONE convolutional backbone, with
shared weights, to every patch of a shuffled spectrogram, concatenates the
per-patch features in the order the patches are shown, and feeds them to two
fully connected layers; a head then gives one score per patch (ranking
objectives) or one logit per permutation of a fixed set (classification).

  patches [B, n, h, w, 1]
    -> per-example standardisation over all patches (order-invariant)
    -> PatchBackbone, shared over the n patches          -> [B, n, C5]
    -> flatten in presentation order                      -> [B, n * C5]
    -> fc1 = the EMBEDDING (Dense + ReLU)                 -> [B, embedding_dim]
    -> fc2 (Dense + ReLU)                                 -> [B, hidden_dim]
    -> head (Dense, float32)                              -> [B, head_size]

`build_encoder` returns the part up to fc1 (what downstream tasks use, with the
patches in their natural order); `build_pretext_model` stacks fc2 and the head
on an encoder. The custom layers are registered Keras serializables, and every
sublayer is an attribute of its parent (PatchBackbone.block1..block5, each a
ConvBlock with conv/norm/relu/pool), so `tf.train.Checkpoint(model=model)`
saves every variable, BatchNorm moving statistics included, under `model/`.

The backbone is AlexNet-like and sized for spectrogram patches: a 10-band
frequency patch of a 398 x 513 spectrogram is 398 frames x 51 bins, a 10-slice
time patch 39 x 513, a 2 x 5 time-frequency tile 79 x 256. Every convolution
and pooling uses "same" padding and the stack ends in a global average pool, so
the same code serves every scheme and any patch size >= 1 x 1.

Normalisation after each convolution (`NORMALIZATIONS`):
  * "batch" (default): synchronised BatchNorm (statistics over every patch of
    the global batch, all-reduced over replicas under tf.distribute, so 1 or
    N replicas give the same update; moving averages at inference). The
    statistics do not depend on the order of the patches and keep each
    example's own levels.
  * "example": each channel is standardised over ALL the patches of one
    example (positions of every patch), then scaled and shifted by learned
    per-channel factors. Order-invariant too, keeps the relative level of
    the patches and never mixes examples (replicas share nothing), but it
    removes every example's per-channel mean and scale at every layer, the
    way instance normalisation removes style: pretrained embeddings kept
    less of the instrument (docs/results.md, "Why").
  * "none": no normalisation (convolutions with biases).
"""

import contextlib

import keras
from keras import ops
import tensorflow as tf

from audio_perm import config as config_lib

# AlexNet's conv channels (conv1..conv5); `width` multiplies them.
BASE_CHANNELS = (96, 256, 384, 384, 256)
# (kernel, stride, max-pool after) for conv1..conv5.
_CONV_LAYOUT = ((5, 2, True), (5, 1, True), (3, 1, False), (3, 1, False),
                (3, 1, False))
NORMALIZATIONS = config_lib.NORMALIZATIONS
assert len(BASE_CHANNELS) == len(_CONV_LAYOUT) == config_lib.NUM_BLOCKS


def backbone_channels(width):
  """Channels of conv1..conv5 for a width multiplier (at least 1 each)."""
  if not width > 0:
    raise ValueError(f"width must be > 0, got {width!r}; e.g. 1.0 for the "
                     "AlexNet-sized backbone, 0.25 for a small CPU model.")
  return tuple(max(1, int(round(c * width))) for c in BASE_CHANNELS)


@keras.saving.register_keras_serializable(package="audio_perm")
class ExampleStandardization(keras.layers.Layer):
  """Standardises each example over all of its patches, or each patch.

  scope="example": the mean and standard deviation are taken over every
  patch of an example, so they do not depend on the order the patches are
  shown in and the relative level of the patches (which tells frequency
  bands apart) is kept. scope="patch": over each patch on its own, so no
  patch's level or spread is left to order it by.

  Input/output: [batch, num_patches, height, width, channels].
  """

  def __init__(self, epsilon=1e-3, scope="example", **kwargs):
    kwargs.setdefault("dtype", "float32")
    super().__init__(**kwargs)
    if scope not in config_lib.STANDARDIZATIONS:
      raise ValueError(f"scope must be one of {config_lib.STANDARDIZATIONS}, "
                       f"got {scope!r}.")
    self.epsilon = epsilon
    self.scope = scope

  def call(self, patches):
    first = 1 if self.scope == "example" else 2
    axes = tuple(range(first, len(patches.shape)))
    mean = ops.mean(patches, axis=axes, keepdims=True)
    var = ops.var(patches, axis=axes, keepdims=True)
    return (patches - mean) * ops.rsqrt(var + self.epsilon)

  def get_config(self):
    config = super().get_config()
    config.update(epsilon=self.epsilon, scope=self.scope)
    return config


@keras.saving.register_keras_serializable(package="audio_perm")
class ExampleNormalization(keras.layers.Layer):
  """Per-channel standardisation over all the patches of each example.

  Input/output: [batch * num_patches, height, width, channels], the patches of
  an example being consecutive (as PatchBackbone lays them out). Statistics
  are taken per example and channel over (patches, height, width), then a
  learned per-channel scale and offset are applied.
  """

  def __init__(self, num_patches, epsilon=1e-3, **kwargs):
    super().__init__(**kwargs)
    self.num_patches = num_patches
    self.epsilon = epsilon

  def build(self, input_shape):
    channels = input_shape[-1]
    self.gamma = self.add_weight(shape=(channels,), initializer="ones",
                                 name="gamma")
    self.beta = self.add_weight(shape=(channels,), initializer="zeros",
                                name="beta")

  def call(self, x):
    height, width, channels = x.shape[1:]
    dtype = x.dtype
    x = ops.cast(x, "float32")
    x = ops.reshape(x, (-1, self.num_patches, height, width,
                        channels))  # [B, n, h, w, c]
    mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
    var = ops.var(x, axis=(1, 2, 3), keepdims=True)
    x = (x - mean) * ops.rsqrt(var + self.epsilon)
    x = ops.reshape(x, (-1, height, width, channels))  # [B*n, h, w, c]
    x = x * ops.cast(self.gamma, "float32") + ops.cast(self.beta, "float32")
    return ops.cast(x, dtype)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    config = super().get_config()
    config.update(num_patches=self.num_patches, epsilon=self.epsilon)
    return config


@keras.saving.register_keras_serializable(package="audio_perm")
class SyncBatchNormalization(keras.layers.BatchNormalization):
  """Synchronised BatchNorm with TensorFlow's fused kernel on one replica.

  The same layer, weights and update as
  `keras.layers.BatchNormalization(synchronized=True)`: in training the
  statistics are taken over the GLOBAL batch (all-reduced over replicas) and
  the moving averages follow `moving = momentum * moving + (1 - momentum) *
  batch` with the biased batch variance. On one replica there is nothing to
  all-reduce, and the statistics, normalisation and gradients run in
  `tf.nn.fused_batch_norm` (FusedBatchNormV3 and its gradient, with oneDNN on
  CPU) instead of a dozen elementwise ops and reductions: 3x faster forward +
  backward on conv1's output ([160, 199, 26, 12], benchmarks/train.py). The
  two paths agree to float32 rounding (tests/test_models.py). Inference
  (moving statistics) runs the same kernel in inference mode, on any number
  of replicas: one op instead of Keras's elementwise chain.

  `use_fused_kernel = False` (class attribute) forces the plain path
  everywhere: benchmarks/train.py times the two against each other.

  `update_moving_statistics = False` (per layer; `batch_statistics_only`
  sets it over a model while a call is traced) normalises in training by
  the batch's statistics, all-reduced as above, and leaves the moving
  averages untouched: a second batch of different inputs (the pitch copies
  of --pitch_pretext=note_batch) is normalised as in training without
  moving the statistics that inference uses.

  Input/output: [batch, height, width, channels], channels last.
  """

  use_fused_kernel = True

  def __init__(self, **kwargs):
    kwargs["synchronized"] = True
    super().__init__(**kwargs)
    self.update_moving_statistics = True

  def _fused_applies(self, inputs, training, mask):
    if not self.use_fused_kernel:
      return False
    if mask is not None or self.renorm or len(inputs.shape) != 4:
      return False
    if self.axis not in (-1, 3) or not (self.scale and self.center):
      return False
    if not (training and self.trainable):
      return True  # Inference: the moving statistics, nothing to reduce.
    return tf.distribute.get_replica_context() is None or (
        tf.distribute.get_replica_context().num_replicas_in_sync == 1)

  def call(self, inputs, training=None, mask=None):
    if not self._fused_applies(inputs, training, mask):
      if (training and self.trainable and not self.update_moving_statistics
          and not self.renorm):
        return self._batch_statistics_call(inputs, mask)
      return super().call(inputs, training=training, mask=mask)
    x = tf.cast(inputs, tf.float32)
    if not (training and self.trainable):
      # One fused op instead of Keras's elementwise chain (embedding runs).
      outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
          x, tf.cast(self.gamma, tf.float32), tf.cast(self.beta, tf.float32),
          mean=tf.cast(self.moving_mean, tf.float32),
          variance=tf.cast(self.moving_variance, tf.float32),
          epsilon=self.epsilon, is_training=False)
      return tf.cast(outputs, self.compute_dtype)
    outputs, mean, corrected_variance = tf.compat.v1.nn.fused_batch_norm(
        x, tf.cast(self.gamma, tf.float32), tf.cast(self.beta, tf.float32),
        epsilon=self.epsilon, is_training=True)
    if not self.update_moving_statistics:
      return tf.cast(outputs, self.compute_dtype)
    # The kernel returns the Bessel-corrected variance (for running
    # averages); Keras's moving variance averages the biased one.
    count = tf.cast(tf.size(x) // tf.shape(x)[-1], tf.float32)
    variance = corrected_variance * (count - 1.0) / tf.maximum(count, 1.0)
    momentum = self.momentum
    self.moving_mean.assign(self.moving_mean * momentum
                            + tf.stop_gradient(mean) * (1.0 - momentum))
    self.moving_variance.assign(self.moving_variance * momentum
                                + tf.stop_gradient(variance)
                                * (1.0 - momentum))
    return tf.cast(outputs, self.compute_dtype)

  def _batch_statistics_call(self, inputs, mask):
    """Training-mode normalisation without the moving-average update, off
    the fused path (several replicas, or the plain path forced)."""
    x = tf.cast(inputs, tf.float32)
    mean, variance = self._moments(x, mask)  # All-reduced over replicas.
    outputs = ops.batch_normalization(
        x, mean, variance, axis=self.axis,
        offset=tf.cast(self.beta, tf.float32) if self.center else None,
        scale=tf.cast(self.gamma, tf.float32) if self.scale else None,
        epsilon=self.epsilon)
    return tf.cast(outputs, self.compute_dtype)

  def get_config(self):
    config = super().get_config()
    config.pop("synchronized", None)
    return config


@contextlib.contextmanager
def batch_statistics_only(model):
  """While inside, the model's SyncBatchNormalization layers normalise in
  training by the batch's statistics without updating their moving
  averages. A trace-time switch: wrap the model call inside the
  tf.function, not the call of the tf.function."""
  layers = [layer for layer in model._flatten_layers(include_self=True)
            if isinstance(layer, SyncBatchNormalization)]
  for layer in layers:
    layer.update_moving_statistics = False
  try:
    yield
  finally:
    for layer in layers:
      layer.update_moving_statistics = True


def _check_normalization(normalization):
  if normalization not in NORMALIZATIONS:
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got "
                     f"{normalization!r}.")


@keras.saving.register_keras_serializable(package="audio_perm")
class ConvBlock(keras.layers.Layer):
  """Conv2D -> normalisation -> ReLU -> optional 3x3/2 max-pool.

  Each sublayer is an attribute (`conv`, `norm`, `relu`, `pool`; `norm` and
  `pool` may be None), so tf.train.Checkpoint tracks its variables.

  Input: [batch * num_patches, height, width, in_channels], the patches of
  an example consecutive. Output: [batch * num_patches, height', width',
  filters] ("same" padding: height' = ceil(height / stride), halved again,
  rounding up, when pooling).

  Args:
    filters: output channels of the convolution.
    kernel_size: side of the square convolution kernel.
    strides: stride of the convolution.
    pool: whether a max-pool (3 x 3, stride 2) follows the ReLU.
    normalization: one of NORMALIZATIONS; "none" gives the convolution a bias.
    num_patches: n, required by "example" normalisation (which groups the n
      consecutive patches of an example).
  """

  def __init__(self, filters, kernel_size, strides=1, pool=False,
               normalization="batch", num_patches=None, **kwargs):
    super().__init__(**kwargs)
    _check_normalization(normalization)
    if normalization == "example" and num_patches is None:
      raise ValueError("normalization='example' needs num_patches, got "
                       "None.")
    self.filters = filters
    self.kernel_size = kernel_size
    self.strides = strides
    self.use_pool = pool
    self.normalization = normalization
    self.num_patches = num_patches
    # Created in this order (conv, norm, relu, pool) so that a fixed seed
    # draws the same initial kernels as before the blocks were layers.
    self.conv = keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same",
        use_bias=normalization == "none", dtype=self.dtype_policy,
        name="conv")
    if normalization == "example":
      self.norm = ExampleNormalization(num_patches, dtype=self.dtype_policy,
                                       name="norm")
    elif normalization == "batch":
      self.norm = SyncBatchNormalization(dtype=self.dtype_policy,
                                         name="norm")
    else:
      self.norm = None
    self.relu = keras.layers.ReLU(dtype=self.dtype_policy, name="relu")
    if pool:
      self.pool = keras.layers.MaxPooling2D(
          3, strides=2, padding="same", dtype=self.dtype_policy, name="pool")
    else:
      self.pool = None

  def _sublayers(self):
    return [layer for layer in (self.conv, self.norm, self.relu, self.pool)
            if layer is not None]

  def build(self, input_shape):
    shape = tuple(input_shape)
    for layer in self._sublayers():
      layer.build(shape)
      shape = layer.compute_output_shape(shape)

  def call(self, x, training=False):
    for layer in self._sublayers():
      x = layer(x, training=training)
    return x

  def compute_output_shape(self, input_shape):
    shape = tuple(input_shape)
    for layer in self._sublayers():
      shape = layer.compute_output_shape(shape)
    return shape

  def get_config(self):
    config = super().get_config()
    config.update(filters=self.filters, kernel_size=self.kernel_size,
                  strides=self.strides, pool=self.use_pool,
                  normalization=self.normalization,
                  num_patches=self.num_patches)
    return config


@keras.saving.register_keras_serializable(package="audio_perm")
class PatchBackbone(keras.layers.Layer):
  """The shared conv stack applied to every patch.

  Five ConvBlocks (attributes `block1` ... `block5`, also listed by
  `blocks`) then an average pool, all tracked by tf.train.Checkpoint.

  Input: [batch, num_patches, height (frames), width (bins), channels].
  Output: [batch, num_patches, features]: pooling="global" averages conv5's
  map over frames and bins (features = backbone_channels(width)[-1]);
  pooling="time" over frames only and keeps each of conv5's bin positions
  (features = conv5 bins x channels), so where in the patch's band the
  energy lies (pitch, for frequency bands) reaches the embedding.

  Args:
    num_patches: n (static; "example" normalisation groups the n patches).
    width: channel multiplier (see backbone_channels).
    normalization: one of NORMALIZATIONS.
    pooling: one of config.POOLINGS.
  """

  def __init__(self, num_patches, width=1.0, normalization="batch",
               pooling="global", **kwargs):
    super().__init__(**kwargs)
    _check_normalization(normalization)
    if pooling not in config_lib.POOLINGS:
      raise ValueError(f"pooling must be one of {config_lib.POOLINGS}, got "
                       f"{pooling!r}.")
    self.num_patches = num_patches
    self.width = width
    self.normalization = normalization
    self.pooling = pooling
    self.channels = backbone_channels(width)
    for i, (channels, (kernel, stride, pool)) in enumerate(
        zip(self.channels, _CONV_LAYOUT)):
      setattr(self, f"block{i + 1}", ConvBlock(
          channels, kernel, strides=stride, pool=pool,
          normalization=normalization, num_patches=num_patches,
          dtype=self.dtype_policy, name=f"block{i + 1}"))
    self.global_pool = keras.layers.GlobalAveragePooling2D(
        dtype=self.dtype_policy, name="global_pool")

  @property
  def blocks(self):
    """The ConvBlocks, conv1's first."""
    return tuple(getattr(self, f"block{i + 1}")
                 for i in range(len(_CONV_LAYOUT)))

  def build(self, input_shape):
    _, _, height, width, channels = input_shape
    shape = (None, height, width, channels)
    for block in self.blocks:
      block.build(shape)
      shape = block.compute_output_shape(shape)
    self.global_pool.build(shape)

  def call(self, patches, training=False):
    num_patches, height, width, channels = patches.shape[1:]
    x = ops.reshape(patches, (-1, height, width, channels))  # [B*n, h, w, c]
    for block in self.blocks:
      x = block(x, training=training)
    if self.pooling == "time":
      x = ops.mean(x, axis=1)  # [B*n, w5, C5]
      x = ops.reshape(x, (-1, x.shape[1] * x.shape[2]))  # [B*n, w5 * C5]
    else:
      x = self.global_pool(x)  # [B*n, C5]
    return ops.reshape(x, (-1, num_patches, x.shape[-1]))  # [B, n, features]

  def compute_output_shape(self, input_shape):
    batch, num_patches, height, width, channels = input_shape
    shape = (None, height, width, channels)
    for block in self.blocks:
      shape = block.compute_output_shape(shape)  # Ends at conv5's map.
    features = shape[2] * shape[3] if self.pooling == "time" else shape[3]
    return (batch, num_patches, features)

  def get_config(self):
    config = super().get_config()
    config.update(num_patches=self.num_patches, width=self.width,
                  normalization=self.normalization, pooling=self.pooling)
    return config


def _check_positive(name, value):
  if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
    raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def build_encoder(num_patches, patch_shape, width=0.25, embedding_dim=256,
                  normalization="batch", channels=1,
                  input_standardization="example", pooling="global",
                  name="encoder"):
  """The CFN encoder: patches -> embedding (the first fully connected layer).

  Args:
    num_patches: n, patches per example.
    patch_shape: (patch_frames, patch_bins) of one patch.
    width: channel multiplier of the AlexNet-like backbone (1.0 = 96..384
      channels; 0.25, 24..96 channels, is train.py's CPU default).
    embedding_dim: size of the first fully connected layer, the embedding.
    normalization: "batch" (synchronised), "example" or "none"; see the
      module docstring.
    channels: channels of a patch (1 for a spectrogram).
    input_standardization: "example" (over all patches of an example) or
      "patch" (each patch on its own); see ExampleStandardization.
    pooling: "global" or "time" (keeps the bin positions); see PatchBackbone.
    name: model name.

  Returns:
    keras.Model mapping float32 [batch, num_patches, patch_frames, patch_bins,
    channels] to float32 [batch, embedding_dim].
  """
  _check_positive("num_patches", num_patches)
  _check_positive("embedding_dim", embedding_dim)
  _check_positive("channels", channels)
  patch_frames, patch_bins = (int(d) for d in patch_shape)
  _check_positive("patch_frames", patch_frames)
  _check_positive("patch_bins", patch_bins)
  inputs = keras.Input((num_patches, patch_frames, patch_bins, channels),
                       name="patches")
  x = ExampleStandardization(scope=input_standardization,
                             name="standardize")(inputs)
  x = PatchBackbone(num_patches, width, normalization, pooling=pooling,
                    name="backbone")(x)  # [B, n, features]
  x = keras.layers.Flatten(name="concat")(x)  # [B, n * features]
  embedding = keras.layers.Dense(embedding_dim, activation="relu",
                                 name="fc1_embedding")(x)
  return keras.Model(inputs, embedding, name=name)


def freeze_blocks(encoder, count):
  """Keeps conv blocks 1..count of `encoder` (from build_encoder) as they are.

  Their weights leave the trainable variables, and their BatchNorm layers
  normalise with their moving statistics in training too (Keras's rule for a
  non-trainable BatchNormalization), which then never change: the frozen
  blocks compute what they computed at the start, in training and in
  inference. Returns the frozen blocks.
  """
  blocks = encoder.get_layer("backbone").blocks
  if not 0 <= count <= len(blocks):
    raise ValueError(f"frozen_blocks={count}: the backbone has {len(blocks)} "
                     f"conv blocks; give 0 to {len(blocks)}.")
  for block in blocks[:count]:
    block.trainable = False
  return blocks[:count]


def keep_random_kernels(encoder, count):
  """Keeps the convolution kernels of the last `count` conv blocks as drawn.

  Only each block's Conv2D leaves the trainable variables; its BatchNorm
  stays trainable, so in training it normalises with the batch's statistics
  and updates its moving averages (the blocks below it train, so its inputs
  change), and its scale and offset learn. Returns those blocks.
  """
  blocks = encoder.get_layer("backbone").blocks
  if not 0 <= count <= len(blocks):
    raise ValueError(f"random_kernels={count}: the backbone has "
                     f"{len(blocks)} conv blocks; give 0 to {len(blocks)}.")
  kept = blocks[len(blocks) - count:] if count else []
  for block in kept:
    block.conv.trainable = False
  return kept


PITCH_FEATURES = ("backbone", "embedding")


def build_pretext_model(encoder, head_size, hidden_dim=None, name="pretext",
                        with_features=False, with_pitch=False,
                        pitch_features="backbone"):
  """Stacks fc2 and a head on an encoder.

  Args:
    encoder: a model from `build_encoder`.
    head_size: n (one score per patch) or K (one logit per permutation).
    hidden_dim: size of fc2; defaults to the embedding size.
    name: model name.
    with_features: also output the backbone's per-patch features
      [batch, n, features] (for the anti-collapse terms of
      training.penalties); the weights are the encoder's either way.
    with_pitch: also output a pitch score float32 [batch, 1], a linear
      function ("pitch_head") of the backbone's features averaged over the
      patches (order-invariant), for the pitch-ranking term (audio_perm.pitch).
    pitch_features: what the pitch score reads: "backbone" (the per-patch
      features averaged over the patches) or "embedding" (the encoder's
      output, fc1, what evaluation and export use).

  Returns:
    keras.Model mapping the encoder's input [batch, n, h, w, c] to float32
    [batch, head_size] (float32 even under a mixed-precision policy); with
    with_features and/or with_pitch, to [that, features] / [that, pitch] /
    [that, features, pitch].
  """
  _check_positive("head_size", head_size)
  embedding_dim = encoder.output.shape[-1]
  hidden_dim = embedding_dim if hidden_dim is None else hidden_dim
  _check_positive("hidden_dim", hidden_dim)
  inputs = keras.Input(encoder.input.shape[1:], name="patches")
  if with_features or with_pitch:
    two_outputs = keras.Model(
        encoder.input, [encoder.output, encoder.get_layer("backbone").output],
        name=f"{encoder.name}_with_features")
    x, features = two_outputs(inputs)
  else:
    x = encoder(inputs)
  embedding = x
  x = keras.layers.Dense(hidden_dim, activation="relu", name="fc2")(x)
  outputs = keras.layers.Dense(head_size, dtype="float32", name="head")(x)
  extra = [features] if with_features else []
  if with_pitch:
    if pitch_features == "backbone":
      source = keras.layers.GlobalAveragePooling1D(name="patch_mean")(
          features)
    elif pitch_features == "embedding":
      source = embedding
    else:
      raise ValueError(f"pitch_features={pitch_features!r} must be one of "
                       f"{PITCH_FEATURES}.")
    extra.append(keras.layers.Dense(1, dtype="float32",
                                    name="pitch_head")(source))
  if extra:
    return keras.Model(inputs, [outputs] + extra, name=name)
  return keras.Model(inputs, outputs, name=name)

