"""NSynth's on-disk format: the official features and TFDS folder datasets.

A dataset written by `data_prep.render` or `data_prep.convert` is a TFDS folder
dataset with the official `nsynth` FeaturesDict (`features()`):

  id          string, e.g. "keyboard_acoustic_000-060-100"
              (`<family>_<source>_<label:03d>-<pitch:03d>-<velocity:03d>`)
  audio       float32 [64000], 4 s at 16 kHz
  pitch       ClassLabel(128), MIDI pitch
  velocity    ClassLabel(128), MIDI velocity
  instrument  {label: ClassLabel(1006), family: ClassLabel(11),
               source: ClassLabel(3)}
  qualities   {bright, dark, distortion, fast_decay, long_release,
               multiphonic, nonlinear_env, percussive, reverb,
               tempo-synced}: bool

Files in the dataset folder:

  nsynth-<split>.tfrecord-<i:05d>-of-<n:05d>   tf.Example shards
  dataset_info.json, features.json              TFDS metadata (written last)

It loads with `tfds.builder_from_directory(folder)`, and the shards can be read
with a plain `tf.data.TFRecordDataset` and parsed with `tf_example_spec()`
(flattened keys "audio", "id", "instrument/label", ..., "qualities/bright",
...; bools stored as int64).

`serialize_example` writes a tf.Example that parses to exactly what
`features().serialize_example` gives, about 20 times faster (that one builds the
64000-float list element by element) and needs neither TensorFlow nor TFDS, so
worker processes stay light.
"""

import functools
import json
import os

import numpy as np

from data_prep import gm

SAMPLE_RATE_HZ = 16000
NUM_SAMPLES = 64000  # 4 s at 16 kHz.
DATASET_NAME = "nsynth"
SPLITS = ("train", "valid", "test")
FAMILIES = gm.FAMILIES
SOURCES = gm.SOURCES
QUALITIES = ("bright", "dark", "distortion", "fast_decay", "long_release",
             "multiphonic", "nonlinear_env", "percussive", "reverb",
             "tempo-synced")
NUM_INSTRUMENT_LABELS = 1006
# TFDS file name template of the shards: nsynth-train.tfrecord-00000-of-00002.
FILENAME_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"

_DESCRIPTION = (
    "NSynth-format dataset (16 kHz mono float32, 4 s notes) written by "
    "audio_perm's data_prep.")


@functools.lru_cache(maxsize=None)
def features():
  """The official nsynth FeaturesDict (`tfds.builder('nsynth').info.features`).

  Cached: building the builder takes about a second. Works offline.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds.builder(DATASET_NAME).info.features


def tf_example_spec():
  """Feature spec to parse the shards with `tf.io.parse_example` directly.

  Keys are the flattened TFDS keys; the bool qualities are stored as int64.

  Returns:
    dict key -> tf.io.FixedLenFeature: "audio" float32 [64000], "id" string,
    "pitch", "velocity", "instrument/label", "instrument/family",
    "instrument/source" and "qualities/<name>" int64 scalars.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  spec = {
      "audio": tf.io.FixedLenFeature([NUM_SAMPLES], tf.float32),
      "id": tf.io.FixedLenFeature([], tf.string),
  }
  for key in ("pitch", "velocity", "instrument/label", "instrument/family",
              "instrument/source"):
    spec[key] = tf.io.FixedLenFeature([], tf.int64)
  for name in QUALITIES:
    spec["qualities/" + name] = tf.io.FixedLenFeature([], tf.int64)
  return spec


def shard_filename(split, index, num_shards):
  """File name of one shard, e.g. 'nsynth-train.tfrecord-00000-of-00002'."""
  return f"{DATASET_NAME}-{split}.tfrecord-{index:05d}-of-{num_shards:05d}"


def note_id(family, source, label, pitch, velocity):
  """NSynth note id, e.g. note_id('keyboard', 'acoustic', 0, 60, 100)."""
  return f"{family}_{source}_{label:03d}-{pitch:03d}-{velocity:03d}"


# ---------------------------------------------------------------------------
# tf.Example encoding without TensorFlow. Wire format of tf.train.Example:
#   Example  { Features features = 1; }
#   Features { map<string, Feature> feature = 1; }  (entry: key = 1, value = 2)
#   Feature  { oneof { BytesList = 1; FloatList = 2; Int64List = 3; } }
#   *List    { repeated value = 1 [packed]; }        (BytesList not packed)
# ---------------------------------------------------------------------------


def _varint(value):
  if value < 0:
    value += 1 << 64  # int64 two's complement, 10 bytes.
  out = bytearray()
  while True:
    byte = value & 0x7F
    value >>= 7
    if value:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


def _length_delimited(field_number, payload):
  return _varint((field_number << 3) | 2) + _varint(len(payload)) + payload


def _bytes_feature(values):
  payload = b"".join(_length_delimited(1, v) for v in values)
  return _length_delimited(1, payload)


def _float_feature(values):
  raw = np.ascontiguousarray(values, dtype="<f4").tobytes()
  return _length_delimited(2, _length_delimited(1, raw))


def _int64_feature(values):
  raw = b"".join(_varint(int(v)) for v in values)
  return _length_delimited(3, _length_delimited(1, raw))


def _check_class(name, value, num_classes):
  if isinstance(value, (bool, np.bool_)) or not isinstance(
      value, (int, np.integer)) or not 0 <= int(value) < num_classes:
    raise ValueError(
        f"{name} must be an integer in [0, {num_classes - 1}], got "
        f"{value!r}.")
  return int(value)


def serialize_example(example):
  """Serializes one NSynth example to tf.Example bytes.

  The result parses to the same tf.train.Example as
  `features().serialize_example(example)` (only the order of the feature map
  entries may differ; it is fixed here, so equal inputs give equal bytes).

  Args:
    example: dict with "id" (str or bytes), "audio" (float array-like
      [64000]), "pitch" and "velocity" (int in [0, 127]), "instrument" (dict
      of ints "label" [0, 1005], "family" [0, 10], "source" [0, 2]) and
      optionally "qualities" (dict of bools by name; missing ones are False).

  Returns:
    bytes, a serialized tf.train.Example.

  Raises:
    ValueError: for a missing key, an audio array not of shape [64000], a
      class value out of range, or an unknown quality name.
  """
  for key in ("id", "audio", "pitch", "velocity", "instrument"):
    if key not in example:
      raise ValueError(f"NSynth example is missing {key!r}; it has "
                       f"{sorted(example)}.")
  audio = np.asarray(example["audio"], dtype=np.float32)
  if audio.shape != (NUM_SAMPLES,):
    raise ValueError(f"NSynth audio must have shape ({NUM_SAMPLES},), got "
                     f"{audio.shape} for id {example['id']!r}.")
  note = example["id"]
  if isinstance(note, str):
    note = note.encode("utf-8")
  instrument = example["instrument"]
  qualities = dict(example.get("qualities") or {})
  unknown = set(qualities) - set(QUALITIES)
  if unknown:
    raise ValueError(f"Unknown NSynth qualities {sorted(unknown)}; known: "
                     f"{QUALITIES}.")
  flat = {
      "audio": _float_feature(audio),
      "id": _bytes_feature([note]),
      "instrument/family": _int64_feature([_check_class(
          "instrument family", instrument.get("family"), len(FAMILIES))]),
      "instrument/label": _int64_feature([_check_class(
          "instrument label", instrument.get("label"),
          NUM_INSTRUMENT_LABELS)]),
      "instrument/source": _int64_feature([_check_class(
          "instrument source", instrument.get("source"), len(SOURCES))]),
      "pitch": _int64_feature([_check_class("pitch", example["pitch"], 128)]),
  }
  for name in QUALITIES:
    flat["qualities/" + name] = _int64_feature(
        [int(bool(qualities.get(name, False)))])
  flat["velocity"] = _int64_feature(
      [_check_class("velocity", example["velocity"], 128)])
  entries = b"".join(
      _length_delimited(1, _length_delimited(1, key.encode("utf-8")) +
                        _length_delimited(2, value))
      for key, value in flat.items())
  return _length_delimited(1, entries)


# ---------------------------------------------------------------------------
# Folder-dataset bookkeeping shared by render and convert.
# ---------------------------------------------------------------------------


def write_tfrecord_atomically(path, records):
  """Writes records to `path` through a temporary name, renamed when complete.

  A reader never sees a partially written file under `path`. The temporary
  file is `<path>.incomplete` (no shard glob of the dataset matches it).

  Args:
    path: final file path.
    records: iterable of bytes.

  Returns:
    (number of records, file size in bytes).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tmp_path = path + ".incomplete"
  count = 0
  with tf.io.TFRecordWriter(tmp_path) as writer:
    for record in records:
      writer.write(record)
      count += 1
  os.replace(tmp_path, path)
  return count, os.path.getsize(path)


def write_folder_metadata(data_dir, split_shard_lengths, description=None):
  """Writes the TFDS metadata of a folder dataset (call after all shards).

  Args:
    data_dir: the dataset folder holding the shards.
    split_shard_lengths: dict split name -> list of examples per shard, in
      shard order (shard files named by `shard_filename`).
    description: optional text for dataset_info.json.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  split_infos = []
  for split, shard_lengths in split_shard_lengths.items():
    num_shards = len(shard_lengths)
    num_bytes = sum(
        os.path.getsize(os.path.join(data_dir, shard_filename(split, i,
                                                              num_shards)))
        for i in range(num_shards))
    split_infos.append(tfds.core.SplitInfo(
        name=split, shard_lengths=[int(n) for n in shard_lengths],
        num_bytes=int(num_bytes)))
  from absl import logging  # pylint: disable=g-import-not-at-top
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)  # TFDS logs a dozen lines here.
  try:
    tfds.folder_dataset.write_metadata(
        data_dir=data_dir,
        features=features(),
        split_infos=split_infos,
        filename_template=FILENAME_TEMPLATE,
        description=description or _DESCRIPTION,
        homepage="https://g.co/magenta/nsynth-dataset",
        check_data=True,
    )
  finally:
    logging.set_verbosity(verbosity)


def write_json_atomically(path, obj):
  """Writes `obj` as JSON through a temporary file renamed into place."""
  tmp_path = path + ".incomplete"
  with open(tmp_path, "w") as f:
    json.dump(obj, f, indent=1, sort_keys=True)
    f.write("\n")
  os.replace(tmp_path, path)


def pad_or_crop(audio, num_samples=NUM_SAMPLES):
  """The pad/crop rule for audio of the wrong length.

  Shorter audio is zero-padded at the end; longer audio keeps its first
  `num_samples` samples (NSynth notes start at the onset).

  Args:
    audio: float array [samples].
    num_samples: target length.

  Returns:
    (float32 array [num_samples], changed: bool).
  """
  audio = np.asarray(audio, dtype=np.float32).reshape(-1)
  if audio.shape[0] == num_samples:
    return audio, False
  if audio.shape[0] > num_samples:
    return audio[:num_samples], True
  return np.pad(audio, (0, num_samples - audio.shape[0])), True

