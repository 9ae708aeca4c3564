"""Clips of any length -> training-length windows, from ONE spectrogram a clip.

The encoder sees windows of `window_samples` samples (the training length,
64,000 = 4 s). A longer clip is cut into windows with a hop, and each window
is embedded as if it were a training note (audio_perm.export's per-window
path: fit_length -> log spectrogram -> centred crop -> patches). Windows
overlap, so instead of one STFT per window this module computes the STFT of
the whole (zero-padded) clip once and slices each window's frames out of it.

Window k of a clip starts at sample k * hop_samples - left_pad_samples of the
clip (samples outside the clip are zeros). With the clip padded by
left_pad_samples zeros in front, window k starts at sample k * hop_samples of
the padded clip, and its STFT frame j covers padded samples
[k * hop + 160 j, k * hop + 160 j + 400): that is frame k * hop / 160 + j of
the padded clip's STFT, PROVIDED hop_samples is a multiple of the STFT hop
(160 samples, 10 ms). So the sliced frames hold exactly the numbers the
per-window path computes (tests/test_windows.py checks it to float
tolerance); hops that are not multiples of 10 ms are refused.

Two layouts use it (audio_perm.export):
  * scene windows: left_pad 0, windows at 0, hop, 2 hop, ... up to the first
    one that reaches the clip's end (`num_scene_windows`); the last one is
    zero-padded past the end, as training pads short notes.
  * timestamp windows: left_pad = window_samples // 2, so window k is CENTRED
    on sample k * hop (timestamp k * hop / 16 ms); timestamps run from 0 to
    the clip's end (`num_timestamps` = 1 + samples // hop).
"""

import tensorflow as tf

from audio_perm import patches as patches_lib
from audio_perm import spectrogram

STFT_HOP_SAMPLES = spectrogram.FRAME_STEP
SAMPLES_PER_MS = spectrogram.SAMPLE_RATE_HZ // 1000  # 16


def hop_samples_of(hop_ms, name="hop_ms"):
  """A hop in ms -> samples at 16 kHz; ValueError unless a multiple of 10 ms.

  Args:
    hop_ms: the hop in milliseconds (int or float), > 0.
    name: how the setting is called in the error message.

  Returns:
    int, a positive multiple of 160 samples (the STFT hop).
  """
  try:
    samples = float(hop_ms) * SAMPLES_PER_MS
  except (TypeError, ValueError):
    raise ValueError(f"{name}={hop_ms!r} must be a number of milliseconds."
                     ) from None
  if not samples > 0 or samples != round(samples) or (
      int(round(samples)) % STFT_HOP_SAMPLES):
    raise ValueError(
        f"{name}={hop_ms!r} must be a positive multiple of 10 ms (the STFT "
        "hop), so that windows start on STFT frames; e.g. 50 or 2000.")
  return int(round(samples))


def num_scene_windows(num_samples, window_samples, hop_samples):
  """Windows at 0, hop, ... until one reaches the end: int32 scalar tensor.

  1 for clips of at most window_samples samples, else
  1 + ceil((num_samples - window_samples) / hop_samples).
  """
  extra = tf.maximum(tf.cast(num_samples, tf.int32) - window_samples, 0)
  return 1 + (extra + hop_samples - 1) // hop_samples


def num_timestamps(num_samples, hop_samples):
  """Timestamps 0, hop, ... <= the clip's end: 1 + num_samples // hop."""
  return 1 + tf.cast(num_samples, tf.int32) // hop_samples


def window_frames(frontend):
  """(first frame, frames) of a window's spectrogram that the encoder sees.

  All num_frames(window) frames, or the centred crop of crop_frames frames
  (as patches.crop_time with crop_offsets=None).
  """
  frames = spectrogram.num_frames(frontend.num_samples)
  if frontend.crop_frames is None:
    return 0, frames
  crop = int(frontend.crop_frames)
  return (frames - crop) // 2, crop


def padded_spectrogram(waveform, window_samples, left_pad_samples,
                       hop_samples, num_windows, frequency_scale="linear"):
  """Log spectrogram of the clips padded for `num_windows` windows.

  Args:
    waveform: float32 [batch, samples], samples may be dynamic.
    window_samples: samples per window (the training length), int.
    left_pad_samples: zeros put before each clip, int >= 0.
    hop_samples: window hop, a multiple of 160, int.
    num_windows: int32 scalar (tensor), >= 1.
    frequency_scale: the encoder's frequency axis
      (spectrogram.to_frequency_scale).

  Returns:
    float32 [batch, frames, bins]: the log spectrogram (on frequency_scale)
    of [left_pad zeros, clip, zeros] cut to (num_windows - 1) * hop +
    window_samples samples, the end of the last window.
  """
  waveform = tf.convert_to_tensor(waveform, tf.float32)
  samples = tf.shape(waveform)[1]
  needed = (num_windows - 1) * hop_samples + window_samples
  right_pad = tf.maximum(needed - left_pad_samples - samples, 0)
  padded = tf.pad(waveform, [[0, 0], [left_pad_samples, right_pad]])
  padded = padded[:, :needed]  # [B, needed]: nothing past the last window.
  return spectrogram.to_frequency_scale(
      spectrogram.log_magnitude_spectrogram(padded),
      frequency_scale)  # [B, T, F]


def window_patches(spec, window_ids, num_windows, hop_samples, frontend):
  """Patches of some windows, sliced from the clips' padded spectrograms.

  Args:
    spec: float32 [batch, frames, bins] from `padded_spectrogram`.
    window_ids: int32 [n]: flat window ids b * num_windows + k (window k of
      clip b).
    num_windows: int32 scalar, windows per clip.
    hop_samples: the window hop, a multiple of 160 samples.
    frontend: FrontendConfig (patching, crop, window length).

  Returns:
    float32 [n, num_patches, patch_frames, patch_bins, 1], as
    export.waveform_to_patches gives for each window's waveform.
  """
  bins = spec.shape[-1]
  first, frames = window_frames(frontend)
  total_frames = tf.shape(spec)[1]
  clip = window_ids // num_windows
  start = (window_ids % num_windows) * (hop_samples // STFT_HOP_SAMPLES)
  rows = (clip * total_frames + start + first)[:, tf.newaxis] + tf.range(
      frames)  # [n, frames]
  flat = tf.reshape(spec, [-1, bins])  # [B * T, F]
  window_spec = tf.gather(flat, rows)  # [n, frames, F]
  window_spec = tf.ensure_shape(window_spec, [None, frames, bins])
  patches = patches_lib.extract_patches(
      window_spec, frontend.patching, frontend.num_patches, frontend.grid)
  # The centred gap cut, as export.waveform_to_patches takes it.
  patches = patches_lib.cut_patches(patches, frontend.patching,
                                    frontend.patch_gap)
  return patches[..., tf.newaxis]  # [n, N, H, W, 1]


def embed_windows(embed_patches, waveform, frontend, left_pad_samples,
                  hop_samples, num_windows, embedding_dim, windows_per_call):
  """Embeddings of every window of every clip, `windows_per_call` at a time.

  Args:
    embed_patches: patches [n, N, H, W, 1] -> float32 [n, embedding_dim].
    waveform: float32 [batch, samples].
    frontend: FrontendConfig of the encoder.
    left_pad_samples, hop_samples, num_windows: the window layout (module
      docstring).
    embedding_dim: static size of an embedding.
    windows_per_call: windows embedded per encoder call (bounds memory).

  Returns:
    float32 [batch, num_windows, embedding_dim].
  """
  spec = padded_spectrogram(waveform, frontend.num_samples, left_pad_samples,
                            hop_samples, num_windows,
                            frontend.frequency_scale)
  batch = tf.shape(waveform)[0]
  total = batch * num_windows
  num_calls = (total + windows_per_call - 1) // windows_per_call

  def body(i, outputs):
    ids = tf.range(i * windows_per_call,
                   tf.minimum((i + 1) * windows_per_call, total))
    patches = window_patches(spec, ids, num_windows, hop_samples, frontend)
    return i + 1, outputs.write(i, embed_patches(patches))

  outputs = tf.TensorArray(tf.float32, size=num_calls, infer_shape=False,
                           element_shape=tf.TensorShape([None, embedding_dim]))
  # One call at a time: each already uses every core, and memory stays at
  # one call's activations whatever the clip's length.
  _, outputs = tf.while_loop(lambda i, _: i < num_calls, body,
                             (tf.constant(0), outputs), parallel_iterations=1)
  embeddings = tf.cond(
      num_calls > 0, outputs.concat,
      lambda: tf.zeros([0, embedding_dim], tf.float32))  # [B * K, D]
  return tf.reshape(embeddings, [batch, num_windows, embedding_dim])
