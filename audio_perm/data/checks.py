"""Corrupt and truncated TFRecord files: finding them and saying so.

tf.data raises tf.errors.DataLossError during iteration over a corrupt or
truncated file ("corrupted record at <offset>") without saying which file.
`find_corrupt_files` names it afterwards, and `corrupt_files_message` is the
one line the programs (train.py, eval.py) print about it. With
`check_files=True` the pretext pipeline scans every file when it is built
(`raise_for_bad_files`) and raises a ValueError naming the bad files
instead; with `skip_corrupt=True` the readable records of a bad file are
used and the rest is skipped (a warning per file).
"""

from absl import logging
import tensorflow as tf

from audio_perm.data import files as files_lib
from audio_perm.data import records as records_lib


def find_corrupt_files(data_dir=None, file_pattern=None, split="train"):
  """The files tf.data cannot read to the end, with the reader's error.

  A DataLossError raised while iterating a pipeline does not say which file
  is bad; this finds it. Every record of every file is read once WITHOUT
  parsing (only the TFRecord framing and checksums are checked), so it costs
  a read of the data at disk speed, less than `inspect_records`.

  Args:
    data_dir, file_pattern, split: as `files.list_files`.

  Returns:
    {path: error message} (empty when every file reads to the end).
  """
  files = files_lib.list_files(data_dir, file_pattern, split)

  @tf.function
  def count(path):
    records = tf.data.TFRecordDataset(
        path, buffer_size=records_lib.READ_BUFFER_BYTES)
    return records.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1)

  corrupt = {}
  for path in files:
    try:
      count(tf.constant(path))
    except tf.errors.DataLossError as e:
      corrupt[path] = records_lib.error_line(e)
  return corrupt


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
