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


def _numpy_lowpass(x, cutoff, taper=pitch.LOWPASS_TAPER):
  """The reference filter: rfft gains 1 / raised cosine / 0, irfft."""
  if cutoff >= 1.0:
    return x.astype(np.float64)
  freq = np.arange(len(x) // 2 + 1) * 2.0 / len(x)
  start = cutoff * (1.0 - taper)
  gain = np.where(freq <= start, 1.0, np.where(
      freq >= cutoff, 0.0,
      0.5 * (1.0 + np.cos(np.pi * (freq - start) / (cutoff - start)))))
  return np.fft.irfft(np.fft.rfft(x.astype(np.float64)) * gain, n=len(x))


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("samples", [5000, 4999])
def test_resample_matches_numpy_interpolation(antialias, samples):
  """The independent reference: np.interp at t * f, zero past the end, of
  the note low-passed at Nyquist / f by numpy's FFT when anti-aliased, and
  the copy low-passed again at min(1, f) of Nyquist."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=samples).astype(np.float32)
  factors = np.array([0.8, 1.0, 1.1892, 1.5], np.float32)
  got = pitch.resample(x, factors, antialias=antialias).numpy()
  t = np.arange(len(x), dtype=np.float64)
  for k, f in enumerate(factors.astype(np.float64)):
    source = _numpy_lowpass(x, 1.0 / f) if antialias else x
    want = np.interp(t * f, t, source, right=0.0)
    want[t * f > len(x) - 1] = 0.0
    if antialias:
      want = _numpy_lowpass(want, min(1.0, f))
    np.testing.assert_allclose(got[k], want, atol=2e-5)
  np.testing.assert_array_equal(got[1], x)  # Factor 1: the note itself.
  assert np.all(got[3, int(np.ceil((len(x) - 1) / 1.5)) + 1:] == 0)


def test_upward_copies_fold_nothing_back():
  """A 7.2 kHz partial shifted up 3 semitones passes Nyquist: without the
  filter it folds back to 16 - 8.56 = 7.44 kHz; with it, it is removed,
  while a 2 kHz partial shifted up an octave keeps its amplitude."""
  t = np.arange(SR) / SR
  high = np.sin(2 * np.pi * 7200.0 * t).astype(np.float32)
  factor = 2.0 ** 0.25
  folded = pitch.resample(high, [factor], antialias=False).numpy()[0]
  assert _peak_hz(folded[:SR // 2]) == pytest.approx(SR - 7200 * factor,
                                                      rel=1e-3)
  filtered = pitch.resample(high, [factor]).numpy()[0]
  rms = lambda a: np.sqrt(np.mean(np.square(a[:SR // 2])))
  assert rms(filtered) < 1e-3 * rms(folded)
  low = np.sin(2 * np.pi * 2000.0 * t).astype(np.float32)
  octave = pitch.resample(low, [2.0]).numpy()[0]
  assert _peak_hz(octave[:SR // 2]) == pytest.approx(4000.0, rel=1e-3)
  # Linear interpolation's own loss at 4 kHz: sinc^2(1/4) = 0.81 for the
  # odd samples, none for the even ones; the filter adds nothing.
  assert rms(octave) > 0.8 * rms(low)


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
    _, copy_shifts = pitch.shifted_copies(x, seed, 5, 3.0)
    np.testing.assert_array_equal(copy_shifts.numpy(), shifts)
    ranks = pitch.shift_ranks(copy_shifts)
    assert ranks.dtype == tf.int32
    for i in range(5):
      assert ranks.numpy()[i] == sum(shifts[j] < shifts[i] for j in range(5))


def test_shifted_copies_are_ranked_by_their_pitch():
  t = np.arange(SR) / SR
  x = np.sin(2 * np.pi * 1000.0 * t).astype(np.float32)
  for s in range(5):
    copies, shifts = pitch.shifted_copies(
        x, tf.constant([s, 7], tf.int64), 4, 3.0)
    ranks = pitch.shift_ranks(shifts)
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


def _band_energy(copy, low_hz, high_hz):
  spectrum = np.abs(np.fft.rfft(copy * np.hanning(len(copy)))) ** 2
  freq = np.fft.rfftfreq(len(copy), 1.0 / SR)
  return spectrum[(freq >= low_hz) & (freq < high_hz)].sum()


def test_common_band_limits_every_copy_to_the_band_they_all_fill():
  """White noise, shifted by up to 3 semitones: with band="full" the copy
  shifted down is empty at the top and the others are not (a cue that
  orders them); with "common" every copy is empty above 8 kHz * 2^(-3/12)
  (6.73 kHz) and full below it."""
  x = np.random.default_rng(5).normal(size=SR).astype(np.float32)
  edge = 8000.0 * pitch.common_band(3.0)
  assert edge == pytest.approx(6727.2, abs=0.1)
  for s in range(4):
    seed = tf.constant([s, 9], tf.int64)
    shifts = pitch.draw_semitones(seed, 4, 3.0).numpy()
    usable = SR // 2 - 1000  # Away from the tails zeroed after the end.
    for band in pitch.BANDS:
      copies, _ = pitch.shifted_copies(x, seed, 4, 3.0, band=band)
      for copy, shift in zip(copies.numpy()[:, :usable], shifts):
        below = _band_energy(copy, 1000, 0.9 * edge)
        top = _band_energy(copy, 1.01 * edge, 7900)
        if band == "common":
          assert top < 1e-4 * below, (band, shift)
        else:
          # The copy's own edge: 8 kHz * min(1, factor); per Hz, the band
          # between the two edges holds energy like the band below
          # (linear interpolation's own roll-off there is at most ~0.4).
          own_edge = 0.95 * 8000.0 * min(1.0, 2.0 ** (shift / 12.0))
          if own_edge > 1.1 * edge:
            density = _band_energy(copy, 1.01 * edge, own_edge) / (
                own_edge - 1.01 * edge)
            assert density > 0.1 * below / (0.9 * edge - 1000), (band, shift)
          nothing = _band_energy(copy, own_edge / 0.95 * 1.01, 8000)
          assert nothing < 1e-4 * below, (band, shift)
  with pytest.raises(ValueError, match="pitch_band='half'"):
    pitch.shifted_copies(x, tf.constant([0, 1], tf.int64), 4, 3.0, "half")
  with pytest.raises(ValueError, match="band=1.5"):
    pitch.resample(x, [1.0], band=1.5)


def test_shift_ranks_keep_leading_axes():
  shifts = np.array([[[0.5, -1.0, 2.0], [3.0, 1.0, -2.0]]], np.float32)
  np.testing.assert_array_equal(pitch.shift_ranks(shifts).numpy(),
                                [[[1, 0, 2], [2, 1, 0]]])


def _shift_loss_reference(scores, shifts, delta):
  """Brute force over the pairs, in float64."""
  out = []
  for s, t in zip(scores.astype(np.float64), shifts.astype(np.float64)):
    terms = []
    for i in range(len(s)):
      for j in range(i + 1, len(s)):
        e = (s[i] - s[j]) - (t[i] - t[j])
        terms.append(0.5 * e * e if abs(e) <= delta
                     else delta * (abs(e) - 0.5 * delta))
    out.append(np.mean(terms))
  return np.array(out)


@pytest.mark.parametrize("copies", [2, 3, 5])
def test_shift_loss_matches_brute_force(copies):
  rng = np.random.default_rng(copies)
  scores = rng.normal(scale=3.0, size=(6, copies)).astype(np.float32)
  shifts = rng.uniform(-6, 6, size=(6, copies)).astype(np.float32)
  got = pitch.shift_loss(scores, shifts, delta=3.0).numpy()
  want = _shift_loss_reference(scores, shifts, 3.0)
  # Both regions of the Huber loss are exercised.
  errors = np.abs(scores[:, :, None] - scores[:, None, :]
                  - (shifts[:, :, None] - shifts[:, None, :]))
  assert np.any(errors > 3.0) and np.any((errors > 0) & (errors < 3.0))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_shift_loss_is_zero_exactly_for_a_pitch_up_to_a_constant():
  shifts = np.array([[-3.0, 1.0, 2.5, 0.0]], np.float32)
  offset = np.float32(7.0)
  assert float(pitch.shift_loss(shifts + offset, shifts)[0]) < 1e-10
  # A score in the right order but the wrong scale is not (the rank loss
  # would be satisfied by it).
  assert float(pitch.shift_loss(shifts / 4.0, shifts)[0]) > 1e-2


def test_shift_loss_gradient_matches_finite_differences():
  rng = np.random.default_rng(3)
  scores = tf.constant(rng.normal(scale=3.0, size=(2, 4)), tf.float64)
  shifts = tf.constant(rng.uniform(-3, 3, size=(2, 4)), tf.float64)

  def total(x):
    return tf.reduce_sum(pitch.shift_loss(x, shifts))

  with tf.GradientTape() as tape:
    tape.watch(scores)
    value = total(scores)
  grad = tape.gradient(value, scores).numpy()
  eps = 1e-3
  numeric = np.zeros_like(grad)
  for index in np.ndindex(*grad.shape):
    bump = np.zeros(grad.shape)
    bump[index] = eps
    numeric[index] = (float(total(scores + bump)) - float(total(scores - bump))
                      ) / (2 * eps)
  np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-5)


def test_shift_loss_needs_two_copies():
  with pytest.raises(ValueError, match="K >= 2"):
    pitch.shift_loss(np.zeros((3, 1), np.float32), np.zeros((3, 1)))


@pytest.mark.parametrize("delta", [0.0, -1.0])
def test_shift_loss_needs_a_positive_delta(delta):
  with pytest.raises(ValueError, match="delta must be > 0"):
    pitch.shift_loss(np.zeros((3, 2), np.float32), np.zeros((3, 2)),
                     delta=delta)
