"""Tests for audio_perm.evaluation.supervised: the no-pretraining baseline.

It trains a few steps through evaluate; the weights it keeps are those of the
step with the lowest held-out loss, ALL of them: BatchNorm's moving mean and
variance from that step too, not from the last one.
"""

import dataclasses

import numpy as np
import pytest

from audio_perm import evaluation
from audio_perm import export
from audio_perm import probe
from audio_perm.evaluation import supervised

TINY_CFN = export.EncoderConfig().replace(patching="frequency", num_patches=4,
                                          width=0.0625, embedding_dim=8)


@pytest.mark.slow
def test_supervised_baseline_trains_and_scores(planted_dir, result_rows):
  report = evaluation.evaluate(evaluation.EvalConfig(
      encoders=("supervised",), dataset_dir=planted_dir, tasks=("pitch",),
      num_labeled=(12,), seeds=1, architecture=TINY_CFN,
      probe=probe.ProbeConfig(hidden_units=16),
      supervised=evaluation.SupervisedConfig(steps=3, batch_size=4,
                                             eval_every=2),
      progress=False))
  rows = result_rows(report)
  assert set(rows) == {("supervised", "pitch", "mse", 12),
                       ("supervised", "pitch", "accuracy", 12)}
  assert 0.0 <= rows[("supervised", "pitch", "accuracy", 12)]["mean"] <= 1.0
  assert np.isfinite(rows[("supervised", "pitch", "mse", 12)]["mean"])
  assert report["config"]["timing"]["supervised_seconds"] > 0


def _notes(num_samples=8000):
  """16 short noisy tones at 4 pitches: float32 [16, samples], pitches."""
  rng = np.random.default_rng(0)
  pitches = np.repeat([48, 55, 60, 67], 4)
  t = np.arange(num_samples) / 16000
  tones = np.sin(2 * np.pi * 440 * 2 ** ((pitches[:, None] - 69) / 12) * t)
  audio = 0.3 * tones + 0.1 * rng.standard_normal((16, num_samples))
  return audio.astype(np.float32), pitches


def _moving_statistics(model):
  return [v.numpy() for v in model.encoder.weights if "moving_" in v.path]


def _all_weights(model):
  return model.encoder.get_weights() + model.head.get_weights()


@pytest.mark.slow
def test_the_best_step_keeps_its_batchnorm_statistics():
  # Fit for `steps`, note the best step b < steps, then fit again with the
  # same seed for b steps only: the same trajectory up to b, so the first
  # model must hold exactly the second's weights. Restoring the trainable
  # weights alone would leave the first with BatchNorm statistics of the last
  # step, and different predictions (at inference BatchNorm uses them).
  audio, pitches = _notes()
  head = probe.ProbeConfig(hidden_units=16)
  config = evaluation.SupervisedConfig(steps=8, batch_size=4, eval_every=1,
                                       learning_rate=0.1)
  full = supervised.fit_supervised(audio, pitches, "regression", 0, TINY_CFN,
                                   head, config)
  best = full.steps_to_best
  assert 1 <= best < config.steps, "the held-out loss should rise again"
  stopped = supervised.fit_supervised(
      audio, pitches, "regression", 0, TINY_CFN, head,
      dataclasses.replace(config, steps=best))
  assert stopped.steps_to_best == best
  statistics = _moving_statistics(full)
  assert len(statistics) == 2 * 5  # Mean and variance of 5 conv blocks.
  for kept, expected in zip(statistics, _moving_statistics(stopped)):
    np.testing.assert_allclose(kept, expected, rtol=1e-5, atol=1e-7)
  for kept, expected in zip(_all_weights(full), _all_weights(stopped)):
    np.testing.assert_allclose(kept, expected, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(full(audio), stopped(audio), rtol=1e-5)


def test_classification_predicts_original_class_ids():
  audio, pitches = _notes()
  model = supervised.fit_supervised(
      audio, pitches, "classification", 1, TINY_CFN,
      probe.ProbeConfig(probe="linear"),
      evaluation.SupervisedConfig(steps=2, batch_size=8, eval_every=1))
  predictions = model(audio)
  assert predictions.shape == (16,)
  assert set(predictions.tolist()) <= {48, 55, 60, 67}
  assert model.targets.output_dim == 4
  # The linear head is the probe's: one dense layer, no hidden ones.
  assert len(model.head.layers) == 1
  with pytest.raises(ValueError, match="Unknown task_type"):
    supervised.fit_supervised(audio, pitches, "ranking", 0, TINY_CFN)
