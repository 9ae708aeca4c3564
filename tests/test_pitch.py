"""Tests of audio_perm.pitch: resampled copies and their pitch ranks."""

import numpy as np
import pytest
import tensorflow as tf

from audio_perm import pitch

SR = 16000


def _peak_hz(segment):
  """Frequency of the largest peak, refined by a parabola through the bins."""
  spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment))))
  k = int(np.argmax(spectrum[1:-1])) + 1
  a, b, c = np.log(spectrum[k - 1:k + 2])
  return (k + 0.5 * (a - c) / (a - 2 * b + c)) * SR / len(segment)


def test_resample_matches_numpy_interpolation():
  """The independent reference: np.interp at t * f, zero past the end."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=5000).astype(np.float32)
  factors = np.array([0.8, 1.0, 1.1892, 1.5], np.float32)
  got = pitch.resample(x, factors).numpy()
  t = np.arange(len(x), dtype=np.float64)
  for k, f in enumerate(factors.astype(np.float64)):
    want = np.interp(t * f, t, x.astype(np.float64), right=0.0)
    want[t * f > len(x) - 1] = 0.0
    np.testing.assert_allclose(got[k], want, atol=2e-6)
  np.testing.assert_array_equal(got[1], x)  # Factor 1: the note itself.
  assert np.all(got[3, int(np.ceil((len(x) - 1) / 1.5)) + 1:] == 0)


@pytest.mark.parametrize("semitones", [-3.0, -0.5, 0.7, 3.0])
def test_resampled_sine_moves_by_the_factor(semitones):
  t = np.arange(4 * SR) / SR
  x = np.sin(2 * np.pi * 440.0 * t).astype(np.float32)
  factor = 2.0 ** (semitones / 12.0)
  copy = pitch.resample(x, [factor]).numpy()[0]
  np.testing.assert_allclose(_peak_hz(copy[:SR]), 440.0 * factor, rtol=1e-3)


def test_ranks_match_brute_force():
  rng = np.random.default_rng(1)
  values = rng.normal(size=(20, 5)).astype(np.float32)
  got = pitch.ranks(values).numpy()
  for row, ranks in zip(values, got):
    for i in range(5):
      assert ranks[i] == sum(row[j] < row[i] for j in range(5))


def test_shifted_copies_are_ranked_by_their_pitch():
  t = np.arange(SR) / SR
  x = np.sin(2 * np.pi * 1000.0 * t).astype(np.float32)
  for s in range(5):
    copies, ranks = pitch.shifted_copies(
        x, tf.constant([s, 7], tf.int64), 4, 3.0)
    peaks = [_peak_hz(c[:SR // 2]) for c in copies.numpy()]
    np.testing.assert_array_equal(np.argsort(np.argsort(peaks)),
                                  ranks.numpy())
    assert all(1000 * 2 ** -0.25 - 1 < p < 1000 * 2 ** 0.25 + 1
               for p in peaks)  # Within +-3 semitones.


@pytest.mark.parametrize("value", [0.0, -1.0, 12.5])
def test_range_is_checked(value):
  with pytest.raises(ValueError, match=f"pitch_range={value}"):
    pitch.check_range(value)
