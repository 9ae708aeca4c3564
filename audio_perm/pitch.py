"""Pitch-shifted copies of a note, for the pitch-ranking pretext term.

The patch orders asked by the permutation pretext can all be recovered from
where energy lies in each patch, which needs no harmonic spacing; pretrained
encoders lost the pitch their random twins had (docs/recipe_sweep.md). The
pitch term asks for an order that does need pitch: a note is shown as K
copies, each resampled by 2^(s_k / 12) for semitone shifts s_k drawn uniform
in [-range, range], and the network ranks the copies by a scalar score of
their features (training.trainer, with the same differentiable ranking as
the patches). Resampling moves every partial by the same factor, so the
harmonic spacing and the fundamental move with the shift; it also moves the
spectral envelope and shortens or lengthens the note by 1/factor, cues that
the per-copy tilt/EQ jitter (config.AugmentConfig) blurs and that stay
correlated with pitch.

Resampling reads the note at positions t * factor from its onset (linear
interpolation, zeros after the end), so every copy keeps the onset at the
first sample. There is no anti-aliasing filter: a copy shifted up by s
semitones folds content above 8 kHz / 2^(s/12) back (above 6.7 kHz at +3);
keep `range` small.

With envelope="original" (`envelope_offsets`) each copy's log spectrogram
gets the smooth part of the original's instead of its own: the envelope is
each frame's log magnitudes smoothed over ENVELOPE_BINS bins, so what
remains of the shift is the fine structure (where the partials lie), and
neither the spectral envelope nor the time course of the bands (the note
made shorter by the resampling) tells the copies apart.
"""

import tensorflow as tf

from audio_perm import objectives

MAX_SEMITONES = 12.0
ENVELOPES = ("shifted", "original")
# Width of the envelope's smoothing window over the frequency bins: 33
# linear bins are 516 Hz at 16 kHz (harmonics closer than that, below about
# MIDI 72, are smoothed away).
ENVELOPE_BINS = 33


def check_range(semitones):
  """ValueError naming the value unless 0 < semitones <= MAX_SEMITONES."""
  if not 0.0 < float(semitones) <= MAX_SEMITONES:
    raise ValueError(
        f"pitch_range={semitones!r} semitones must be in (0, "
        f"{MAX_SEMITONES:g}]; e.g. 3 (the copies are resampled without an "
        "anti-aliasing filter, so large upward shifts fold high partials "
        "back).")


def resample(waveform, factors):
  """Copies of one waveform read `factors` times faster, on graph.

  copy_k[t] = waveform[t * factors[k]] with linear interpolation and zeros
  past the end: a factor f raises every frequency by f (and shortens the
  note by 1 / f); the onset stays at sample 0.

  Args:
    waveform: float32 [samples].
    factors: float32 [K], positive.

  Returns:
    float32 [K, samples].
  """
  waveform = tf.convert_to_tensor(waveform, tf.float32)
  factors = tf.convert_to_tensor(factors, tf.float32)
  samples = tf.shape(waveform)[0]
  padded = tf.concat([waveform, tf.zeros([2], tf.float32)], axis=0)
  # float64 positions: t * f in float32 loses the fraction past 2^24 / f.
  position = (tf.cast(tf.range(samples), tf.float64)[tf.newaxis, :]
              * tf.cast(factors, tf.float64)[:, tf.newaxis])  # [K, S]
  limit = tf.cast(samples, tf.float64)
  inside = position <= limit - 1.0
  position = tf.minimum(position, limit)
  index = tf.cast(tf.floor(position), tf.int32)
  fraction = tf.cast(position - tf.floor(position), tf.float32)
  left = tf.gather(padded, index)
  right = tf.gather(padded, index + 1)
  copies = left + fraction * (right - left)
  return tf.where(inside, copies, tf.zeros_like(copies))


def draw_semitones(seed, copies, semitones):
  """float32 [copies] shifts uniform in [-semitones, semitones] (stateless)."""
  return tf.random.stateless_uniform([copies], seed, -float(semitones),
                                     float(semitones))


def shifted_copies(waveform, seed, copies, semitones):
  """(copies float32 [K, samples], pitch ranks int32 [K]) of one note.

  Args:
    waveform: float32 [samples].
    seed: shape-[2] stateless seed of the shifts.
    copies: K >= 2 (static).
    semitones: the shifts' range (check_range).
  """
  shifts = draw_semitones(seed, copies, semitones)
  factors = tf.pow(2.0, shifts / 12.0)
  # 0-based ascending ranks (the lowest copy gets 0), as the objectives'.
  return (resample(waveform, factors),
          objectives.predicted_ranks(shifts[tf.newaxis])[0])


def smooth_over_bins(log_spec, width=ENVELOPE_BINS):
  """Each frame of [..., frames, bins] smoothed over its bins by a Hann
  window of `width` bins (weights renormalised at the edges)."""
  log_spec = tf.convert_to_tensor(log_spec, tf.float32)
  shape = tf.shape(log_spec)
  bins = log_spec.shape[-1]
  window = tf.signal.hann_window(width + 2, periodic=False)[1:-1]
  kernel = tf.reshape(window / tf.reduce_sum(window), [width, 1, 1])
  rows = tf.reshape(log_spec, [-1, bins, 1])
  smoothed = tf.nn.conv1d(rows, kernel, 1, "SAME")
  weight = tf.nn.conv1d(tf.ones([1, bins, 1]), kernel, 1, "SAME")
  return tf.reshape(smoothed / weight, shape)


def envelope_offsets(original, copies, width=ENVELOPE_BINS):
  """float32 [K, frames, bins] to add to the copies' log spectrograms so that
  their smooth part is the original's: smooth(original) - smooth(copy).

  Args:
    original: float32 [frames, bins], the note's log spectrogram.
    copies: float32 [K, frames, bins], its shifted copies'.
  """
  return (smooth_over_bins(original, width)[tf.newaxis]
          - smooth_over_bins(copies, width))


def check_envelope(envelope):
  if envelope not in ENVELOPES:
    raise ValueError(f"pitch_envelope={envelope!r} must be one of "
                     f"{ENVELOPES}.")
