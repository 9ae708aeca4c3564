"""Waveform -> log-magnitude spectrogram, on graph (tf.signal).

The frontend follows the paper: 16 kHz audio, a 25 ms window (400 samples), a
10 ms hop (160 samples), a 1024-point FFT (513 linear-frequency bins) and
log(|X| + log_offset) compression.

It computes exactly what tf.signal.stft(waveform, frame_length, frame_step,
fft_length, window_fn=periodic Hann, pad_end=False) does, written out
(frame, window, zero-pad, rfft, |X|) because that is about 1.5 times faster
on CPU (see benchmarks/pipeline.py).

Conventions:
  * Window: the PERIODIC Hann window of `frame_length` samples
    (`tf.signal.hann_window(frame_length, periodic=True)`, i.e.
    0.5 - 0.5 cos(2 pi k / frame_length), k = 0..frame_length-1, the same as
    `scipy.signal.get_window("hann", frame_length)`). Each windowed frame is
    zero-padded at its end to `fft_length` before the real FFT.
  * No padding of the signal: frame i covers samples
    [i * frame_step, i * frame_step + frame_length), and there are
    1 + (num_samples - frame_length) // frame_step frames (398 for a 4 s note
    of 64000 samples); trailing samples that do not fill a frame are unused.
  * Leading dimensions are kept: [..., samples] -> [..., frames, bins].

Frequency scales (`FREQUENCY_SCALES`, `to_frequency_scale`): "linear" keeps
the 513 FFT bins (the paper's frontend). "log" resamples the log magnitudes
onto `LOG_NUM_BINS` bins with geometrically spaced centres from
`LOG_MIN_HZ` to the Nyquist frequency (about 31 bins per octave): on that
axis a note's partials k * f0 sit at log f0 + log k, so the harmonic
pattern has the same shape at every pitch, shifted, and its spacing shrinks
up the bands; on the linear axis the spacing (the pitch) is the same in
every band, so ordering bands never needs it. The log axis cannot add
resolution the 25 ms window lacks (~40 Hz): below a few hundred Hz its bins
interpolate between FFT bins, and a low tone spans several of them.
"""

import numpy as np
import tensorflow as tf

SAMPLE_RATE_HZ = 16000
NUM_SAMPLES = 64000  # 4 s notes, as in NSynth.
FRAME_LENGTH = 400  # 25 ms at 16 kHz.
FRAME_STEP = 160  # 10 ms at 16 kHz.
FFT_LENGTH = 1024  # 513 bins.
LOG_OFFSET = 1e-6
FREQUENCY_SCALES = ("linear", "log")
LOG_NUM_BINS = 256
LOG_MIN_HZ = 27.5  # A0, MIDI pitch 21 (the lowest piano key).


def num_frames(num_samples, frame_length=FRAME_LENGTH, frame_step=FRAME_STEP):
  """Number of STFT frames for `num_samples` samples (no padding).

  Raises:
    ValueError: if num_samples < frame_length (not even one frame) or the
      frame parameters are not positive.
  """
  _check_frame_params(frame_length, frame_step)
  if num_samples < frame_length:
    raise ValueError(
        f"Audio of {num_samples} samples is shorter than one STFT frame "
        f"(frame_length={frame_length}); pass at least {frame_length} samples.")
  return 1 + (num_samples - frame_length) // frame_step


def num_bins(fft_length=FFT_LENGTH):
  """Number of frequency bins of a real FFT of `fft_length` points."""
  return fft_length // 2 + 1


def _check_frame_params(frame_length, frame_step, fft_length=None):
  if int(frame_length) <= 0 or int(frame_step) <= 0:
    raise ValueError(
        f"frame_length={frame_length} and frame_step={frame_step} must be "
        "positive integers.")
  if fft_length is not None and int(fft_length) < int(frame_length):
    raise ValueError(
        f"fft_length={fft_length} is shorter than frame_length={frame_length};"
        " use fft_length >= frame_length.")


def _as_waveform(waveform):
  """float32 tensor [..., samples]; ValueError for a scalar."""
  waveform = tf.convert_to_tensor(waveform)
  if waveform.dtype != tf.float32:
    waveform = tf.cast(waveform, tf.float32)
  rank = waveform.shape.rank
  if rank is not None and rank < 1:
    raise ValueError(
        f"waveform must have shape [..., samples] (rank >= 1), got shape "
        f"{waveform.shape}; pass e.g. [batch, samples].")
  return waveform


def fit_length(waveform, num_samples=NUM_SAMPLES):
  """Crops or zero-pads waveforms to `num_samples` samples, on graph.

  The one pad/crop rule of the project (training records, exported encoders,
  evaluation): the first `num_samples` samples are kept (NSynth notes start
  at the onset) and shorter audio is zero-padded at the end.

  Args:
    waveform: float waveform [..., samples] (e.g. [samples] or
      [batch, samples]); samples may be unknown statically. Cast to float32.
    num_samples: target length, a positive int.

  Returns:
    float32 [..., num_samples].

  Raises:
    ValueError: if num_samples < 1 or the waveform is a scalar.
  """
  if int(num_samples) < 1:
    raise ValueError(f"num_samples={num_samples} must be a positive integer.")
  num_samples = int(num_samples)
  waveform = _as_waveform(waveform)
  rank = waveform.shape.rank
  waveform = waveform[..., :num_samples]
  pad = [[0, num_samples - tf.shape(waveform)[-1]]]
  if rank is None:
    paddings = tf.concat([tf.zeros([tf.rank(waveform) - 1, 2], tf.int32),
                          tf.convert_to_tensor(pad, tf.int32)], axis=0)
    return tf.pad(waveform, paddings)
  waveform = tf.pad(waveform, [[0, 0]] * (rank - 1) + pad)  # [..., S]
  return tf.ensure_shape(waveform, waveform.shape[:-1] + [num_samples])


def log_magnitude_spectrogram(waveform,
                              frame_length=FRAME_LENGTH,
                              frame_step=FRAME_STEP,
                              fft_length=FFT_LENGTH,
                              log_offset=LOG_OFFSET):
  """Log-compressed magnitude STFT of a waveform.

  Args:
    waveform: float waveform [batch, samples] (any number of leading
      dimensions, at least one: [..., samples]). Cast to float32.
    frame_length: window length in samples (periodic Hann window).
    frame_step: hop in samples.
    fft_length: FFT size; bins = fft_length // 2 + 1.
    log_offset: added to the magnitude before the natural log.

  Returns:
    float32 [batch, frames, bins] (generally [..., frames, bins]) with
    frames = 1 + (samples - frame_length) // frame_step and
    bins = fft_length // 2 + 1: log(|STFT| + log_offset).

  Raises:
    ValueError: if the waveform is a scalar, or its (static) number of samples
      is shorter than one frame, or the frame parameters are invalid.
  """
  _check_frame_params(frame_length, frame_step, fft_length)
  if log_offset <= 0:
    raise ValueError(
        f"log_offset={log_offset} must be > 0 (log of a zero magnitude).")
  waveform = _as_waveform(waveform)
  rank = waveform.shape.rank
  samples = waveform.shape[-1] if rank is not None else None
  if samples is not None:
    num_frames(samples, frame_length, frame_step)  # Raises if too short.
  frames = tf.signal.frame(waveform, frame_length, frame_step)  # [..., T, L]
  frames *= _periodic_hann(frame_length)
  if fft_length > frame_length:
    # Zero-pad each frame to fft_length here rather than through rfft's
    # fft_length argument: the same numbers, about twice as fast on CPU.
    pad = [[0, fft_length - frame_length]]
    if frames.shape.rank is not None:
      paddings = [[0, 0]] * (frames.shape.rank - 1) + pad
    else:
      paddings = tf.concat([tf.zeros([tf.rank(frames) - 1, 2], tf.int32),
                            tf.constant(pad, tf.int32)], axis=0)
    frames = tf.pad(frames, paddings)  # [..., T, fft_length]
  stft = tf.signal.rfft(frames)  # [..., T, F] complex64
  # |X| from the real and imaginary parts: faster than tf.abs on complex64.
  magnitude = tf.sqrt(
      tf.square(tf.math.real(stft)) + tf.square(tf.math.imag(stft)))
  return tf.math.log(magnitude + log_offset)


def _periodic_hann(window_length, dtype=tf.float32):
  return tf.signal.hann_window(window_length, periodic=True, dtype=dtype)


def standardize(spectrogram, epsilon=1e-5):
  """Per-example standardisation of a spectrogram over frames and bins.

  (x - mean) / (std + epsilon), mean and std taken over the last two axes of
  each example; a constant (e.g. silent) example becomes all zeros.

  Args:
    spectrogram: float32 [batch, frames, bins] (or [..., frames, bins]).
    epsilon: added to the standard deviation.

  Returns:
    float32, same shape.
  """
  mean, variance = tf.nn.moments(spectrogram, axes=[-2, -1], keepdims=True)
  return (spectrogram - mean) / (tf.sqrt(variance) + epsilon)


def _check_frequency_scale(frequency_scale):
  if frequency_scale not in FREQUENCY_SCALES:
    raise ValueError(
        f"Unknown frequency_scale {frequency_scale!r}; use one of "
        f"{FREQUENCY_SCALES}.")


def num_scale_bins(frequency_scale="linear", fft_length=FFT_LENGTH):
  """Bins of the spectrogram on `frequency_scale` (513 linear, 256 log)."""
  _check_frequency_scale(frequency_scale)
  return num_bins(fft_length) if frequency_scale == "linear" else LOG_NUM_BINS


def log_frequency_centres_hz(num_log_bins=LOG_NUM_BINS, min_hz=LOG_MIN_HZ,
                             max_hz=SAMPLE_RATE_HZ / 2):
  """Centre frequencies of the log bins: geometric from min_hz to max_hz."""
  if not 0 < min_hz < max_hz or int(num_log_bins) < 2:
    raise ValueError(
        f"A log-frequency axis needs 0 < min_hz < max_hz and at least 2 bins;"
        f" got min_hz={min_hz}, max_hz={max_hz}, bins={num_log_bins}.")
  return min_hz * (max_hz / min_hz) ** (
      np.arange(num_log_bins) / (num_log_bins - 1))


def log_frequency_weights(num_log_bins=LOG_NUM_BINS, min_hz=LOG_MIN_HZ,
                          max_hz=SAMPLE_RATE_HZ / 2, fft_length=FFT_LENGTH,
                          sample_rate_hz=SAMPLE_RATE_HZ):
  """[fft bins, log bins] weights; each column sums to 1.

  Log bin k is a triangle over frequency centred on its centre c_k that
  falls to zero at its neighbours' centres, widened to at least one FFT bin
  either side where the neighbours are closer than that (below ~700 Hz,
  where it becomes linear interpolation between the two FFT bins around
  c_k), normalised to a weighted average of the FFT bins it covers.
  """
  centres = log_frequency_centres_hz(num_log_bins, min_hz, max_hz)
  ratio = centres[1] / centres[0]
  lower = np.concatenate([[centres[0] / ratio], centres[:-1]])
  upper = np.concatenate([centres[1:], [centres[-1] * ratio]])
  spacing = sample_rate_hz / fft_length
  lower = np.minimum(lower, centres - spacing)
  upper = np.maximum(upper, centres + spacing)
  freqs = np.arange(num_bins(fft_length))[:, None] * spacing  # [F, 1]
  rising = (freqs - lower) / (centres - lower)
  falling = (upper - freqs) / (upper - centres)
  weights = np.maximum(0.0, np.minimum(rising, falling))  # [F, K]
  return (weights / weights.sum(axis=0, keepdims=True)).astype(np.float32)


def to_frequency_scale(spectrogram, frequency_scale="linear"):
  """[..., frames, 513] log magnitudes -> the same on `frequency_scale`.

  "linear" returns the input; "log" averages the log magnitudes with
  `log_frequency_weights` ([..., frames, LOG_NUM_BINS]).
  """
  _check_frequency_scale(frequency_scale)
  if frequency_scale == "linear":
    return spectrogram
  weights = tf.constant(log_frequency_weights(), spectrogram.dtype)
  if spectrogram.shape[-1] is not None and (
      spectrogram.shape[-1] != weights.shape[0]):
    raise ValueError(
        f"frequency_scale='log' needs {weights.shape[0]} FFT bins (fft_length"
        f"={FFT_LENGTH}), got {spectrogram.shape[-1]}.")
  return tf.linalg.matmul(spectrogram, weights)
