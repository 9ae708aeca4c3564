"""Tests for audio_perm.evaluation.datasets: opening, checks, reading.

Each bad input gives one clear EvaluationError naming the bad value; the
notes are read with the training pipeline's rules (non-finite audio dropped,
a corrupt shard named).
"""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from audio_perm import evaluation
from audio_perm.evaluation import datasets


def test_labels_are_read_in_stored_order(planted_dir, planted_pitches):
  builder = datasets.open_dataset(dataset_dir=planted_dir)
  labels = datasets.read_labels(builder, "train", ("instrument", "pitch"),
                                batch_size=7, progress=False)
  np.testing.assert_array_equal(
      labels["instrument"], [(3, 250, 600, 1001)[i % 4] for i in range(60)])
  np.testing.assert_array_equal(
      labels["pitch"], [planted_pitches[(i // 4) % 5] for i in range(60)])
  assert datasets.check_features(builder, ("pitch",)) == 64000
  assert datasets.check_splits(builder, "train", "test") == (60, 30)
  with pytest.raises(evaluation.EvaluationError,
                     match="both 'train'; the test split must be held out"):
    datasets.check_splits(builder, "train", "train")
  with pytest.raises(evaluation.EvaluationError,
                     match="--num_labeled=61 is larger than split 'train'"):
    datasets.check_num_labeled((3, 61), "train", 60)


@pytest.mark.slow
def test_notes_with_nan_audio_are_dropped_as_in_training(
    tmp_path, write_planted, eval_config):
  # The evaluation reads through data.waveform_dataset, so a note with NaN
  # audio is dropped (as the training pipeline drops it) instead of turning
  # into NaN embeddings; the other notes keep their labels.
  out = write_planted(str(tmp_path / "nan"), sizes=(
      ("train", 24), ("test", 12)), nan_notes=(("train", 5), ("test", 3)))
  report = evaluation.evaluate(eval_config(
      out, num_labeled=(16,), tasks=("instrument_family",)))
  config = report["config"]
  assert config["train_size"] == 23 and config["test_size"] == 11
  assert config["dropped_nonfinite"] == {"train": 1, "test": 1}
  builder = evaluation.open_dataset(dataset_dir=out)
  labels = evaluation.read_labels(builder, "test", ("instrument_family",),
                                  progress=False)["instrument_family"]
  # Reading order is the stored order here (one shard): test note 3 is gone.
  np.testing.assert_array_equal(
      labels, [i % 4 for i in range(12) if i != 3])
  (row,) = report["results"]
  assert np.isfinite(row["mean"]) and row["mean"] > 0.5


def test_dataset_that_is_not_there(tmp_path, eval_config):
  with pytest.raises(evaluation.EvaluationError,
                     match="does not exist.*python -m data_prep.render"):
    evaluation.evaluate(eval_config(str(tmp_path / "missing")))
  with pytest.raises(evaluation.EvaluationError,
                     match="not prepared in .*python -m data_prep.render"):
    evaluation.evaluate(eval_config(None, dataset="nsynth/full",
                                    data_dir=str(tmp_path)))
  with pytest.raises(evaluation.EvaluationError, match="not a TFDS dataset"):
    evaluation.evaluate(eval_config(None, dataset="no_such_dataset_xyz",
                                    data_dir=str(tmp_path)))


def test_num_labeled_larger_than_the_split_and_missing_split(planted_dir,
                                                             eval_config):
  with pytest.raises(evaluation.EvaluationError,
                     match="--num_labeled=61 is larger than split 'train' "
                     r"\(60 examples\)"):
    evaluation.evaluate(eval_config(planted_dir, num_labeled=(10, 61)))
  with pytest.raises(evaluation.EvaluationError,
                     match="Split 'valid' is not in"):
    evaluation.evaluate(eval_config(planted_dir, test_split="valid"))


def test_task_whose_labels_are_missing(tmp_path, eval_config):
  features = tfds.features.FeaturesDict({
      "audio": tfds.features.Audio(shape=(4000,), dtype=np.float32,
                                   sample_rate=16000),
      "pitch": tfds.features.ClassLabel(num_classes=128)})
  out = str(tmp_path / "pitch_only")
  os.makedirs(out)
  split_infos = []
  for split in ("train", "test"):
    path = os.path.join(out, f"pitch_only-{split}.tfrecord-00000-of-00001")
    with tf.io.TFRecordWriter(path) as writer:
      for pitch in (60, 62, 64, 65):
        writer.write(features.serialize_example(
            {"audio": np.zeros(4000, np.float32), "pitch": pitch}))
    split_infos.append(tfds.core.SplitInfo(
        name=split, shard_lengths=[4], num_bytes=os.path.getsize(path)))
  tfds.folder_dataset.write_metadata(
      data_dir=out, features=features, split_infos=split_infos)
  with pytest.raises(evaluation.EvaluationError,
                     match="Task 'instrument' needs the label "
                     "'instrument/label'.*drop it from --tasks"):
    evaluation.evaluate(eval_config(out, tasks=("pitch", "instrument"),
                                    num_labeled=(2,)))


@pytest.mark.slow
def test_corrupt_shard_is_named_and_skip_corrupt_reads_around_it(
    planted_dir, tmp_path, eval_config, truncated_copy):
  out = str(tmp_path / "truncated")
  shard = truncated_copy(planted_dir, out)
  with pytest.raises(evaluation.EvaluationError) as raised:
    evaluation.evaluate(eval_config(out))
  message = str(raised.value)
  assert message.startswith(f"Corrupt or truncated TFRecord shard: {shard} (")
  assert "--skip_corrupt" in message and "-train." not in message
  readable = sum(1 for _ in tf.data.TFRecordDataset(shard).ignore_errors())
  assert f"{shard} (record index {readable}: " in message
  report = evaluation.evaluate(eval_config(out, skip_corrupt=True))
  # The readable first half of the 30 test notes, the train split whole.
  config = report["config"]
  assert 10 <= config["test_size"] == readable < 30
  assert config["train_size"] == 60
  # The notes lost to the cut are counted apart from the non-finite ones.
  assert config["dropped_corrupt"] == {"train": 0, "test": 30 - readable}
  assert config["dropped_nonfinite"] == {"train": 0, "test": 0}
  assert config["corrupt_shards"][shard]["records_lost"] == 30 - readable
  assert config["corrupt_shards"][shard]["split"] == "test"
  plain = evaluation.evaluate(eval_config(planted_dir))["config"]
  assert plain["dropped_corrupt"] == {"train": 0, "test": 0}
  assert plain["corrupt_shards"] == {}


def _rewrite_record(shard, index, record):
  """Replaces record `index` of a TFRecord shard, in place."""
  records = [r.numpy() for r in tf.data.TFRecordDataset(shard)]
  records[index] = record
  with tf.io.TFRecordWriter(shard) as writer:
    for r in records:
      writer.write(r)


@pytest.mark.parametrize("bad_record", ["no_audio", "not_an_example"])
def test_a_malformed_record_is_named_with_its_shard_and_index(
    planted_dir, tmp_path, eval_config, bad_record):
  import shutil  # pylint: disable=g-import-not-at-top
  out = str(tmp_path / bad_record)
  shutil.copytree(planted_dir, out)
  (shard,) = tf.io.gfile.glob(os.path.join(out, "*-test.tfrecord*"))
  if bad_record == "no_audio":
    example = tf.train.Example.FromString(
        next(iter(tf.data.TFRecordDataset(shard))).numpy())
    del example.features.feature["audio"]
    record = example.SerializeToString()
  else:
    record = b"\x01 not a tf.Example"
  _rewrite_record(shard, 17, record)
  with pytest.raises(evaluation.EvaluationError) as raised:
    evaluation.evaluate(eval_config(out))
  message = str(raised.value)
  assert message.startswith(f"record 17 of {shard} "), message
  assert "\n" not in message
