"""Corrupt, truncated and malformed TFRecord files: finding them, saying so.

tf.data raises tf.errors.DataLossError during iteration over a corrupt or
truncated file ("corrupted record at <byte offset>") without saying which
file, and tf.errors.InvalidArgumentError for a record that does not parse,
naming neither the file nor the record. Afterwards:
  * `find_corrupt_files` names the corrupt files and the index of each one's
    first unreadable record (`scan_files`: one unparsed read, at disk
    speed); `corrupt_files_message` is the one line the programs print;
  * `bad_record_message` names the file and index of a record without audio
    (the pipelines' own assertion says them) or, for a record that does not
    parse, finds it by reading the files again (`find_bad_record`).
With `check_files=True` the pretext pipeline scans every file when it is
built (`raise_for_bad_files`) and raises a ValueError naming the bad files
instead. With `skip_corrupt=True` the readable records of a bad file are
used and the rest is skipped; the programs call `report_skipped` once to say
which files were cut short and how many records were lost.
"""

import dataclasses
import functools
from typing import Optional

from absl import logging
import tensorflow as tf

from audio_perm.data import files as files_lib
from audio_perm.data import records as records_lib


@dataclasses.dataclass(frozen=True)
class FileScan:
  """What one read of a TFRecord file found.

  Attributes:
    path: the file.
    num_readable: records read before the first unreadable one (all of them
      when error is None); also the index of the first unreadable record.
    error: the reader's error (one line), or None when the file reads to
      its end.
  """
  path: str
  num_readable: int
  error: Optional[str] = None


@functools.lru_cache(maxsize=None)
def _record_counter(skip_errors):
  @tf.function
  def count(path):
    records = tf.data.TFRecordDataset(
        path, buffer_size=records_lib.READ_BUFFER_BYTES)
    if skip_errors:
      records = records.ignore_errors()
    return records.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1)
  return count


def scan_files(files):
  """Reads every record of every file once, unparsed, on graph.

  Only the TFRecord framing and checksums are checked, so it costs a read
  of the data at disk speed (the 763 MB default dataset: about 1 s when
  cached). A corrupt file is read a second time up to its first bad record
  to count what is readable.

  Args:
    files: list of TFRecord paths.

  Returns:
    list of FileScan, one per file, in order.
  """
  count, count_readable = _record_counter(False), _record_counter(True)
  scans = []
  for path in files:
    try:
      scans.append(FileScan(path, int(count(tf.constant(path)))))
    except tf.errors.DataLossError as e:
      scans.append(FileScan(path, int(count_readable(tf.constant(path))),
                            records_lib.error_line(e)))
  return scans


def _described(scan):
  """"record index N: <reader's error>" of a corrupt file's scan."""
  return f"record index {scan.num_readable}: {scan.error}"


def find_corrupt_files(data_dir=None, file_pattern=None, split="train"):
  """The files tf.data cannot read to the end, with the reader's error.

  A DataLossError raised while iterating a pipeline does not say which file
  is bad; this finds it (`scan_files`: every record of every file read once
  WITHOUT parsing, at disk speed, less than `inspect_records`).

  Args:
    data_dir, file_pattern, split: as `files.list_files`.

  Returns:
    {path: "record index N: <reader's error>"}, N the index of the first
    unreadable record (empty when every file reads to the end).
  """
  files = files_lib.list_files(data_dir, file_pattern, split)
  return {scan.path: _described(scan) for scan in scan_files(files)
          if scan.error is not None}


def report_skipped(files, expected=None):
  """Says which files --skip_corrupt cuts short and how many records it loses.

  One warning line per file that does not read to its end. Called once by
  the programs (training.train, evaluation) before reading with
  skip_corrupt=True; its cost is `scan_files`' (one unparsed read).

  Args:
    files: list of TFRecord paths.
    expected: optional {path: number of records the file should hold} (a
      folder dataset's metadata, `files.shard_lengths`); without it the
      number lost is unknown (None).

  Returns:
    {path: {"records_read": int, "records_lost": int or None, "error": str}}
    for each file cut short (empty when every file reads to its end).
  """
  expected = expected or {}
  skipped = {}
  for scan in scan_files(files):
    if scan.error is None:
      continue
    lost = None
    if expected.get(scan.path) is not None:
      lost = max(0, int(expected[scan.path]) - scan.num_readable)
    skipped[scan.path] = {"records_read": scan.num_readable,
                          "records_lost": lost, "error": scan.error}
    logging.warning(
        "skip_corrupt: %s is cut short at record index %d (%s): %d "
        "record(s) read, %s lost.", scan.path, scan.num_readable, scan.error,
        scan.num_readable,
        "an unknown number of records" if lost is None else
        f"{lost} record(s)")
  return skipped


@functools.lru_cache(maxsize=None)
def _first_bad_record_finder(schema):
  """A tf.function path -> (records parsed, first unparsable, first empty).

  Indices are -1 where there is none; records that fail to parse are
  dropped (ignore_errors), so the first gap in the indices is the first.
  """
  spec = records_lib.feature_spec(schema)

  def sizes(index, record):
    return index, tf.size(tf.io.parse_single_example(record, spec)["audio"])

  def step(state, element):
    following, unparsed, empty = state
    index, size = element
    unparsed = tf.where((unparsed < 0) & (index != following), following,
                        unparsed)
    empty = tf.where((empty < 0) & (size == 0), index, empty)
    return index + 1, unparsed, empty

  @tf.function
  def find(path):
    records = tf.data.TFRecordDataset(
        path, buffer_size=records_lib.READ_BUFFER_BYTES).enumerate()
    minus_one = tf.constant(-1, tf.int64)
    return records.map(sizes).ignore_errors().reduce(
        (tf.constant(0, tf.int64), minus_one, minus_one), step)

  return find


def _parse_error(path, index, schema):
  """The parser's one-line error on record `index` of `path`."""
  record = next(iter(tf.data.TFRecordDataset(path).skip(index).take(1)))
  try:
    tf.io.parse_single_example(record, records_lib.feature_spec(schema))
  except tf.errors.InvalidArgumentError as e:
    # "Could not parse example input, value: '<the record's bytes>'".
    return records_lib.error_line(e).split(", value: ")[0][:200]
  return "it did not parse on a first read"


def find_bad_record(files, schema=None):
  """The first record of `files` (in order) that a reader fails on.

  Each file is read and parsed once, on graph, until a bad record is found:
  a record that is not a tf.Example of the schema, one without audio
  samples, or the first unreadable record of a corrupt file.

  Args:
    files: list of TFRecord paths.
    schema: the reader's schema (`records.feature_spec`): None for audio
      only (the pretext pipeline), or `detect_schema`'s answer.

  Returns:
    (path, record index, what is wrong) or None when every record reads.
  """
  find = _first_bad_record_finder(schema)
  for scan in scan_files(files):
    following, unparsed, empty = (
        int(v) for v in find(tf.constant(scan.path)))
    if unparsed < 0 and following < scan.num_readable:
      unparsed = following  # The last readable records did not parse.
    found = [(index, problem) for index, problem in (
        (unparsed, "parse"), (empty, "empty"),
        (scan.num_readable if scan.error else -1, "corrupt")) if index >= 0]
    if not found:
      continue
    index, problem = min(found)
    if problem == "parse":
      what = ("is not an NSynth tf.Example "
              f"({_parse_error(scan.path, index, schema)})")
    elif problem == "empty":
      what = "has no 'audio' samples"
    else:
      what = f"is unreadable ({scan.error})"
    return scan.path, index, what
  return None


def bad_record_message(files, error, schema=None):
  """One line naming the file and record behind a reader's InvalidArgumentError.

  A record without audio is named by the pipeline's own assertion (no second
  read). Any other InvalidArgumentError raised by a tf.data iterator (a
  record that does not parse) is located by `find_bad_record`: a parsing
  read of the files up to the bad record.

  Args:
    files: the files the pipeline reads, in its file order, or a function
      returning them (called only when they must be read again).
    error: the tf.errors.InvalidArgumentError.
    schema: as `find_bad_record`.

  Returns:
    "record <index> of <path> <what is wrong>; expected NSynth records with
    a float 'audio' feature (16 kHz).", or None when the error did not come
    from a record (the caller re-raises it).
  """
  named = records_lib.no_audio_record(error)
  if named is not None:
    path, index = named
    what = "has no 'audio' samples"
  else:
    message = getattr(error, "message", str(error))
    if "Iterator" not in message:  # Not raised by a tf.data pipeline.
      return None
    found = find_bad_record(files() if callable(files) else files, schema)
    if found is None:
      return None
    path, index, what = found
  return (f"record {index} of {path} {what}; expected NSynth records with a "
          "float 'audio' feature (16 kHz). Remove or re-create the file.")


def _listing(corrupt):
  return "; ".join(f"{path} ({message})" for path, message in corrupt.items())


def corrupt_files_message(corrupt, error=None, *, fix, what="file",
                          not_found="not found again on a second read "
                          "({first})", capitalize=True):
  """One line naming the corrupt TFRecord file(s), and what to do.

  "<Corrupt> or truncated TFRecord <what>: <path (error); ...>. <fix>"

  Args:
    corrupt: {path: reader's error}, e.g. `find_corrupt_files`'s answer;
      empty when a second read found nothing wrong.
    error: the tf.errors.DataLossError (or its message) that was raised;
      its first line is quoted when `corrupt` is empty.
    fix: the sentence(s) after the list saying what to do, ending with a
      full stop.
    what: the program's word for a file, e.g. "file" or "shard".
    not_found: stands in for the list when `corrupt` is empty; "{first}" is
      replaced by the first line of `error`.
    capitalize: "Corrupt ..." (a sentence of its own) or "corrupt ..."
      (after a program's "error: " prefix).

  Returns:
    str, one line.
  """
  if corrupt:
    found = _listing(corrupt)
  else:
    text = getattr(error, "message", error)
    lines = str(text if text is not None else "").strip().splitlines()
    found = not_found.format(first=lines[0] if lines else "")
  head = "Corrupt" if capitalize else "corrupt"
  return f"{head} or truncated TFRecord {what}: {found}. {fix}"


def raise_for_bad_files(files, skip_corrupt, num_samples):
  """Reads every record of `files` once (`inspect_records`) and judges them.

  Args:
    files: list of TFRecord paths.
    skip_corrupt: warn about corrupt files instead of raising.
    num_samples: the expected audio length.

  Returns:
    The RecordReport.

  Raises:
    ValueError: naming corrupt files (unless skip_corrupt) and files with
      records without audio.
  """
  report = records_lib.inspect_records(file_pattern=files,
                                       num_samples=num_samples)
  if report.corrupt_files:
    if not skip_corrupt:
      raise ValueError(corrupt_files_message(
          report.corrupt_files, what="file(s)",
          fix="Remove or re-create them, or pass skip_corrupt=True."))
    logging.warning("Skipping the unreadable rest of: %s",
                    _listing(report.corrupt_files))
  if report.missing_audio_files:
    raise ValueError(
        f"Wrong schema: {report.num_missing_audio} record(s) without 'audio' "
        f"in {report.missing_audio_files}.")
  if report.num_nonfinite or report.num_wrong_length:
    logging.warning(
        "%d record(s) with non-finite audio will be dropped; %d record(s) of "
        "a length other than %d samples will be padded/cropped.",
        report.num_nonfinite, report.num_wrong_length, num_samples)
  return report
