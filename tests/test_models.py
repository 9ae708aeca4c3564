"""Tests for audio_perm.models: the CFN encoder and the pretext model."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from audio_perm import models

TINY = dict(width=1 / 16, embedding_dim=8)


def _conv_params(channels, normalization, in_channels=1):
  """Independent count of the backbone's parameters."""
  kernels = (5, 5, 3, 3, 3)
  total = 0
  for k, c in zip(kernels, channels):
    total += k * k * in_channels * c
    total += c if normalization == "none" else 2 * c  # bias or gamma/beta
    in_channels = c
  return total


@pytest.mark.parametrize("normalization", models.NORMALIZATIONS)
def test_parameter_count_matches_layer_arithmetic(normalization):
  channels = models.backbone_channels(1.0)
  assert channels == (96, 256, 384, 384, 256)
  encoder = models.build_encoder(10, (398, 51), width=1.0, embedding_dim=1024,
                                 normalization=normalization)
  backbone = _conv_params(channels, normalization)
  if normalization == "batch":  # Moving mean and variance, not trainable.
    backbone += 2 * sum(channels)
  fc1 = 10 * 256 * 1024 + 1024
  assert encoder.count_params() == backbone + fc1
  model = models.build_pretext_model(encoder, head_size=10)
  assert model.count_params() == backbone + fc1 + (1024 * 1024 + 1024) + (
      1024 * 10 + 10)


@pytest.mark.parametrize("num_patches,patch_shape", [
    (10, (398, 51)),  # frequency bands of a 398 x 513 spectrogram
    (10, (39, 513)),  # time slices
    (10, (79, 256)),  # a 2 x 5 time-frequency grid
    (3, (1, 1)),  # degenerate, still valid
])
def test_shapes_for_every_scheme(num_patches, patch_shape):
  encoder = models.build_encoder(num_patches, patch_shape, **TINY)
  model = models.build_pretext_model(encoder, head_size=7)
  x = np.random.default_rng(0).normal(
      size=(2, num_patches) + patch_shape + (1,)).astype(np.float32)
  assert encoder(x).shape == (2, 8)
  assert model(x).shape == (2, 7)


def test_backbone_weights_are_shared_across_patches():
  """The batched backbone equals the backbone run on each patch alone."""
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 4, 12, 10, 1)).astype(np.float32)
  # "none": a patch's features then depend on that patch only.
  backbone = models.PatchBackbone(4, width=1 / 16, normalization="none")
  together = backbone(x).numpy()  # [2, 4, C]
  for i in range(4):
    alone = backbone(np.repeat(x[:, i:i + 1], 4, axis=1)).numpy()[:, 0]
    np.testing.assert_allclose(together[:, i], alone, rtol=1e-4, atol=1e-5)


def test_example_normalization_matches_numpy():
  rng = np.random.default_rng(2)
  x = rng.normal(3.0, 2.0, size=(2 * 3, 5, 4, 6)).astype(np.float32)
  layer = models.ExampleNormalization(3, epsilon=1e-3)
  layer.build(x.shape)
  layer.gamma.assign(np.arange(1, 7, dtype=np.float32))
  layer.beta.assign(np.full(6, 0.5, np.float32))
  got = layer(x).numpy()
  grouped = x.reshape(2, 3, 5, 4, 6).astype(np.float64)
  mean = grouped.mean(axis=(1, 2, 3), keepdims=True)
  var = grouped.var(axis=(1, 2, 3), keepdims=True)
  want = ((grouped - mean) / np.sqrt(var + 1e-3)).reshape(x.shape)
  want = want * np.arange(1, 7) + 0.5
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("normalization", ["example", "none"])
def test_backbone_is_permutation_equivariant(normalization):
  """Shuffling the patches shuffles their features the same way."""
  rng = np.random.default_rng(3)
  x = rng.normal(size=(2, 5, 9, 7, 1)).astype(np.float32)
  perm = np.array([3, 0, 4, 1, 2])
  backbone = models.PatchBackbone(5, width=1 / 16,
                                  normalization=normalization)
  np.testing.assert_allclose(backbone(x[:, perm]).numpy(),
                             backbone(x).numpy()[:, perm], rtol=1e-4,
                             atol=1e-5)


def test_relative_patch_level_survives_normalisation():
  """Patches that differ only by a constant level get different features.

  A per-patch normalisation would map a constant patch of level v to the same
  features for every v > 0; the example-level one must not.
  """
  levels = np.arange(4, dtype=np.float32)[None, :, None, None, None]
  texture = np.random.default_rng(4).normal(size=(1, 1, 9, 7, 1))
  x = (levels + 0.1 * texture).astype(np.float32)  # [1, 4, 9, 7, 1]
  backbone = models.PatchBackbone(4, width=1 / 8)
  features = backbone(x).numpy()[0]  # [4, C]
  for i in range(3):
    assert np.abs(features[i] - features[i + 1]).max() > 1e-3


def test_example_standardization_is_order_invariant():
  x = np.random.default_rng(5).normal(2.0, 3.0,
                                      size=(3, 4, 6, 5, 1)).astype(np.float32)
  layer = models.ExampleStandardization()
  out = layer(x).numpy()
  ref = (x - x.mean(axis=(1, 2, 3, 4), keepdims=True)) / np.sqrt(
      x.var(axis=(1, 2, 3, 4), keepdims=True) + 1e-3)
  np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
  perm = [2, 3, 0, 1]
  np.testing.assert_allclose(layer(x[:, perm]).numpy(), out[:, perm],
                             rtol=1e-5, atol=1e-5)


def test_embedding_depends_on_patch_order():
  """The CFN must see the order, else re-ordering could not be learned."""
  encoder = models.build_encoder(4, (6, 5), **TINY)
  x = np.random.default_rng(6).normal(size=(1, 4, 6, 5, 1)).astype(np.float32)
  a = encoder(x).numpy()
  b = encoder(x[:, [1, 0, 3, 2]]).numpy()
  assert np.abs(a - b).max() > 1e-4


def test_custom_layers_round_trip_through_config():
  for layer in (models.PatchBackbone(3, width=0.5, normalization="batch"),
                models.ConvBlock(4, 3, strides=2, pool=True,
                                 normalization="example", num_patches=3),
                models.ExampleNormalization(3, epsilon=0.1),
                models.ExampleStandardization(epsilon=0.2)):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


@pytest.mark.parametrize("kwargs,match", [
    (dict(width=0.0), "width"),
    (dict(width=-1.0), "width"),
    (dict(embedding_dim=0), "embedding_dim"),
    (dict(normalization="group"), "normalization"),
    (dict(num_patches=0), "num_patches"),
    (dict(patch_shape=(0, 51)), "patch_frames"),
])
def test_bad_arguments_raise_value_error(kwargs, match):
  args = dict(num_patches=10, patch_shape=(398, 51), **TINY)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    models.build_encoder(**args)


def test_mixed_precision_head_is_float32():
  keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    encoder = models.build_encoder(3, (8, 8), **TINY)
    model = models.build_pretext_model(encoder, 3)
  finally:
    keras.mixed_precision.set_global_policy("float32")
  out = model(np.ones((2, 3, 8, 8, 1), np.float32))
  assert out.dtype == tf.float32
  assert encoder(np.ones((2, 3, 8, 8, 1), np.float32)).dtype == tf.bfloat16


def _custom_layers():
  return [models.ExampleStandardization(epsilon=0.2),
          models.ExampleNormalization(3, epsilon=0.1),
          models.ConvBlock(4, 3, strides=2, pool=True,
                           normalization="example", num_patches=3),
          models.ConvBlock(5, 5, normalization="none"),
          models.ConvBlock(6, 3, normalization="batch"),
          models.PatchBackbone(3, width=1 / 16, normalization="batch")]


@pytest.mark.parametrize("layer", _custom_layers(),
                         ids=lambda layer: type(layer).__name__)
def test_custom_layers_deserialize_by_registered_name(layer):
  """serialize -> JSON -> deserialize finds the class by its registered name."""
  name = type(layer).__name__
  serialized = json.loads(json.dumps(
      keras.saving.serialize_keras_object(layer)))
  assert serialized["registered_name"] == f"audio_perm>{name}"
  clone = keras.saving.deserialize_keras_object(serialized)
  assert type(clone) is type(layer)  # pylint: disable=unidiomatic-typecheck
  assert clone.get_config() == layer.get_config()


def test_conv_block_example_normalization_needs_num_patches():
  with pytest.raises(ValueError, match="num_patches"):
    models.ConvBlock(4, 3, normalization="example")
  with pytest.raises(ValueError, match="group"):
    models.ConvBlock(4, 3, normalization="group")


def _pretext(seed, normalization="batch"):
  keras.utils.set_random_seed(seed)
  encoder = models.build_encoder(4, (12, 10), normalization=normalization,
                                 **TINY)
  return encoder, models.build_pretext_model(encoder, head_size=4)


def _patches(seed=7, batch=3):
  return np.random.default_rng(seed).normal(
      1.0, 2.0, size=(batch, 4, 12, 10, 1)).astype(np.float32)


@pytest.mark.parametrize("normalization", models.NORMALIZATIONS)
def test_checkpoint_tracks_every_model_variable(tmp_path, normalization):
  """tf.train.Checkpoint(model=...) saves every variable under model/."""
  _, model = _pretext(0, normalization)
  rng = np.random.default_rng(8)
  for variable in model.variables:  # Distinct values: no two can alias.
    variable.assign(rng.normal(size=variable.shape).astype(np.float32))
  path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
  names = [name for name, _ in tf.train.list_variables(path)
           if name.startswith("model/")]
  assert len(names) == len(model.variables)
  reader = tf.train.load_checkpoint(path)
  saved = sorted(reader.get_tensor(name).tobytes() for name in names)
  wanted = sorted(np.asarray(v).tobytes() for v in model.variables)
  assert saved == wanted
  # Five convolutions and three dense layers (fc1, fc2, head); convolutions
  # have a bias only without normalisation.
  kinds = ("kernel", "bias", "gamma", "beta", "moving_mean",
           "moving_variance")
  want = {"batch": (8, 3, 5, 5, 5, 5), "example": (8, 3, 5, 5, 0, 0),
          "none": (8, 8, 0, 0, 0, 0)}[normalization]
  counts = tuple(sum(f"/{kind}/" in name or f"/_{kind}/" in name
                     for name in names) for kind in kinds)
  assert counts == want


def test_model_only_restore_reproduces_embeddings(tmp_path):
  """Restoring model/ alone into a differently seeded twin gives its outputs."""
  encoder, model = _pretext(0)
  x = _patches()
  initial = encoder(x, training=False).numpy()
  model(_patches(seed=9, batch=4), training=True)  # Moves the BN statistics.
  embedding = encoder(x, training=False).numpy()
  scores = model(x, training=False).numpy()
  assert np.abs(embedding - initial).max() > 1e-4
  path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))

  twin_encoder, twin = _pretext(1)
  assert np.abs(twin_encoder(x, training=False).numpy() - embedding).max() > (
      1e-4)
  tf.train.Checkpoint(model=twin).read(path).assert_consumed()
  np.testing.assert_array_equal(twin_encoder(x, training=False).numpy(),
                                embedding)
  np.testing.assert_array_equal(twin(x, training=False).numpy(), scores)
  for a, b in zip(model.variables, twin.variables):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("normalization", models.NORMALIZATIONS)
def test_encoder_round_trips_through_json(normalization):
  encoder, _ = _pretext(0, normalization)
  x = _patches()
  encoder(_patches(seed=9), training=True)  # Moves the BN statistics.
  clone = keras.models.model_from_json(encoder.to_json())
  assert [layer.name for layer in clone.layers] == [
      layer.name for layer in encoder.layers]
  assert "concat" in [layer.name for layer in clone.layers]
  assert clone.count_params() == encoder.count_params()
  clone.set_weights(encoder.get_weights())
  np.testing.assert_array_equal(clone(x, training=False).numpy(),
                                encoder(x, training=False).numpy())
  again = keras.Model.from_config(encoder.get_config())
  assert again.get_config() == encoder.get_config()


def _batch_norm_steps(layer, x, upstream, steps=2):
  """Outputs, gradients and moving statistics after `steps` training calls."""

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = layer(x, training=True)
      loss = tf.reduce_sum(y * upstream)
    return [y] + tape.gradient(loss, [x, layer.gamma, layer.beta])

  for _ in range(steps):
    values = step()
  return [np.asarray(v) for v in values] + [
      np.asarray(layer.moving_mean), np.asarray(layer.moving_variance)]


@pytest.mark.parametrize("shape", [(6, 9, 5, 3), (1, 2, 1, 4)])
def test_fused_batch_norm_matches_keras_synchronized(shape, monkeypatch):
  """The fused one-replica path = the plain path = Keras's synchronised BN."""
  rng = np.random.default_rng(0)
  x = tf.constant(rng.normal(2.0, 3.0, size=shape).astype("float32"))
  upstream = tf.constant(rng.normal(size=shape).astype("float32"))
  weights = None
  results = {}
  for variant in ("fused", "plain", "keras"):
    if variant == "keras":
      layer = keras.layers.BatchNormalization(momentum=0.9,
                                              synchronized=True)
    else:
      monkeypatch.setattr(models.SyncBatchNormalization, "use_fused_kernel",
                          variant == "fused")
      layer = models.SyncBatchNormalization(momentum=0.9)
    layer.build(shape)
    if weights is None:
      layer.gamma.assign(rng.uniform(0.5, 2.0, shape[-1]).astype("float32"))
      layer.beta.assign(rng.normal(size=shape[-1]).astype("float32"))
      weights = layer.get_weights()
    layer.set_weights(weights)
    results[variant] = _batch_norm_steps(layer, x, upstream)
  names = ("outputs", "d inputs", "d gamma", "d beta", "moving mean",
           "moving variance")
  for other in ("plain", "keras"):
    for name, a, b in zip(names, results["fused"], results[other]):
      np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5,
                                 err_msg=f"{name}: fused vs {other}")
  # The moving variance really moved (the biased batch variance is used).
  assert not np.allclose(results["fused"][-1], 1.0)


def test_fused_batch_norm_path_is_taken_on_one_replica(monkeypatch):
  """The fused kernel runs on one replica, the plain path when disabled."""
  layer = models.SyncBatchNormalization()
  layer.build((2, 3, 3, 2))

  def op_types(fused):
    monkeypatch.setattr(models.SyncBatchNormalization, "use_fused_kernel",
                        fused)
    graph = tf.function(lambda x: layer(x, training=True)).get_concrete_function(
        tf.TensorSpec((2, 3, 3, 2))).graph
    return {op.type for op in graph.get_operations()}

  assert "FusedBatchNormV3" in op_types(True)
  assert "FusedBatchNormV3" not in op_types(False)


def test_fused_batch_norm_inference_matches_keras(monkeypatch):
  """Inference (moving statistics) through the fused kernel = Keras's."""
  rng = np.random.default_rng(1)
  x = tf.constant(rng.normal(1.0, 2.0, size=(4, 5, 3, 3)).astype("float32"))
  outputs = []
  for fused in (True, False):
    monkeypatch.setattr(models.SyncBatchNormalization, "use_fused_kernel",
                        fused)
    layer = models.SyncBatchNormalization()
    layer.build(x.shape)
    layer.set_weights([rng.uniform(0.5, 2, 3).astype("float32")
                       for _ in range(4)] if not outputs else weights)
    weights = layer.get_weights()
    fn = tf.function(lambda v, layer=layer: layer(v, training=False))
    ops_used = {op.type for op in fn.get_concrete_function(
        tf.TensorSpec(x.shape)).graph.get_operations()}
    assert ("FusedBatchNormV3" in ops_used) == fused
    outputs.append(fn(x).numpy())
  np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)


def test_patch_standardization_removes_each_patch_level_and_spread():
  """scope='patch': every patch has mean 0 and std 1, whatever its level."""
  rng = np.random.default_rng(0)
  patches = rng.normal(size=(2, 4, 6, 5, 1)).astype("float32")
  patches *= np.array([1, 3, 0.5, 2], "float32")[None, :, None, None, None]
  patches += np.array([0, 5, -2, 9], "float32")[None, :, None, None, None]
  out = models.ExampleStandardization(scope="patch")(patches).numpy()
  flat = out.reshape(2, 4, -1)
  np.testing.assert_allclose(flat.mean(-1), 0, atol=1e-5)
  np.testing.assert_allclose(flat.std(-1), 1, atol=5e-3)  # epsilon 1e-3
  # The example scope keeps the relative levels instead.
  kept = models.ExampleStandardization()(patches).numpy().reshape(2, 4, -1)
  assert np.all(np.diff(kept.mean(-1)[:, [2, 0, 1, 3]], axis=1) > 0)
  with pytest.raises(ValueError, match="scope"):
    models.ExampleStandardization(scope="band")


def test_encoder_with_patch_standardization_round_trips():
  encoder = models.build_encoder(3, (8, 6), width=1 / 16, embedding_dim=8,
                                 input_standardization="patch")
  layer = encoder.get_layer("standardize")
  assert layer.scope == "patch"
  clone = keras.Model.from_config(encoder.get_config())
  assert clone.get_layer("standardize").scope == "patch"


def _backbone_pair(patch_shape=(24, 20), num_patches=3):
  """PatchBackbones with both poolings and the same weights, built."""
  shape = (None, num_patches) + patch_shape + (1,)
  pooled = {}
  for pooling in ("global", "time"):
    keras.utils.set_random_seed(3)
    layer = models.PatchBackbone(num_patches, width=1 / 16,
                                 normalization="none", pooling=pooling)
    layer.build(shape)
    pooled[pooling] = layer
  pooled["time"].set_weights(pooled["global"].get_weights())
  return pooled["global"], pooled["time"]


def test_time_pooling_keeps_conv5_bin_positions():
  global_pool, time_pool = _backbone_pair()
  patches = np.random.default_rng(0).normal(
      size=(2, 3, 24, 20, 1)).astype(np.float32)
  # Reference: conv5's map by the blocks themselves, averaged over frames.
  x = patches.reshape(6, 24, 20, 1)
  for block in time_pool.blocks:
    x = block(x)
  conv5 = np.asarray(x)  # [6, frames5, bins5, C5]
  bins5, channels5 = conv5.shape[2:]
  expected = conv5.mean(axis=1).reshape(2, 3, bins5 * channels5)
  out = np.asarray(time_pool(patches))
  assert out.shape == (2, 3, bins5 * channels5)
  assert time_pool.compute_output_shape((None, 3, 24, 20, 1)) == (
      None, 3, bins5 * channels5)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
  # Averaging its bin positions gives the global pool of the same weights.
  np.testing.assert_allclose(
      out.reshape(2, 3, bins5, channels5).mean(axis=2),
      np.asarray(global_pool(patches)), rtol=1e-5, atol=1e-6)
  assert bins5 > 1  # Otherwise the test would not tell the two apart.


def test_time_pooling_encoder_round_trips_and_is_checked():
  encoder = models.build_encoder(3, (24, 20), pooling="time", **TINY)
  assert encoder.get_layer("backbone").pooling == "time"
  clone = keras.Model.from_config(encoder.get_config())
  assert clone.get_layer("backbone").pooling == "time"
  assert clone.get_layer("concat").output.shape == (
      encoder.get_layer("concat").output.shape)
  with pytest.raises(ValueError, match="pooling must be one of"):
    models.build_encoder(3, (24, 20), pooling="freq", **TINY)


@pytest.mark.parametrize("fused", [True, False])
def test_batch_statistics_only_normalises_without_moving_the_averages(
    fused, monkeypatch):
  """Inside batch_statistics_only: the training-mode outputs and gradients,
  the moving averages untouched; outside, the update comes back."""
  monkeypatch.setattr(models.SyncBatchNormalization, "use_fused_kernel",
                      fused)
  rng = np.random.default_rng(2)
  shape = (6, 5, 4, 3)
  x = tf.constant(rng.normal(2.0, 3.0, size=shape).astype("float32"))
  upstream = tf.constant(rng.normal(size=shape).astype("float32"))
  inputs = keras.Input(shape[1:])
  model = keras.Model(inputs, models.SyncBatchNormalization(momentum=0.9)(
      keras.layers.Conv2D(3, 1)(inputs)))
  layer = model.layers[-1]
  layer.gamma.assign(rng.uniform(0.5, 2.0, 3).astype("float32"))
  layer.beta.assign(rng.normal(size=3).astype("float32"))

  @tf.function
  def step(frozen):
    with tf.GradientTape() as tape:
      if frozen:
        with models.batch_statistics_only(model):
          y = model(x, training=True)
      else:
        y = model(x, training=True)
      loss = tf.reduce_sum(y * upstream)
    return [y] + tape.gradient(loss, model.trainable_variables)

  frozen = [v.numpy() for v in step(True)]
  assert np.allclose(layer.moving_mean.numpy(), 0.0)
  assert np.allclose(layer.moving_variance.numpy(), 1.0)
  assert layer.update_moving_statistics
  updating = [v.numpy() for v in step(False)]
  for a, b in zip(frozen, updating):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  assert not np.allclose(layer.moving_mean.numpy(), 0.0)
  # Batch statistics, not the (initial) moving ones.
  inference = model(x, training=False).numpy()
  assert not np.allclose(frozen[0], inference, atol=1e-2)


def test_batch_statistics_only_takes_global_statistics_on_two_replicas(
    two_replicas):
  """On two replicas the statistics are the global batch's (all-reduced):
  the outputs equal one replica's on the whole batch."""
  rng = np.random.default_rng(3)
  x = rng.normal(1.0, 2.0, size=(4, 3, 2, 2)).astype("float32")
  x[2:] *= 3.0  # The replicas' halves differ in spread.
  layer = models.SyncBatchNormalization()
  layer.build(x.shape)
  with two_replicas.scope():
    mirrored = models.SyncBatchNormalization()
    mirrored.build(x.shape)
  expected = layer(x, training=True).numpy()

  def replica_fn(half):
    with models.batch_statistics_only(mirrored):
      return mirrored(half, training=True)

  halves = two_replicas.experimental_distribute_values_from_function(
      lambda ctx: x[2 * ctx.replica_id_in_sync_group:
                    2 * ctx.replica_id_in_sync_group + 2])
  outputs = two_replicas.run(tf.function(replica_fn), args=(halves,))
  got = np.concatenate([v.numpy() for v in
                        two_replicas.experimental_local_results(outputs)])
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
  np.testing.assert_array_equal(mirrored.moving_mean.numpy(), 0.0)
