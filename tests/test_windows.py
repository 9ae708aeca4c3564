"""Tests for audio_perm.windows: windows sliced from one spectrogram a clip."""

import numpy as np
import pytest
import tensorflow as tf

from audio_perm import config as config_lib
from audio_perm import export
from audio_perm import windows


def _clips(batch, samples, seed=0):
  rng = np.random.default_rng(seed)
  t = np.arange(samples) / 16000.0
  f0 = rng.uniform(100, 3000, size=(batch, 1))
  return (np.sin(2 * np.pi * f0 * t * (1 + 0.2 * t))
          + 0.05 * rng.normal(size=(batch, samples))).astype(np.float32)


def _per_window_patches(clips, left_pad, hop, count, frontend):
  """The reference: each window's waveform through the export frontend."""
  window = frontend.num_samples
  padded = np.pad(clips, [[0, 0], [left_pad, count * hop + window]])
  segments = [padded[b, k * hop:k * hop + window]
              for b in range(len(clips)) for k in range(count)]
  return export.waveform_to_patches(np.stack(segments), frontend).numpy()


@pytest.mark.parametrize(
    "patching,crop_frames,left_pad,hop_ms,samples,frequency_scale", [
        ("frequency", None, 0, 2000, 100000, "linear"),  # scene windows
        ("frequency", None, 32000, 50, 20000, "linear"),  # short clip
        ("time", 100, 32000, 250, 70001, "linear"),  # centred crop, odd
        ("time_frequency", None, 32000, 1000, 64000, "linear"),
        ("frequency", None, 32000, 500, 40000, "log"),
    ])
def test_sliced_windows_equal_each_windows_own_spectrogram(
    patching, crop_frames, left_pad, hop_ms, samples, frequency_scale):
  frontend = config_lib.FrontendConfig(
      patching=patching, num_patches=6 if patching != "frequency" else 10,
      crop_frames=crop_frames, frequency_scale=frequency_scale)
  hop = windows.hop_samples_of(hop_ms)
  clips = _clips(2, samples)
  if left_pad:
    count = int(windows.num_timestamps(samples, hop))
    assert count == 1 + samples // hop
  else:
    count = int(windows.num_scene_windows(samples, 64000, hop))
  spec = windows.padded_spectrogram(clips, 64000, left_pad, hop, count,
                                    frequency_scale)
  ids = tf.range(2 * count)
  got = windows.window_patches(spec, ids, count, hop, frontend).numpy()
  want = _per_window_patches(clips, left_pad, hop, count, frontend)
  assert got.shape == want.shape
  # The same frames of the same samples; only the FFT's batching differs
  # (bit-identical on CPU when measured; the tolerance is for other devices).
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4)


def test_window_counts():
  assert int(windows.num_scene_windows(0, 64000, 32000)) == 1
  assert int(windows.num_scene_windows(64000, 64000, 32000)) == 1
  assert int(windows.num_scene_windows(64001, 64000, 32000)) == 2
  assert int(windows.num_scene_windows(160000, 64000, 32000)) == 4
  assert int(windows.num_timestamps(0, 800)) == 1
  assert int(windows.num_timestamps(32000, 800)) == 41
  assert int(windows.num_timestamps(59840, 800)) == 75


@pytest.mark.parametrize("hop_ms,samples", [(50, 800), (10, 160), (2000, 32000),
                                            (20.0, 320)])
def test_hop_samples_of_accepts_multiples_of_10_ms(hop_ms, samples):
  assert windows.hop_samples_of(hop_ms) == samples


@pytest.mark.parametrize("hop_ms", [0, -10, 55, 12.5, "x", None])
def test_hop_samples_of_refuses_other_hops(hop_ms):
  with pytest.raises(ValueError, match="hop_ms"):
    windows.hop_samples_of(hop_ms)


def test_embed_windows_in_several_calls_equals_one_call():
  module = export.random_encoder(seed=0, width=1 / 32, embedding_dim=8)
  clips = _clips(2, 40000)
  count = windows.num_timestamps(40000, 8000)

  def run(per_call):
    return windows.embed_windows(
        module._embed_patches, clips, module.config.frontend, 32000,  # pylint: disable=protected-access
        8000, count, 8, per_call).numpy()

  one = run(64)
  assert one.shape == (2, 6, 8)
  np.testing.assert_allclose(run(4), one, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(run(1), one, rtol=1e-5, atol=1e-6)
