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
first sample. A copy read faster (factor f > 1) is first low-passed at
Nyquist / f (`lowpass`: its DFT bins above the cutoff zeroed, with a short
raised-cosine taper), so that no partial folds back below Nyquist as an
inharmonic component: without it, a copy shifted up by s semitones would
fold content above 8 kHz / 2^(s/12) back, and the amount folded would order
the copies without their harmonic spacing. Likewise a copy shifted down by
s is empty above 8 kHz * 2^(-s/12), a cue the smooth envelope below does not
remove (it restores the level there, not the partials); with band="common"
(the default) every copy is limited to the band they all fill,
8 kHz * 2^(-range/12) (6.7 kHz at range 3, 4 kHz at range 12).

With envelope="original" (`envelope_offsets`) each copy's log spectrogram
gets the smooth part of the original's instead of its own: the envelope is
each frame's log magnitudes smoothed over ENVELOPE_BINS bins, so what
remains of the shift is the fine structure (where the partials lie), and
neither the spectral envelope nor the time course of the bands (the note
made shorter by the resampling) tells the copies apart.
"""

import math

import numpy as np
import tensorflow as tf

from audio_perm import objectives

MAX_SEMITONES = 12.0
ENVELOPES = ("shifted", "original")
BANDS = ("common", "full")
# shift_loss's Huber quadratic region, in semitones.
SHIFT_LOSS_DELTA = 3.0
# Width of the envelope's smoothing window over the frequency bins: 33
# linear bins are 516 Hz at 16 kHz (harmonics closer than that, below about
# MIDI 72, are smoothed away).
ENVELOPE_BINS = 33
# The anti-aliasing low-pass's transition, as a fraction of its cutoff.
LOWPASS_TAPER = 0.05


def check_range(semitones):
  """ValueError naming the value unless 0 < semitones <= MAX_SEMITONES."""
  if not 0.0 < float(semitones) <= MAX_SEMITONES:
    raise ValueError(
        f"pitch_range={semitones!r} semitones must be in (0, "
        f"{MAX_SEMITONES:g}]; e.g. 3.")


def lowpass(waveform, cutoffs, taper=LOWPASS_TAPER):
  """Copies of a waveform, each low-passed at its own cutoff, on graph.

  The DFT of the waveform (one rfft, or one per row) is multiplied by a gain
  per copy: 1 below cutoff * (1 - taper), 0 above the cutoff, a raised
  cosine between; a cutoff >= 1 leaves the copy exactly as it was. The
  filter is circular (zero-phase over the whole note), which is harmless
  for notes that have decayed by their last sample.

  Args:
    waveform: float32 [samples] (one source for all cutoffs) or
      [K, samples] (one row per cutoff).
    cutoffs: float32 [K], fractions of Nyquist (> 0).
    taper: width of the transition, as a fraction of each cutoff.

  Returns:
    float32 [K, samples].
  """
  waveform = tf.convert_to_tensor(waveform, tf.float32)
  cutoffs = tf.convert_to_tensor(cutoffs, tf.float32)[:, tf.newaxis]
  rows = waveform if waveform.shape.rank == 2 else waveform[tf.newaxis]
  samples = tf.shape(rows)[1]
  spectrum = tf.signal.rfft(rows)  # [1 or K, S // 2 + 1]
  # Bin k lies at 2k / S of Nyquist.
  freq = (2.0 * tf.cast(tf.range(tf.shape(spectrum)[1]), tf.float32)
          / tf.cast(samples, tf.float32))[tf.newaxis]  # [1, bins]
  start = cutoffs * (1.0 - taper)
  ramp = tf.clip_by_value((freq - start) / (cutoffs - start), 0.0, 1.0)
  gain = 0.5 * (1.0 + tf.cos(math.pi * ramp))  # [K, bins]
  filtered = tf.signal.irfft(spectrum * tf.cast(gain, tf.complex64),
                             fft_length=samples[tf.newaxis])
  return tf.where(cutoffs >= 1.0, rows, filtered)


def resample(waveform, factors, antialias=True, band=1.0):
  """Copies of one waveform read `factors` times faster, on graph.

  copy_k[t] = w_k[t * factors[k]] with linear interpolation and zeros past
  the end: a factor f raises every frequency by f (and shortens the note by
  1 / f); the onset stays at sample 0. Without `antialias`, w_k is the
  waveform. With it, w_k is the waveform low-passed at band / f of Nyquist
  (`lowpass`, where that is below 1), so that nothing folds back, and the
  copy is low-passed again at band * min(1, f), which removes the images
  linear interpolation leaves above f * Nyquist in a copy read slower. With
  band 1 each copy keeps all it can; a band below 1 limits every copy to
  that fraction of Nyquist.

  Args:
    waveform: float32 [samples].
    factors: float32 [K], positive.
    antialias: low-pass the sources (the pipeline's choice); False reads
      the waveform as it is.
    band: the copies' band after resampling, as a fraction of Nyquist
      (0 < band <= 1).

  Returns:
    float32 [K, samples].
  """
  if not 0.0 < float(band) <= 1.0:
    raise ValueError(f"band={band!r} must be in (0, 1] (a fraction of "
                     "Nyquist).")
  waveform = tf.convert_to_tensor(waveform, tf.float32)
  factors = tf.convert_to_tensor(factors, tf.float32)
  samples = tf.shape(waveform)[0]
  if antialias:
    sources = lowpass(waveform, float(band) / factors)  # [K, S]
  else:
    sources = tf.broadcast_to(waveform[tf.newaxis],
                              [tf.shape(factors)[0], samples])
  padded = tf.concat([sources, tf.zeros([tf.shape(factors)[0], 2],
                                        tf.float32)], axis=1)  # [K, S + 2]
  # float64 positions: t * f in float32 loses the fraction past 2^24 / f.
  position = (tf.cast(tf.range(samples), tf.float64)[tf.newaxis, :]
              * tf.cast(factors, tf.float64)[:, tf.newaxis])  # [K, S]
  limit = tf.cast(samples, tf.float64)
  inside = position <= limit - 1.0
  position = tf.minimum(position, limit)
  index = tf.cast(tf.floor(position), tf.int32)
  fraction = tf.cast(position - tf.floor(position), tf.float32)
  left = tf.gather(padded, index, batch_dims=1)
  right = tf.gather(padded, index + 1, batch_dims=1)
  copies = left + fraction * (right - left)
  copies = tf.where(inside, copies, tf.zeros_like(copies))
  if antialias:
    copies = lowpass(copies, float(band) * tf.minimum(1.0, factors))
  return copies


def draw_semitones(seed, copies, semitones):
  """float32 [copies] shifts uniform in [-semitones, semitones] (stateless)."""
  return tf.random.stateless_uniform([copies], seed, -float(semitones),
                                     float(semitones))


def common_band(semitones):
  """The band every copy can fill, as a fraction of Nyquist: a copy shifted
  down by `semitones` carries nothing above Nyquist * 2^(-semitones/12)."""
  return 2.0 ** (-float(semitones) / 12.0)


def shifted_copies(waveform, seed, copies, semitones, band="common"):
  """(copies float32 [K, samples], their shifts float32 [K] in semitones)
  of one note (`shift_ranks` gives the copies' pitch ranks).

  Args:
    waveform: float32 [samples].
    seed: shape-[2] stateless seed of the shifts.
    copies: K >= 2 (static).
    semitones: the shifts' range (check_range).
    band: "full": each copy keeps all it can (the anti-aliased `resample`;
      a copy shifted down by s is empty above Nyquist * 2^(-s/12), so the
      top of the band tells the lower copies apart); "common": every copy
      low-passed to `common_band(semitones)` of Nyquist (the source at
      that / factor before resampling), the band all copies fill, so that
      only the partials inside it order them.
  """
  check_band(band)
  shifts = draw_semitones(seed, copies, semitones)
  factors = tf.pow(2.0, shifts / 12.0)
  resampled = resample(
      waveform, factors,
      band=common_band(semitones) if band == "common" else 1.0)
  return resampled, shifts


def shift_ranks(shifts):
  """int32 [..., K]: 0-based ascending ranks of the copies' shifts [..., K]
  (the lowest copy gets 0), as the objectives' targets."""
  shifts = tf.convert_to_tensor(shifts, tf.float32)
  flat = tf.reshape(shifts, [-1, shifts.shape[-1]])
  return tf.reshape(objectives.predicted_ranks(flat), tf.shape(shifts))


def shift_loss(scores, shifts, delta=SHIFT_LOSS_DELTA):
  """float [notes]: the copies' scores asked to move with their shifts.

  For each pair of copies i < j of a note, the error
  (score_i - score_j) - (shift_i - shift_j) (in semitones) under a Huber
  loss of `delta` semitones, averaged over the K (K - 1) / 2 pairs. The
  score then has to follow the shift's size, not only its order: a score
  that satisfies it for every note is a pitch (in semitones) up to a
  constant per note, the relative-pitch objective of SPICE (Gfeller et
  al., 2020), where a rank loss is satisfied by any score monotone in
  pitch within a note.

  Args:
    scores: float [notes, K], the copies' pitch scores.
    shifts: float [notes, K], their shifts in semitones.
    delta: the Huber loss's quadratic region, in semitones (> 0).
  """
  scores = tf.convert_to_tensor(scores)
  if scores.dtype != tf.float64:
    scores = tf.cast(scores, tf.float32)
  shifts = tf.cast(shifts, scores.dtype)
  copies = scores.shape[-1]
  if copies is None or copies < 2:
    raise ValueError(f"shift_loss needs K >= 2 copies per note, got {copies}.")
  if not delta > 0:
    raise ValueError(f"shift_loss's delta must be > 0 semitones, got {delta}.")
  error = ((scores[:, :, tf.newaxis] - scores[:, tf.newaxis, :])
           - (shifts[:, :, tf.newaxis] - shifts[:, tf.newaxis, :]))
  size = tf.abs(error)
  huber = tf.where(size <= delta, 0.5 * tf.square(error),
                   delta * (size - 0.5 * delta))
  upper = tf.constant(np.triu(np.ones((copies, copies)), k=1), scores.dtype)
  return (tf.reduce_sum(huber * upper, axis=[1, 2])
          / (copies * (copies - 1) / 2))


def _smoothing_matrix(bins, width):
  """numpy [bins, bins]: column j holds the Hann weights that smooth bin j,
  renormalised to sum 1 where the window runs past the edges."""
  window = np.hanning(width + 2)[1:-1]
  half = width // 2
  matrix = np.zeros((bins, bins))
  for j in range(bins):
    lo, hi = max(0, j - half), min(bins, j + half + 1)
    weights = window[lo - (j - half):hi - (j - half)]
    matrix[lo:hi, j] = weights / weights.sum()
  return matrix.astype(np.float32)


def smooth_over_bins(log_spec, width=ENVELOPE_BINS):
  """Each frame of [..., frames, bins] smoothed over its bins by a Hann
  window of `width` (odd) bins (weights renormalised at the edges).

  One matmul with a banded [bins, bins] matrix: on CPU it is several times
  faster than the equivalent 1-D convolution, and the pipeline runs it for
  every note (`envelope_offsets`)."""
  if width % 2 != 1:
    raise ValueError(f"width={width} must be odd (a window centred on "
                     "each bin).")
  log_spec = tf.convert_to_tensor(log_spec, tf.float32)
  shape = tf.shape(log_spec)
  bins = log_spec.shape[-1]
  rows = tf.reshape(log_spec, [-1, bins])
  smoothed = tf.matmul(rows, tf.constant(_smoothing_matrix(bins, width)))
  return tf.reshape(smoothed, shape)


def envelope_offsets(original, copies, width=ENVELOPE_BINS):
  """float32 [K, frames, bins] to add to the copies' log spectrograms so that
  their smooth part is the original's: smooth(original) - smooth(copy).

  Args:
    original: float32 [frames, bins], the note's log spectrogram.
    copies: float32 [K, frames, bins], its shifted copies'.
  """
  return (smooth_over_bins(original, width)[tf.newaxis]
          - smooth_over_bins(copies, width))


def check_band(band):
  if band not in BANDS:
    raise ValueError(f"pitch_band={band!r} must be one of {BANDS}.")


def check_envelope(envelope):
  if envelope not in ENVELOPES:
    raise ValueError(f"pitch_envelope={envelope!r} must be one of "
                     f"{ENVELOPES}.")
