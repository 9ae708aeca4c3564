"""The study end to end at the smoke scale, through the command line too.

The end-to-end test runs `--scale=smoke` on the shared tiny dataset, checks
the report against the evaluation JSONs it was written from, then reruns it
through the command line (nothing executed) and removes one evaluation and
one run summary (only those are redone, and the finished run is not
retrained).
"""

import json
import os
import re
import subprocess
import sys

import pytest

from audio_perm import experiments
from audio_perm import study
from audio_perm.study import plan as plan_lib
from audio_perm.study import scales
from audio_perm.study import tables

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")


def _cell(report, row_label, column_index):
  """The text of a Table I/II cell: first table row starting with the label."""
  for line in report.splitlines():
    if line.startswith(f"| {row_label} |"):
      return [c.strip() for c in line.strip("|").split("|")][column_index]
  raise AssertionError(f"no row {row_label!r}")


def test_experiments_is_an_alias_of_study():
  assert experiments.run_experiments is study.run_experiments
  assert experiments.make_plan is plan_lib.make_plan
  assert experiments.SCALES is scales.SCALES
  assert experiments.main is study.main


@pytest.mark.slow
def test_smoke_scale_end_to_end_then_resumes(tmp_path, rendered_dataset_dir):
  out = str(tmp_path / "study")
  messages = []
  first = study.run_experiments(
      "smoke", out, data_dir=rendered_dataset_dir, log=messages.append)
  assert any(m.startswith("Estimated time:") for m in messages)

  plan = plan_lib.make_plan(scales.SCALES["smoke"], out, rendered_dataset_dir)
  expected = {f"train {n}" for n in plan.runs} | {
      f"eval {n}" for n in plan.evals}
  assert set(first["executed"]) == expected and not first["skipped"]
  for name in plan.runs:
    run_dir = os.path.join(out, "runs", name)
    flags = json.load(open(os.path.join(run_dir, "flags.json")))
    assert flags["train_steps"] == 2 and flags["seed"] == 0
    assert os.path.exists(os.path.join(run_dir, "ckpt-2.index"))
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert summary["step"] == 2
    assert 0.0 <= summary["valid_partial_ranks_accuracy"] <= 1.0

  report = open(first["report"]).read()
  assert first["report"] == os.path.join(out, "results.md")
  for label in tables.ROW_LABELS.values():
    assert f"| {label} |" in report
  for column in ("Random embedding", "No pretraining",
                 "Fixed permutation (XE)", "Fast Soft Ranking",
                 "Perturbed F-Y", "MSE", "Frequency", "Time",
                 "Time-Frequency"):
    assert f" {column} |" in report
  # The paper's numbers sit under ours.
  assert "| &nbsp;&nbsp;paper (NSynth) | 0.460 |" in report
  assert "124.6" in report and "206.1" in report

  # Report cells are the evaluation JSONs' numbers (Table I column 6 is
  # perturbed_fy; 1 seed, so the cell is that seed's value).
  stored = json.load(open(os.path.join(
      out, "evals", "frequency_n10_perturbed_fy_s0.json")))
  value = next(r["mean"] for r in stored["results"]
               if r["task"] == "instrument_family" and r["num_labeled"] == 24)
  assert _cell(report, "Instrument family accuracy", 6) == (
      f"{value:.3f} ± 0.000")
  mse = {name: next(r["mean"] for r in json.load(open(os.path.join(
      out, "evals", f"{name}.json")))["results"]
                    if r["metric"] == "mse" and r["num_labeled"] == 24)
         for name in ("frequency_n10_perturbed_fy_s0", "random_s0")}
  fact = ("yes" if mse["frequency_n10_perturbed_fy_s0"] < mse["random_s0"]
          else "no")
  assert re.search(rf"- perturbed_fy > random on Pitch MSE: {fact} ", report)
  # Instrument was not evaluated at this scale: the row says so.
  assert "| Instrument label accuracy | not evaluated at this scale |" in (
      report)
  assert "## Discussion" in report and "## Every run" in report
  # The random time-slice CFN was built with time slices.
  stored = json.load(open(os.path.join(out, "evals", "random_time_s0.json")))
  assert stored["config"]["architecture"]["patching"] == "time"
  assert "The same CFNs untrained" in report
  assert re.search(r"- time: pretrained > the same CFN untrained on "
                   r"Instrument family accuracy: (yes|no|tie) ", report)
  for name in plan.runs:
    assert f"| {name} |" in report
  for figure in ("fig2", "fig3"):
    for task, metric in (("instrument_family", "accuracy"), ("pitch", "mse")):
      path = os.path.join(out, f"{figure}_{task}_{metric}.png")
      with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC
      assert f"({figure}_{task}_{metric}.png)" in report
  assert f"--scale=smoke --out={out} --data_dir=" in report
  assert "CPU cores" in report

  # The same command again, through the command line, reporting elsewhere:
  # nothing runs; the plots go beside the report.
  report_path = str(tmp_path / "docs" / "results.md")
  proc = subprocess.run(
      [sys.executable, "-m", "audio_perm.study", "--scale=smoke",
       f"--out={out}", f"--data_dir={rendered_dataset_dir}",
       f"--report={report_path}", "--noprogress"],
      cwd=ROOT, capture_output=True, text=True, timeout=120, env=ENV)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "pending: 0 runs" in proc.stdout
  assert f"(0 executed, {len(expected)} already done" in proc.stdout
  assert os.path.exists(tmp_path / "docs" / "fig2_pitch_mse.png")
  assert "| Pitch MSE |" in open(report_path).read()
  assert "results_discussion.md beside this report" in open(
      report_path).read()
  # A person's discussion beside the report survives every rewrite.
  with open(tmp_path / "docs" / "results_discussion.md", "w") as f:
    f.write("The orderings agree, said nobody.\n")
  study.run_experiments("smoke", out, data_dir=rendered_dataset_dir,
                        report_path=report_path, report_only=True,
                        log=lambda m: None)
  rewritten = open(report_path).read()
  assert "## Discussion\n\nThe orderings agree, said nobody.\n" in rewritten
  assert "To be written by a person" not in rewritten

  # A lost evaluation and a lost summary: only those are redone, and the
  # finished run is not retrained (its checkpoint is untouched).
  name = "frequency_n10_mse_s0"
  checkpoint = os.path.join(out, "runs", name, "ckpt-2.index")
  before = os.path.getmtime(checkpoint)
  os.remove(os.path.join(out, "evals", "handcrafted.json"))
  os.remove(os.path.join(out, "runs", name, "summary.json"))
  third = study.run_experiments(
      "smoke", out, data_dir=rendered_dataset_dir, log=lambda m: None)
  assert sorted(third["executed"]) == ["eval handcrafted", f"train {name}"]
  assert os.path.getmtime(checkpoint) == before
  assert json.load(open(os.path.join(out, "runs", name,
                                     "summary.json")))["step"] == 2
  invocations = [json.loads(line) for line in open(
      os.path.join(out, "invocations.jsonl"))]
  assert [len(i["executed"]) for i in invocations] == [len(expected), 0, 0,
                                                        2]
  assert [i["report_only"] for i in invocations] == [False, False, True,
                                                     False]
  assert f"--report={report_path}" in invocations[1]["command"]
  assert invocations[0]["command"].startswith("python -m audio_perm.study ")

  # Another scale in the same folder is refused with one clear message.
  with pytest.raises(ValueError, match="holds a 'smoke' study"):
    study.run_experiments("cpu", out, data_dir=rendered_dataset_dir,
                          log=lambda m: None)


def test_too_small_data_is_refused_before_any_training(tmp_path,
                                                        rendered_dataset_dir):
  with pytest.raises(ValueError, match=r"has \d+ train notes; scale 'cpu' "
                                       r"draws up to 2000"):
    study.run_experiments("cpu", str(tmp_path / "study"),
                          data_dir=rendered_dataset_dir, log=lambda m: None)
  assert not os.path.exists(tmp_path / "study" / "runs")


@pytest.mark.slow
def test_old_command_still_runs(tmp_path):
  # python -m audio_perm.experiments is an alias: same flags, same plan.
  proc = subprocess.run(
      [sys.executable, "-m", "audio_perm.experiments", "--scale=cpu",
       f"--out={tmp_path}", "--dry_run"],
      cwd=ROOT, capture_output=True, text=True, timeout=120, env=ENV)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Scale cpu: 12 pretraining runs (2,400 steps)" in proc.stdout
  assert "  run  frequency_n4_classification_s0: to do" in proc.stdout
  assert not os.listdir(tmp_path)  # A dry run writes nothing.
