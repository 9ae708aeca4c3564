"""audio_perm.patches: each scheme against explicit numpy slicing, and back."""

import numpy as np
import pytest
import tensorflow as tf

from audio_perm import patches
from audio_perm import spectrogram


def _reference_patches(spec, rows, cols):
  """Tile r * cols + c = band r (from low freq) x slice c (from start)."""
  _, frames, bins = spec.shape
  pf, pb = frames // cols, bins // rows
  out = []
  for r in range(rows):
    for c in range(cols):
      out.append(spec[:, c * pf:(c + 1) * pf, r * pb:(r + 1) * pb])
  return np.stack(out, 1)


CASES = [
    ("frequency", 10, None, (10, 1)),
    ("time", 10, None, (1, 10)),
    ("time_frequency", 10, None, (2, 5)),
    ("time_frequency", 10, (5, 2), (5, 2)),
    ("time_frequency", 6, (3, 2), (3, 2)),
    ("frequency", 1, None, (1, 1)),
]


@pytest.mark.parametrize("scheme,num_patches,grid,rows_cols", CASES)
def test_extract_matches_slicing_and_assemble_inverts(scheme, num_patches,
                                                      grid, rows_cols):
  rng = np.random.default_rng(0)
  spec = rng.standard_normal((2, 398, 513)).astype(np.float32)
  got = patches.extract_patches(spec, scheme, num_patches, grid).numpy()
  ref = _reference_patches(spec, *rows_cols)
  np.testing.assert_array_equal(got, ref)
  assert patches.patch_shape(scheme, num_patches, 398, 513, grid) == \
      got.shape[2:]
  back = patches.assemble_patches(got, scheme, grid).numpy()
  rows, cols = rows_cols
  kept = spec[:, :cols * (398 // cols), :rows * (513 // rows)]
  np.testing.assert_array_equal(back, kept)


def test_documented_leftovers_for_defaults():
  # 513 bins / 10 bands: 51 bins each, top 3 bins dropped.
  assert patches.patch_shape("frequency", 10, 398, 513) == (398, 51)
  # 398 frames / 10 slices: 39 frames each, last 8 frames dropped.
  assert patches.patch_shape("time", 10, 398, 513) == (39, 513)
  spec = np.zeros((1, 398, 513), np.float32)
  spec[:, :, 510:] = 1.0  # Only the dropped top bins are non-zero.
  assert np.all(patches.extract_patches(spec, "frequency", 10).numpy() == 0)
  spec = np.zeros((1, 398, 513), np.float32)
  spec[:, 390:, :] = 1.0  # Only the dropped last frames are non-zero.
  assert np.all(patches.extract_patches(spec, "time", 10).numpy() == 0)


def test_static_shapes_in_graph_with_unknown_batch():
  fn = tf.function(
      lambda s: patches.extract_patches(s, "time_frequency", 4, (2, 2)),
      input_signature=[tf.TensorSpec([None, 20, 9], tf.float32)])
  out = fn.get_concrete_function().structured_outputs
  assert out.shape.as_list() == [None, 4, 10, 4]


def test_default_grid():
  assert patches.default_grid(10) == (2, 5)
  assert patches.default_grid(9) == (3, 3)
  assert patches.default_grid(12) == (3, 4)
  assert patches.default_grid(7) == (1, 7)


def test_bad_arguments_raise_value_error():
  with pytest.raises(ValueError, match="num_patches=600.*513 frequency bins"):
    patches.patch_shape("frequency", 600, 398, 513)
  with pytest.raises(ValueError, match="num_patches=400.*398 frames"):
    patches.patch_shape("time", 400, 398, 513)
  with pytest.raises(ValueError, match=r"grid=\(3, 3\).*num_patches=10"):
    patches.patch_shape("time_frequency", 10, 398, 513, grid=(3, 3))
  with pytest.raises(ValueError, match="only applies to"):
    patches.extract_patches(np.zeros((1, 10, 10)), "frequency", 2, (1, 2))
  with pytest.raises(ValueError, match="Unknown patching scheme 'mel'"):
    patches.extract_patches(np.zeros((1, 10, 10)), "mel", 2)
  with pytest.raises(ValueError, match="num_patches=0"):
    patches.patch_shape("time", 0, 398, 513)
  with pytest.raises(ValueError, match="crop_frames=500"):
    patches.frontend(np.zeros((1, 64000), np.float32), crop_frames=500)


def test_frontend_is_spectrogram_standardize_patches():
  rng = np.random.default_rng(1)
  x = rng.standard_normal((2, 16000)).astype(np.float32)
  spec = spectrogram.log_magnitude_spectrogram(x).numpy()  # [2, 98, 513]
  got = patches.frontend(x, "time", 7, normalize=True).numpy()
  assert got.shape == (2, 7, 14, 513, 1)
  norm = (spec - spec.mean((1, 2), keepdims=True)) / (
      spec.std((1, 2), keepdims=True) + 1e-5)
  np.testing.assert_allclose(got[..., 0], _reference_patches(norm, 1, 7),
                             atol=1e-4)
  raw = patches.frontend(x, "frequency", 5).numpy()  # Default: raw.
  np.testing.assert_allclose(raw[..., 0], _reference_patches(spec, 5, 1),
                             atol=1e-6)
  assert patches.frontend_patch_shape("time", 7, num_samples=16000) == (14, 513)


@pytest.mark.parametrize("patching,num_patches,shape", [
    ("frequency", 10, (98, 25)), ("time", 7, (14, 256)),
    ("time_frequency", 10, (19, 128))])
def test_frontend_on_the_log_frequency_axis(patching, num_patches, shape):
  rng = np.random.default_rng(3)
  x = rng.standard_normal((2, 16000)).astype(np.float32)
  log_spec = spectrogram.to_frequency_scale(
      spectrogram.log_magnitude_spectrogram(x), "log")  # [2, 98, 256]
  got = patches.frontend(x, patching, num_patches,
                         frequency_scale="log").numpy()
  assert got.shape == (2, num_patches) + shape + (1,)
  want = patches.extract_patches(log_spec, patching, num_patches).numpy()
  np.testing.assert_allclose(got[..., 0], want, atol=1e-5)
  assert patches.frontend_patch_shape(
      patching, num_patches, num_samples=16000,
      frequency_scale="log") == shape
  with pytest.raises(ValueError, match="frequency_scale 'mel'"):
    patches.frontend_patch_shape(patching, num_patches, frequency_scale="mel")


def test_frontend_crop():
  rng = np.random.default_rng(2)
  x = rng.standard_normal((2, 16000)).astype(np.float32)
  spec = spectrogram.log_magnitude_spectrogram(x).numpy()  # 98 frames
  got = patches.frontend(x, "frequency", 4, crop_frames=50,
                         crop_offsets=tf.constant([0, 48]),
                         normalize=False).numpy()
  crops = np.stack([spec[0, 0:50], spec[1, 48:98]])
  np.testing.assert_allclose(got[..., 0], _reference_patches(crops, 4, 1),
                             atol=1e-6)
  centred = patches.frontend(x, "frequency", 4, crop_frames=50,
                             normalize=False).numpy()
  np.testing.assert_allclose(centred[..., 0],
                             _reference_patches(spec[:, 24:74], 4, 1),
                             atol=1e-6)
  assert patches.frontend_patch_shape(
      "frequency", 4, num_samples=16000, crop_frames=50) == (50, 128)


@pytest.mark.parametrize("scale", ["linear", "log"])
def test_frontend_from_spectrogram_is_the_frontend_after_its_stft(scale):
  """The pipeline's entry for spectrograms it already has: the same
  patches as `frontend` on the waveforms, with crops, offsets and gaps."""
  rng = np.random.default_rng(4)
  x = rng.standard_normal((2, 16000)).astype(np.float32)
  spec = spectrogram.to_frequency_scale(
      spectrogram.log_magnitude_spectrogram(x), scale)
  offsets = rng.standard_normal(spec.shape).astype(np.float32)
  gaps = tf.constant(rng.integers(0, 3, (2, 4, 2)), tf.int32)
  options = dict(crop_frames=50, crop_offsets=tf.constant([3, 40]),
                 patch_gap=2, gap_offsets=gaps, spectral_offsets=offsets)
  want = patches.frontend(x, "frequency", 4, frequency_scale=scale,
                          **options).numpy()
  got = patches.frontend_from_spectrogram(spec, "frequency", 4,
                                          **options).numpy()
  np.testing.assert_array_equal(got, want)
  # The offsets matter (the check is not vacuous).
  plain = patches.frontend_from_spectrogram(
      spec, "frequency", 4, crop_frames=50,
      crop_offsets=tf.constant([3, 40]), patch_gap=2,
      gap_offsets=gaps).numpy()
  assert np.abs(plain - got).max() > 0.5
  with pytest.raises(ValueError, match="frames, bins"):
    patches.frontend_from_spectrogram(spec[0])
