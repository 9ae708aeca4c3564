"""The study harness: the grid, its de-duplication, the smoke scale end to end.

The end-to-end test runs `--scale=smoke` on the shared tiny dataset, checks
the report against the evaluation JSONs it was written from, then reruns it
through the command line (nothing executed) and removes one evaluation and
one run summary (only those are redone, and the finished run is not
retrained).
"""

import json
import math
import os
import re
import subprocess
import sys

import pytest

from audio_perm import experiments

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ plan


def test_paper_grid_shares_runs_between_tables(tmp_path):
  plan = experiments.make_plan(experiments.SCALES["paper"], str(tmp_path),
                               "/data")
  # Table I: 4 objectives x 3 seeds; Table II adds time and time_frequency
  # (x 3 seeds); Fig. 3 adds n = 4, 8, 12 for 2 objectives (x 3 seeds): its
  # n = 10 points are Table I's runs.
  assert len(plan.runs) == 12 + 6 + 18
  assert plan.table2["frequency"] == plan.table1["perturbed_fy"]
  assert plan.fig3[("perturbed_fy", 10)] == plan.table1["perturbed_fy"]
  assert plan.fig3[("classification", 10)] == plan.table1["classification"]
  assert plan.fig2_pretrained == plan.table1["perturbed_fy"]
  for names in plan.table1.values():
    assert [plan.runs[n].seed for n in names] == [0, 1, 2]
  # Every cell's runs are distinct settings or seeds.
  cells = (list(plan.table1.values()) + list(plan.table2.values())
           + list(plan.fig3.values()))
  assert {n for names in cells for n in names} == set(plan.runs)
  # The fixed set holds min(K, n!) permutations: 4! = 24 < 100.
  config = plan.runs["frequency_n4_classification_s0"].config
  assert config.num_permutations == math.factorial(4) == 24
  assert plan.runs["frequency_n8_classification_s0"].config \
      .num_permutations == 100
  config.validate(check_data=False)
  # Every run has the paper's optimisation.
  for run in plan.runs.values():
    assert (run.config.learning_rate, run.config.batch_size,
            run.config.width, run.config.optimizer) == (1e-6, 32, 1.0, "adam")
  # Fig. 2's encoder is evaluated once, at Table I's and Fig. 2's counts.
  assert plan.evals["frequency_n10_perturbed_fy_s0"].num_labeled == (
      100, 300, 1000, 3000)
  assert plan.evals["frequency_n10_soft_rank_s0"].num_labeled == (1000,)
  assert plan.evals["supervised_fig2"].num_labeled == (100, 300, 3000)
  # Table II's random encoders: each patch shape's CFN untrained, per seed,
  # built like that shape's run (frequency's is Table I's random encoder).
  assert plan.table2_random["frequency"] == plan.table1_random
  for patching in ("time", "time_frequency"):
    names = plan.table2_random[patching]
    assert names == [f"random_{patching}_s{seed}" for seed in range(3)]
    for seed, name in enumerate(names):
      spec = plan.evals[name]
      assert (spec.encoder, spec.run, spec.encoder_seed) == (
          "random", plan.table2[patching][seed], seed)
      assert plan.runs[spec.run].config.patching == patching


def test_table2_objective_moves_the_shared_runs(tmp_path):
  plan = experiments.make_plan(experiments.SCALES["paper"], str(tmp_path),
                               "/data", table2_objective="soft_rank")
  assert plan.table2["frequency"] == plan.table1["soft_rank"]
  assert plan.table2["time"] == [f"time_n10_soft_rank_s{s}" for s in range(3)]
  # Fig. 3 still compares perturbed_fy with classification.
  assert plan.fig3[("perturbed_fy", 10)] == plan.table1["perturbed_fy"]
  with pytest.raises(ValueError, match="'ranknet'"):
    experiments.make_plan(experiments.SCALES["paper"], str(tmp_path), "/data",
                          table2_objective="ranknet")


def test_cpu_scale_is_budgeted_under_75_minutes(tmp_path):
  plan = experiments.make_plan(experiments.SCALES["cpu"], str(tmp_path),
                               "/data")
  seconds, counts = experiments.estimate_seconds(plan)
  assert counts["runs"] == len(plan.runs) == 4 + 2 + 6
  assert counts["steps"] == len(plan.runs) * 200
  assert seconds <= 75 * 60, experiments._fmt_duration(seconds)
  # Every paper-scale difference is declared.
  reduced = " ".join(experiments.reductions(experiments.SCALES["cpu"]))
  for word in ("width", "pretraining steps", "learning rate",
               "Table I pretraining seeds", "Fig. 2 label counts"):
    assert word in reduced
  assert experiments.reductions(experiments.SCALES["paper"]) == []


def test_orderings_follow_each_metric_direction():
  assert experiments._better(0.8, 0.7, "accuracy") is True
  assert experiments._better(120.0, 150.0, "mse") is True
  assert experiments._better(150.0, 120.0, "mse") is False
  assert experiments._better(0.5, 0.5, "accuracy") == "tie"
  assert experiments._better(None, 0.5, "accuracy") is None


# ------------------------------------------------------------ end to end


def _cell(report, row_label, column_index):
  """The text of a Table I/II cell: first table row starting with the label."""
  for line in report.splitlines():
    if line.startswith(f"| {row_label} |"):
      return [c.strip() for c in line.strip("|").split("|")][column_index]
  raise AssertionError(f"no row {row_label!r}")


def test_smoke_scale_end_to_end_then_resumes(tmp_path, rendered_dataset_dir):
  out = str(tmp_path / "study")
  messages = []
  first = experiments.run_experiments(
      "smoke", out, data_dir=rendered_dataset_dir, log=messages.append)
  assert any(m.startswith("Estimated time:") for m in messages)

  plan = experiments.make_plan(experiments.SCALES["smoke"], out,
                               rendered_dataset_dir)
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
  for label in experiments.ROW_LABELS.values():
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
  assert '"architecture": {"patching": "time"' in json.dumps(stored)
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
      [sys.executable, "-m", "audio_perm.experiments", "--scale=smoke",
       f"--out={out}", f"--data_dir={rendered_dataset_dir}",
       f"--report={report_path}", "--noprogress"],
      cwd=ROOT, capture_output=True, text=True, timeout=120,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES=""))
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
  experiments.run_experiments("smoke", out, data_dir=rendered_dataset_dir,
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
  third = experiments.run_experiments(
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

  # Another scale in the same folder is refused with one clear message.
  with pytest.raises(ValueError, match="holds a 'smoke' study"):
    experiments.run_experiments("cpu", out, data_dir=rendered_dataset_dir,
                                log=lambda m: None)


def test_too_small_data_is_refused_before_any_training(tmp_path,
                                                        rendered_dataset_dir):
  with pytest.raises(ValueError, match=r"has \d+ train notes; scale 'cpu' "
                                       r"draws up to 2000"):
    experiments.run_experiments("cpu", str(tmp_path / "study"),
                                data_dir=rendered_dataset_dir,
                                log=lambda m: None)
  assert not os.path.exists(tmp_path / "study" / "runs")
