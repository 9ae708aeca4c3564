"""Tests for audio_perm.evaluation.embedding: compute_embeddings."""

import numpy as np
import pytest
import tensorflow as tf

from audio_perm import evaluation
from audio_perm.evaluation import embedding


def _energy_encoder():
  # One number per note that tells the notes apart: its mean square.
  return evaluation.FrozenEncoder(
      "energy", lambda x: tf.reduce_mean(tf.square(x), -1, keepdims=True),
      {"kind": "test"})


def test_only_the_given_notes_are_embedded_in_order(planted_dir):
  builder = evaluation.open_dataset(dataset_dir=planted_dir)
  labels = evaluation.read_labels(builder, "train", ("instrument_family",),
                                  progress=False)
  everything, _, stats = embedding.compute_embeddings(
      builder, "train", [_energy_encoder()], batch_size=16,
      expected_labels=labels, progress=False)
  assert everything["energy"].shape == (60, 1) and stats["num_examples"] == 60
  # The steady rate leaves out the first batch (16 notes) and its time.
  assert stats["steady_num_examples"] == 44
  assert 0 < stats["steady_seconds"] < stats["seconds"]
  indices = np.array([0, 7, 8, 33, 59])
  some, audio, stats = embedding.compute_embeddings(
      builder, "train", [_energy_encoder()], indices, batch_size=2,
      expected_labels=labels, keep_audio=True, progress=False)
  assert stats["num_examples"] == 5 and stats["steady_num_examples"] == 3
  _, _, one_batch = embedding.compute_embeddings(
      builder, "train", [_energy_encoder()], indices, batch_size=8,
      progress=False)
  assert one_batch["num_examples"] == 5
  assert "steady_seconds" not in one_batch  # Nothing after the first batch.
  np.testing.assert_allclose(some["energy"], everything["energy"][indices],
                             rtol=1e-6)
  assert audio.shape == (5, 64000)
  np.testing.assert_allclose(np.mean(audio ** 2, -1, keepdims=True),
                             some["energy"], rtol=1e-5)


def test_labels_that_do_not_line_up_are_an_error(planted_dir):
  builder = evaluation.open_dataset(dataset_dir=planted_dir)
  labels = evaluation.read_labels(builder, "test", ("pitch",),
                                  progress=False)
  shuffled = {"pitch": np.roll(labels["pitch"], 1)}
  with pytest.raises(RuntimeError, match="different order on two passes"):
    embedding.compute_embeddings(builder, "test", [_energy_encoder()],
                                 expected_labels=shuffled, progress=False)


class _NanEmbedder(tf.Module):

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
  def serve(self, waveform):
    return {"embedding": waveform[:, :3] * float("nan")}


def test_encoder_returning_nan(planted_dir, tmp_path, eval_config):
  module = _NanEmbedder()
  path = str(tmp_path / "nan")
  tf.saved_model.save(module, path,
                      signatures={"serving_default": module.serve})
  with pytest.raises(evaluation.EvaluationError,
                     match=r"NaN or infinite embeddings for (\d+) of \1 "):
    evaluation.evaluate(eval_config(planted_dir, encoders=(path,)))
