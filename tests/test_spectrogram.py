"""audio_perm.spectrogram against an independent numpy/scipy STFT."""

import numpy as np
import pytest
import scipy.signal
import tensorflow as tf

from audio_perm import spectrogram


def _numpy_stft_magnitude(x, frame_length, frame_step, fft_length,
                          window="periodic"):
  """|STFT| by explicit framing + rfft in float64: [..., S] -> [..., T, F]."""
  x = np.asarray(x, np.float64)
  n = 1 + (x.shape[-1] - frame_length) // frame_step
  idx = np.arange(n)[:, None] * frame_step + np.arange(frame_length)
  frames = x[..., idx]  # [..., T, L]
  if window == "periodic":
    w = scipy.signal.get_window("hann", frame_length, fftbins=True)
  else:
    w = scipy.signal.windows.hann(frame_length, sym=True)
  return np.abs(np.fft.rfft(frames * w, n=fft_length, axis=-1))


@pytest.mark.parametrize("frame_length,frame_step,fft_length,num_samples", [
    (400, 160, 1024, 64000),
    (64, 16, 64, 1000),
    (100, 33, 128, 1234),
])
def test_matches_numpy_reference(frame_length, frame_step, fft_length,
                                 num_samples):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, num_samples)).astype(np.float32)
  got = spectrogram.log_magnitude_spectrogram(
      x, frame_length, frame_step, fft_length, log_offset=1e-6).numpy()
  ref_mag = _numpy_stft_magnitude(x, frame_length, frame_step, fft_length)
  frames = 1 + (num_samples - frame_length) // frame_step
  assert got.shape == (2, frames, fft_length // 2 + 1)
  assert got.dtype == np.float32
  assert spectrogram.num_frames(num_samples, frame_length, frame_step) == frames
  # Magnitudes to float32 accuracy, and the log where the magnitude is not
  # dominated by float32 round-off.
  got_mag = np.exp(got.astype(np.float64)) - 1e-6
  np.testing.assert_allclose(got_mag, ref_mag, rtol=0,
                             atol=2e-6 * ref_mag.max())
  big = ref_mag > 1e-3 * ref_mag.max()
  np.testing.assert_allclose(got[big], np.log(ref_mag[big] + 1e-6),
                             rtol=0, atol=1e-3)


def test_window_is_periodic_hann_not_symmetric():
  x = np.random.default_rng(1).standard_normal((1, 4000)).astype(np.float32)
  got = np.exp(spectrogram.log_magnitude_spectrogram(x).numpy()) - 1e-6
  periodic = _numpy_stft_magnitude(x, 400, 160, 1024, "periodic")
  symmetric = _numpy_stft_magnitude(x, 400, 160, 1024, "symmetric")
  err_p = np.abs(got - periodic).max()
  err_s = np.abs(got - symmetric).max()
  assert err_p < 1e-4 < err_s


def test_pure_tone_peaks_at_its_bin():
  freq_hz = 1000.0
  t = np.arange(spectrogram.NUM_SAMPLES) / spectrogram.SAMPLE_RATE_HZ
  x = np.sin(2 * np.pi * freq_hz * t).astype(np.float32)[None]
  spec = spectrogram.log_magnitude_spectrogram(x).numpy()
  assert spec.shape == (1, 398, 513)
  expected_bin = round(freq_hz * spectrogram.FFT_LENGTH /
                       spectrogram.SAMPLE_RATE_HZ)  # 64
  assert np.all(spec[0].argmax(-1) == expected_bin)


def test_leading_dims_and_graph_mode():
  x = np.random.default_rng(2).standard_normal((2, 3, 2000)).astype(np.float32)
  fn = tf.function(lambda w: spectrogram.log_magnitude_spectrogram(w, 400, 160))
  got = fn(x).numpy()
  assert got.shape == (2, 3, 11, 513)
  flat = spectrogram.log_magnitude_spectrogram(x.reshape(6, 2000)).numpy()
  np.testing.assert_allclose(got.reshape(6, 11, 513), flat, atol=1e-5)
  one = spectrogram.log_magnitude_spectrogram(x[0, 0]).numpy()
  np.testing.assert_allclose(one, got[0, 0], atol=1e-5)


def test_same_as_tf_signal_stft_and_static_shapes():
  x = np.random.default_rng(4).standard_normal((3, 5000)).astype(np.float32)
  ref = np.log(np.abs(tf.signal.stft(
      x, 400, 160, 1024, window_fn=tf.signal.hann_window).numpy()) + 1e-6)
  np.testing.assert_allclose(
      spectrogram.log_magnitude_spectrogram(x).numpy(), ref, atol=1e-4)
  fn = tf.function(spectrogram.log_magnitude_spectrogram,
                   input_signature=[tf.TensorSpec([None, 5000], tf.float32)])
  out = fn.get_concrete_function().structured_outputs
  assert out.shape.as_list() == [None, 29, 513]
  unknown_rank = tf.function(
      spectrogram.log_magnitude_spectrogram,
      input_signature=[tf.TensorSpec(None, tf.float32)])
  np.testing.assert_allclose(unknown_rank(x).numpy(), ref, atol=1e-4)


def test_silence_is_log_offset():
  spec = spectrogram.log_magnitude_spectrogram(np.zeros((1, 1000), np.float32))
  np.testing.assert_allclose(spec.numpy(), np.log(1e-6), rtol=1e-6)


def test_bad_inputs_raise_value_error_naming_the_value():
  with pytest.raises(ValueError, match="399 samples"):
    spectrogram.log_magnitude_spectrogram(np.zeros((2, 399), np.float32))
  with pytest.raises(ValueError, match=r"rank >= 1"):
    spectrogram.log_magnitude_spectrogram(np.float32(1.0))
  with pytest.raises(ValueError, match="fft_length=256"):
    spectrogram.log_magnitude_spectrogram(np.zeros((1, 1000)), fft_length=256)
  with pytest.raises(ValueError, match="frame_step=0"):
    spectrogram.log_magnitude_spectrogram(np.zeros((1, 1000)), frame_step=0)
  with pytest.raises(ValueError, match="log_offset"):
    spectrogram.log_magnitude_spectrogram(np.zeros((1, 1000)), log_offset=0.0)
  with pytest.raises(ValueError, match="10 samples"):
    spectrogram.num_frames(10)


def test_standardize_per_example():
  rng = np.random.default_rng(3)
  x = (rng.standard_normal((3, 20, 7)) * [[[1.0]], [[5.0]], [[0.1]]] +
       [[[2.0]], [[-4.0]], [[0.0]]]).astype(np.float32)
  x[2] = 1.5  # A constant example becomes zeros.
  got = spectrogram.standardize(x).numpy()
  ref = (x[:2] - x[:2].mean((1, 2), keepdims=True)) / (
      x[:2].std((1, 2), keepdims=True) + 1e-5)
  np.testing.assert_allclose(got[:2], ref, atol=1e-4)
  np.testing.assert_array_equal(got[2], 0.0)


@pytest.mark.parametrize("shape", [(5000,), (2, 999), (2, 3, 1000), (1, 0)])
@pytest.mark.parametrize("num_samples", [1000, 1])
def test_fit_length_crops_or_pads_like_numpy(shape, num_samples):
  x = np.random.default_rng(5).standard_normal(shape)  # float64, cast.
  want = np.zeros(shape[:-1] + (num_samples,), np.float32)
  keep = min(shape[-1], num_samples)
  want[..., :keep] = x[..., :keep]  # First samples kept, zeros at the end.
  got = spectrogram.fit_length(x, num_samples)
  assert got.dtype == tf.float32 and got.shape == want.shape
  np.testing.assert_array_equal(got.numpy(), want)
  # On graph with unknown lengths (and unknown rank): the same numbers, and
  # a static length when the rank is known.
  known_rank = tf.function(
      lambda w: spectrogram.fit_length(w, num_samples),
      input_signature=[tf.TensorSpec([None] * len(shape), tf.float64)])
  assert (known_rank.get_concrete_function().structured_outputs.shape
          .as_list() == [None] * (len(shape) - 1) + [num_samples])
  np.testing.assert_array_equal(known_rank(x).numpy(), want)
  unknown_rank = tf.function(
      lambda w: spectrogram.fit_length(w, num_samples),
      input_signature=[tf.TensorSpec(None, tf.float64)])
  np.testing.assert_array_equal(unknown_rank(x).numpy(), want)


def test_fit_length_bad_inputs():
  with pytest.raises(ValueError, match="num_samples=0"):
    spectrogram.fit_length(np.zeros(3), 0)
  with pytest.raises(ValueError, match="rank >= 1"):
    spectrogram.fit_length(np.float32(1.0), 3)


# ------------------------------------------------------- log frequency axis


def _tone(freq_hz, amplitude=1.0):
  t = np.arange(spectrogram.NUM_SAMPLES) / spectrogram.SAMPLE_RATE_HZ
  return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def test_log_frequency_weights_are_local_averages_around_each_centre():
  weights = spectrogram.log_frequency_weights()
  centres = spectrogram.log_frequency_centres_hz()
  assert weights.shape == (513, spectrogram.LOG_NUM_BINS)
  assert weights.min() >= 0
  np.testing.assert_allclose(weights.sum(axis=0), 1.0, atol=1e-5)
  # Every log bin draws on at least two FFT bins (no empty or copied bin)...
  assert (np.count_nonzero(weights, axis=0) >= 2).all()
  # ... centred on its own frequency: the weighted mean frequency of a bin
  # is its centre to within one FFT bin (15.6 Hz) or 3% (the top bins'
  # triangles are cut at the Nyquist frequency, hence the last one's 5%).
  spacing = spectrogram.SAMPLE_RATE_HZ / spectrogram.FFT_LENGTH
  mean_hz = (np.arange(513) * spacing) @ weights
  error = np.abs(mean_hz - centres)
  assert (error[:-1] <= np.maximum(spacing, 0.03 * centres[:-1])).all()
  assert error[-1] <= 0.05 * centres[-1]
  # Geometric centres from A0 to the Nyquist frequency.
  assert centres[0] == pytest.approx(27.5)
  assert centres[-1] == pytest.approx(8000.0)
  np.testing.assert_allclose(centres[1:] / centres[:-1], centres[1] / centres[0])


def test_log_frequency_weights_interpolate_below_the_fft_resolution():
  # 27.5 Hz lies between the FFT bins at 15.625 and 31.25 Hz: linear
  # interpolation weights (31.25 - 27.5) / 15.625 and (27.5 - 15.625) / 15.625.
  weights = spectrogram.log_frequency_weights()
  assert np.flatnonzero(weights[:, 0]).tolist() == [1, 2]
  np.testing.assert_allclose(weights[1:3, 0], [0.24, 0.76], atol=1e-6)


# Above ~200 Hz: the 25 ms window resolves ~40 Hz, so below that a tone's
# main lobe spans several log bins and the peak moves with the frame's phase.
@pytest.mark.parametrize("freq_hz", [261.6, 1000.0, 3520.0])
def test_a_tone_peaks_at_its_log_bin(freq_hz):
  spec = spectrogram.to_frequency_scale(
      spectrogram.log_magnitude_spectrogram(_tone(freq_hz)[None]), "log")
  assert spec.shape == (1, 398, spectrogram.LOG_NUM_BINS)
  centres = spectrogram.log_frequency_centres_hz()
  nearest = np.abs(np.log(centres / freq_hz)).argmin()
  peaks = spec.numpy()[0].argmax(-1)
  assert (np.abs(peaks - nearest) <= 1).all(), (freq_hz, nearest, peaks[:5])


def test_an_octave_is_the_same_shift_at_every_pitch():
  # The point of the log axis: on it a note's harmonic pattern moves as a
  # whole with pitch. Two harmonic notes an octave apart peak a fixed number
  # of bins apart (~31 per octave) at every partial; on the linear axis the
  # partials' distances grow with the partial number.
  def note(f0):
    return sum(_tone(k * f0, 1.0 / k) for k in range(1, 5))
  per_octave = (spectrogram.LOG_NUM_BINS - 1) / np.log2(
      8000.0 / spectrogram.LOG_MIN_HZ)
  for f0 in (220.0, 440.0):
    low, high = (spectrogram.to_frequency_scale(
        spectrogram.log_magnitude_spectrogram(note(f)[None]), "log").numpy()
                 [0].mean(0) for f in (f0, 2 * f0))
    centres = spectrogram.log_frequency_centres_hz()
    for k in range(1, 4):
      # The peak of partial k of each note, searched within a third of an
      # octave of its frequency.
      def peak(spectrum, hz):
        window = np.flatnonzero(np.abs(np.log2(centres / hz)) < 1 / 3)
        return window[spectrum[window].argmax()]
      shift = peak(high, 2 * k * f0) - peak(low, k * f0)
      assert abs(shift - per_octave) <= 1.5, (f0, k, shift, per_octave)


def test_to_frequency_scale_linear_is_the_identity_and_log_runs_on_graph():
  x = np.random.default_rng(0).standard_normal((2, 3, 7, 513)).astype(
      np.float32)
  assert spectrogram.to_frequency_scale(x, "linear") is x
  got = tf.function(lambda s: spectrogram.to_frequency_scale(s, "log"))(x)
  np.testing.assert_allclose(
      got.numpy(), x @ spectrogram.log_frequency_weights(), rtol=1e-5,
      atol=1e-5)
  assert spectrogram.num_scale_bins("linear") == 513
  assert spectrogram.num_scale_bins("log") == spectrogram.LOG_NUM_BINS


def test_frequency_scale_bad_inputs_name_the_value():
  with pytest.raises(ValueError, match="'mel'.*'linear', 'log'"):
    spectrogram.to_frequency_scale(np.zeros((1, 2, 513), np.float32), "mel")
  with pytest.raises(ValueError, match="'mel'"):
    spectrogram.num_scale_bins("mel")
  with pytest.raises(ValueError, match="513 FFT bins.*got 129"):
    spectrogram.to_frequency_scale(np.zeros((1, 2, 129), np.float32), "log")
