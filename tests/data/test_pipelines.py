"""audio_perm.data.pipelines: the pretext pipeline against the frontend.

Shuffled patches, once put back in order with their targets, must be exactly
the identity-order frontend of the same audio (read by waveform_dataset).
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from audio_perm import data
from audio_perm import patches as patches_lib
from audio_perm import permutations
from audio_perm import pitch
from audio_perm import spectrogram


@pytest.fixture(scope="module")
def magenta_files(tmp_path_factory, nsynth):
  """2 files x 6 examples of SHORT noise, pitch = global index."""
  tmp = tmp_path_factory.mktemp("magenta")
  nsynth.write_files(tmp, 2, 6)
  return str(tmp / "nsynth-*.tfrecord")


def _reference(file_pattern, num_samples, patching, num_patches, grid=None):
  """Identity-order patches of every example, in file order, by frontend.

  The frontend is called per example, as the pipeline does by default
  (frontend_batch_size=1): a batch of one takes another FFT code path whose
  results can differ from a batched call in the last float32 bit, which is
  checked separately below.
  """
  waves = data.waveform_dataset(file_pattern=file_pattern, split=None,
                                batch_size=64, num_samples=num_samples)
  audio = np.concatenate([b["audio"].numpy() for b in waves])
  per_example = np.concatenate([
      patches_lib.frontend(audio[i:i + 1], patching, num_patches, grid).numpy()
      for i in range(len(audio))])
  batched = patches_lib.frontend(audio, patching, num_patches, grid).numpy()
  np.testing.assert_allclose(per_example, batched, rtol=0, atol=1e-5)
  return per_example


@pytest.mark.parametrize("patching,num_patches,grid", [
    ("frequency", 10, None),
    ("time", 4, None),
    ("time_frequency", 6, (3, 2)),
])
def test_unshuffling_with_target_recovers_frontend_exactly(
    magenta_files, nsynth, patching, num_patches, grid):
  ds = data.pretext_dataset(
      file_pattern=magenta_files, batch_size=4, patching=patching,
      num_patches=num_patches, grid=grid, shuffle=False, deterministic=True,
      seed=3, repeat=False, num_samples=nsynth.SHORT)
  shuffled, ranks = nsynth.take_all(ds)
  ref = _reference(magenta_files, nsynth.SHORT, patching, num_patches, grid)
  assert shuffled.shape == ref.shape and shuffled.dtype == np.float32
  assert ranks.dtype == np.int32 and ranks.shape == ref.shape[:2]
  assert np.all(np.sort(ranks, axis=1) == np.arange(num_patches))
  # Targets are really shuffled (not the identity) for most examples.
  assert np.mean(np.all(ranks == np.arange(num_patches), axis=1)) < 0.5
  restored = permutations.unshuffle_patches(shuffled, ranks).numpy()
  np.testing.assert_array_equal(restored, ref)
  # And the convention: shown patch i is natural patch ranks[i].
  for b in range(len(ranks)):
    for i in range(num_patches):
      np.testing.assert_array_equal(shuffled[b, i], ref[b, ranks[b, i]])


@pytest.mark.parametrize("frontend_batch_size", [None, 3])
def test_frontend_on_chunks_and_whole_batches(magenta_files, nsynth,
                                              frontend_batch_size):
  ds = data.pretext_dataset(
      file_pattern=magenta_files, batch_size=4, num_patches=3,
      patching="time", shuffle=False, deterministic=True, seed=2,
      repeat=False, num_samples=nsynth.SHORT,
      frontend_batch_size=frontend_batch_size)
  assert ds.element_spec[0].shape.as_list() == [4, 3, 7, 513, 1]
  shuffled, ranks = nsynth.take_all(ds)
  assert np.all(np.sort(ranks, axis=1) == np.arange(3))
  ref = _reference(magenta_files, nsynth.SHORT, "time", 3)
  np.testing.assert_allclose(
      permutations.unshuffle_patches(shuffled, ranks).numpy(), ref,
      rtol=0, atol=1e-5)


def test_classification_target_indexes_the_fixed_set(magenta_files, nsynth):
  perm_set, _ = permutations.hamming_permutation_set(5, 4, seed=0)
  ds = data.pretext_dataset(
      file_pattern=magenta_files, batch_size=6, num_patches=4,
      target="classification", permutation_set=perm_set, shuffle=False,
      deterministic=True, seed=1, repeat=False, num_samples=nsynth.SHORT)
  assert ds.element_spec[1].shape.as_list() == [6]
  shuffled, labels = nsynth.take_all(ds)
  assert labels.dtype == np.int32
  assert labels.min() >= 0 and labels.max() < 5
  ref = _reference(magenta_files, nsynth.SHORT, "frequency", 4)
  restored = permutations.unshuffle_patches(shuffled, perm_set[labels]).numpy()
  np.testing.assert_array_equal(restored, ref)


def test_random_crop_is_a_window_of_the_full_spectrogram(magenta_files,
                                                          nsynth):
  ds = data.pretext_dataset(
      file_pattern=magenta_files, batch_size=4, num_patches=2,
      patching="time", crop_frames=10, shuffle=False, deterministic=True,
      seed=5, repeat=False, num_samples=nsynth.SHORT)
  shuffled, ranks = nsynth.take_all(ds)
  assert shuffled.shape == (12, 2, 5, 513, 1)
  crops = patches_lib.assemble_patches(
      permutations.unshuffle_patches(shuffled[..., 0], ranks), "time").numpy()
  waves = data.waveform_dataset(file_pattern=magenta_files, split=None,
                                batch_size=64, num_samples=nsynth.SHORT)
  audio = np.concatenate([b["audio"].numpy() for b in waves])
  full = np.concatenate([  # [12, 23, 513], per example as the pipeline does.
      spectrogram.log_magnitude_spectrogram(audio[i:i + 1]).numpy()
      for i in range(len(audio))])
  offsets = []
  for b in range(12):
    match = [o for o in range(23 - 10 + 1)
             if np.array_equal(full[b, o:o + 10], crops[b])]
    assert len(match) == 1
    offsets.append(match[0])
  assert len(set(offsets)) > 1  # Offsets are drawn per example.


def test_deterministic_for_a_seed(magenta_files, nsynth):
  def first_batches(seed):
    ds = data.pretext_dataset(
        file_pattern=magenta_files, batch_size=4, num_patches=4,
        deterministic=True, seed=seed, num_samples=nsynth.SHORT)
    return [(x.numpy(), y.numpy()) for x, y in ds.take(4)]

  a, b, c = first_batches(7), first_batches(7), first_batches(8)
  for (xa, ya), (xb, yb) in zip(a, b):
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
  assert not all(np.array_equal(ya, yc) for (_, ya), (_, yc) in zip(a, c))


def test_repeat_and_static_shapes(magenta_files, nsynth):
  ds = data.pretext_dataset(file_pattern=magenta_files, batch_size=5,
                            num_patches=3, patching="time",
                            num_samples=nsynth.SHORT, seed=0)
  spec = ds.element_spec
  assert spec[0].shape.as_list() == [5, 3, 7, 513, 1]
  assert spec[1].shape.as_list() == [5, 3] and spec[1].dtype == tf.int32
  # 12 examples, batch 5, repeated: more batches than one epoch holds.
  assert len(list(ds.take(5))) == 5
  # A new epoch draws new permutations for the same examples.
  ds = data.pretext_dataset(file_pattern=magenta_files, batch_size=4,
                            num_patches=4, shuffle=False, deterministic=True,
                            num_samples=nsynth.SHORT, seed=0)
  (x0, r0), _, _, (x3, r3) = [(x.numpy(), r.numpy()) for x, r in ds.take(4)]
  np.testing.assert_array_equal(permutations.unshuffle_patches(x0, r0),
                                permutations.unshuffle_patches(x3, r3))
  assert not np.array_equal(r0, r3)


def test_pipeline_graph_has_no_python_functions(magenta_files, nsynth):
  ds = data.pretext_dataset(file_pattern=magenta_files, batch_size=4,
                            crop_frames=20, num_samples=nsynth.SHORT,
                            target="classification",
                            permutation_set=np.array([[1, 0] + list(
                                range(2, 10))], np.int32))
  graph_def = ds._as_serialized_graph().numpy()  # pylint: disable=protected-access
  assert b"TFRecordDataset" in graph_def and b"RFFT" in graph_def
  assert b"PyFunc" not in graph_def  # Neither PyFunc nor EagerPyFunc.


@pytest.mark.parametrize("num_files,per_file", [(4, 3), (1, 12)])
def test_sharding_with_input_context_is_disjoint(tmp_path, nsynth, num_files,
                                                 per_file):
  # 4 files for 2 pipelines: shard by file; 1 file: shard by record.
  nsynth.write_files(tmp_path, num_files, per_file)
  pattern = str(tmp_path / "nsynth-*.tfrecord")
  ids, patches_seen = [], []
  for pipeline_id in range(2):
    ctx = tf.distribute.InputContext(num_input_pipelines=2,
                                     input_pipeline_id=pipeline_id,
                                     num_replicas_in_sync=2)
    ids.append(set(nsynth.ids(data.waveform_dataset(
        file_pattern=pattern, split=None, batch_size=4, input_context=ctx,
        shuffle=True, seed=1, num_samples=nsynth.SHORT))))
    ds = data.pretext_dataset(
        file_pattern=pattern, batch_size=4, num_patches=2, input_context=ctx,
        seed=1, repeat=False, num_samples=nsynth.SHORT)
    assert ds.element_spec[0].shape[0] == 2  # Per-replica batch.
    x, r = nsynth.take_all(ds)
    natural = permutations.unshuffle_patches(x, r).numpy()
    patches_seen.append({row.tobytes() for row in natural})
  assert ids[0].isdisjoint(ids[1])
  assert len(ids[0]) + len(ids[1]) == num_files * per_file
  assert len(ids[0]) == len(ids[1]) == 6
  assert patches_seen[0].isdisjoint(patches_seen[1])
  assert len(patches_seen[0]) == len(patches_seen[1]) == 6


def test_default_settings_on_full_length_audio(tmp_path, nsynth):
  nsynth.write_files(tmp_path, 1, 2, num_samples=spectrogram.NUM_SAMPLES)
  ds = data.pretext_dataset(file_pattern=str(tmp_path / "*.tfrecord"),
                            batch_size=2, seed=0)
  x, y = next(iter(ds))
  assert x.shape == (2, 10, 398, 51, 1)  # 10 bands of 51 bins, 398 frames.
  assert y.shape == (2, 10)


def test_folder_dataset_pretext_round_trip(rendered_dataset_dir):
  ds = data.pretext_dataset(data_dir=rendered_dataset_dir, split="test",
                            batch_size=4, num_patches=5, shuffle=False,
                            deterministic=True, repeat=False, seed=0)
  x, r = next(iter(ds))
  audio = next(iter(data.waveform_dataset(
      data_dir=rendered_dataset_dir, split="test", batch_size=4)))["audio"]
  ref = np.concatenate([patches_lib.frontend(audio[i:i + 1], "frequency",
                                             5).numpy() for i in range(4)])
  np.testing.assert_array_equal(
      permutations.unshuffle_patches(x, r).numpy(), ref)
  with pytest.raises(ValueError, match="split='dev'.*available"):
    data.pretext_dataset(data_dir=rendered_dataset_dir, split="dev",
                         batch_size=4)


def test_bad_arguments(magenta_files):
  kwargs = dict(file_pattern=magenta_files, batch_size=2)
  with pytest.raises(ValueError, match="num_patches=600.*513 frequency bins"):
    data.pretext_dataset(num_patches=600, **kwargs)
  with pytest.raises(ValueError, match="num_patches=500.*398 frames"):
    data.pretext_dataset(patching="time", num_patches=500, **kwargs)
  with pytest.raises(ValueError, match="grid"):
    data.pretext_dataset(patching="time_frequency", num_patches=10,
                         grid=(3, 3), **kwargs)
  with pytest.raises(ValueError, match="needs permutation_set"):
    data.pretext_dataset(target="classification", **kwargs)
  with pytest.raises(ValueError, match=r"\[K, 10\]"):
    data.pretext_dataset(target="classification",
                         permutation_set=np.zeros((3, 4), np.int32), **kwargs)
  with pytest.raises(ValueError, match="row 1"):
    data.pretext_dataset(target="classification", num_patches=3,
                         permutation_set=[[0, 1, 2], [0, 0, 2]], **kwargs)
  with pytest.raises(ValueError, match="more than 3! = 6"):
    data.pretext_dataset(
        target="classification", num_patches=3,
        permutation_set=np.tile(np.arange(3, dtype=np.int32), (7, 1)),
        **kwargs)
  with pytest.raises(ValueError, match="only 10! = 3628800"):
    permutations.hamming_permutation_set(3628801, 10)
  with pytest.raises(ValueError, match="target='order'"):
    data.pretext_dataset(target="order", **kwargs)
  with pytest.raises(ValueError, match="crop_frames=400"):
    data.pretext_dataset(crop_frames=400, **kwargs)
  with pytest.raises(ValueError, match="batch_size=0"):
    data.pretext_dataset(file_pattern=magenta_files, batch_size=0)
  with pytest.raises(ValueError, match="batch_size=0"):
    data.waveform_dataset(file_pattern=magenta_files, batch_size=0)
  assert os.path.basename(magenta_files).startswith("nsynth-")


# ------------------------------------------------ anti-shortcut augmentations


def _natural_cells(magenta_files, nsynth, patching, num_patches, grid=None):
  return _reference(magenta_files, nsynth.SHORT, patching, num_patches, grid)


@pytest.mark.parametrize("patching,num_patches,grid,gap", [
    ("frequency", 4, None, 7),
    ("time", 2, None, 3),
    ("time_frequency", 4, (2, 2), 2),
])
def test_patch_gap_takes_each_patch_inside_its_cell_at_random(
    magenta_files, nsynth, patching, num_patches, grid, gap):
  """Each training patch is its natural cell cut at some offset in [0, gap]."""
  ds = data.pretext_dataset(
      file_pattern=magenta_files, batch_size=4, patching=patching,
      num_patches=num_patches, grid=grid, shuffle=False, deterministic=True,
      seed=3, repeat=False, num_samples=nsynth.SHORT, patch_gap=gap)
  shuffled, ranks = nsynth.take_all(ds)
  cells = _natural_cells(magenta_files, nsynth, patching, num_patches, grid)
  cut_frames = patching != "frequency"
  cut_bins = patching != "time"
  assert shuffled.shape[2] == cells.shape[2] - (gap if cut_frames else 0)
  assert shuffled.shape[3] == cells.shape[3] - (gap if cut_bins else 0)
  restored = permutations.unshuffle_patches(shuffled, ranks).numpy()
  height, width = restored.shape[2:4]
  offsets = set()
  for b in range(len(restored)):
    for i in range(num_patches):
      found = [(f, w) for f in range(gap + 1 if cut_frames else 1)
               for w in range(gap + 1 if cut_bins else 1)
               if np.array_equal(cells[b, i, f:f + height, w:w + width],
                                 restored[b, i])]
      assert found, (b, i)
      offsets.update(found)
  assert len(offsets) > 2  # Drawn per patch, not one fixed cut.


def test_natural_features_are_the_centred_cut():
  """Export and evaluation (no offsets) take the centred cut of each cell."""
  cells = tf.reshape(tf.range(2 * 3 * 8 * 10, dtype=tf.float32),
                     [2, 3, 8, 10])
  cut = patches_lib.cut_patches(cells, "frequency", 4).numpy()
  np.testing.assert_array_equal(cut, cells.numpy()[:, :, :, 2:8])
  cut = patches_lib.cut_patches(cells, "time_frequency", 3).numpy()
  np.testing.assert_array_equal(cut, cells.numpy()[:, :, 1:6, 1:8])
  assert patches_lib.cut_patches(cells, "time", 0) is cells
  with pytest.raises(ValueError, match="patch_gap=10 leaves nothing"):
    patches_lib.cut_patches(cells, "frequency", 10)
  assert patches_lib.frontend_patch_shape("frequency", 10,
                                          patch_gap=11) == (398, 40)


def test_gain_jitter_shifts_each_patch_by_one_bounded_offset(magenta_files,
                                                             nsynth):
  """gain_jitter adds one uniform offset per patch and nothing else."""
  kwargs = dict(file_pattern=magenta_files, batch_size=4, num_patches=4,
                shuffle=False, deterministic=True, seed=3, repeat=False,
                num_samples=nsynth.SHORT)
  plain, plain_ranks = nsynth.take_all(data.pretext_dataset(**kwargs))
  jittered, ranks = nsynth.take_all(data.pretext_dataset(gain_jitter=2.0,
                                                         **kwargs))
  # The augmentations' seeds are folded apart: same permutations as without.
  np.testing.assert_array_equal(ranks, plain_ranks)
  shift = jittered - plain  # [B, n, H, W, 1]
  per_patch = shift.reshape(shift.shape[0], shift.shape[1], -1)
  np.testing.assert_allclose(per_patch, per_patch[..., :1] + 0 * per_patch,
                             atol=1e-5)  # One offset per patch.
  offsets = per_patch[..., 0]
  assert np.all(np.abs(offsets) <= 2.0) and np.std(offsets) > 0.3


@pytest.mark.parametrize("option,frequency_scale", [
    ("tilt_jitter", "linear"), ("eq_jitter", "linear"), ("tilt_jitter", "log"),
    ("eq_jitter", "log")])
def test_spectral_jitter_is_one_smooth_curve_per_example(
    magenta_files, nsynth, option, frequency_scale):
  """Tilt and EQ add the same function of frequency to every frame."""
  kwargs = dict(file_pattern=magenta_files, batch_size=4, num_patches=1,
                patching="time", shuffle=False, deterministic=True, seed=3,
                repeat=False, num_samples=nsynth.SHORT,
                frequency_scale=frequency_scale)
  plain, _ = nsynth.take_all(data.pretext_dataset(**kwargs))
  jittered, _ = nsynth.take_all(data.pretext_dataset(**{option: 1.0},
                                                     **kwargs))
  curve = (jittered - plain)[:, 0, :, :, 0]  # [B, frames, bins]
  np.testing.assert_allclose(curve, np.broadcast_to(curve[:, :1], curve.shape),
                             atol=1e-4)  # Same in every frame.
  curve = curve[:, 0]  # [B, bins]
  assert curve.shape[1] == spectrogram.num_scale_bins(frequency_scale)
  bound = 1.0 if option == "tilt_jitter" else 1.5
  assert np.all(np.abs(curve) <= bound + 1e-5)
  assert np.max(np.abs(np.diff(curve, axis=1))) < 0.05  # Smooth.
  assert np.std(curve[:, 0] - curve[:, -1]) > 0  # Differs per example.
  if option == "tilt_jitter":  # A straight line.
    np.testing.assert_allclose(np.diff(curve, n=2, axis=1), 0, atol=1e-4)


def test_augmentations_reject_negative_values(magenta_files):
  for name in ("patch_gap", "gain_jitter", "tilt_jitter", "eq_jitter"):
    with pytest.raises(ValueError, match=name):
      data.pretext_dataset(file_pattern=magenta_files, batch_size=2,
                           **{name: -1})


def test_pitch_copies_come_in_groups_with_their_shifts(tmp_path, nsynth):
  """Each note gives K consecutive examples, each with the shift that moved
  its partials."""
  t = np.arange(nsynth.SHORT) / 16000
  hz = [1500 + 100 * i for i in range(6)]
  records = [nsynth.example(np.sin(2 * np.pi * f * t), index=i)
             for i, f in enumerate(hz)]
  pattern = nsynth.write(tmp_path / "sines.tfrecord", records)
  kwargs = dict(file_pattern=pattern, batch_size=4, num_patches=1,
                patching="time", shuffle=False, deterministic=True, seed=3,
                repeat=False, num_samples=nsynth.SHORT)
  batches = list(data.pretext_dataset(pitch_copies=2, pitch_range=3.0,
                                      **kwargs))
  assert len(batches) == 3  # 6 notes, 2 a batch.
  bins = spectrogram.num_bins()
  bin_hz = 8000.0 / (bins - 1)
  for b, (patches, target, shifts) in enumerate(batches):
    assert patches.shape[0] == target.shape[0] == shifts.shape[0] == 4
    assert shifts.dtype == tf.float32
    assert np.all(np.abs(shifts.numpy()) <= 3.0)
    for group in range(2):
      pair = patches.numpy()[2 * group:2 * group + 2, 0, :, :, 0]
      pair_shifts = shifts.numpy()[2 * group:2 * group + 2]
      # The louder bin of each copy's mean spectrum lies where the note's
      # sine moved by the copy's shift.
      peaks = np.argmax(pair.mean(axis=1), axis=-1)
      expected = hz[2 * b + group] * 2.0 ** (pair_shifts / 12.0) / bin_hz
      np.testing.assert_allclose(peaks, expected, atol=1.0)
      ranks = pitch.shift_ranks(pair_shifts).numpy()
      assert sorted(ranks) == [0, 1]
  # Over all notes the shifts are not all equal.
  all_shifts = np.concatenate([s.numpy() for _, _, s in batches])
  assert np.all(all_shifts[0::2] != all_shifts[1::2])


def test_pitch_copies_refuse_batches_they_do_not_divide(magenta_files):
  with pytest.raises(ValueError, match="pitch_copies=3 .* divide"):
    data.pretext_dataset(file_pattern=magenta_files, batch_size=4,
                         pitch_copies=3)
  with pytest.raises(ValueError, match="pitch_copies=1"):
    data.pretext_dataset(file_pattern=magenta_files, batch_size=4,
                         pitch_copies=1)
  with pytest.raises(ValueError, match="frontend_batch_size=1"):
    data.pretext_dataset(file_pattern=magenta_files, batch_size=4,
                         pitch_copies=2, frontend_batch_size=2)
  with pytest.raises(ValueError, match="pitch_range=20"):
    data.pretext_dataset(file_pattern=magenta_files, batch_size=4,
                         pitch_copies=2, pitch_range=20)
  with pytest.raises(ValueError, match="pitch_band='half'"):
    data.pretext_dataset(file_pattern=magenta_files, batch_size=4,
                         pitch_copies=2, pitch_band="half")


def test_original_envelope_copies_keep_the_notes_smooth_spectrum(tmp_path,
                                                                 nsynth):
  """pitch_envelope="original": the copies' smooth spectra are the note's."""
  t = np.arange(nsynth.SHORT) / 16000
  tone = sum(np.sin(2 * np.pi * h * 330.0 * t) / h for h in range(1, 12))
  pattern = nsynth.write(tmp_path / "tones.tfrecord",
                         [nsynth.example(tone * np.exp(-4 * t), index=i)
                          for i in range(2)])
  kwargs = dict(file_pattern=pattern, batch_size=2, num_patches=1,
                patching="time", shuffle=False, deterministic=True, seed=5,
                repeat=False, num_samples=nsynth.SHORT, pitch_copies=2,
                pitch_range=3.0)
  spread = {}
  for envelope in ("shifted", "original"):
    patches, _, shifts = next(iter(data.pretext_dataset(
        pitch_envelope=envelope, **kwargs)))
    specs = patches.numpy()[:, 0, :, :, 0]  # [2, frames, bins]
    smooth = pitch.smooth_over_bins(specs).numpy()
    spread[envelope] = np.abs(smooth[0] - smooth[1]).mean()
    # The two copies of the note, shifted apart.
    assert np.all(np.abs(shifts.numpy()) <= 3.0)
    assert shifts.numpy()[0] != shifts.numpy()[1]
  assert spread["original"] < 0.3 * spread["shifted"], spread
  with pytest.raises(ValueError, match="pitch_envelope='kept'"):
    data.pretext_dataset(pitch_envelope="kept", **kwargs)
