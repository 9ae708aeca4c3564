"""Tests of data_prep.convert on small files written in Magenta's schema."""

import glob
import json
import os
import subprocess
import sys
import wave

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from data_prep import convert
from data_prep import nsynth

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _notes(num_notes, seed=0, num_samples=64000):
  """Magenta-style note attributes with random audio."""
  rng = np.random.default_rng(seed)
  notes = []
  for i in range(num_notes):
    family = int(rng.integers(11))
    source = int(rng.integers(3))
    instrument = int(rng.integers(1006))
    pitch = int(rng.integers(9, 121))
    velocity = int(rng.choice([25, 50, 75, 100, 127]))
    notes.append({
        "note_str": (f"{nsynth.FAMILIES[family]}_{nsynth.SOURCES[source]}_"
                     f"{i:03d}-{pitch:03d}-{velocity:03d}"),
        "note": i,
        "pitch": pitch, "velocity": velocity, "instrument": instrument,
        "instrument_str": f"{nsynth.FAMILIES[family]}_{i:03d}",
        "instrument_family": family,
        "instrument_family_str": nsynth.FAMILIES[family],
        "instrument_source": source,
        "instrument_source_str": nsynth.SOURCES[source],
        "qualities": [int(q) for q in rng.integers(0, 2, 10)],
        "sample_rate": 16000,
        "audio": rng.uniform(-0.9, 0.9, num_samples).astype(np.float32),
    })
  return notes


def _magenta_example(note, drop=(), **override):
  """A tf.Example in the schema of Magenta's released NSynth TFRecords."""
  note = dict(note, **override)
  feature = {}
  for key, value in note.items():
    if key in drop:
      continue
    if key == "audio" and not isinstance(value, str):
      feature[key] = tf.train.Feature(
          float_list=tf.train.FloatList(value=value))
    elif isinstance(value, str):
      feature[key] = tf.train.Feature(
          bytes_list=tf.train.BytesList(value=[value.encode()]))
    elif isinstance(value, list):
      feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(
          value=value))
    else:
      feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(
          value=[value]))
  if "qualities" in note and "qualities" not in drop:
    feature["qualities_str"] = tf.train.Feature(bytes_list=tf.train.BytesList(
        value=[q.encode() for q, v in zip(nsynth.QUALITIES, note["qualities"])
               if v]))
  return tf.train.Example(features=tf.train.Features(feature=feature))


def _write_tfrecord(path, examples):
  with tf.io.TFRecordWriter(str(path)) as writer:
    for example in examples:
      writer.write(example if isinstance(example, bytes)
                   else example.SerializeToString())
  return str(path)


def _write_wav(path, audio, sample_rate=16000, channels=1, width=2):
  scale = {2: 32767, 4: 2147483647}[width]
  ints = np.round(np.clip(audio, -1, 1) * scale).astype(f"<i{width}")
  if channels > 1:
    ints = np.repeat(ints[:, None], channels, axis=1)
  with wave.open(str(path), "wb") as w:
    w.setnchannels(channels)
    w.setsampwidth(width)
    w.setframerate(sample_rate)
    w.writeframes(ints.tobytes())
  return ints


def _write_json_wav(folder, notes, **wav_kwargs):
  """A json+wav archive folder; returns the exact float audio by note."""
  os.makedirs(os.path.join(folder, "audio"), exist_ok=True)
  attrs, audio = {}, {}
  for note in notes:
    attrs[note["note_str"]] = {k: v for k, v in note.items() if k != "audio"}
    ints = _write_wav(os.path.join(folder, "audio",
                                   note["note_str"] + ".wav"),
                      note["audio"], **wav_kwargs)
    width = wav_kwargs.get("width", 2)
    audio[note["note_str"]] = (ints.astype(np.float64) /
                               2.0 ** (8 * width - 1)).astype(np.float32)
  with open(os.path.join(folder, "examples.json"), "w") as f:
    json.dump(attrs, f)
  return audio


def _load(data_dir, split):
  builder = tfds.builder_from_directory(str(data_dir))
  assert builder.info.features.to_json() == nsynth.features().to_json()
  return {ex["id"].decode(): ex for ex in tfds.as_numpy(
      builder.as_dataset(split=split))}


def _check_round_trip(note, ex, audio=None):
  np.testing.assert_array_equal(
      ex["audio"], note["audio"] if audio is None else audio)
  assert ex["pitch"] == note["pitch"]
  assert ex["velocity"] == note["velocity"]
  assert ex["instrument"]["label"] == note["instrument"]
  assert ex["instrument"]["family"] == note["instrument_family"]
  assert ex["instrument"]["source"] == note["instrument_source"]
  assert [int(ex["qualities"][q]) for q in nsynth.QUALITIES] == (
      note["qualities"])


# --------------------------------------------------------------------------
# Round trips.
# --------------------------------------------------------------------------


def test_tfrecords_round_trip(tmp_path):
  notes = _notes(5)
  _write_tfrecord(tmp_path / "nsynth-train.tfrecord-a",
                  [_magenta_example(n) for n in notes[:3]])
  _write_tfrecord(tmp_path / "nsynth-train.tfrecord-b",
                  [_magenta_example(n) for n in notes[3:]])
  out = tmp_path / "out"
  summary = convert.convert(str(tmp_path / "nsynth-train.tfrecord-*"),
                            str(out), "train", examples_per_shard=2,
                            progress=False, verbose=False)
  assert summary["num_examples"] == 5
  assert summary["shard_lengths"] == [2, 2, 1]
  assert sorted(os.listdir(out)) == sorted(
      [nsynth.shard_filename("train", i, 3) for i in range(3)] +
      ["convert_summary.json", "dataset_info.json", "features.json",
       "instrument-family.labels.txt", "instrument-source.labels.txt"])
  loaded = _load(out, "train")
  assert sorted(loaded) == sorted(n["note_str"] for n in notes)
  for note in notes:
    _check_round_trip(note, loaded[note["note_str"]])
  # Record order is kept across files and shards.
  plain = tf.data.TFRecordDataset(sorted(glob.glob(str(out / "nsynth-*")))).map(
      lambda r: tf.io.parse_single_example(r, nsynth.tf_example_spec())["id"])
  assert [i.decode() for i in plain.as_numpy_iterator()] == [
      n["note_str"] for n in notes]


def test_splits_accumulate_and_overwrite(tmp_path):
  train, valid = _notes(3, seed=1), _notes(2, seed=2)
  train_file = _write_tfrecord(tmp_path / "nsynth-train.tfrecord",
                               [_magenta_example(n) for n in train])
  valid_file = _write_tfrecord(tmp_path / "nsynth-valid.tfrecord",
                               [_magenta_example(n) for n in valid])
  out = str(tmp_path / "out")
  convert.convert(train_file, out, "train", progress=False, verbose=False)
  convert.convert(valid_file, out, "valid", progress=False, verbose=False)
  builder = tfds.builder_from_directory(out)
  assert {k: v.num_examples for k, v in builder.info.splits.items()} == {
      "train": 3, "valid": 2}
  with pytest.raises(ValueError, match="already holds split 'train'"):
    convert.convert(valid_file, out, "train", progress=False, verbose=False)
  convert.convert(valid_file, out, "train", overwrite=True, progress=False,
                  verbose=False)
  assert sorted(_load(out, "train")) == sorted(n["note_str"] for n in valid)
  assert len(glob.glob(os.path.join(out, "nsynth-train.tfrecord-*"))) == 1


def test_folder_of_tfrecords(tmp_path):
  notes = _notes(2, seed=3)
  (tmp_path / "in").mkdir()
  _write_tfrecord(tmp_path / "in" / "nsynth-test.tfrecord",
                  [_magenta_example(n) for n in notes])
  summary = convert.convert(str(tmp_path / "in"), str(tmp_path / "out"),
                            "test", progress=False, verbose=False)
  assert summary["input_format"] == "tfrecord"
  for note in notes:
    _check_round_trip(note, _load(tmp_path / "out", "test")[note["note_str"]])


@pytest.mark.parametrize("width", [2, 4])
def test_json_wav_round_trip(tmp_path, width):
  notes = _notes(4, seed=4)
  audio = _write_json_wav(tmp_path / "nsynth-valid", notes, width=width)
  out = tmp_path / "out"
  summary = convert.convert(str(tmp_path / "nsynth-valid"), str(out), "valid",
                            progress=False, verbose=False)
  assert summary["input_format"] == "json_wav"
  assert summary["num_examples"] == 4 and summary["padded_or_cropped"] == 0
  loaded = _load(out, "valid")
  for note in notes:
    _check_round_trip(note, loaded[note["note_str"]], audio[note["note_str"]])
    # And only quantisation changed it (written with full scale 2**15 - 1,
    # read with 2**15: half a step plus a 3e-5 relative scale).
    np.testing.assert_allclose(loaded[note["note_str"]]["audio"],
                               note["audio"], atol=2.0 ** -14)
  # examples.json itself is accepted as --input too.
  convert.convert(str(tmp_path / "nsynth-valid" / "examples.json"),
                  str(out), "test", progress=False, verbose=False)


def test_wrong_length_audio_is_padded_or_cropped(tmp_path):
  short, long_ = _notes(1, seed=5, num_samples=1000) + _notes(
      1, seed=6, num_samples=70000)
  long_["note_str"] = "brass_acoustic_999-060-100"
  audio = _write_json_wav(tmp_path / "in", [short, long_])
  out = tmp_path / "out"
  summary = convert.convert(str(tmp_path / "in"), str(out), "train",
                            progress=False, verbose=False)
  assert summary["padded_or_cropped"] == 2
  loaded = _load(out, "train")
  padded = loaded[short["note_str"]]["audio"]
  np.testing.assert_array_equal(padded[:1000], audio[short["note_str"]])
  assert not padded[1000:].any() and padded.shape == (64000,)
  np.testing.assert_array_equal(loaded[long_["note_str"]]["audio"],
                                audio[long_["note_str"]][:64000])
  # The same rule for TFRecords.
  _write_tfrecord(tmp_path / "short.tfrecord", [_magenta_example(short)])
  summary = convert.convert(str(tmp_path / "short.tfrecord"),
                            str(tmp_path / "out2"), "train", progress=False,
                            verbose=False)
  assert summary["padded_or_cropped"] == 1


# --------------------------------------------------------------------------
# Bad input.
# --------------------------------------------------------------------------


def test_glob_matching_nothing(tmp_path):
  pattern = str(tmp_path / "nothing-*.tfrecord")
  with pytest.raises(ValueError, match="matches no file"):
    convert.convert(pattern, str(tmp_path / "out"), progress=False)
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="neither examples.json"):
    convert.convert(str(tmp_path / "empty"), str(tmp_path / "out"),
                    progress=False)


def test_truncated_tfrecord_names_the_file(tmp_path):
  path = _write_tfrecord(tmp_path / "cut.tfrecord",
                         [_magenta_example(n) for n in _notes(2)])
  size = os.path.getsize(path)
  with open(path, "r+b") as f:
    f.truncate(size - 1000)
  out = tmp_path / "out"
  with pytest.raises(ValueError, match="cut.tfrecord: corrupt or truncated "
                     r"TFRecord file at record index 1 \(after 1 readable "
                     "records\): truncated record at") as raised:
    convert.convert(path, str(out), progress=False, verbose=False)
  assert "function_node" not in str(raised.value)
  assert "[Op:" not in str(raised.value)
  # Nothing a reader takes as data was left behind.
  assert not glob.glob(str(out / "nsynth-*"))
  assert not (out / "dataset_info.json").exists()


def test_garbage_file_names_the_file(tmp_path):
  path = tmp_path / "garbage.tfrecord"
  path.write_bytes(os.urandom(5000))
  with pytest.raises(ValueError, match="garbage.tfrecord: corrupt"):
    convert.convert(str(path), str(tmp_path / "out"), progress=False,
                    verbose=False)


@pytest.mark.parametrize("kwargs,match", [
    ({"drop": ("audio",)}, "missing feature 'audio'"),
    ({"drop": ("note_str",)}, "missing feature 'note_str'"),
    ({"drop": ("pitch",)}, "missing feature 'pitch'"),
    ({"audio": "loud"}, "'audio' must be a float_list"),
    ({"pitch": [60, 61]}, "'pitch' must hold one value"),
    ({"qualities": [1, 0]}, "'qualities' must hold 10"),
    ({"instrument_family": 11, "instrument_family_str": "bass"},
     "instrument_family=11"),
    ({"instrument_family_str": "organ", "instrument_family": 0},
     "does not match"),
    ({"instrument": 1006}, "instrument label"),
    ({"sample_rate": 44100}, "sample_rate is 44100"),
    ({"audio": np.full(64000, np.nan, np.float32)}, "NaN"),
])
def test_wrong_schema_record_names_file_and_record(tmp_path, kwargs, match):
  good, bad = _notes(2, seed=7)
  path = _write_tfrecord(tmp_path / "mixed.tfrecord",
                         [_magenta_example(good),
                          _magenta_example(bad, **kwargs)])
  with pytest.raises(ValueError, match=match) as error:
    convert.convert(path, str(tmp_path / "out"), progress=False,
                    verbose=False)
  assert "mixed.tfrecord: record 1" in str(error.value)
  assert not glob.glob(str(tmp_path / "out" / "nsynth-*"))


def test_skip_invalid_converts_the_rest_and_counts(tmp_path):
  good, bad, nan, good2 = _notes(4, seed=7)
  path = _write_tfrecord(tmp_path / "mixed.tfrecord", [
      _magenta_example(good), _magenta_example(bad, drop=("audio",)),
      _magenta_example(nan, audio=np.full(64000, np.inf, np.float32)),
      _magenta_example(good2)])
  summary = convert.convert(path, str(tmp_path / "out"), skip_invalid=True,
                            progress=False, verbose=False)
  assert summary["num_examples"] == 2 and summary["skipped"] == 2
  assert sorted(_load(tmp_path / "out", "train")) == sorted(
      [good["note_str"], good2["note_str"]])


def test_not_an_example_record(tmp_path):
  path = _write_tfrecord(tmp_path / "odd.tfrecord", [b"\xff\xff\xff"])
  with pytest.raises(ValueError, match="odd.tfrecord: record 0"):
    convert.convert(path, str(tmp_path / "out"), progress=False,
                    verbose=False)


@pytest.mark.parametrize("wav_kwargs,match", [
    ({"sample_rate": 8000}, "sample rate 8000"),
    ({"channels": 2}, "2 channels"),
])
def test_bad_wav_names_the_file(tmp_path, wav_kwargs, match):
  notes = _notes(1, seed=8)
  _write_json_wav(tmp_path / "in", notes, **wav_kwargs)
  with pytest.raises(ValueError, match=match) as error:
    convert.convert(str(tmp_path / "in"), str(tmp_path / "out"),
                    progress=False, verbose=False)
  assert notes[0]["note_str"] + ".wav" in str(error.value)


def test_missing_wav_and_bad_json_attributes(tmp_path):
  notes = _notes(2, seed=9)
  _write_json_wav(tmp_path / "in", notes)
  os.remove(tmp_path / "in" / "audio" / (notes[0]["note_str"] + ".wav"))
  with pytest.raises(ValueError, match=notes[0]["note_str"] + ".wav"):
    convert.convert(str(tmp_path / "in"), str(tmp_path / "out"),
                    progress=False, verbose=False)
  with open(tmp_path / "in" / "examples.json") as f:
    attrs = json.load(f)
  del attrs[notes[0]["note_str"]]
  attrs[notes[1]["note_str"]]["pitch"] = "sixty"
  with open(tmp_path / "in" / "examples.json", "w") as f:
    json.dump(attrs, f)
  with pytest.raises(ValueError, match="'pitch' must be an integer"):
    convert.convert(str(tmp_path / "in"), str(tmp_path / "out"),
                    progress=False, verbose=False)


@pytest.mark.parametrize("kwargs,match", [
    ({"split": "train/1"}, "split"), ({"split": ""}, "split"),
    ({"examples_per_shard": 0}, "examples_per_shard"),
])
def test_bad_arguments(tmp_path, kwargs, match):
  path = _write_tfrecord(tmp_path / "a.tfrecord",
                         [_magenta_example(n) for n in _notes(1)])
  with pytest.raises(ValueError, match=match):
    convert.convert(path, str(tmp_path / "out"), progress=False, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("make_input,match", [
    (lambda d: str(d / "none-*.tfrecord"), "matches no file"),
    (lambda d: (d / "bad.tfrecord").write_bytes(b"\x00" * 64) and
     str(d / "bad.tfrecord"), "bad.tfrecord: corrupt"),
])
def test_cli_errors_are_one_line_exit_2(tmp_path, make_input, match):
  proc = subprocess.run(
      [sys.executable, "-m", "data_prep.convert", "--noprogress",
       f"--input={make_input(tmp_path)}",
       f"--output_dir={tmp_path / 'out'}"],
      capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  assert proc.returncode == 2, proc.stderr
  errors = [l for l in proc.stderr.splitlines()
            if l.startswith("data_prep.convert: error: ")]
  assert len(errors) == 1 and match in errors[0], proc.stderr
  assert "Traceback" not in proc.stderr
