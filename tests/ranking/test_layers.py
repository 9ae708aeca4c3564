"""Tests for audio_perm.ranking.layers: the Keras 3 layer and losses.

Each wrapper agrees with the op it wraps, survives keras.saving round trips
(config and outputs), and trains a model.
"""

import keras
import numpy as np
import pytest

from audio_perm import ranking


def test_soft_rank_layer_in_a_saved_model(tmp_path, sample_values):
  inputs = keras.Input([7])
  outputs = ranking.SoftRank("DESCENDING", 0.5, "kl")(keras.layers.Dense(7)(
      inputs))
  model = keras.Model(inputs, outputs)
  x = sample_values(np.float32)
  expected = model(x).numpy()
  path = str(tmp_path / "model.keras")
  model.save(path)
  restored = keras.models.load_model(path)
  np.testing.assert_allclose(restored(x), expected, rtol=1e-6)
  layer = restored.layers[-1]
  assert isinstance(layer, ranking.SoftRank)
  assert (layer.direction, layer.regularization_strength,
          layer.regularization) == ("DESCENDING", 0.5, "kl")
  with pytest.raises(ValueError, match="direction"):
    ranking.SoftRank(direction="up")


def test_loss_classes():
  rng = np.random.default_rng(9)
  scores = rng.normal(size=(4, 5)).astype(np.float32)
  target = np.stack([rng.permutation(5) + 1 for _ in range(4)])
  loss = ranking.SoftRankLoss(regularization_strength=0.3, reduction=None)
  per_example = loss(target, scores).numpy()
  expected = 0.5 * np.sum(
      (ranking.soft_rank(scores, regularization_strength=0.3).numpy()
       - target) ** 2, axis=-1)
  np.testing.assert_allclose(per_example, expected, rtol=1e-6)
  mean = ranking.SoftRankLoss(regularization_strength=0.3)(target, scores)
  np.testing.assert_allclose(mean, expected.mean(), rtol=1e-6)

  fy = ranking.FenchelYoungRankLoss(num_samples=20, sigma=0.3, seed=5,
                                    reduction="sum")
  value = fy(target, scores)
  assert value.shape == () and value.numpy() >= 0.0
  for obj in (loss, fy):
    config = keras.saving.serialize_keras_object(obj)
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is type(obj)
    assert clone.get_config() == obj.get_config()
  # Fresh noise on every call, the same sequence for the same seed.
  a = ranking.FenchelYoungRankLoss(num_samples=3, seed=5, reduction=None)
  b = ranking.FenchelYoungRankLoss(num_samples=3, seed=5, reduction=None)
  first = a(target, scores).numpy()
  np.testing.assert_array_equal(first, b(target, scores))
  assert not np.array_equal(first, a(target, scores))


def test_losses_train_a_model():
  """A few gradient steps on a learnable ranking lower both losses."""
  rng = np.random.default_rng(10)
  features = rng.normal(size=(64, 7)).astype(np.float32)
  target = (np.argsort(np.argsort(features, -1), -1) + 1).astype(np.float32)
  for loss in (ranking.SoftRankLoss(), ranking.FenchelYoungRankLoss(
      num_samples=10, sigma=0.3, seed=0)):
    model = keras.Sequential([keras.Input([7]), keras.layers.Dense(7)])
    model.compile(keras.optimizers.Adam(0.05), loss=loss, jit_compile=False)
    history = model.fit(features, target, batch_size=4, epochs=4, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]


def _serialization_cases(sample_values):
  """(object, call) pairs: call(obj) gives the outputs to compare."""
  rng = np.random.default_rng(9)
  scores = rng.normal(size=(4, 5)).astype(np.float32)
  target = np.stack([rng.permutation(5) + 1 for _ in range(4)])
  x = sample_values(np.float32)
  return {
      "SoftRank": (ranking.SoftRank("DESCENDING", 0.5, "kl", name="ranks"),
                   lambda obj: obj(x)),
      "SoftRankLoss": (
          ranking.SoftRankLoss("DESCENDING", 0.3, "kl", reduction=None,
                               name="srl"),
          lambda obj: obj(target, scores)),
      "FenchelYoungRankLoss": (
          ranking.FenchelYoungRankLoss(num_samples=7, sigma=0.4,
                                       noise="gumbel", seed=3,
                                       direction="DESCENDING",
                                       reduction="sum", name="fy"),
          lambda obj: obj(target, scores)),
  }


@pytest.mark.parametrize(
    "name", ["SoftRank", "SoftRankLoss", "FenchelYoungRankLoss"])
def test_serialization_round_trip(name, sample_values):
  obj, call = _serialization_cases(sample_values)[name]
  config = keras.saving.serialize_keras_object(obj)
  assert config["registered_name"] == f"audio_perm>{name}"
  clone = keras.saving.deserialize_keras_object(config)
  assert type(clone) is type(obj)
  assert clone.get_config() == obj.get_config()
  # A fresh clone gives the same outputs (for the Fenchel-Young loss: the
  # same noise, from the same seed).
  np.testing.assert_allclose(call(clone), call(obj), rtol=1e-6)
