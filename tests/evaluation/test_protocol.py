"""Tests for audio_perm.evaluation.protocol: subsets, the flow, evaluate.

On the planted dataset (conftest) the handcrafted features encode the labels
linearly: the probes must score far above chance, which any misalignment
between embeddings and labels would bring down to chance.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from audio_perm import evaluation
from audio_perm import probe
from audio_perm.evaluation import protocol

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


@pytest.mark.slow
def test_planted_labels_are_learnt_far_above_chance(
    planted_dir, planted_pitches, fast_probe, result_rows):
  report = evaluation.evaluate(evaluation.EvalConfig(
      encoders=("handcrafted",), dataset_dir=planted_dir, num_labeled=(40,),
      seeds=2, probe=fast_probe, progress=False))
  rows = result_rows(report)
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
  pitch_variance = np.var(np.repeat(planted_pitches, 6))
  assert rows[("handcrafted", "pitch", "mse", 40)]["mean"] < (
      0.25 * pitch_variance)
  config = report["config"]
  assert config["train_size"] == 60 and config["test_size"] == 30
  assert config["num_classes_train"] == {"instrument_family": 4,
                                         "instrument": 4, "pitch": 5}
  assert config["encoders_resolved"][0]["embedding_dim"] == 2 * 513


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


def _encoder(name, power):
  # Cheap encoders that tell notes apart: mean |x|^power per quarter.
  def embed(waveforms):
    quarters = tf.reshape(tf.abs(waveforms) ** power,
                          [tf.shape(waveforms)[0], 4, -1])
    return tf.reduce_mean(quarters, axis=-1)  # [B, 4]
  return evaluation.FrozenEncoder(name, embed, {"kind": "test"})


def test_embed_and_probe_scores_every_encoder_task_head_regime_and_seed(
    planted_dir):
  builder = evaluation.open_dataset(dataset_dir=planted_dir)
  encoders = [_encoder("one", 1.0), _encoder("two", 2.0)]
  small_probe = probe.ProbeConfig(hidden_units=16, max_epochs=10, patience=3)
  run = protocol.embed_and_probe(
      builder, encoders, ("pitch",), (8, 12), 2, probe_config=small_probe,
      progress=False)
  assert run.names == ["one", "two"]
  assert set(run.scores) == {
      (e, "pitch", m, n, s) for e in ("one", "two") for n in (8, 12)
      for s in (0, 1) for m in ("mse", "accuracy")}
  assert run.train_size == 60 and run.test_size == 30
  assert run.dropped == {"train": 0, "test": 0}
  np.testing.assert_array_equal(
      run.train_indices, np.unique(np.concatenate(list(run.subsets.values()))))
  # The subset's features are the embeddings of its notes, in subset order.
  subset = run.subsets[("pitch", 12, 1)]
  direct, _, _ = evaluation.compute_embeddings(
      builder, "train", encoders[1:], np.sort(subset), progress=False)
  features = run.subset_features("two", "pitch", 12, 1)
  np.testing.assert_allclose(
      features, direct["two"][np.argsort(np.argsort(subset))], rtol=1e-6)
  # And the score is the shared probe's on them.
  expected = probe.fit_and_score(
      features, run.train_labels["pitch"][subset], run.test_embeddings["two"],
      run.test_labels["pitch"], "regression", 1, small_probe)["mse"]
  assert run.values("two", "pitch", "mse", 12)[1] == pytest.approx(expected)
  with pytest.raises(evaluation.EvaluationError,
                     match="--num_labeled=61 is larger than split 'train'"):
    protocol.embed_and_probe(builder, encoders, ("pitch",), (61,), 1)


def test_unknown_task(planted_dir, eval_config):
  with pytest.raises(evaluation.EvaluationError,
                     match="Unknown task 'timbre'.*instrument_family"):
    evaluation.evaluate(eval_config(planted_dir, tasks=("pitch", "timbre")))


@pytest.mark.slow
def test_eval_py_reports_one_line_and_exits_nonzero(
    planted_dir, tmp_path, run_forked, truncated_copy):
  shard = truncated_copy(planted_dir, str(tmp_path / "truncated"))
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
  # Each in its own process, forked after TensorFlow's start-up (conftest.py).
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  ended = run_forked([[os.path.join(ROOT, "eval.py")] + args
                      for args in cases.values()], env=env, cwd=ROOT,
                     timeout_s=120)
  messages = {}
  for name, (returncode, _, err) in zip(cases, ended):
    assert returncode == 2, (name, err[-2000:])
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


@pytest.mark.slow
def test_evaluation_reproduces_exactly_for_the_same_seeds(
    planted_dir, eval_config):
  """Subsets, probes, the random encoder and the supervised baseline."""
  from audio_perm import config as config_lib  # pylint: disable=g-import-not-at-top
  config = eval_config(
      planted_dir, encoders=("handcrafted", "random", "supervised"),
      tasks=("instrument_family", "pitch"), num_labeled=(12,), seeds=2,
      architecture=config_lib.EncoderConfig().replace(
          num_patches=4, width=1 / 16, embedding_dim=8),
      supervised=config_lib.SupervisedConfig(steps=4, batch_size=4,
                                             eval_every=2))
  first, second = (evaluation.evaluate(config)["results"] for _ in range(2))
  assert [r["values"] for r in first] == [r["values"] for r in second]
  assert len(first) == 3 * 3  # 3 encoders x (family acc., pitch mse, acc.).
