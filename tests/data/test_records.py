"""audio_perm.data.records: schema, parsing rules and inspect_records."""

import numpy as np
import pytest
import tensorflow as tf

from audio_perm import data
from audio_perm import spectrogram
from audio_perm.data import records
from data_prep import nsynth as nsynth_lib


def test_detect_schema(tmp_path, nsynth):
  magenta = nsynth.write_files(tmp_path, 2, 1)
  assert data.detect_schema(magenta) == "magenta"
  audio = tf.train.Feature(float_list=tf.train.FloatList(value=[0.5, 1.0]))
  family = tf.train.Feature(int64_list=tf.train.Int64List(value=[3]))
  kinds = {"tfds": {"audio": audio, "instrument/family": family},
           "audio_only": {"audio": audio}}
  paths = {}
  for kind, feature in kinds.items():
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    paths[kind] = nsynth.write(tmp_path / f"{kind}.tfrecord",
                               [example.SerializeToString()])
    assert data.detect_schema([paths[kind]]) == kind
  with pytest.raises(ValueError, match="different schemas"):
    data.detect_schema([paths["tfds"]] + magenta)
  empty = nsynth.write(tmp_path / "empty.tfrecord", [])
  with pytest.raises(ValueError, match="No readable record"):
    data.pretext_dataset(file_pattern=empty, batch_size=2)


def test_parse_with_labels_maps_keys_and_defaults(nsynth):
  record = nsynth.example(nsynth.audio(0, 10), pitch=61, index=13)
  parsed = records.parse_with_labels(tf.constant(record), "f.tfrecord",
                                     "magenta", 12)
  assert parsed["audio"].shape == [12]
  assert parsed["id"].numpy() == b"note-00013"
  assert [int(parsed[k]) for k in data.LABELS] == [61, 100, 6, 2, 1]
  # The same record read as "tfds": no label under those keys -> -1.
  parsed = records.parse_with_labels(tf.constant(record), "f.tfrecord",
                                     "tfds", 12)
  assert [int(parsed[k]) for k in data.LABELS] == [61, 100, -1, -1, -1]
  assert parsed["id"].numpy() == b""


def test_wrong_schema(tmp_path, nsynth):
  no_audio = nsynth.write(tmp_path / "no_audio.tfrecord",
                          [nsynth.example(None, index=i) for i in range(2)])
  with pytest.raises(ValueError, match="no_audio.tfrecord.*no 'audio'"):
    data.pretext_dataset(file_pattern=no_audio, batch_size=2)
  int_audio = nsynth.write(tmp_path / "int_audio.tfrecord",
                           [nsynth.example(np.zeros(10), audio_as_int=True)])
  with pytest.raises(ValueError, match="int_audio.tfrecord.*int64_list"):
    data.waveform_dataset(file_pattern=int_audio, batch_size=2)
  # A later record without audio: named at iteration (first one was fine).
  mixed = nsynth.write(tmp_path / "mixed.tfrecord",
                       [nsynth.example(nsynth.audio(0)),
                        nsynth.example(None, index=1)])
  ds = data.pretext_dataset(file_pattern=mixed, batch_size=2, num_patches=2,
                            num_samples=nsynth.SHORT, repeat=False)
  with pytest.raises(tf.errors.InvalidArgumentError, match="mixed.tfrecord"):
    list(ds)
  with pytest.raises(tf.errors.InvalidArgumentError, match="mixed.tfrecord"):
    list(data.waveform_dataset(file_pattern=mixed, batch_size=2))
  with pytest.raises(ValueError, match="without 'audio'.*mixed.tfrecord"):
    data.pretext_dataset(file_pattern=mixed, batch_size=2, check_files=True)


def test_wrong_length_audio_is_padded_or_cropped(tmp_path, nsynth):
  short, long = nsynth.audio(1, 3000), nsynth.audio(2, 5000)
  path = nsynth.write(tmp_path / "lengths.tfrecord",
                      [nsynth.example(short, index=0),
                       nsynth.example(long, index=1)])
  batch = next(iter(data.waveform_dataset(file_pattern=path, batch_size=2,
                                          num_samples=nsynth.SHORT)))
  audio = batch["audio"].numpy()
  np.testing.assert_array_equal(audio[0], np.pad(short, [0, 1000]))
  np.testing.assert_array_equal(audio[1], long[:nsynth.SHORT])
  report = data.inspect_records(file_pattern=path, num_samples=nsynth.SHORT)
  assert report.num_wrong_length == 2
  x, _ = next(iter(data.pretext_dataset(file_pattern=path, batch_size=2,
                                        num_patches=2,
                                        num_samples=nsynth.SHORT)))
  assert x.shape == (2, 2, 23, 256, 1)


@pytest.mark.parametrize("length", [0, 3000, 4000, 5000])
def test_converter_pads_and_crops_as_the_reader(length):
  """data_prep's numpy rule (at conversion) is spectrogram.fit_length."""
  audio = np.arange(1, length + 1, dtype=np.float32)
  want, changed = nsynth_lib.pad_or_crop(audio, 4000)
  assert changed == (length != 4000)
  np.testing.assert_array_equal(
      spectrogram.fit_length(audio, 4000).numpy(), want)


def test_non_finite_audio_is_dropped_and_counted(tmp_path, nsynth):
  nan, inf = nsynth.audio(1), nsynth.audio(2)
  nan[5] = np.nan
  inf[7] = -np.inf
  examples = [nsynth.example(nsynth.audio(10 + i), index=i) for i in range(3)]
  examples[1:1] = [nsynth.example(nan, index=90),
                   nsynth.example(inf, index=91)]
  path = nsynth.write(tmp_path / "nan.tfrecord", examples)
  ids = nsynth.ids(data.waveform_dataset(file_pattern=path, batch_size=10))
  assert ids == ["note-00000", "note-00001", "note-00002"]
  x, _ = nsynth.take_all(data.pretext_dataset(
      file_pattern=path, batch_size=1, num_patches=2, repeat=False,
      num_samples=nsynth.SHORT))
  assert len(x) == 3 and np.all(np.isfinite(x))
  report = data.inspect_records(file_pattern=path, num_samples=nsynth.SHORT)
  assert isinstance(report, data.RecordReport)
  assert report.num_nonfinite == 2 and report.num_records == 5
  assert report.num_files == 1 and not report.corrupt_files


def test_folder_dataset_labels_match_tfds(rendered_dataset_dir):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder_from_directory(rendered_dataset_dir)
  reference = {}
  for ex in builder.as_dataset(split="valid"):
    reference[ex["id"].numpy().decode()] = (
        ex["pitch"].numpy(), ex["instrument"]["label"].numpy(),
        ex["instrument"]["family"].numpy(), ex["audio"].numpy())
  waves = data.waveform_dataset(data_dir=rendered_dataset_dir, split="valid",
                                batch_size=5)
  seen = 0
  for batch in waves:
    for i, note in enumerate(batch["id"].numpy()):
      pitch, label, family, audio = reference[note.decode()]
      assert batch["pitch"][i] == pitch
      assert batch["instrument"][i] == label
      assert batch["instrument_family"][i] == family
      np.testing.assert_array_equal(batch["audio"][i].numpy(), audio)
      seen += 1
  assert seen == len(reference) > 0
