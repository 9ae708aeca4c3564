"""Tests for audio_perm.evaluation.encoders: the frozen encoders.

The handcrafted features against an independent numpy STFT; a SavedModel that
is not an encoder is refused with one clear error.
"""

import json

import numpy as np
import pytest
import tensorflow as tf

from audio_perm import evaluation
from audio_perm import export
from audio_perm.evaluation import encoders


def test_handcrafted_features_match_numpy_reference():
  rng = np.random.default_rng(0)
  waveforms = rng.normal(size=(2, 4000)).astype(np.float32)
  got = evaluation.handcrafted_features(tf.constant(waveforms)).numpy()
  # Independent STFT: frames of 400 samples every 160, periodic Hann,
  # 1024-point rfft, log(|X| + 1e-6); then mean and std over frames.
  num_frames = 1 + (4000 - 400) // 160
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
  frames = np.stack([waveforms[:, i * 160:i * 160 + 400] * window
                     for i in range(num_frames)], axis=1)
  log_magnitude = np.log(np.abs(np.fft.rfft(frames, 1024, axis=-1)) + 1e-6)
  expected = np.concatenate([log_magnitude.mean(1), log_magnitude.std(1)], -1)
  assert got.shape == (2, 1026)
  np.testing.assert_allclose(got, expected, atol=2e-3)


def test_random_encoder_follows_the_architecture_and_its_seed():
  architecture = export.EncoderConfig().replace(
      num_patches=4, width=0.0625, embedding_dim=8)
  waveforms = tf.random.stateless_normal([2, 8000], seed=[1, 2]) * 0.1
  first = encoders.make_encoder("random", architecture, 8000, encoder_seed=3)
  again = encoders.make_encoder("random", architecture, 8000, encoder_seed=3)
  assert first.name == "random"
  assert first.description["embedding_dim"] == 8
  assert first.description["architecture"]["num_samples"] == 8000
  np.testing.assert_allclose(first(waveforms).numpy(),
                             again(waveforms).numpy(), rtol=1e-6)
  with pytest.raises(ValueError, match="supervised"):
    encoders.make_encoder("supervised", architecture)
  with pytest.raises(evaluation.EvaluationError, match="CFN architecture"):
    encoders.checked_architecture(architecture.replace(patching="frequency",
                                                       num_patches=600), 8000)


def test_default_architecture_is_read_beside_the_first_saved_model(tmp_path):
  assert evaluation.default_architecture(("random", "handcrafted")) == (
      export.EncoderConfig())
  architecture = export.EncoderConfig().replace(num_patches=4,
                                                embedding_dim=8)
  path = tmp_path / "run" / "encoder"
  path.mkdir(parents=True)
  (path / export.CONFIG_FILENAME).write_text(
      json.dumps(architecture.to_dict()))
  assert evaluation.default_architecture(
      ("random", str(path))) == architecture
  (path / export.CONFIG_FILENAME).write_text("{not json")
  with pytest.raises(evaluation.EvaluationError,
                     match="could not be read as an encoder config"):
    evaluation.default_architecture((str(path),))


class _Embedder(tf.Module):

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
  def logits(self, waveform):
    return {"logits": tf.reduce_mean(waveform, axis=-1, keepdims=True)}


def test_missing_encoder_path(planted_dir, tmp_path, eval_config):
  with pytest.raises(evaluation.EvaluationError,
                     match="neither a directory nor one of random"):
    evaluation.evaluate(eval_config(planted_dir,
                                    encoders=(str(tmp_path / "nowhere"),)))
  with pytest.raises(evaluation.EvaluationError, match="not a SavedModel"):
    evaluation.evaluate(eval_config(planted_dir, encoders=(str(tmp_path),)))
  # A wrong path is reported before a regime too large for the split.
  with pytest.raises(evaluation.EvaluationError, match="not a SavedModel"):
    evaluation.evaluate(eval_config(planted_dir, encoders=(str(tmp_path),),
                                    num_labeled=(61,)))


def test_saved_model_without_the_encoder_signature(planted_dir, tmp_path,
                                                   eval_config):
  module = _Embedder()
  no_serving = str(tmp_path / "no_serving")
  tf.saved_model.save(module, no_serving, signatures={"other": module.logits})
  with pytest.raises(evaluation.EvaluationError,
                     match="no 'serving_default' signature"):
    evaluation.evaluate(eval_config(planted_dir, encoders=(no_serving,)))
  wrong_output = str(tmp_path / "wrong_output")
  tf.saved_model.save(module, wrong_output,
                      signatures={"serving_default": module.logits})
  with pytest.raises(evaluation.EvaluationError,
                     match="not the encoder signature.*logits"):
    evaluation.evaluate(eval_config(planted_dir, encoders=(wrong_output,)))
