"""Tests for audio_perm.hear: the HEAR 2021 API contract, without PyTorch.

The public validator (hearvalidator, behind the [hear] extra) needs PyTorch;
these tests check what it checks for a TensorFlow module (shapes, dtypes,
sizes, regular timestamps on its 2 s and 3.74 s batches) and more: the
values are the SavedModel's signatures, clips do not depend on their batch.
"""

import types

import numpy as np
import pytest
import tensorflow as tf

from audio_perm import export
from audio_perm import hear

TINY = dict(width=1 / 32, embedding_dim=8)


def _export(path, **window_settings):
  module = export.random_encoder(seed=2, **TINY)
  return export.export_encoder(module.encoder, str(path), module.config,
                               **window_settings)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
  # A 250 ms timestamp hop keeps the fast tier fast (the default is 50 ms).
  return hear.load_model(_export(tmp_path_factory.mktemp("hear") / "enc",
                                 timestamp_hop_ms=250))


def _audio(n_sounds, seconds, seed=0):
  rng = np.random.default_rng(seed)
  return tf.constant(rng.uniform(-1, 1, size=(n_sounds, int(
      seconds * 16000))).astype(np.float32))


def test_load_model_gives_a_tf_module_with_the_api_attributes(model):
  assert isinstance(model, tf.Module)
  assert model.sample_rate == 16000
  assert isinstance(model.scene_embedding_size, int)
  assert isinstance(model.timestamp_embedding_size, int)
  assert model.scene_embedding_size == model.timestamp_embedding_size == 8


@pytest.mark.parametrize("n_sounds,seconds", [(8, 3.74), (3, 2.0), (2, 6.5)])
def test_scene_embeddings(model, n_sounds, seconds):
  audio = _audio(n_sounds, seconds)
  embeddings = hear.get_scene_embeddings(audio, model)
  assert isinstance(embeddings, tf.Tensor)
  assert embeddings.dtype == tf.float32
  assert embeddings.shape == (n_sounds, model.scene_embedding_size)
  want = model.saved_model.signatures["serving_default"](waveform=audio)
  np.testing.assert_array_equal(embeddings.numpy(), want["embedding"].numpy())


@pytest.mark.parametrize("n_sounds,seconds", [(4, 2.0), (2, 3.74)])
def test_timestamp_embeddings(model, n_sounds, seconds):
  audio = _audio(n_sounds, seconds, seed=1)
  embeddings, timestamps = hear.get_timestamp_embeddings(audio, model)
  n_timestamps = 1 + audio.shape[1] // 4000  # 250 ms at 16 kHz.
  assert embeddings.dtype == tf.float32 and timestamps.dtype == tf.float32
  assert embeddings.shape == (n_sounds, n_timestamps,
                              model.timestamp_embedding_size)
  assert timestamps.shape == embeddings.shape[:2]
  # Regular, from 0 ms to the clip's end, the same for every sound.
  steps = timestamps[:, 1:] - timestamps[:, :-1]
  np.testing.assert_allclose(steps.numpy(), 250.0, atol=1e-3)
  np.testing.assert_array_equal(timestamps[:, 0].numpy(), 0.0)
  assert float(timestamps[0, -1]) <= 1000 * seconds < float(
      timestamps[0, -1]) + 250


def test_a_sound_does_not_depend_on_its_batch(model):
  audio = _audio(3, 2.0, seed=3)
  scene = hear.get_scene_embeddings(audio, model).numpy()
  stamps, _ = hear.get_timestamp_embeddings(audio, model)
  for i in range(3):
    alone = audio[i:i + 1]
    np.testing.assert_allclose(
        hear.get_scene_embeddings(alone, model).numpy()[0], scene[i],
        rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        hear.get_timestamp_embeddings(alone, model)[0].numpy()[0],
        stamps.numpy()[i], rtol=1e-5, atol=1e-6)


def test_numpy_and_float64_audio_are_accepted(model):
  audio = np.random.default_rng(4).uniform(-1, 1, (2, 20000))
  got = hear.get_scene_embeddings(audio, model)
  assert got.dtype == tf.float32 and got.shape == (2, 8)


def test_load_model_without_a_path_or_the_timestamp_signature_is_refused():
  with pytest.raises(ValueError, match="needs the path of an exported"):
    hear.load_model("")
  only_scene = types.SimpleNamespace(signatures={"serving_default": None})
  with pytest.raises(ValueError, match="no timestamp_embeddings signature"):
    hear.HearModel(only_scene, path="old_export")


@pytest.mark.slow
def test_the_validators_checks_on_the_default_50_ms_hop(tmp_path):
  # The TensorFlow branch of hearvalidator 2021.0.2 (ValidateModel), on its
  # own batches: 16 sounds of 2 s for timestamps, 8 of 3.74 s for scenes.
  model = hear.load_model(_export(tmp_path / "enc"))
  assert isinstance(model, tf.Module)
  assert model.sample_rate in [16000, 22050, 44100, 48000]
  audio = tf.random.uniform((16, int(2.0 * model.sample_rate))) * 2 - 1.0
  embeddings, timestamps = hear.get_timestamp_embeddings(audio, model)
  assert embeddings.dtype == tf.float32
  assert embeddings.shape[0] == 16
  assert embeddings.shape[:2] == timestamps.shape
  assert embeddings.shape[2] == model.timestamp_embedding_size
  diff = timestamps[:, 1:] - timestamps[:, :-1]
  average = tf.math.reduce_mean(diff)
  assert float(average) <= 50.0  # No "interval > 50 ms" warning.
  assert tf.math.reduce_all(tf.abs(diff - average) < 1e-3)
  assert embeddings.shape[1] == 41  # 0, 50, ..., 2000 ms.
  audio = tf.random.uniform((8, int(3.74 * model.sample_rate))) * 2 - 1.0
  embeddings = hear.get_scene_embeddings(audio, model)
  assert embeddings.dtype == tf.float32
  assert embeddings.shape == (8, model.scene_embedding_size)
