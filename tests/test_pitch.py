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
  x = np.random.default_rng(1).normal(size=800).astype(np.float32)
  for s in range(20):
    seed = tf.constant([s, 3], tf.int64)
    shifts = pitch.draw_semitones(seed, 5, 3.0).numpy()
    _, ranks = pitch.shifted_copies(x, seed, 5, 3.0)
    assert ranks.dtype == tf.int32
    for i in range(5):
      assert ranks.numpy()[i] == sum(shifts[j] < shifts[i] for j in range(5))


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


def _harmonic_note(f0, seconds=1.0):
  """A decaying harmonic tone with a fixed formant near 1.5 kHz."""
  t = np.arange(int(seconds * SR)) / SR
  note = sum(np.exp(-((h * f0 - 1500.0) / 700.0) ** 2)
             * np.sin(2 * np.pi * h * f0 * t) for h in range(1, 30)
             if h * f0 < 7000)
  return (note * np.exp(-3.0 * t)).astype(np.float32)


def test_smoothing_over_bins_matches_a_brute_force_window():
  rng = np.random.default_rng(3)
  spec = rng.normal(size=(2, 3, 40)).astype(np.float32)
  width = 7
  window = np.hanning(width + 2)[1:-1]
  got = pitch.smooth_over_bins(spec, width).numpy()
  for f in range(40):
    taps = [(k, window[k + width // 2]) for k in range(-(width // 2),
                                                        width // 2 + 1)
            if 0 <= f + k < 40]
    want = (sum(w * spec[..., f + k] for k, w in taps)
            / sum(w for _, w in taps))
    np.testing.assert_allclose(got[..., f], want, atol=1e-5)


def test_original_envelope_keeps_the_smooth_part_and_moves_the_partials():
  from audio_perm import spectrogram  # pylint: disable=g-import-not-at-top
  note = _harmonic_note(220.0)
  copies = pitch.resample(note, [2 ** (-3 / 12), 2 ** (3 / 12)])
  specs = spectrogram.log_magnitude_spectrogram(
      tf.concat([note[np.newaxis], copies], axis=0)).numpy()
  kept = specs[1:] + pitch.envelope_offsets(specs[0], specs[1:]).numpy()
  smooth = lambda x: pitch.smooth_over_bins(x).numpy()
  # The smooth part: far nearer the original's than the resampled copies'
  # (formant moved, decay faster or slower).
  moved = np.abs(smooth(specs[1:]) - smooth(specs[0])[np.newaxis]).mean()
  left = np.abs(smooth(kept) - smooth(specs[0])[np.newaxis]).mean()
  assert left < 0.3 * moved, (left, moved)
  # The fine structure (what the smoothing leaves) is the copy's, not the
  # original's: the partials sit where the resampling put them.
  def ripple(x):
    return (x - smooth(x))[:, :30, 5:400].reshape(len(x), -1)

  for k in range(2):
    with_copy = np.corrcoef(ripple(kept)[k], ripple(specs[1:])[k])[0, 1]
    with_note = np.corrcoef(ripple(kept)[k], ripple(specs[:1])[0])[0, 1]
    assert with_copy > 0.95 and with_note < 0.5, (k, with_copy, with_note)


def test_envelope_choice_is_checked():
  pitch.check_envelope("original")
  with pytest.raises(ValueError, match="pitch_envelope='kept'"):
    pitch.check_envelope("kept")
