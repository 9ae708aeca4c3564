"""Spectrogram -> patches for each slicing scheme, and back; the shared frontend.

Schemes (`SCHEMES`), for a spectrogram [batch, frames, bins]:
  * "frequency": `num_patches` horizontal bands, ordered from low to high
    frequency. Each band has floor(bins / num_patches) bins and all frames.
  * "time": `num_patches` vertical slices in time order. Each slice has
    floor(frames / num_patches) frames and all bins.
  * "time_frequency": a grid (rows, cols) of tiles with rows * cols ==
    num_patches; rows run along FREQUENCY (as a spectrogram is drawn, with
    frequency vertical) and cols along TIME. A tile has floor(bins / rows) bins
    and floor(frames / cols) frames. Tiles are ordered row-major starting from
    the lowest frequency band at the earliest time: tile r * cols + c is the
    r-th band from the bottom, c-th slice from the start. Without a grid, the
    most square factorisation with rows <= cols is used (10 -> 2 x 5,
    9 -> 3 x 3, a prime p -> 1 x p).

Leftover rule: the bins/frames that do not fill a whole patch are DROPPED, at
the high-frequency end and at the end in time. With the defaults (398 frames,
513 bins, 10 patches): "frequency" bands have 51 bins and the top 3 bins
(510..512, the highest frequencies) are dropped; "time" slices have 39 frames
and the last 8 frames are dropped. `assemble_patches` inverts
`extract_patches` on the kept region only ([batch, frames', bins'] with
frames' = patch_frames * cols, bins' = patch_bins * rows).

`frontend` is the single waveform -> identity-order patches function used by
both the training pipeline (audio_perm.data) and the exported encoder, so that
the two always see the same features: log-magnitude spectrogram, optional crop
in time, optional per-example standardisation (off by default: the encoder
standardises each example over all its patches, see models), patches, a
channel axis.
"""

import math

import tensorflow as tf

from audio_perm import spectrogram as spectrogram_lib

SCHEMES = ("frequency", "time", "time_frequency")


def _check_scheme(scheme):
  if scheme not in SCHEMES:
    raise ValueError(
        f"Unknown patching scheme {scheme!r}; use one of {SCHEMES}.")


def default_grid(num_patches):
  """The most square (rows, cols) with rows * cols == num_patches, rows <= cols."""
  num_patches = int(num_patches)
  if num_patches < 1:
    raise ValueError(f"num_patches={num_patches} must be >= 1.")
  rows = max(d for d in range(1, math.isqrt(num_patches) + 1)
             if num_patches % d == 0)
  return rows, num_patches // rows


def grid_for(scheme, num_patches, grid=None):
  """(rows along frequency, cols along time) of the patch layout of a scheme.

  "frequency" is (num_patches, 1), "time" is (1, num_patches) and
  "time_frequency" is `grid` (or `default_grid(num_patches)` if None).

  Raises:
    ValueError: unknown scheme, num_patches < 1, a grid given for a scheme
      other than "time_frequency", or a grid whose product is not num_patches.
  """
  _check_scheme(scheme)
  num_patches = int(num_patches)
  if num_patches < 1:
    raise ValueError(f"num_patches={num_patches} must be >= 1.")
  if scheme != "time_frequency":
    if grid is not None:
      raise ValueError(
          f"grid={grid!r} only applies to patching='time_frequency', not "
          f"{scheme!r}; pass grid=None.")
    return (num_patches, 1) if scheme == "frequency" else (1, num_patches)
  if grid is None:
    return default_grid(num_patches)
  try:
    rows, cols = (int(g) for g in grid)
  except (TypeError, ValueError):
    raise ValueError(
        f"grid={grid!r} must be a pair (rows, cols) of positive integers."
    ) from None
  if rows < 1 or cols < 1 or rows * cols != num_patches:
    raise ValueError(
        f"grid={grid!r} does not match num_patches={num_patches}: need "
        f"rows * cols == num_patches with rows, cols >= 1.")
  return rows, cols


def patch_shape(scheme, num_patches, num_frames, num_bins, grid=None):
  """(patch_frames, patch_bins) of one patch.

  Args:
    scheme: one of SCHEMES.
    num_patches: number of patches n.
    num_frames: frames of the spectrogram.
    num_bins: frequency bins of the spectrogram.
    grid: (rows, cols) for "time_frequency" (None: `default_grid`).

  Returns:
    (patch_frames, patch_bins), ints.

  Raises:
    ValueError: if there are more patches along an axis than frames/bins
      (a patch would be empty), or as `grid_for`.
  """
  rows, cols = grid_for(scheme, num_patches, grid)
  if rows > num_bins:
    raise ValueError(
        f"num_patches={num_patches} ({rows} bands along frequency) is larger "
        f"than the {num_bins} frequency bins; use fewer patches.")
  if cols > num_frames:
    raise ValueError(
        f"num_patches={num_patches} ({cols} slices along time) is larger than "
        f"the {num_frames} frames; use fewer patches or longer audio.")
  return num_frames // cols, num_bins // rows


def _static_frames_bins(spectrogram):
  shape = spectrogram.shape
  if shape.rank != 3 or shape[1] is None or shape[2] is None:
    raise ValueError(
        f"spectrogram must be [batch, frames, bins] with static frames and "
        f"bins, got shape {shape}.")
  return shape[1], shape[2]


def extract_patches(spectrogram, scheme, num_patches, grid=None):
  """Cuts a spectrogram into patches in natural (identity) order.

  Args:
    spectrogram: float [batch, frames, bins], frames and bins static.
    scheme: one of SCHEMES.
    num_patches: number of patches n.
    grid: (rows, cols) for "time_frequency" (None: `default_grid`).

  Returns:
    [batch, num_patches, patch_frames, patch_bins]; leftover frames/bins
    (see the module docstring) are dropped.
  """
  spectrogram = tf.convert_to_tensor(spectrogram)
  frames, bins = _static_frames_bins(spectrogram)
  rows, cols = grid_for(scheme, num_patches, grid)
  patch_frames, patch_bins = patch_shape(scheme, num_patches, frames, bins,
                                         grid)
  kept = spectrogram[:, :cols * patch_frames, :rows * patch_bins]
  tiles = tf.reshape(kept, [-1, cols, patch_frames, rows, patch_bins])
  # [B, C, H, R, W] -> [B, R, C, H, W]: row-major, lowest band first.
  tiles = tf.transpose(tiles, [0, 3, 1, 2, 4])
  return tf.reshape(tiles, [-1, rows * cols, patch_frames,
                            patch_bins])  # [B, N, H, W]


def assemble_patches(patches, scheme, grid=None):
  """Inverse of `extract_patches` on the kept region.

  Args:
    patches: [batch, num_patches, patch_frames, patch_bins] in natural order.
    scheme: one of SCHEMES.
    grid: (rows, cols) for "time_frequency" (None: `default_grid`).

  Returns:
    [batch, cols * patch_frames, rows * patch_bins].
  """
  patches = tf.convert_to_tensor(patches)
  shape = patches.shape
  if shape.rank != 4 or any(d is None for d in shape[1:]):
    raise ValueError(
        f"patches must be [batch, num_patches, patch_frames, patch_bins] with "
        f"static non-batch dims, got shape {shape}.")
  num_patches, patch_frames, patch_bins = shape[1], shape[2], shape[3]
  rows, cols = grid_for(scheme, num_patches, grid)
  tiles = tf.reshape(patches, [-1, rows, cols, patch_frames,
                               patch_bins])  # [B, R, C, H, W]
  tiles = tf.transpose(tiles, [0, 2, 3, 1, 4])  # [B, C, H, R, W]
  return tf.reshape(tiles, [-1, cols * patch_frames, rows * patch_bins])


def frontend_patch_shape(patching="frequency",
                         num_patches=10,
                         grid=None,
                         num_samples=spectrogram_lib.NUM_SAMPLES,
                         crop_frames=None,
                         frame_length=spectrogram_lib.FRAME_LENGTH,
                         frame_step=spectrogram_lib.FRAME_STEP,
                         fft_length=spectrogram_lib.FFT_LENGTH,
                         patch_gap=0,
                         frequency_scale="linear"):
  """(patch_frames, patch_bins) that `frontend` produces for these settings."""
  frames = spectrogram_lib.num_frames(num_samples, frame_length, frame_step)
  if crop_frames is not None:
    _check_crop(crop_frames, frames)
    frames = int(crop_frames)
  cell = patch_shape(patching, num_patches, frames,
                     spectrogram_lib.num_scale_bins(frequency_scale,
                                                    fft_length), grid)
  return cut_shape(cell, patching, patch_gap)


def _gap_axes(scheme):
  """Which of (frames, bins) a scheme's patch gap cuts."""
  _check_scheme(scheme)
  return {"frequency": (False, True), "time": (True, False),
          "time_frequency": (True, True)}[scheme]


def cut_shape(cell_shape, scheme, patch_gap):
  """(patch_frames, patch_bins) of cells of `cell_shape` after the gap cut.

  Raises:
    ValueError: a negative gap, or one that leaves nothing of a cell.
  """
  patch_gap = int(patch_gap)
  axes = _gap_axes(scheme)
  if patch_gap < 0:
    raise ValueError(f"patch_gap={patch_gap} must be >= 0.")
  for size, cut, name in zip(cell_shape, axes, ("frames", "bins")):
    if cut and patch_gap >= size:
      raise ValueError(
          f"patch_gap={patch_gap} leaves nothing of a {size}-{name} "
          f"{scheme} patch; use at most {size - 1} (e.g. {size // 5}, a "
          f"fifth).")
  return tuple(size - patch_gap if cut else size
               for size, cut in zip(cell_shape, axes))


def cut_patches(patches, scheme, patch_gap, offsets=None):
  """Cuts each patch to its part at an offset inside its cell.

  The jigsaw trick against edge shortcuts (Noroozi & Favaro 2016): with a
  gap, neighbouring patches share no edge, so the network cannot order them
  by matching partials or envelopes across a boundary. Training draws the
  offsets at random (jitter); evaluation and export take the centred cut.

  Args:
    patches: [batch, n, frames, bins], static sizes.
    scheme: one of SCHEMES; "frequency" cuts bins, "time" frames,
      "time_frequency" both.
    patch_gap: frames/bins removed from each cut axis (0: unchanged).
    offsets: None (centred: patch_gap // 2) or int32 [batch, n, 2], the first
      (frame, bin) kept of each patch, each in [0, patch_gap].

  Returns:
    [batch, n, frames', bins'] with the cut axes shortened by patch_gap.
  """
  patch_gap = int(patch_gap)
  if patch_gap == 0:
    return patches
  frames, bins = patches.shape[2], patches.shape[3]
  new_frames, new_bins = cut_shape((frames, bins), scheme, patch_gap)
  if offsets is None:
    start = patch_gap // 2
    cut_frames, cut_bins = _gap_axes(scheme)
    f0 = start if cut_frames else 0
    b0 = start if cut_bins else 0
    return patches[:, :, f0:f0 + new_frames, b0:b0 + new_bins]
  offsets = tf.cast(offsets, tf.int32)
  if new_frames != frames:
    index = offsets[..., 0:1] + tf.range(new_frames)  # [B, n, frames']
    patches = tf.gather(patches, index, axis=2, batch_dims=2)
  if new_bins != bins:
    index = offsets[..., 1:2] + tf.range(new_bins)  # [B, n, bins']
    patches = tf.gather(patches, index, axis=3, batch_dims=2)
  return tf.ensure_shape(patches, [None, patches.shape[1], new_frames,
                                   new_bins])


def _check_crop(crop_frames, frames):
  if int(crop_frames) < 1 or int(crop_frames) > frames:
    raise ValueError(
        f"crop_frames={crop_frames} must be in [1, {frames}] (the number of "
        f"spectrogram frames); pass None to keep all frames.")


def frontend(waveform,
             patching="frequency",
             num_patches=10,
             grid=None,
             crop_frames=None,
             crop_offsets=None,
             normalize=False,
             frame_length=spectrogram_lib.FRAME_LENGTH,
             frame_step=spectrogram_lib.FRAME_STEP,
             fft_length=spectrogram_lib.FFT_LENGTH,
             log_offset=spectrogram_lib.LOG_OFFSET,
             patch_gap=0,
             gap_offsets=None,
             spectral_offsets=None,
             frequency_scale="linear"):
  """Waveforms -> identity-order patches, the features every model sees.

  Steps: log-magnitude spectrogram (audio_perm.spectrogram) on
  `frequency_scale` (spectrogram.to_frequency_scale) -> optional crop of
  `crop_frames` frames in time -> if `normalize`, per-example standardisation
  over the (cropped) spectrogram, (x - mean) / (std + 1e-5) -> patches in
  natural order -> the gap cut (`cut_patches`) -> a trailing channel axis.
  Training may add `spectral_offsets` (a random tilt or EQ, in log
  magnitude) to the spectrogram first and draw the cuts' `gap_offsets`;
  export and evaluation pass neither (the natural, centred version).

  `normalize` is off by default because the encoder (models.build_encoder)
  starts by standardising each example over all of its patches, which is
  order-invariant and keeps the relative level of bands and slices (the cue
  for re-ordering them); doing it here as well would only cost pipeline time.
  Turn it on for a model without that layer.

  Args:
    waveform: float32 [batch, samples] at 16 kHz, samples static.
    patching: one of SCHEMES.
    num_patches: n.
    grid: (rows, cols) for "time_frequency".
    crop_frames: None (all frames) or the number of frames to keep.
    crop_offsets: int32 [batch] first frame of each crop (the pipeline draws
      them at random); None: a centred crop (what evaluation uses).
    normalize: per-example standardisation (True) or raw log magnitudes
      (False, the default).
    frame_length, frame_step, fft_length, log_offset: STFT parameters.
    patch_gap: frames/bins cut off each patch (`cut_patches`; 0: none).
    gap_offsets: None (centred cuts) or int32 [batch, num_patches, 2].
    spectral_offsets: None or float [batch, 1 or frames, bins] added to the log
      magnitudes on `frequency_scale` (training augmentations; None for the
      natural features).
    frequency_scale: one of spectrogram.FREQUENCY_SCALES ("linear": 513
      FFT bins; "log": 256 log-spaced bins).

  Returns:
    float32 [batch, num_patches, patch_frames, patch_bins, 1].
  """
  spec = spectrogram_lib.log_magnitude_spectrogram(
      waveform, frame_length, frame_step, fft_length, log_offset)
  if spec.shape.rank != 3:
    raise ValueError(
        f"frontend expects waveforms [batch, samples], got shape "
        f"{waveform.shape}.")
  spec = spectrogram_lib.to_frequency_scale(spec, frequency_scale)
  return frontend_from_spectrogram(
      spec, patching, num_patches, grid, crop_frames=crop_frames,
      crop_offsets=crop_offsets, normalize=normalize, patch_gap=patch_gap,
      gap_offsets=gap_offsets, spectral_offsets=spectral_offsets)


def frontend_from_spectrogram(spec,
                              patching="frequency",
                              num_patches=10,
                              grid=None,
                              crop_frames=None,
                              crop_offsets=None,
                              normalize=False,
                              patch_gap=0,
                              gap_offsets=None,
                              spectral_offsets=None):
  """`frontend` after its spectrogram: [batch, frames, bins] log magnitudes
  already on the frequency scale -> [batch, n, H, W, 1] patches.

  For callers that need the spectrogram themselves (the pitch copies'
  envelope, data.pipelines), so that it is computed once; the arguments
  are `frontend`'s.
  """
  spec = tf.convert_to_tensor(spec, tf.float32)
  if spec.shape.rank != 3:
    raise ValueError(
        f"frontend_from_spectrogram expects [batch, frames, bins], got "
        f"shape {spec.shape}.")
  frames = spec.shape[1]
  if spectral_offsets is not None:
    spec = spec + tf.cast(spectral_offsets, spec.dtype)
  if crop_frames is not None:
    _check_crop(crop_frames, frames)
    crop_frames = int(crop_frames)
    spec = crop_time(spec, crop_frames, crop_offsets)
  if normalize:
    spec = spectrogram_lib.standardize(spec)
  patches = extract_patches(spec, patching, num_patches, grid)
  patches = cut_patches(patches, patching, patch_gap, gap_offsets)
  return patches[..., tf.newaxis]  # [B, N, H, W, 1]


def crop_time(spec, crop_frames, crop_offsets=None):
  """Crops `crop_frames` frames from each example of [batch, frames, bins].

  Args:
    spec: [batch, frames, bins], frames and bins static.
    crop_frames: frames to keep (static int).
    crop_offsets: int32 [batch] first frame of each crop, in
      [0, frames - crop_frames]; None: centred crop.

  Returns:
    [batch, crop_frames, bins].
  """
  frames, bins = _static_frames_bins(spec)
  _check_crop(crop_frames, frames)
  if crop_offsets is None:
    start = (frames - crop_frames) // 2
    return spec[:, start:start + crop_frames, :]
  crop_offsets = tf.cast(crop_offsets, tf.int32)
  index = crop_offsets[:, tf.newaxis] + tf.range(crop_frames)  # [B, T']
  out = tf.gather(spec, index, batch_dims=1)  # [B, T', F]
  return tf.ensure_shape(out, [None, crop_frames, bins])
