"""audio_perm.data.checks: corrupt files, found and named."""

import numpy as np
import pytest
import tensorflow as tf

from audio_perm import data


@pytest.mark.slow
def test_corrupt_file(tmp_path, nsynth):
  good = nsynth.write_files(tmp_path, 1, 4, prefix="good")[0]
  bad = nsynth.truncated_file(tmp_path)
  pattern = [good, bad]
  kwargs = dict(batch_size=1, num_patches=2, repeat=False, shuffle=False,
                num_samples=nsynth.SHORT, seed=0)
  # Default: tf.data fails during iteration.
  with pytest.raises(tf.errors.DataLossError, match="truncated record"):
    list(data.pretext_dataset(file_pattern=pattern, **kwargs))
  # check_files=True: a ValueError naming the file, when building.
  with pytest.raises(ValueError, match=f"Corrupt.*{bad}.*after 3 readable"):
    data.pretext_dataset(file_pattern=pattern, check_files=True, **kwargs)
  # skip_corrupt=True: the readable records are used, the rest skipped.
  batches = list(data.pretext_dataset(file_pattern=pattern, skip_corrupt=True,
                                      check_files=True, **kwargs))
  assert len(batches) == 4 + 3
  report = data.inspect_records(file_pattern=pattern,
                                num_samples=nsynth.SHORT)
  assert report.num_records == 7 and list(report.corrupt_files) == [bad]
  # A file corrupt from its first record is named when building.
  with open(bad, "wb") as f:
    f.write(b"\x00" * 64)
  with pytest.raises(ValueError, match=f"Corrupt.*{bad}"):
    data.pretext_dataset(file_pattern=bad, **kwargs)


def test_find_corrupt_files_names_only_the_bad_file(tmp_path, nsynth):
  good = nsynth.write_files(tmp_path, 1, 4, prefix="good")[0]
  assert not data.find_corrupt_files(file_pattern=good)
  bad = nsynth.truncated_file(tmp_path)
  corrupt = data.find_corrupt_files(file_pattern=[good, bad])
  assert list(corrupt) == [bad]
  assert "truncated record" in corrupt[bad] and "\n" not in corrupt[bad]


_TRAIN_FIX = (
    "To fix, replace or remove the file; or rerun the same command with "
    "--skip_corrupt, which skips the unreadable rest of each bad file and "
    "resumes from the last checkpoint in /runs/a.")
_EVAL_FIX = ("Re-create the dataset, or pass --skip_corrupt to read each "
             "shard up to its first bad record.")


def _train_message(corrupt, error):
  return data.corrupt_files_message(
      corrupt, error, fix=_TRAIN_FIX, capitalize=False,
      not_found="a training file (not found again on a second read: "
      "{first})")


def _eval_message(corrupt, error):
  return data.corrupt_files_message(corrupt, error, fix=_EVAL_FIX,
                                    what="shard")


@pytest.mark.parametrize("message", ["corrupted record at 12\n  [[node]]",
                                     "", "  \n"])
def test_corrupt_files_message_gives_train_and_eval_texts(message):
  """The texts train.py's and evaluation.py's own functions used to build."""
  error = tf.errors.DataLossError(None, None, message)
  corrupt = {"/d/a.tfrecord": "truncated record at 10",
             "/d/b.tfrecord": "corrupted record at 0"}
  listing = ("/d/a.tfrecord (truncated record at 10); /d/b.tfrecord "
             "(corrupted record at 0)")
  first = message.strip().splitlines()[0] if message.strip() else ""
  assert _train_message(corrupt, error) == (
      f"corrupt or truncated TFRecord file: {listing}. {_TRAIN_FIX}")
  assert _train_message({}, error) == (
      "corrupt or truncated TFRecord file: a training file (not found again "
      f"on a second read: {first}). {_TRAIN_FIX}")
  assert _eval_message(corrupt, error) == (
      f"Corrupt or truncated TFRecord shard: {listing}. {_EVAL_FIX}")
  assert _eval_message({}, error) == (
      "Corrupt or truncated TFRecord shard: not found again on a second "
      f"read ({first}). {_EVAL_FIX}")
  # The error's text may be given as a string.
  assert _eval_message({}, message) == _eval_message({}, error)


def test_corrupt_files_are_named_with_their_first_unreadable_record(
    tmp_path, nsynth, caplog):
  good = nsynth.write_files(tmp_path, 1, 4, prefix="good")[0]
  bad = nsynth.truncated_file(tmp_path)  # 4 records, 3 readable.
  assert data.find_corrupt_files(file_pattern=[good, bad])[bad].startswith(
      "record index 3: truncated record")
  assert [(s.path, s.num_readable, s.error is None)
          for s in data.scan_files([good, bad])] == [(good, 4, True),
                                                     (bad, 3, False)]
  # What skip_corrupt loses, said once per file cut short.
  caplog.clear()
  skipped = data.report_skipped([good, bad], {good: 4, bad: 4})
  assert list(skipped) == [bad]
  assert skipped[bad]["records_read"] == 3
  assert skipped[bad]["records_lost"] == 1
  assert "truncated record" in skipped[bad]["error"]
  (line,) = [r.getMessage() for r in caplog.records]
  assert line.startswith(f"skip_corrupt: {bad} is cut short at record "
                         "index 3 (")
  assert line.endswith("3 record(s) read, 1 record(s) lost.")
  # Bare files have no metadata: the loss is unknown, and said so.
  assert data.report_skipped([bad])[bad]["records_lost"] is None
  assert "an unknown number of records lost" in caplog.records[-1].getMessage()


def _records_with_a_bad_one(nsynth, tmp_path, bad_record, position=3):
  """A file of 6 records whose record `position` is `bad_record`."""
  records = [nsynth.example(nsynth.audio(i), index=i) for i in range(6)]
  records[position] = bad_record
  return nsynth.write(tmp_path / "mixed.tfrecord", records)


@pytest.mark.parametrize("reader", ["pretext", "waveform"])
@pytest.mark.parametrize("problem", ["no_audio", "not_an_example",
                                     "audio_as_int"])
def test_a_bad_record_mid_stream_is_named_with_its_file_and_index(
    tmp_path, nsynth, reader, problem):
  bad_record = {
      "no_audio": nsynth.example(nsynth.audio(0), drop=("audio",)),
      "not_an_example": b"\x01 these bytes are no tf.Example",
      "audio_as_int": nsynth.example(np.arange(10), audio_as_int=True),
  }[problem]
  path = _records_with_a_bad_one(nsynth, tmp_path, bad_record)
  if reader == "pretext":
    dataset = data.pretext_dataset(
        file_pattern=path, batch_size=1, num_patches=2, repeat=False,
        shuffle=False, num_samples=nsynth.SHORT, seed=0)
    schema = None
  else:
    dataset = data.waveform_dataset(file_pattern=path, batch_size=1,
                                    num_samples=nsynth.SHORT)
    schema = data.detect_schema([path])
  with pytest.raises(tf.errors.InvalidArgumentError) as raised:
    list(dataset)
  message = data.bad_record_message([path], raised.value, schema)
  assert message.startswith(f"record 3 of {path} "), message
  assert "\n" not in message and "Remove or re-create the file" in message
  expected = {"no_audio": "has no 'audio' samples",
              "not_an_example": "is not an NSynth tf.Example (Could not "
                                "parse example input)",
              "audio_as_int": "is not an NSynth tf.Example"}[problem]
  assert expected in message
  assert data.find_bad_record([path], schema)[:2] == (path, 3)


def test_an_error_from_no_record_is_left_alone(tmp_path, nsynth):
  good = nsynth.write_files(tmp_path, 1, 4, prefix="good")[0]
  assert data.find_bad_record([good]) is None
  error = tf.errors.InvalidArgumentError(None, None, "Incompatible shapes")
  assert data.bad_record_message([good], error) is None
  error = tf.errors.InvalidArgumentError(
      None, None, "Iterator::Root::Map: something else")
  assert data.bad_record_message([good], error) is None
