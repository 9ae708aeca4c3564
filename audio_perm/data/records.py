"""NSynth tf.Example records: schema, parsing, and a full count of problems.

Two schemas are read, detected from the first record of the first files:
  * "tfds": a folder dataset's shards (data_prep; keys "audio", "pitch",
    "velocity", "instrument/label", "instrument/family",
    "instrument/source", "id");
  * "magenta": Magenta's released NSynth files (keys "audio", "pitch",
    "velocity", "instrument", "instrument_family", "instrument_source",
    "note_str");
and "audio_only" (audio without labels) for pretraining.

Rules for imperfect records (each is tested):
  * Audio length: spectrogram.fit_length (first num_samples samples kept,
    shorter audio zero-padded at the end).
  * Non-finite audio (NaN or inf anywhere): `is_finite` is False and the
    pipelines DROP the example before batching (a zero-filled stand-in would
    be a silent example whose patches cannot be ordered).
  * A record without an "audio" float feature: a ValueError naming the file
    when a pipeline is built (`detect_schema`), or
    tf.errors.InvalidArgumentError naming the file and the record's index
    during iteration for a later record (`no_audio_record` reads them back).
  * A corrupt first record: a ValueError naming the file (or skipped with
    skip_corrupt=True).
`inspect_records` counts all of these in one pass over the data.
"""

import dataclasses
import re

from absl import logging
import tensorflow as tf

from audio_perm import spectrogram as spectrogram_lib
from audio_perm.data import files as files_lib

NUM_SAMPLES = spectrogram_lib.NUM_SAMPLES
# Unified label names -> serialized keys, per schema.
LABEL_KEYS = {
    "tfds": {
        "pitch": "pitch",
        "velocity": "velocity",
        "instrument": "instrument/label",
        "instrument_family": "instrument/family",
        "instrument_source": "instrument/source",
        "id": "id",
    },
    "magenta": {
        "pitch": "pitch",
        "velocity": "velocity",
        "instrument": "instrument",
        "instrument_family": "instrument_family",
        "instrument_source": "instrument_source",
        "id": "note_str",
    },
}
LABELS = ("pitch", "velocity", "instrument", "instrument_family",
          "instrument_source")
# Read buffer of every TFRecordDataset of this package. 1 MB read and parsed
# records 1.27x faster than 4 MB (7,400 vs 5,850 records/s, 4 files read at
# once, 2 cores): four files' buffers then stay in cache.
READ_BUFFER_BYTES = 1 << 20
# How many files' first records are read to check the schema at build time.
_MAX_FILES_PEEKED = 16
_AUDIO_FEATURE = tf.io.FixedLenSequenceFeature([], tf.float32,
                                               allow_missing=True)


def error_line(error):
  """The op error's own message, without a graph-execution traceback.

  Args:
    error: a tf.errors.OpError.

  Returns:
    str, one line.
  """
  lines = []
  for line in error.message.splitlines():
    stripped = line.strip()
    if (not stripped or stripped.startswith(("File ", "[[", "Detected at")) or
        stripped.startswith("Graph execution error")):
      continue
    stripped = re.sub(r"\s*\[Op:[^\]]*\].*$", "", stripped)
    # "{{function_node ...}} Error in user-defined function passed to ...
    # transformation with iterator: Iterator::...: <the message>".
    stripped = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", stripped)
    stripped = re.sub(r"^Error in user-defined function passed to .*? "
                      r"with iterator: Iterator::\S*:\s*", "", stripped)
    if stripped:
      lines.append(stripped)
  return " ".join(lines) or error.message.strip()


# ---------------------------------------------------------------------------
# Schema (at build time, in Python, on a few records).


def _first_record(path, skip_corrupt):
  try:
    for record in tf.data.TFRecordDataset(path).take(1):
      return record.numpy()
  except tf.errors.DataLossError as e:
    if skip_corrupt:
      logging.warning("Skipping corrupt TFRecord file %s: %s", path,
                      error_line(e))
      return None
    raise ValueError(
        f"Corrupt or truncated TFRecord file {path!r} ({error_line(e)}); "
        "remove or re-create it, or pass skip_corrupt=True.") from None
  except tf.errors.OpError as e:
    raise ValueError(f"Cannot read {path!r}: {error_line(e)}") from None
  return None


def _schema_of(record, path):
  example = tf.train.Example.FromString(record)
  feature = example.features.feature
  if "audio" not in feature:
    raise ValueError(
        f"Wrong schema in {path!r}: the record has no 'audio' feature "
        f"(features: {sorted(feature.keys())}); expected an NSynth record "
        "(float 'audio' of 64000 samples at 16 kHz).")
  kind = feature["audio"].WhichOneof("kind")
  if kind != "float_list":
    raise ValueError(
        f"Wrong schema in {path!r}: 'audio' is a {kind}, expected a float_list "
        "of 64000 samples at 16 kHz.")
  if "instrument/family" in feature:
    return "tfds"
  if "instrument_family" in feature:
    return "magenta"
  return "audio_only"


def detect_schema(files, skip_corrupt=False):
  """"tfds", "magenta" or "audio_only", from the first record of the files.

  Reads the first record of up to 16 files (all must agree).

  Raises:
    ValueError: naming the file, for a record without float "audio", a
      corrupt first record (unless skip_corrupt), or when no record is found.
  """
  schemas = {}
  for path in files[:_MAX_FILES_PEEKED]:
    record = _first_record(path, skip_corrupt)
    if record is not None:
      schemas[path] = _schema_of(record, path)
  if not schemas:
    raise ValueError(
        f"No readable record in {files[:_MAX_FILES_PEEKED]}"
        f"{' ...' if len(files) > _MAX_FILES_PEEKED else ''}; the files are "
        "empty or corrupt.")
  if len(set(schemas.values())) > 1:
    raise ValueError(f"Files with different schemas: {schemas}.")
  return next(iter(schemas.values()))


# ---------------------------------------------------------------------------
# Per-record parsing (graph).


# The start of the assertion that names a record without audio; its data
# are [index] [of] [path] (see `no_audio_record`).
NO_AUDIO_MESSAGE = "Wrong schema: no audio samples in record"
_NO_AUDIO_PATTERN = re.compile(
    re.escape(NO_AUDIO_MESSAGE) + r"\] \[(\d+)\] \[of\] \[(.*)\]")


def _checked_audio(audio, path, index, num_samples):
  """[L] -> [num_samples]; fails, naming `path` and `index`, when L == 0."""
  if index is None:
    index = tf.constant(-1, tf.int64)
  check = tf.debugging.Assert(tf.size(audio) > 0,
                              [NO_AUDIO_MESSAGE, index, "of", path])
  with tf.control_dependencies([check]):
    return spectrogram_lib.fit_length(audio, num_samples)


def no_audio_record(error):
  """(path, record index) named by `_checked_audio`'s failure, or None.

  Args:
    error: a tf.errors.InvalidArgumentError (or its message).
  """
  text = getattr(error, "message", error)
  for line in str(text).splitlines():
    match = _NO_AUDIO_PATTERN.search(line)
    if match:
      return match.group(2), int(match.group(1))
  return None


def feature_spec(schema=None):
  """The parsing spec of a record: audio only (None) or audio and labels.

  Args:
    schema: None, or `detect_schema`'s answer ("audio_only" is read as
      "tfds").
  """
  spec = {"audio": _AUDIO_FEATURE}
  if schema is None:
    return spec
  keys = LABEL_KEYS["magenta" if schema == "magenta" else "tfds"]
  for name in LABELS:
    spec[keys[name]] = tf.io.FixedLenFeature([], tf.int64, default_value=-1)
  spec[keys["id"]] = tf.io.FixedLenFeature([], tf.string, default_value="")
  return spec


def parse_audio(record, path, num_samples, index=None):
  """Serialized tf.Example -> audio float32 [num_samples].

  Args:
    record: string [] (a serialized tf.Example).
    path: string [], the record's file (named when "audio" is missing).
    num_samples: length after the pad/crop rule.
    index: int64 [], the record's position in its file (named too).
  """
  parsed = tf.io.parse_single_example(record, feature_spec())
  return _checked_audio(parsed["audio"], path, index, num_samples)


def parse_with_labels(record, path, schema, num_samples, index=None):
  """Serialized tf.Example -> dict of audio and labels, named as `LABELS`.

  Args:
    record: string [] (a serialized tf.Example).
    path: string [], the record's file (named when "audio" is missing).
    schema: `detect_schema`'s answer ("audio_only" is read as "tfds").
    num_samples: length after the pad/crop rule.
    index: int64 [], the record's position in its file (named too).

  Returns:
    {"audio": float32 [num_samples], "id": string [], and int32 [] for each
    of LABELS (-1 where the record lacks it)}.
  """
  keys = LABEL_KEYS["magenta" if schema == "magenta" else "tfds"]
  parsed = tf.io.parse_single_example(record, feature_spec(schema))
  out = {"audio": _checked_audio(parsed["audio"], path, index, num_samples),
         "id": parsed[keys["id"]]}
  for name in LABELS:
    out[name] = tf.cast(parsed[keys[name]], tf.int32)
  return out


def is_finite(audio):
  """bool []: no NaN or inf in `audio` (any shape)."""
  return tf.reduce_all(tf.math.is_finite(audio))


# ---------------------------------------------------------------------------
# A full count of problems.


@dataclasses.dataclass
class RecordReport:
  """What `inspect_records` found.

  Attributes:
    num_files: files read.
    num_records: records read (up to the first bad record of corrupt files).
    num_missing_audio: records without "audio" samples.
    num_nonfinite: records whose audio has NaN or inf (dropped by the
      pipelines).
    num_wrong_length: records whose audio is not num_samples long (padded or
      cropped by the pipelines).
    corrupt_files: {path: error message, with the records read before it}.
    missing_audio_files: paths holding records without audio.
  """
  num_files: int = 0
  num_records: int = 0
  num_missing_audio: int = 0
  num_nonfinite: int = 0
  num_wrong_length: int = 0
  corrupt_files: dict = dataclasses.field(default_factory=dict)
  missing_audio_files: list = dataclasses.field(default_factory=list)


def _record_flags(record, num_samples):
  """int64 [4]: (1, no audio, non-finite audio, wrong length) of a record."""
  audio = tf.io.parse_single_example(record, {"audio": _AUDIO_FEATURE})[
      "audio"]
  size = tf.size(audio)
  return tf.stack([
      tf.constant(1, tf.int64),
      tf.cast(size == 0, tf.int64),
      tf.cast(tf.logical_not(is_finite(audio)), tf.int64),
      tf.cast(tf.logical_and(size > 0, size != num_samples), tf.int64),
  ])


def inspect_records(data_dir=None, file_pattern=None, split="train",
                    num_samples=NUM_SAMPLES):
  """Reads every record once and counts problems (a full pass over the data).

  Each file is counted on graph (tf.data reduce); a corrupt file is named
  with the tf.data error and the number of records read before it.

  Args:
    data_dir, file_pattern, split: as `files.list_files`.
    num_samples: the expected audio length.

  Returns:
    RecordReport.

  Raises:
    ValueError: as `files.list_files`, or for a record whose "audio" is not
      a float feature.
  """
  files = files_lib.list_files(data_dir, file_pattern, split)
  report = RecordReport(num_files=len(files))

  def counter(skip_errors):
    @tf.function
    def count(path):
      records = tf.data.TFRecordDataset(path, buffer_size=READ_BUFFER_BYTES)
      if skip_errors:
        records = records.ignore_errors()
      flags = records.map(lambda r: _record_flags(r, num_samples),
                          num_parallel_calls=tf.data.AUTOTUNE)
      return flags.reduce(tf.zeros([4], tf.int64), lambda a, b: a + b)
    return count

  count, count_readable = counter(False), counter(True)
  for path in files:
    try:
      counts = count(tf.constant(path)).numpy()
    except tf.errors.DataLossError as e:
      counts = count_readable(tf.constant(path)).numpy()
      report.corrupt_files[path] = (
          f"{error_line(e)} (after {int(counts[0])} readable records)")
    except tf.errors.InvalidArgumentError as e:
      raise ValueError(
          f"Wrong schema in {path!r}: {error_line(e)}; expected NSynth "
          "records with a float 'audio' feature.") from None
    report.num_records += int(counts[0])
    report.num_missing_audio += int(counts[1])
    report.num_nonfinite += int(counts[2])
    report.num_wrong_length += int(counts[3])
    if counts[1]:
      report.missing_audio_files.append(path)
  return report
