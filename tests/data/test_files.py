"""audio_perm.data.files: folder datasets, globs and their errors."""

import os
import pathlib

import pytest

from audio_perm import data
from audio_perm.data import files


def _fake_folder_dataset(path):
  """A folder that looks like a folder dataset (only dataset_info.json)."""
  os.makedirs(path)
  with open(os.path.join(path, "dataset_info.json"), "w") as f:
    f.write("{}")
  return str(path)


def test_is_folder_dataset(tmp_path):
  folder = _fake_folder_dataset(tmp_path / "ds")
  assert data.is_folder_dataset(folder)
  assert data.is_folder_dataset(pathlib.Path(folder))
  assert not data.is_folder_dataset(str(tmp_path))  # No dataset_info.json.
  assert not data.is_folder_dataset(str(tmp_path / "missing"))
  assert not data.is_folder_dataset(os.path.join(folder, "dataset_info.json"))
  assert not data.is_folder_dataset("")
  assert not data.is_folder_dataset(None)


def test_check_folder_dataset_messages(tmp_path):
  folder = _fake_folder_dataset(tmp_path / "ds")
  assert data.check_folder_dataset(pathlib.Path(folder)) == folder
  missing, plain = str(tmp_path / "missing"), str(tmp_path)
  with pytest.raises(ValueError) as e:
    data.check_folder_dataset(missing)
  assert str(e.value) == (
      f"data_dir={missing!r} does not exist or is not a folder; render one "
      f"with `python -m data_prep.render --output_dir={missing}`.")
  with pytest.raises(ValueError) as e:
    data.check_folder_dataset(plain, otherwise="omit --data_dir")
  assert str(e.value) == (
      f"data_dir={plain!r} is not a TFDS folder dataset (no "
      "dataset_info.json; an interrupted render leaves none); render one "
      f"with `python -m data_prep.render --output_dir={plain}`, or omit "
      "--data_dir.")
  with pytest.raises(ValueError, match="^data_dir is an empty string"):
    data.check_folder_dataset("")

  class ProgramError(ValueError):
    pass

  with pytest.raises(ProgramError,
                     match=r"^--dataset_dir=.* \(no dataset_info.json.*; "
                     r"pass DIR\.$"):
    data.check_folder_dataset(plain, "--dataset_dir", fix="pass DIR",
                              error=ProgramError)


def test_list_files_of_globs(tmp_path, nsynth):
  written = nsynth.write_files(tmp_path, 3, 1)
  os.makedirs(tmp_path / "nsynth-dir.tfrecord")  # Folders are skipped.
  assert data.list_files(file_pattern=str(tmp_path / "nsynth-*")) == written
  assert data.list_files(file_pattern=[written[2], tmp_path / "nsynth-0[01]*"]
                         ) == [written[2]] + written[:2]
  with pytest.raises(ValueError, match="matches only folders"):
    data.list_files(file_pattern=str(tmp_path / "nsynth-dir*"))
  with pytest.raises(ValueError, match="file_pattern is empty"):
    data.list_files(file_pattern=[])


def test_missing_sources_raise_value_error(tmp_path):
  with pytest.raises(ValueError, match="matches no file"):
    data.pretext_dataset(file_pattern=str(tmp_path / "none-*.tfrecord"),
                         batch_size=2)
  with pytest.raises(ValueError, match="empty string"):
    data.pretext_dataset(file_pattern="", batch_size=2)
  with pytest.raises(ValueError, match="exactly one of"):
    data.pretext_dataset(batch_size=2)
  with pytest.raises(ValueError, match="does not exist"):
    data.pretext_dataset(data_dir=str(tmp_path / "nope"), batch_size=2)
  with pytest.raises(ValueError, match="not a TFDS folder dataset"):
    data.pretext_dataset(data_dir=str(tmp_path), batch_size=2)
  with pytest.raises(ValueError, match="data_dir is an empty string"):
    data.pretext_dataset(data_dir="", batch_size=2)


def test_list_files_of_a_folder_dataset(rendered_dataset_dir):
  shards = files.list_files(data_dir=rendered_dataset_dir, split="valid")
  assert shards and all(os.path.dirname(f) == rendered_dataset_dir and
                        "-valid.tfrecord" in f for f in shards)
  with pytest.raises(ValueError, match="split='dev'.*available splits"):
    files.list_files(data_dir=rendered_dataset_dir, split="dev")
