"""Finding the TFRecord files: a folder dataset's split, or globs.

A folder dataset is a folder holding TFDS metadata (dataset_info.json) and
shards, as data_prep writes it; `is_folder_dataset` is the one test of that
and `check_folder_dataset` the one error saying how to make one. No file
matching, a missing or non-dataset folder or an unknown split is a
ValueError naming the pattern, folder or split.
"""

import json
import os

import tensorflow as tf

DATASET_INFO_FILENAME = "dataset_info.json"
RENDER_COMMAND = "python -m data_prep.render --output_dir={}"
# data_prep.render's working folder inside an unfinished render (its
# STAGING_DIRNAME; tests/test_render.py checks that they agree) and the
# settings it records there.
RENDER_STAGING_DIRNAME = ".render_staging"
_RENDER_MANIFEST = "manifest.json"
_RENDER_FLAGS = ("max_notes", "seed", "examples_per_shard")


def _unfinished_render(path):
  """The render command to rerun when `path` holds an unfinished render."""
  staging = os.path.join(path, RENDER_STAGING_DIRNAME)
  if not tf.io.gfile.isdir(staging):
    return None
  command = RENDER_COMMAND.format(path)
  try:
    with tf.io.gfile.GFile(os.path.join(staging, _RENDER_MANIFEST)) as f:
      settings = json.load(f)["settings"]
    command += "".join(f" --{name}={settings[name]}" for name in _RENDER_FLAGS
                       if settings.get(name) is not None)
  except (OSError, ValueError, KeyError, TypeError, tf.errors.OpError):
    pass
  return command


def is_folder_dataset(path):
  """Whether `path` is a folder holding dataset_info.json (TFDS metadata).

  Args:
    path: str or os.PathLike (local, or any file system tf.io.gfile reads).

  Returns:
    bool; False for an empty path, a missing path or a file.
  """
  path = os.fspath(path) if path is not None else ""
  return bool(path) and tf.io.gfile.isdir(path) and tf.io.gfile.exists(
      os.path.join(path, DATASET_INFO_FILENAME))


def check_folder_dataset(path, name="data_dir", *, otherwise=None, fix=None,
                         error=ValueError):
  """Raises `error` naming `path` unless it is a folder dataset.

  Args:
    path: the folder (str or os.PathLike).
    name: the setting as its user knows it, e.g. "data_dir" or
      "--dataset_dir".
    otherwise: an alternative appended to the default fix, e.g. "pass
      file_pattern= for bare TFRecord files".
    fix: what to do, replacing the default ("render one with `python -m
      data_prep.render --output_dir=<path>`" [", or " + otherwise]).
    error: the exception class, ValueError or a subclass.

  Returns:
    The path as a str.

  Raises:
    error: for an empty path, a path that is not a folder, or a folder
      without dataset_info.json (an unfinished render is named as such,
      with the command that completes it).
  """
  path = os.fspath(path) if path is not None else ""
  if not path:
    raise error(f"{name} is an empty string; pass a dataset folder.")
  if fix is None:
    fix = f"render one with `{RENDER_COMMAND.format(path)}`"
    if otherwise:
      fix += f", or {otherwise}"
  if not tf.io.gfile.isdir(path):
    raise error(f"{name}={path!r} does not exist or is not a folder; {fix}.")
  if not is_folder_dataset(path):
    unfinished = _unfinished_render(path)
    if unfinished is not None:
      raise error(
          f"{name}={path!r} holds an unfinished render (interrupted: its "
          f"{RENDER_STAGING_DIRNAME} folder is there, no "
          f"{DATASET_INFO_FILENAME}); run `{unfinished}` (with the same "
          "--soundfont, if any) to complete it.")
    raise error(
        f"{name}={path!r} is not a TFDS folder dataset (no "
        f"{DATASET_INFO_FILENAME}; an interrupted render leaves none); "
        f"{fix}.")
  return path


def _glob(file_pattern):
  patterns = ([file_pattern] if isinstance(file_pattern, (str, os.PathLike))
              else list(file_pattern))
  if not patterns:
    raise ValueError("file_pattern is empty; pass a glob of TFRecord files.")
  files = []
  for pattern in patterns:
    pattern = os.fspath(pattern)
    if not pattern:
      raise ValueError(
          "file_pattern is an empty string; pass a glob of TFRecord files, "
          "e.g. '/data/nsynth/nsynth-train.tfrecord*'.")
    matched = sorted(tf.io.gfile.glob(pattern))
    if not matched:
      raise ValueError(
          f"file_pattern={pattern!r} matches no file; check the path.")
    files.extend(m for m in matched if not tf.io.gfile.isdir(m))
  if not files:
    raise ValueError(f"file_pattern={file_pattern!r} matches only folders.")
  return files


def shard_lengths(data_dir, split):
  """{shard path: number of records} of a folder dataset split's metadata.

  What each shard should hold, e.g. to count the records lost to a cut
  short shard (checks.report_skipped). Raises as `list_files`.
  """
  return dict(zip(*_folder_dataset_split(data_dir, split)))


def _folder_dataset_files(data_dir, split):
  return _folder_dataset_split(data_dir, split)[0]


def _folder_dataset_split(data_dir, split):
  """(shards, their lengths) of `split`, from the folder dataset's metadata."""
  data_dir = check_folder_dataset(
      data_dir, otherwise="pass file_pattern= for bare TFRecord files")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    builder = tfds.builder_from_directory(data_dir)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(
        f"data_dir={data_dir!r}: cannot read the folder dataset's metadata "
        f"({type(e).__name__}: {e}).") from None
  splits = builder.info.splits
  if split not in splits:
    raise ValueError(
        f"split={split!r} is not in data_dir={data_dir!r}; available splits: "
        f"{sorted(splits.keys())}.")
  info = splits[split]
  files = [os.fspath(p) for p in info.filepaths]
  if not files or info.num_examples == 0:
    raise ValueError(
        f"split={split!r} of data_dir={data_dir!r} holds no example.")
  for f in files:
    if not tf.io.gfile.exists(f):
      raise ValueError(
          f"Shard {f!r} of split {split!r} listed in {data_dir!r}'s metadata "
          "is missing; render the dataset again.")
  serialized = builder.info.features.get_serialized_info()
  audio_info = serialized.get("audio") if hasattr(serialized, "get") else None
  if audio_info is None or audio_info.dtype != tf.float32:
    raise ValueError(
        f"data_dir={data_dir!r}: its features have no float32 'audio' tensor "
        f"({audio_info}); expected the nsynth features (data_prep).")
  lengths = [int(n) for n in info.shard_lengths]
  if len(lengths) != len(files):
    lengths = [None] * len(files)
  return files, lengths


def list_files(data_dir=None, file_pattern=None, split="train"):
  """The TFRecord files of a folder dataset split or of globs, sorted.

  Args:
    data_dir: a folder dataset (data_prep output); or
    file_pattern: a glob, or a list of globs/paths, of TFRecord files.
    split: split of `data_dir` (ignored with file_pattern).

  Returns:
    list of str paths: the split's shards in metadata order, or the files
    matched by each glob, sorted per glob.

  Raises:
    ValueError: neither or both sources given, nothing found, a folder that
      is not a dataset, an unknown or empty split.
  """
  if (data_dir is None) == (file_pattern is None):
    raise ValueError(
        f"Pass exactly one of data_dir= (a folder dataset from data_prep) or "
        f"file_pattern= (TFRecord files); got data_dir={data_dir!r}, "
        f"file_pattern={file_pattern!r}.")
  if data_dir is not None:
    return _folder_dataset_files(data_dir, split)
  return _glob(file_pattern)
