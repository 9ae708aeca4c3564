"""Tests for audio_perm.diagnostics: collapse statistics and layer probes.

The probes come from evaluation.embed_and_probe, the flow eval.py runs; one
row is checked against the probe fitted here by hand on the same notes.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from audio_perm import diagnostics
from audio_perm import evaluation
from audio_perm import export
from audio_perm import models
from audio_perm import probe
from audio_perm import training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_effective_rank_counts_equally_spread_directions():
  # Notes +-e_i for i < 3 in 6 dims: centred, three equal singular values.
  eye = np.eye(6)[:3]
  features = np.concatenate([eye, -eye])
  stats = diagnostics.embedding_statistics(features)
  assert stats["dim"] == 6
  assert stats["effective_rank"] == pytest.approx(3.0)
  assert stats["alive"] == pytest.approx(0.5)  # Units 3..5 are never > 0.


def test_effective_rank_of_unequal_directions_is_the_entropy_formula():
  # Variances 4:1 along two axes: p = (0.8, 0.2).
  features = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
  p = np.array([0.8, 0.2])
  expected = np.exp(-np.sum(p * np.log(p)))
  assert diagnostics.embedding_statistics(features)["effective_rank"] == (
      pytest.approx(expected))


def test_identical_notes_have_rank_zero_and_bad_shapes_are_refused():
  stats = diagnostics.embedding_statistics(np.ones((5, 4)))
  assert stats["effective_rank"] == 0.0 and stats["alive"] == 1.0
  with pytest.raises(ValueError, match="features must be"):
    diagnostics.embedding_statistics(np.ones(5))
  with pytest.raises(ValueError, match="features must be"):
    diagnostics.embedding_statistics(np.ones((1, 4)))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, rendered_dataset_dir):
  model_dir = str(tmp_path_factory.mktemp("diag_run"))
  config = training.TrainConfig().replace(
      data_dir=rendered_dataset_dir, model_dir=model_dir, num_patches=4,
      batch_size=4, width=1 / 16, embedding_dim=8, learning_rate=3e-3,
      objective="mse", train_steps=3, checkpoint_every=3, log_every=1,
      image_every=3, normalization="batch", seed=5, verbose=False)
  training.train(config)
  return model_dir, config


@pytest.mark.slow  # Trains a run (tiny_run).
def test_random_twin_is_the_run_at_initialisation(tiny_run):
  model_dir, config = tiny_run
  twin_conv, twin_fc1, trained_conv, trained_fc1 = (
      diagnostics.run_encoders(model_dir))
  assert twin_fc1.name == f"{model_dir} random/fc1"
  assert trained_conv.name == f"{model_dir} trained/conv"
  # The Trainer seeds and builds the network exactly as the run did at step 0.
  initial = training.Trainer(config, tf.distribute.get_strategy()).encoder
  waveforms = tf.random.stateless_normal([2, 16000], seed=[1, 2]) * 0.1
  patches = export.waveform_to_patches(waveforms, config.frontend)
  np.testing.assert_allclose(twin_fc1(waveforms).numpy(),
                             initial(patches).numpy(), rtol=1e-5, atol=1e-6)
  assert not np.allclose(trained_fc1(waveforms).numpy(),
                         twin_fc1(waveforms).numpy())
  channels = models.backbone_channels(1 / 16)[-1]
  assert twin_conv(waveforms).shape == (2, 4 * channels)
  assert trained_fc1(waveforms).shape == (2, 8)


@pytest.mark.slow  # Trains a run (tiny_run).
def test_diagnose_reports_every_layer_of_both_encoders(tiny_run,
                                                       rendered_dataset_dir):
  model_dir, _ = tiny_run
  rows = diagnostics.diagnose(diagnostics.DiagnosticsConfig(
      model_dirs=[model_dir], dataset_dir=rendered_dataset_dir,
      num_labeled=24, tasks=("instrument_family", "pitch"), progress=False))
  assert [(r["encoder"], r["layer"]) for r in rows] == [
      (f"{model_dir} random", "conv"), (f"{model_dir} random", "fc1"),
      (f"{model_dir} trained", "conv"), (f"{model_dir} trained", "fc1")]
  for row in rows:
    assert 0.0 <= row["alive"] <= 1.0
    assert 0.0 < row["effective_rank"] <= row["dim"]
    assert 0.0 <= row["instrument_family/accuracy"] <= 1.0
    assert 0.0 <= row["pitch/accuracy"] <= 1.0
    assert row["pitch/mse"] > 0.0
  # A second run with the same architecture and seed shares the twin.
  assert len(diagnostics.run_encoders(model_dir, twins={})) == 4
  twins = {}
  diagnostics.run_encoders(model_dir, twins=twins)
  shared = diagnostics.run_encoders(model_dir, twins=twins)
  assert len(shared) == 2
  assert {e.description["twin"] for e in shared} == {f"{model_dir} random"}
  for row in rows:
    assert len(row["seed_values"]["pitch/mse"]) == 1  # One probe seed.
    assert row.get("twin") == (f"{model_dir} random"
                               if row["encoder"].endswith("trained") else None)
  table = diagnostics.markdown_table(rows)
  assert table.count("\n") == len(rows) + 1
  assert "| eff. rank |" in table


@pytest.mark.slow  # Trains a run (tiny_run).
def test_diagnose_is_the_evaluation_protocol_on_layers(tiny_run,
                                                       rendered_dataset_dir):
  # One layer, one task, by hand: labels, the evaluation's subset, the
  # layer's embeddings of its notes, the default probe.
  model_dir, _ = tiny_run
  (row,) = [r for r in diagnostics.diagnose(diagnostics.DiagnosticsConfig(
      model_dirs=[model_dir], dataset_dir=rendered_dataset_dir,
      num_labeled=24, tasks=("instrument",), compare_random=False,
      progress=False)) if r["layer"] == "fc1"]
  fc1 = diagnostics.run_encoders(model_dir, compare_random=False)[1]
  builder = evaluation.open_dataset(dataset_dir=rendered_dataset_dir)
  train = evaluation.read_labels(builder, "train", ("instrument",),
                                 progress=False)["instrument"]
  test = evaluation.read_labels(builder, "test", ("instrument",),
                                progress=False)["instrument"]
  subset = evaluation.draw_subsets({"instrument": train}, ("instrument",),
                                   (24,), 1)[("instrument", 24, 0)]
  order = np.argsort(subset)
  features = np.empty((24, 8), np.float32)
  features[order] = evaluation.compute_embeddings(
      builder, "train", [fc1], subset[order], progress=False)[0][fc1.name]
  test_features = evaluation.compute_embeddings(
      builder, "test", [fc1], progress=False)[0][fc1.name]
  expected = probe.fit_and_score(features, train[subset], test_features,
                                 test, "classification", 0)["accuracy"]
  assert row["instrument/accuracy"] == pytest.approx(expected)
  statistics = diagnostics.embedding_statistics(features)
  assert {k: row[k] for k in statistics} == pytest.approx(statistics)


@pytest.mark.slow
def test_command_line_names_a_folder_that_is_not_a_run(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "audio_perm.diagnostics",
       f"--model_dir={tmp_path}", "--noprogress"],
      cwd=ROOT, capture_output=True, text=True, timeout=120,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES=""))
  assert proc.returncode == 2
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("audio_perm.diagnostics: error: ")
  assert str(tmp_path) in last and "flags.json" in last
  assert "Traceback" not in proc.stderr


def test_energy_rule_matches_numpy_ranking_of_band_energies(
    rendered_dataset_dir):
  from audio_perm import data  # pylint: disable=g-import-not-at-top
  from audio_perm import patches as patches_lib  # pylint: disable=g-import-not-at-top
  result = diagnostics.energy_rule_accuracy(rendered_dataset_dir,
                                            "frequency", 4, split="test",
                                            batch_size=7)
  hits, notes = 0, 0
  for batch in data.waveform_dataset(data_dir=rendered_dataset_dir,
                                     split="test", batch_size=32):
    patches = patches_lib.frontend(batch["audio"], "frequency", 4).numpy()
    energy = patches.reshape(len(patches), 4, -1).mean(-1)
    ranks = np.argsort(np.argsort(-energy, axis=1, kind="stable"), axis=1)
    hits += int((ranks == np.arange(4)).sum())
    notes += len(patches)
  assert result["notes"] == notes > 0
  assert result["accuracy"] == pytest.approx(hits / (4 * notes), abs=1e-6)
  assert result["chance"] == 0.25
  # Low bands of real notes are louder: far above chance.
  assert result["accuracy"] > 0.5


def test_energy_rule_schemes_are_parsed_or_refused():
  assert diagnostics.parse_scheme("time:10") == ("time", 10)
  for bad in ("time", "bands:4", "frequency:1", "frequency:x"):
    with pytest.raises(ValueError, match="PATCHING:N"):
      diagnostics.parse_scheme(bad)


@pytest.mark.slow
def test_command_line_energy_rule_alone(rendered_dataset_dir, tmp_path):
  path = tmp_path / "rule.json"
  proc = subprocess.run(
      [sys.executable, "-m", "audio_perm.diagnostics",
       f"--dataset_dir={rendered_dataset_dir}", "--energy_rule=time:4",
       f"--json={path}", "--noprogress"],
      cwd=ROOT, capture_output=True, text=True, timeout=120,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES=""))
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "energy rule, time x 4: partial-ranks accuracy" in proc.stdout
  import json  # pylint: disable=g-import-not-at-top
  rule, = json.load(open(path))["energy_rule"]
  assert rule["patching"] == "time" and rule["split"] == "valid"
  nothing = subprocess.run(
      [sys.executable, "-m", "audio_perm.diagnostics", "--noprogress"],
      cwd=ROOT, capture_output=True, text=True, timeout=120,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES=""))
  assert nothing.returncode == 2
  assert nothing.stderr.strip().splitlines()[-1].startswith(
      "audio_perm.diagnostics: error: Nothing to do")


def _row(encoder, layer, family, seed_values, twin=None):
  row = {"encoder": encoder, "layer": layer, "dim": 4, "alive": 1.0,
         "effective_rank": 2.0, "instrument_family/accuracy": family,
         "seed_values": {"instrument_family/accuracy": seed_values}}
  if twin:
    row["twin"] = twin
  return row


def test_settings_summary_pairs_each_run_with_its_own_twin():
  rows = [
      _row("sweep/a_s0 random", "conv", 0.50, [0.49, 0.51]),
      _row("sweep/a_s0 trained", "conv", 0.60, [0.58, 0.62],
           twin="sweep/a_s0 random"),
      _row("sweep/a_s1 random", "conv", 0.40, [0.40, 0.40]),
      _row("sweep/a_s1 trained", "conv", 0.70, [0.69, 0.71]),  # Own twin.
      # Same architecture and seed as a_s0: its twin is a_s0's.
      _row("sweep/b_s0 trained", "conv", 0.55, [0.55, 0.55],
           twin="sweep/a_s0 random"),
  ]
  summary = {(r["setting"], r["kind"]): r
             for r in diagnostics.settings_summary(rows)}
  key = "instrument_family/accuracy"
  a = summary[("a", "trained")]
  assert a["runs"] == 2 and a[key] == pytest.approx(0.65)
  assert a[f"{key} std"] == pytest.approx(np.std([0.6, 0.7], ddof=1))
  assert a[f"{key} pooled_std"] == pytest.approx(
      np.std([0.58, 0.62, 0.69, 0.71], ddof=1))
  assert summary[("a", "random")][key] == pytest.approx(0.45)
  difference = summary[("a", "trained - random")]
  assert difference[key] == pytest.approx(0.2)  # (0.1 + 0.3) / 2, paired.
  assert difference[f"{key} std"] == pytest.approx(np.std([0.1, 0.3], ddof=1))
  assert summary[("b", "trained - random")][key] == pytest.approx(0.05)
  assert summary[("b", "trained")][f"{key} std"] is None  # One run.
  table = diagnostics.summary_table(diagnostics.settings_summary(rows))
  assert "| a | conv | trained - random | 2 | +0.200 +- 0.141 |" in table


def test_command_line_summarize_refuses_a_file_without_rows(tmp_path):
  path = tmp_path / "not_rows.json"
  path.write_text("[1, 2]")
  result = subprocess.run(
      [sys.executable, "-m", "audio_perm.diagnostics",
       f"--summarize={path}"], capture_output=True, text=True)
  assert result.returncode != 0
  last = result.stderr.strip().splitlines()[-1]
  assert str(path) in last and "Traceback" not in result.stderr


def test_spearman_with_ties_matches_scipy():
  from scipy import stats  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  x = rng.integers(0, 5, 40).astype(float)  # Many ties.
  y = x + rng.normal(0, 2, 40)
  assert diagnostics.spearman(x, y) == pytest.approx(
      stats.spearmanr(x, y).statistic, abs=1e-12)
  np.testing.assert_allclose(diagnostics.average_ranks([3, 1, 3, 2]),
                             [2.5, 0, 2.5, 1])
  assert np.isnan(diagnostics.spearman(np.ones(5), np.arange(5)))


def test_within_group_spearman_weights_groups_by_notes():
  x = np.array([1., 2., 3., 4., 3., 2., 1., 5., 5.])
  y = np.array([1., 2., 3., 4., 1., 2., 3., 7., 8.])
  groups = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2])
  # Group 0: +1 (4 notes); group 1: -1 (3 notes); group 2 has 2 pitches.
  mean, notes = diagnostics.within_group_spearman(x, y, groups)
  assert notes == 7
  assert mean == pytest.approx((4 * 1.0 + 3 * -1.0) / 7)


def test_spectral_centroid_of_a_sine_is_its_frequency():
  t = np.arange(16000) / 16000.0
  sines = np.stack([np.sin(2 * np.pi * 1000 * t), np.sin(2 * np.pi * 3000 * t)])
  np.testing.assert_allclose(diagnostics.spectral_centroid(sines),
                             [1000, 3000], rtol=0.03)


@pytest.mark.slow  # Trains a run with pitch copies.
def test_pitch_score_agreement_reads_the_trained_score(
    tmp_path, rendered_dataset_dir, tiny_run):
  from audio_perm import data  # pylint: disable=g-import-not-at-top
  from audio_perm.training import checkpoints  # pylint: disable=g-import-not-at-top
  model_dir = str(tmp_path / "pitch_run")
  config = training.TrainConfig().replace(
      data_dir=rendered_dataset_dir, model_dir=model_dir, num_patches=4,
      batch_size=4, width=1 / 16, embedding_dim=8, learning_rate=3e-3,
      objective="soft_rank", train_steps=2, checkpoint_every=2, log_every=1,
      image_every=2, normalization="batch", seed=3, pitch_copies=2,
      verbose=False)
  training.train(config)
  result = diagnostics.pitch_score_agreement(model_dir, rendered_dataset_dir)
  # The score by hand: the restored pretext model's last output.
  model, _ = training.Trainer.build_model(checkpoints.read_flags(model_dir))
  checkpoints.restore_model(model, model_dir)
  scores, centroids, pitches = [], [], []
  for batch in data.waveform_dataset(data_dir=rendered_dataset_dir,
                                     split="valid", batch_size=16):
    audio = tf.cast(batch["audio"], tf.float32)
    patches = export.waveform_to_patches(audio, config.encoder.frontend)
    scores.append(model(patches, training=False)[-1][:, 0].numpy())
    centroids.append(diagnostics.spectral_centroid(audio))
    pitches.append(batch["pitch"].numpy())
  scores, pitches = np.concatenate(scores), np.concatenate(pitches)
  assert result["notes"] == len(scores) > 0
  assert result["split"] == "valid"
  assert result["score_spearman"] == pytest.approx(
      diagnostics.spearman(scores, pitches), abs=1e-5)
  assert result["centroid_spearman"] == pytest.approx(
      diagnostics.spearman(np.concatenate(centroids), pitches), abs=1e-5)
  # The tiny data has few pitches per instrument: no instrument may count.
  within = result["centroid_within_instrument"]
  assert (np.isnan(within) if result["notes_within"] == 0
          else -1 <= within <= 1)
  # A run without the term has no score to read.
  with pytest.raises(ValueError, match="without --pitch_copies"):
    diagnostics.pitch_score_agreement(tiny_run[0], rendered_dataset_dir)
  # The command line prints one line per run and writes the figures.
  path = tmp_path / "score.json"
  proc = subprocess.run(
      [sys.executable, "-m", "audio_perm.diagnostics", "--pitch_score",
       f"--model_dir={model_dir}", f"--dataset_dir={rendered_dataset_dir}",
       f"--json={path}", "--noprogress"],
      cwd=ROOT, capture_output=True, text=True, timeout=120,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES=""))
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert f"pitch score of {model_dir}: Spearman with MIDI pitch" in proc.stdout
  import json  # pylint: disable=g-import-not-at-top
  entry, = json.load(open(path))["pitch_score"]
  assert entry["score_spearman"] == pytest.approx(result["score_spearman"],
                                                  abs=1e-5)
  assert "rows" not in json.load(open(path))  # No probes with --pitch_score.
  bad = subprocess.run(
      [sys.executable, "-m", "audio_perm.diagnostics", "--pitch_score",
       f"--model_dir={tiny_run[0]}", f"--dataset_dir={rendered_dataset_dir}",
       "--noprogress"],
      cwd=ROOT, capture_output=True, text=True, timeout=120,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES=""))
  assert bad.returncode == 2
  last = bad.stderr.strip().splitlines()[-1]
  assert last.startswith("audio_perm.diagnostics: error: --pitch_score: ")
  assert tiny_run[0] in last and "Traceback" not in bad.stderr
