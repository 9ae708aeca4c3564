"""Small NSynth TFRecord files for the audio_perm.data tests.

The tests write files in Magenta's NSynth schema themselves through the
`nsynth` fixture (helpers are fixtures because tests are imported with
--import-mode=importlib and cannot import each other). Short audio
(`nsynth.SHORT` = 4000 samples, 23 frames) keeps them fast.
"""

import types

import numpy as np
import pytest
import tensorflow as tf

SHORT = 4000  # Samples per example in most tests: 23 frames.


def _example(audio=None, pitch=60, index=0, drop=(), audio_as_int=False):
  """A tf.Example in Magenta's NSynth schema."""
  feature = {}
  if audio is not None and "audio" not in drop:
    if audio_as_int:
      feature["audio"] = tf.train.Feature(int64_list=tf.train.Int64List(
          value=np.asarray(audio, np.int64)))
    else:
      feature["audio"] = tf.train.Feature(float_list=tf.train.FloatList(
          value=np.asarray(audio, np.float32)))
  ints = {"pitch": pitch, "velocity": 100, "instrument": index % 7,
          "instrument_family": index % 11, "instrument_source": index % 3,
          "sample_rate": 16000}
  for key, value in ints.items():
    feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(
        value=[value]))
  feature["note_str"] = tf.train.Feature(bytes_list=tf.train.BytesList(
      value=[b"note-%05d" % index]))
  return tf.train.Example(features=tf.train.Features(
      feature=feature)).SerializeToString()


def _write(path, records):
  with tf.io.TFRecordWriter(str(path)) as writer:
    for record in records:
      writer.write(record)
  return str(path)


def _audio(index, num_samples=SHORT):
  """Distinct noise for every index (patches never repeat)."""
  return np.random.default_rng(index).standard_normal(num_samples).astype(
      np.float32)


def _write_files(tmp_path, num_files, per_file, num_samples=SHORT,
                 prefix="nsynth"):
  """num_files files of per_file noise examples; pitch = global index."""
  files = []
  for f in range(num_files):
    records = [_example(_audio(f * per_file + i, num_samples),
                        pitch=f * per_file + i, index=f * per_file + i)
               for i in range(per_file)]
    files.append(_write(tmp_path / f"{prefix}-{f:02d}.tfrecord", records))
  return files


def _truncated_file(tmp_path):
  """A file of 4 records cut inside the last one (3 readable)."""
  path = _write_files(tmp_path, 1, 4, prefix="bad")[0]
  with open(path, "rb") as f:
    content = f.read()
  with open(path, "wb") as f:
    f.write(content[:-100])  # Cut inside the last record.
  return path


def _take_all(ds):
  """(x, y) batches -> (all x, all y) numpy arrays."""
  xs, ys = [], []
  for x, y in ds:
    xs.append(x.numpy())
    ys.append(y.numpy())
  return np.concatenate(xs), np.concatenate(ys)


def _ids(ds):
  """The "id"s of a waveform_dataset, in order."""
  return [i.decode() for b in ds for i in b["id"].numpy()]


@pytest.fixture(scope="session")
def nsynth():
  """Helpers that write and read small NSynth files (see the module doc)."""
  return types.SimpleNamespace(
      SHORT=SHORT, example=_example, write=_write, audio=_audio,
      write_files=_write_files, truncated_file=_truncated_file,
      take_all=_take_all, ids=_ids)
