"""The evaluation data: the dataset, its checks, its splits and labels.

`open_dataset` gives a TFDS builder: a TFDS dataset by name
(`tfds.builder(name, data_dir)`, never downloaded) or a folder dataset
(`tfds.builder_from_directory`). Its metadata says what the dataset holds
(`check_features`, `check_splits`); the notes themselves are read from the
split's TFRecord shards by `data.waveform_dataset`, the reader the training
pipeline is built on (`read_split`), so the same per-record rules hold: audio
fitted to the dataset's length, notes with non-finite audio dropped, a record
without audio an error naming its file. Each problem is one
`EvaluationError` with a message meant to be shown as is.
"""

import dataclasses
import math
import os
from typing import Tuple

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
import tqdm

from audio_perm import data as data_lib


class EvaluationError(ValueError):
  """Bad user input to the evaluation (a message meant to be shown as is)."""


@dataclasses.dataclass(frozen=True)
class Head:
  """One probe on a task: its type and the metric it is scored by."""
  task_type: str  # "classification" or "regression".
  metric: str  # "accuracy" or "mse".


@dataclasses.dataclass(frozen=True)
class Task:
  """A downstream task: where its label lives in the nsynth features."""
  name: str
  feature_path: Tuple[str, ...]
  heads: Tuple[Head, ...]


TASKS = {
    "instrument_family": Task(
        "instrument_family", ("instrument", "family"),
        (Head("classification", "accuracy"),)),
    "instrument": Task(
        "instrument", ("instrument", "label"),
        (Head("classification", "accuracy"),)),
    "pitch": Task(
        "pitch", ("pitch",),
        (Head("regression", "mse"), Head("classification", "accuracy"))),
}
HOW_TO_PREPARE = (
    "render a folder dataset with `python -m data_prep.render "
    "--output_dir=DIR` (or convert Magenta's NSynth files with "
    "`python -m data_prep.convert`) and pass --dataset_dir=DIR")


def open_dataset(dataset="nsynth/full", data_dir=None, dataset_dir=None):
  """The TFDS builder of the evaluation data, or a clear EvaluationError.

  Args:
    dataset: registered TFDS name (e.g. "nsynth/full"), used when
      dataset_dir is None; it must already be prepared in data_dir (nothing is
      downloaded).
    data_dir: TFDS data directory for `dataset` (None: TFDS's default).
    dataset_dir: a TFDS folder dataset (the directory holding
      dataset_info.json, as data_prep writes it).

  Returns:
    A tfds DatasetBuilder.
  """
  if dataset_dir:
    data_lib.check_folder_dataset(
        dataset_dir, "--dataset_dir", error=EvaluationError,
        fix=("pass the directory data_prep wrote, or "
             + HOW_TO_PREPARE.replace("DIR", dataset_dir)))
    try:
      return tfds.builder_from_directory(dataset_dir)
    except Exception as error:  # pylint: disable=broad-except
      raise EvaluationError(
          f"--dataset_dir={dataset_dir!r} could not be read as a TFDS folder "
          f"dataset ({type(error).__name__}: {str(error).splitlines()[0]})."
      ) from None
  try:
    builder = tfds.builder(dataset, data_dir=data_dir)
  except Exception as error:  # pylint: disable=broad-except
    raise EvaluationError(
        f"--dataset={dataset!r} is not a TFDS dataset this installation knows "
        f"({type(error).__name__}: {str(error).splitlines()[0]}); "
        + HOW_TO_PREPARE + ".") from None
  if not builder.is_prepared():
    where = data_dir or "TFDS's default data_dir"
    raise EvaluationError(
        f"--dataset={dataset!r} is not prepared in {where} (nothing is "
        "downloaded here); prepare it there with tfds, or "
        + HOW_TO_PREPARE + _default_dataset_hint() + ".")
  return builder


def _default_dataset_hint():
  try:
    from data_prep import render  # pylint: disable=g-import-not-at-top
  except ImportError:
    return ""
  where = render.DEFAULT_DATA_DIR
  if data_lib.is_folder_dataset(where):
    return f" (train.py's default dataset is ready: --dataset_dir={where})"
  return ""


def dataset_description(builder):
  """A short JSON-ready description of a builder (name, version, location)."""
  return {"name": builder.info.full_name,
          "data_dir": str(builder.data_dir),
          "splits": {name: int(split.num_examples)
                     for name, split in builder.info.splits.items()}}


def split_size(builder, split):
  """Number of examples of a split; EvaluationError if it is not there."""
  splits = builder.info.splits
  if split not in splits:
    raise EvaluationError(
        f"Split {split!r} is not in dataset {builder.info.full_name} (splits: "
        f"{', '.join(sorted(splits.keys())) or 'none'}); pass --train_split/"
        "--test_split.")
  return int(splits[split].num_examples)


def _feature_at(features, path):
  node = features
  for key in path:
    try:
      keys = node.keys()
    except AttributeError:
      return None
    if key not in keys:
      return None
    node = node[key]
  return node


def check_features(builder, tasks):
  """Raises EvaluationError when audio or a task's label is missing.

  Returns:
    The number of samples per note (static audio length).
  """
  features = builder.info.features
  audio = _feature_at(features, ("audio",))
  if audio is None:
    raise EvaluationError(
        f"Dataset {builder.info.full_name} has no 'audio' feature; the "
        "evaluation needs nsynth-style notes.")
  for name in tasks:
    if _feature_at(features, TASKS[name].feature_path) is None:
      raise EvaluationError(
          f"Task {name!r} needs the label "
          f"'{'/'.join(TASKS[name].feature_path)}', which dataset "
          f"{builder.info.full_name} does not have; drop it from --tasks.")
  shape = tuple(audio.shape)
  if len(shape) != 1 or shape[0] is None:
    raise EvaluationError(
        f"Dataset {builder.info.full_name} has audio of shape {shape}; the "
        "evaluation needs fixed-length mono notes [samples].")
  return int(shape[0])


def check_splits(builder, train_split, test_split):
  """Both splits exist, differ and the test split is not empty.

  Returns:
    (train_size, test_size) from the metadata.
  """
  train_size = split_size(builder, train_split)
  test_size = split_size(builder, test_split)
  if train_split == test_split:
    raise EvaluationError(
        f"--train_split and --test_split are both {train_split!r}; the "
        "test split must be held out.")
  if test_size < 1:
    raise EvaluationError(f"Split {test_split!r} is empty.")
  return train_size, test_size


def check_num_labeled(num_labeled, train_split, train_size):
  """EvaluationError when the largest regime exceeds the train split."""
  largest = max(int(n) for n in num_labeled)
  if largest > train_size:
    raise EvaluationError(
        f"--num_labeled={largest} is larger than split {train_split!r} "
        f"({train_size} examples); pass at most {train_size}.")


def labels_of(example, tasks):
  """{task: int64 []} of one example of `read_split`."""
  # data.waveform_dataset names its labels as the tasks are named
  # ("instrument_family", "instrument", "pitch"), for both record schemas.
  return {name: tf.cast(example[name], tf.int64) for name in tasks}


def split_files(builder, split):
  """The TFRecord shards of a split, in order; EvaluationError if none."""
  split_size(builder, split)
  file_format = getattr(builder.info, "file_format", None)
  file_format = getattr(file_format, "value", file_format)
  if file_format not in (None, "tfrecord"):
    raise EvaluationError(
        f"Dataset {builder.info.full_name} is stored as {file_format!r}; the "
        "evaluation reads TFRecord shards (prepare it with TFDS's default "
        "file_format=tfrecord, or " + HOW_TO_PREPARE + ").")
  files = [os.fspath(p) for p in builder.info.splits[split].filepaths]
  if not files:
    raise EvaluationError(
        f"Split {split!r} of {builder.info.full_name} lists no shard file.")
  return files


def read_split(builder, split, num_samples=None, skip_corrupt=False):
  """Single examples of a split through data.waveform_dataset.

  The training pipeline's per-record rules apply: audio fitted to
  num_samples (first samples kept, zero-padded at the end), records with
  non-finite audio dropped, a record without audio an error naming its file.
  One ordered, deterministic pass: indices taken from one pass address the
  same notes in the next (checked in compute_embeddings). A corrupt shard
  raises tf.errors.DataLossError while iterating, unless skip_corrupt, which
  reads each shard up to its first bad record (the same records every pass).

  Returns:
    tf.data.Dataset of dicts ("audio" float32 [num_samples], the labels
    int32 [] named as data.LABELS).
  """
  if num_samples is None:
    num_samples = check_features(builder, ())
  try:
    return data_lib.waveform_dataset(
        file_pattern=split_files(builder, split), batch_size=None,
        shuffle=False, deterministic=True, num_samples=num_samples,
        skip_corrupt=skip_corrupt)
  except EvaluationError:
    raise
  except ValueError as error:
    raise EvaluationError(
        f"Split {split!r} of {builder.info.full_name}: {error}") from None


def read_labels(builder, split, tasks, batch_size=256, progress=True,
                num_samples=None, skip_corrupt=False):
  """Labels of every usable example of a split, in reading order.

  Examples the pipeline drops (non-finite audio) are left out here and in
  every later pass alike.

  Returns:
    {task: int64 [num_examples]}.
  """
  dataset = read_split(builder, split, num_samples, skip_corrupt).map(
      lambda example: labels_of(example, tasks),
      num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
  total = math.ceil(split_size(builder, split) / batch_size)
  chunks = {name: [] for name in tasks}
  for batch in tqdm.tqdm(dataset, total=total, disable=not progress,
                         desc=f"labels of {split}", unit="batch"):
    for name in tasks:
      chunks[name].append(batch[name].numpy())
  return {name: (np.concatenate(values) if values else np.zeros(0, np.int64))
          for name, values in chunks.items()}


def audio_batches(builder, split, batch_size, num_samples=None,
                  skip_corrupt=False):
  """Waveforms of a split in reading order: float32 [<= batch_size, samples]."""
  dataset = read_split(builder, split, num_samples, skip_corrupt).map(
      lambda example: example["audio"], num_parallel_calls=tf.data.AUTOTUNE)
  return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def report_skipped(builder, split):
  """Which shards of a split --skip_corrupt cuts short, and what it loses.

  One unparsed read of the split's shards (data.report_skipped: one warning
  line per shard cut short); the records lost are counted against the
  metadata's shard lengths.

  Returns:
    {path: {"records_read", "records_lost", "error"}} of the shards cut
    short (records_lost None when the metadata has no shard lengths).
  """
  files = split_files(builder, split)
  lengths = list(builder.info.splits[split].shard_lengths)
  expected = dict(zip(files, lengths)) if len(lengths) == len(files) else None
  return data_lib.report_skipped(files, expected)


def bad_record_message(builder, splits, error):
  """Names the file and record behind a reader's InvalidArgumentError.

  A record without audio names itself; one that does not parse is found by
  reading the splits' shards again (data.bad_record_message).

  Returns:
    One line, or None when the error did not come from a record.
  """
  def files():
    found = []
    for split in dict.fromkeys(splits):
      found += split_files(builder, split)
    return found

  schema = data_lib.detect_schema(files(), skip_corrupt=True)
  return data_lib.bad_record_message(files, error, schema)


def corrupt_shards_message(builder, splits, error):
  """Names the corrupt shard(s) behind a DataLossError, and what to do.

  tf.data's error does not say which file is bad: the splits' shards are read
  once more, unparsed (data.find_corrupt_files).

  Args:
    builder: the TFDS builder.
    splits: the split names read.
    error: the tf.errors.DataLossError.
  """
  corrupt = {}
  for split in dict.fromkeys(splits):
    corrupt.update(data_lib.find_corrupt_files(
        file_pattern=split_files(builder, split)))
  return data_lib.corrupt_files_message(
      corrupt, error, what="shard",
      fix="Re-create the dataset, or pass --skip_corrupt to read each shard "
          "up to its first bad record.")
