"""Tests for audio_perm.evaluation and eval.py.

* A planted dataset (written here with data_prep.nsynth): harmonic notes at 5
  pitches, each instrument family marked by a partial at a fixed frequency and
  instrument ids sparse (3, 250, 600, 1001). Handcrafted features encode both
  linearly, so the probes must score far above chance; a misalignment between
  embeddings and labels anywhere in the pipeline would bring them to chance.
* End to end on the tiny rendered dataset (conftest's `rendered_dataset_dir`):
  train.py exports an encoder, eval.py evaluates it next to random and
  handcrafted; the JSON has every row and the report its plots.
* The supervised baseline trains a few steps.
* Bad input: one clear error each, and eval.py prints one line and exits 1.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from audio_perm import evaluation
from audio_perm import export
from audio_perm import probe
from data_prep import nsynth

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PITCHES = (48, 55, 60, 67, 72)
INSTRUMENT_IDS = (3, 250, 600, 1001)  # Sparse, as NSynth's are.
FAST_PROBE = probe.ProbeConfig(hidden_units=128, max_epochs=150, patience=15)
TINY_CFN = export.EncoderConfig(num_patches=4, width=0.0625, embedding_dim=8)


def _planted_note(pitch, family, rng, num_samples=nsynth.NUM_SAMPLES,
                  sample_rate_hz=nsynth.SAMPLE_RATE_HZ):
  t = np.arange(num_samples) / sample_rate_hz
  f0_hz = 440.0 * 2 ** ((pitch - 69) / 12)
  x = sum(np.sin(2 * np.pi * f0_hz * h * t + rng.uniform(0, 2 * np.pi)) / h
          for h in range(1, 6))
  x = x + 0.5 * np.sin(2 * np.pi * 2500.0 * (family + 1) * t)  # Marker.
  x = x * np.exp(-t) * rng.uniform(0.3, 1.0)
  x = x + 1e-3 * rng.standard_normal(num_samples)
  return (0.2 * x / np.max(np.abs(x))).astype(np.float32)


def write_planted_dataset(out_dir, sizes=(("train", 60), ("test", 30)),
                          seed=0, nan_notes=()):
  """A folder dataset in the nsynth format with linearly planted labels.

  nan_notes: (split, index) of notes whose audio gets a NaN sample.
  """
  rng = np.random.default_rng(seed)
  os.makedirs(out_dir, exist_ok=True)
  lengths = {}
  for split, num_notes in sizes:
    records = []
    for i in range(num_notes):
      family, pitch = i % 4, PITCHES[(i // 4) % len(PITCHES)]
      audio = _planted_note(pitch, family, rng)
      if (split, i) in nan_notes:
        audio[1000] = np.nan
      records.append(nsynth.serialize_example({
          "id": f"{split}-{i}", "audio": audio,
          "pitch": pitch, "velocity": 100,
          "instrument": {"label": INSTRUMENT_IDS[family], "family": family,
                         "source": 0}}))
    nsynth.write_tfrecord_atomically(
        os.path.join(out_dir, nsynth.shard_filename(split, 0, 1)), records)
    lengths[split] = [num_notes]
  nsynth.write_folder_metadata(out_dir, lengths)
  return out_dir


@pytest.fixture(scope="module")
def planted_dir(tmp_path_factory):
  return write_planted_dataset(str(tmp_path_factory.mktemp("planted")))


def _rows(report):
  return {(r["encoder"], r["task"], r["metric"], r["num_labeled"]): r
          for r in report["results"]}


# ------------------------------------------------------------- planted


def test_planted_labels_are_learnt_far_above_chance(planted_dir):
  report = evaluation.evaluate(evaluation.EvalConfig(
      encoders=("handcrafted",), dataset_dir=planted_dir, num_labeled=(40,),
      seeds=2, probe=FAST_PROBE, progress=False))
  rows = _rows(report)
  assert len(rows) == 4
  for key, row in rows.items():
    assert len(row["values"]) == 2
    assert row["mean"] == pytest.approx(np.mean(row["values"]))
    assert row["std"] == pytest.approx(np.std(row["values"], ddof=1))
  # Chance: 1/4 for families and instruments, 1/5 for pitch classes.
  assert rows[("handcrafted", "instrument_family", "accuracy", 40)][
      "mean"] > 0.9
  assert rows[("handcrafted", "instrument", "accuracy", 40)]["mean"] > 0.9
  assert rows[("handcrafted", "pitch", "accuracy", 40)]["mean"] > 0.8
  # Predicting the mean pitch scores its variance (about 73 here).
  pitch_variance = np.var(np.repeat(PITCHES, 6))
  assert rows[("handcrafted", "pitch", "mse", 40)]["mean"] < (
      0.25 * pitch_variance)
  config = report["config"]
  assert config["train_size"] == 60 and config["test_size"] == 30
  assert config["num_classes_train"] == {"instrument_family": 4,
                                         "instrument": 4, "pitch": 5}
  assert config["encoders_resolved"][0]["embedding_dim"] == 2 * 513


def test_notes_with_nan_audio_are_dropped_as_in_training(tmp_path):
  # The evaluation reads through data.waveform_dataset, so a note with NaN
  # audio is dropped (as the training pipeline drops it) instead of turning
  # into NaN embeddings; the other notes keep their labels.
  out = write_planted_dataset(str(tmp_path / "nan"), sizes=(
      ("train", 24), ("test", 12)), nan_notes=(("train", 5), ("test", 3)))
  report = evaluation.evaluate(evaluation.EvalConfig(
      encoders=("handcrafted",), dataset_dir=out, num_labeled=(16,),
      seeds=1, tasks=("instrument_family",), probe=FAST_PROBE,
      progress=False))
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


def test_handcrafted_features_match_numpy_reference():
  rng = np.random.default_rng(0)
  waveforms = rng.normal(size=(2, 4000)).astype(np.float32)
  got = evaluation.handcrafted_features(tf.constant(waveforms)).numpy()
  # Independent STFT: frames of 400 samples every 160, periodic Hann,
  # 1024-point rfft, log(|X| + 1e-6); then mean and std over frames.
  num_frames = 1 + (4000 - 400) // 160
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
  frames = np.stack([waveforms[:, i * 160:i * 160 + 400] * window
                     for i in range(num_frames)], axis=1)
  log_magnitude = np.log(np.abs(np.fft.rfft(frames, 1024, axis=-1)) + 1e-6)
  expected = np.concatenate([log_magnitude.mean(1), log_magnitude.std(1)], -1)
  assert got.shape == (2, 1026)
  np.testing.assert_allclose(got, expected, atol=2e-3)


def test_subsets_are_shared_by_encoders_and_stratified():
  labels = {"instrument": np.repeat([7, 400, 1005], [30, 20, 10]),
            "pitch": np.tile(np.arange(40, 50), 6)}
  subsets = evaluation.draw_subsets(labels, ("instrument", "pitch"), (12,), 2)
  assert set(subsets) == {(t, 12, s) for t in ("instrument", "pitch")
                          for s in (0, 1)}
  counts = np.unique(labels["instrument"][subsets[("instrument", 12, 0)]],
                     return_counts=True)[1]
  np.testing.assert_array_equal(counts, [6, 4, 2])
  again = evaluation.draw_subsets(labels, ("instrument", "pitch"), (12,), 2)
  for key in subsets:
    np.testing.assert_array_equal(subsets[key], again[key])
  assert set(subsets[("pitch", 12, 0)]) != set(subsets[("pitch", 12, 1)])


# ---------------------------------------------------------- end to end


def _python(script, args, timeout=300):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  return subprocess.Popen([sys.executable, os.path.join(ROOT, script)] + args,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=env, cwd=ROOT)


def test_eval_py_end_to_end_with_exported_random_and_handcrafted(
    tmp_path, rendered_dataset_dir):
  model_dir = str(tmp_path / "run")
  train = _python("train.py", [
      f"--data_dir={rendered_dataset_dir}", f"--model_dir={model_dir}",
      "--train_steps=2", "--num_patches=4", "--batch_size=4", "--width=0.0625",
      "--embedding_dim=8", "--checkpoint_every=2", "--noverbose"])
  out, err = train.communicate(timeout=300)
  assert train.returncode == 0, err[-3000:]
  encoder_dir = os.path.join(model_dir, "encoder")
  assert os.path.exists(os.path.join(encoder_dir, "saved_model.pb"))

  output = str(tmp_path / "results.json")
  report_dir = str(tmp_path / "report")
  proc = _python("eval.py", [
      f"--encoder={encoder_dir},random,handcrafted",
      f"--dataset_dir={rendered_dataset_dir}", "--num_labeled=24,40",
      "--seeds=2", "--max_epochs=60", "--hidden_units=64",
      f"--output={output}", f"--report_dir={report_dir}", "--noprogress"])
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err[-3000:]
  assert "| task | metric | labels |" in out

  report = json.load(open(output))
  rows = _rows(report)
  encoders = (encoder_dir, "random", "handcrafted")
  expected = {(e, t, m, n) for e in encoders for n in (24, 40)
              for t, m in (("instrument_family", "accuracy"),
                           ("instrument", "accuracy"), ("pitch", "mse"),
                           ("pitch", "accuracy"))}
  assert set(rows) == expected
  for key, row in rows.items():
    assert set(row) == {"encoder", "task", "metric", "num_labeled", "mean",
                        "std", "values"}
    assert len(row["values"]) == 2 and np.all(np.isfinite(row["values"]))
    if key[2] == "accuracy":
      assert 0.0 <= row["mean"] <= 1.0
    else:
      assert row["mean"] > 0.0
  config = report["config"]
  # The random baseline copies the exported encoder's architecture.
  assert config["architecture"]["embedding_dim"] == 8
  assert config["architecture"]["num_patches"] == 4
  dims = [e["embedding_dim"] for e in config["encoders_resolved"]]
  assert dims == [8, 8, 1026]
  assert config["seeds"] == 2 and config["num_labeled"] == [24, 40]
  # The test split is embedded whole, the train split only where labelled.
  assert config["timing"]["test_embedding"]["num_examples"] == (
      config["test_size"])
  assert 40 <= config["num_train_embedded"] <= config["train_size"]

  written = sorted(os.listdir(report_dir))
  assert written == sorted([
      "report.md", "instrument_family_accuracy.png",
      "instrument_accuracy.png", "pitch_mse.png", "pitch_accuracy.png"])
  markdown = open(os.path.join(report_dir, "report.md")).read()
  assert "run/encoder" in markdown and "± " in markdown
  with open(os.path.join(report_dir, "pitch_mse.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_supervised_baseline_trains_and_scores(planted_dir):
  report = evaluation.evaluate(evaluation.EvalConfig(
      encoders=("supervised",), dataset_dir=planted_dir, tasks=("pitch",),
      num_labeled=(12,), seeds=1, architecture=TINY_CFN,
      probe=probe.ProbeConfig(hidden_units=16),
      supervised=evaluation.SupervisedConfig(steps=3, batch_size=4,
                                             eval_every=2),
      progress=False))
  rows = _rows(report)
  assert set(rows) == {("supervised", "pitch", "mse", 12),
                       ("supervised", "pitch", "accuracy", 12)}
  assert 0.0 <= rows[("supervised", "pitch", "accuracy", 12)]["mean"] <= 1.0
  assert np.isfinite(rows[("supervised", "pitch", "mse", 12)]["mean"])
  assert report["config"]["timing"]["supervised_seconds"] > 0


# ------------------------------------------------------------ bad input


def _config(dataset_dir, **overrides):
  values = dict(encoders=("handcrafted",), dataset_dir=dataset_dir,
                num_labeled=(8,), seeds=1, probe=FAST_PROBE, progress=False)
  values.update(overrides)
  return evaluation.EvalConfig(**values)


class _Embedder(tf.Module):

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
  def logits(self, waveform):
    return {"logits": tf.reduce_mean(waveform, axis=-1, keepdims=True)}


class _NanEmbedder(tf.Module):

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
  def serve(self, waveform):
    return {"embedding": waveform[:, :3] * float("nan")}


def test_encoder_returning_nan(planted_dir, tmp_path):
  module = _NanEmbedder()
  path = str(tmp_path / "nan")
  tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
  with pytest.raises(evaluation.EvaluationError,
                     match=r"NaN or infinite embeddings for (\d+) of \1 "):
    evaluation.evaluate(_config(planted_dir, encoders=(path,)))


def test_missing_encoder_path(planted_dir, tmp_path):
  with pytest.raises(evaluation.EvaluationError,
                     match="neither a directory nor one of random"):
    evaluation.evaluate(_config(planted_dir,
                                encoders=(str(tmp_path / "nowhere"),)))
  with pytest.raises(evaluation.EvaluationError, match="not a SavedModel"):
    evaluation.evaluate(_config(planted_dir, encoders=(str(tmp_path),)))


def test_saved_model_without_the_encoder_signature(planted_dir, tmp_path):
  module = _Embedder()
  no_serving = str(tmp_path / "no_serving")
  tf.saved_model.save(module, no_serving, signatures={"other": module.logits})
  with pytest.raises(evaluation.EvaluationError,
                     match="no 'serving_default' signature"):
    evaluation.evaluate(_config(planted_dir, encoders=(no_serving,)))
  wrong_output = str(tmp_path / "wrong_output")
  tf.saved_model.save(module, wrong_output,
                      signatures={"serving_default": module.logits})
  with pytest.raises(evaluation.EvaluationError,
                     match="not the encoder signature.*logits"):
    evaluation.evaluate(_config(planted_dir, encoders=(wrong_output,)))


def test_dataset_that_is_not_there(tmp_path):
  with pytest.raises(evaluation.EvaluationError,
                     match="does not exist.*python -m data_prep.render"):
    evaluation.evaluate(_config(str(tmp_path / "missing")))
  with pytest.raises(evaluation.EvaluationError,
                     match="not prepared in .*python -m data_prep.render"):
    evaluation.evaluate(_config(None, dataset="nsynth/full",
                                data_dir=str(tmp_path)))
  with pytest.raises(evaluation.EvaluationError, match="not a TFDS dataset"):
    evaluation.evaluate(_config(None, dataset="no_such_dataset_xyz",
                                data_dir=str(tmp_path)))


def test_num_labeled_larger_than_the_split_and_missing_split(planted_dir):
  with pytest.raises(evaluation.EvaluationError,
                     match="--num_labeled=61 is larger than split 'train' "
                     r"\(60 examples\)"):
    evaluation.evaluate(_config(planted_dir, num_labeled=(10, 61)))
  with pytest.raises(evaluation.EvaluationError,
                     match="Split 'valid' is not in"):
    evaluation.evaluate(_config(planted_dir, test_split="valid"))


def test_unknown_task(planted_dir):
  with pytest.raises(evaluation.EvaluationError,
                     match="Unknown task 'timbre'.*instrument_family"):
    evaluation.evaluate(_config(planted_dir, tasks=("pitch", "timbre")))


def test_task_whose_labels_are_missing(tmp_path):
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
    evaluation.evaluate(_config(out, tasks=("pitch", "instrument"),
                                num_labeled=(2,)))


def _truncated_copy(planted_dir, out_dir, split="test"):
  """A copy of the planted dataset whose `split` shard is cut mid-record."""
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.copytree(planted_dir, out_dir)
  (shard,) = tf.io.gfile.glob(os.path.join(out_dir, f"*-{split}.tfrecord*"))
  with open(shard, "r+b") as f:
    f.truncate(os.path.getsize(shard) // 2 + 1001)
  return shard


def test_corrupt_shard_is_named_and_skip_corrupt_reads_around_it(
    planted_dir, tmp_path):
  out = str(tmp_path / "truncated")
  shard = _truncated_copy(planted_dir, out)
  with pytest.raises(evaluation.EvaluationError) as raised:
    evaluation.evaluate(_config(out))
  message = str(raised.value)
  assert message.startswith(f"Corrupt or truncated TFRecord shard: {shard} (")
  assert "--skip_corrupt" in message and "-train." not in message
  report = evaluation.evaluate(_config(out, skip_corrupt=True))
  # The readable first half of the 30 test notes, the train split whole.
  assert 10 <= report["config"]["test_size"] < 30
  assert report["config"]["train_size"] == 60


def test_eval_py_reports_one_line_and_exits_nonzero(planted_dir, tmp_path):
  shard = _truncated_copy(planted_dir, str(tmp_path / "truncated"))
  cases = {
      "corrupt": ["--encoder=handcrafted", "--num_labeled=8", "--seeds=1",
                  f"--dataset_dir={tmp_path / 'truncated'}"],
      "dataset": ["--encoder=handcrafted",
                  f"--dataset_dir={tmp_path / 'missing'}"],
      "task": ["--encoder=handcrafted", f"--dataset_dir={planted_dir}",
               "--tasks=pitch,loudness"],
      "regimes": ["--encoder=handcrafted", f"--dataset_dir={planted_dir}",
                  "--num_labeled=10,many"],
  }
  procs = {name: _python("eval.py", args) for name, args in cases.items()}
  messages = {}
  for name, proc in procs.items():
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, (name, err[-2000:])
    assert "Traceback" not in err, (name, err[-2000:])
    lines = [line for line in err.splitlines()
             if line.startswith("eval.py: error:")]
    assert len(lines) == 1, (name, err[-2000:])
    messages[name] = lines[0]
  # Each message names the bad value.
  assert "missing' does not exist" in messages["dataset"]
  assert "'loudness'" in messages["task"]
  assert "--num_labeled=10,many" in messages["regimes"]
  assert shard in messages["corrupt"] and "--skip_corrupt" in messages[
      "corrupt"]
