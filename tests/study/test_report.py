"""The report's numbers and orderings, from evaluation JSONs on disk."""

import os

from audio_perm.study import plan as plan_lib
from audio_perm.study import report
from audio_perm.study import scales
from audio_perm.study import tables

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_orderings_follow_each_metric_direction():
  assert tables.better(0.8, 0.7, "accuracy") is True
  assert tables.better(120.0, 150.0, "mse") is True
  assert tables.better(150.0, 120.0, "mse") is False
  assert tables.better(0.5, 0.5, "accuracy") == "tie"
  assert tables.better(None, 0.5, "accuracy") is None


def _fake_study(out):
  """A smoke plan whose evaluations and summaries are written, no training:
  each eval's values are (index + seed) / 100, MSE x 1000."""
  plan = plan_lib.make_plan(scales.SCALES["smoke"], out, out)
  for index, (name, spec) in enumerate(plan.evals.items()):
    results = []
    for task, metric in tables.TABLE_ROWS:
      if task not in plan.scale.tasks:
        continue
      for num in spec.num_labeled:
        values = [(index + seed) / 100 * (1000 if metric == "mse" else 1)
                  for seed in range(spec.seeds)]
        results.append(dict(task=task, metric=metric, num_labeled=num,
                            values=values, mean=values[0], std=0.0))
    plan_lib.write_json(plan.eval_path(name), {"results": results,
                                               "seconds": 1.0})
  for name in plan.runs:
    plan_lib.write_json(
        os.path.join(plan.run_dir(name), plan_lib.SUMMARY_FILENAME),
        {"step": 2, "seconds": 3.0, "last_logged": {"loss": 1.5},
         "valid_partial_ranks_accuracy": 0.25})
  return plan


def test_report_cells_are_the_stored_numbers(tmp_path):
  plan = _fake_study(str(tmp_path / "study"))
  path = report.write_report(plan, str(tmp_path / "docs" / "results.md"))
  text = open(path).read()
  names = list(plan.evals)
  row = next(line for line in text.splitlines()
             if line.startswith("| Instrument family accuracy |"))
  # Table I: random, handcrafted, supervised, then the four objectives.
  cells = [c.strip() for c in row.strip("|").split("|")][1:]
  assert cells == [f"{names.index(name) / 100:.3f} ± 0.000" for name in (
      "random_s0", "handcrafted", "supervised",
      "frequency_n10_classification_s0", "frequency_n10_soft_rank_s0",
      "frequency_n10_perturbed_fy_s0", "frequency_n10_mse_s0")]
  assert "| Instrument label accuracy | not evaluated at this scale |" in text
  assert "| Partial-ranks accuracy (valid split) | — | — | — | 0.250" in text
  assert "- perturbed_fy > random on Pitch MSE: no " in text
  # Every ordering of a downstream row says where its gap stands against
  # the measured run-to-run noise floor.
  floor = tables.NOISE_FLOOR[("instrument_family", "accuracy")]
  gap = abs(names.index("frequency_n10_soft_rank_s0")
            - names.index("frequency_n10_classification_s0")) / 100
  verdict = "exceeds" if gap > floor else "is within"
  assert (f"- soft_rank > classification on Instrument family accuracy: "
          in text)
  line = next(l for l in text.splitlines() if l.startswith(
      "- soft_rank > classification on Instrument family accuracy"))
  assert f"the gap {verdict} the run-to-run noise floor ({floor:.3f})" in line
  # The setting line reads the scale's configs.
  assert ("CFN width 0.0625, embedding 8, batch normalisation, 10 patches, "
          "adam at lr 0.001, batch 4, 2 steps") in text
  assert "MLP probe (16 hidden units, at most 10 epochs, patience 3)" in text
  assert "(2 steps of batch 4)" in text
  for figure in ("fig2", "fig3"):
    for task, metric in (("instrument_family", "accuracy"), ("pitch", "mse")):
      with open(tmp_path / "docs" / f"{figure}_{task}_{metric}.png",
                "rb") as f:
        assert f.read(8) == PNG_MAGIC
  assert "results_discussion.md beside this report" in text
  with open(tmp_path / "docs" / "results_discussion.md", "w") as f:
    f.write("Said somebody.\n")
  report.write_report(plan, path)
  assert "## Discussion\n\nSaid somebody.\n" in open(path).read()
