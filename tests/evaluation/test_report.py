"""Tests for audio_perm.evaluation.report, and eval.py end to end.

End to end on the tiny rendered dataset (conftest's `rendered_dataset_dir`):
train.py exports an encoder, eval.py evaluates it next to random and
handcrafted; the JSON has every row and the report its plots.
"""

import json
import os

import numpy as np
import pytest

from audio_perm import evaluation


def _report():
  rows = []
  for encoder, shift in (("runs/a/encoder", 0.0), ("random", 0.1)):
    for task, metric in (("pitch", "mse"), ("pitch", "accuracy")):
      for num in (10, 100):
        values = [0.5 + shift, 0.7 + shift]
        rows.append({"encoder": encoder, "task": task, "metric": metric,
                     "num_labeled": num, "mean": float(np.mean(values)),
                     "std": float(np.std(values, ddof=1)), "values": values})
  return {"results": rows, "config": {"seeds": 2, "train_split": "train",
                                      "test_split": "test"}}


def test_markdown_table_has_a_row_per_task_metric_regime():
  table = evaluation.markdown_table(_report())
  lines = table.splitlines()
  assert lines[0] == "| task | metric | labels | a/encoder | random |"
  assert lines[1] == "|---|---|---:|---:|---:|"
  assert lines[2] == "| pitch | mse | 10 | 0.60 ± 0.14 | 0.70 ± 0.14 |"
  assert lines[4] == "| pitch | accuracy | 10 | 0.600 ± 0.141 | 0.700 ± 0.141 |"
  assert len(lines) == 2 + 4 and table.endswith("\n")
  assert evaluation.short_name("handcrafted") == "handcrafted"
  assert evaluation.short_name("/x/runs/b/encoder") == os.path.join("b",
                                                                   "encoder")
  assert evaluation.short_name("/x/exported") == "exported"


def test_report_and_json_are_written(tmp_path):
  report = _report()
  path = str(tmp_path / "deep" / "results.json")
  evaluation.write_json(report, path)
  assert json.load(open(path)) == report
  written = evaluation.write_report(report, str(tmp_path / "report"))
  assert [os.path.basename(p) for p in written] == [
      "report.md", "pitch_mse.png", "pitch_accuracy.png"]
  markdown = open(written[0]).read()
  assert evaluation.markdown_table(report) in markdown
  assert "![pitch_mse.png](pitch_mse.png)" in markdown
  with open(written[1], "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_eval_py_end_to_end_with_exported_random_and_handcrafted(
    tmp_path, rendered_dataset_dir, run_script, result_rows):
  model_dir = str(tmp_path / "run")
  train = run_script("train.py", [
      f"--data_dir={rendered_dataset_dir}", f"--model_dir={model_dir}",
      "--train_steps=2", "--num_patches=4", "--batch_size=4", "--width=0.0625",
      "--embedding_dim=8", "--checkpoint_every=2", "--noverbose"])
  out, err = train.communicate(timeout=300)
  assert train.returncode == 0, err[-3000:]
  encoder_dir = os.path.join(model_dir, "encoder")
  assert os.path.exists(os.path.join(encoder_dir, "saved_model.pb"))

  output = str(tmp_path / "results.json")
  report_dir = str(tmp_path / "report")
  proc = run_script("eval.py", [
      f"--encoder={encoder_dir},random,handcrafted",
      f"--dataset_dir={rendered_dataset_dir}", "--num_labeled=24,40",
      "--seeds=2", "--max_epochs=10", "--hidden_units=16",
      f"--output={output}", f"--report_dir={report_dir}", "--noprogress"])
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err[-3000:]
  assert "| task | metric | labels |" in out

  report = json.load(open(output))
  rows = result_rows(report)
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
