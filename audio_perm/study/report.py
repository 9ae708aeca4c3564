"""The study's markdown report and its PNG plots, from what is on disk.

The report (--report, default OUT/results.md) is rewritten at the end of
every invocation; its plots go beside it. Its Discussion is copied in from
REPORT_discussion.md beside it, which a person writes and every rewrite
keeps.
"""

import datetime
import json
import os
import platform

from audio_perm import config as config_lib
from audio_perm.study import plan as plan_lib
from audio_perm.study import scales as scales_lib
from audio_perm.study import tables

GENERATOR = "python -m audio_perm.study"


def _plot(path, title, xlabel, metric, xs, curves, log_x=False):
  """Writes a PNG of {label: [(mean, std, ...) per x]} with error bars."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  figure, axis = plt.subplots(figsize=(5.0, 3.6))
  for label, points in curves.items():
    pairs = [(x, p[0], p[1]) for x, p in zip(xs, points) if p[0] is not None]
    if not pairs:
      continue
    axis.errorbar([p[0] for p in pairs], [p[1] for p in pairs],
                  yerr=[p[2] for p in pairs], marker="o", capsize=3,
                  label=label)
  if log_x and len(xs) > 1:
    axis.set_xscale("log")
  axis.set_xticks(list(xs))
  axis.set_xticklabels([str(x) for x in xs])
  axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
  axis.set_xlabel(xlabel)
  axis.set_ylabel({"accuracy": "accuracy (higher is better)",
                   "mse": "MSE, MIDI pitch^2 (lower is better)"}[metric])
  axis.set_title(title)
  axis.grid(True, alpha=0.3)
  axis.legend(fontsize="small")
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  plt.close(figure)


def machine_description():
  """nproc, memory, CPU model, OS, library versions."""
  cpu_model = platform.processor() or "unknown"
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu_model = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  memory_gib = None
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemTotal:"):
          memory_gib = int(line.split()[1]) / 2**20
          break
  except OSError:
    pass
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import keras  # pylint: disable=g-import-not-at-top
  gpus = tf.config.list_physical_devices("GPU")
  return {"nproc": os.cpu_count(), "cpu_model": cpu_model,
          "memory_gib": round(memory_gib, 1) if memory_gib else None,
          "accelerators": [d.name for d in gpus] or "none",
          "platform": platform.platform(),
          "python": platform.python_version(),
          "tensorflow": tf.__version__, "keras": keras.__version__}


def discussion_path(report_path):
  """Where a person's Discussion lives: REPORT_discussion.md beside REPORT.

  The report is regenerated from the run folders at the end of every
  invocation; the Discussion is kept in its own file and copied in, so a
  rewrite never loses it.
  """
  return os.path.splitext(os.path.abspath(report_path))[0] + "_discussion.md"


def _fmt_number(value):
  return "—" if value is None else f"{value:.0f}"


def _dataset_line(summary):
  """Soundfont and notes per split of a render_summary.json."""
  parts = []
  if summary.get("soundfont"):
    parts.append(f"soundfont {os.path.basename(str(summary['soundfont']))}")
  counts = summary.get("notes") or {}
  if isinstance(counts, dict) and counts:
    parts.append("notes: " + ", ".join(
        f"{k} {v}" for k, v in counts.items() if isinstance(v, int)))
  return "; ".join(parts)


def _setting_lines(plan):
  scale = plan.scale
  train, probe, supervised = scale.train, scale.probe, scale.supervised
  dataset = plan_lib.read_json(os.path.join(plan.data_dir,
                                            "render_summary.json"))
  lines = ["## Setting", ""]
  lines.append(f"- data: `{plan.data_dir}`" + (
      f" ({_dataset_line(dataset)})" if dataset else ""))
  lines.append(f"- pretraining: CFN width {train.encoder.width:g}, embedding "
               f"{train.encoder.embedding_dim}, "
               f"{train.encoder.normalization} normalisation, "
               f"{scale.num_patches} patches, "
               f"{train.optimizer.name} at lr "
               f"{train.optimizer.learning_rate:g}, batch "
               f"{train.batch_size}, {train.train_steps:,} steps; fixed "
               f"permutation sets of K = "
               f"min({train.objective.num_permutations}, n!); "
               f"Table II / Fig. 2 objective: {plan.table2_objective} (fixed "
               "before the run; the paper's best)")
  flat = config_lib.flatten(train)
  extras = [f"{name} {flat[name]:g}" for name in config_lib.RECIPE_EXTRAS
            if flat[name]]
  lines.append("- outside the paper (train.py's default recipe, "
               "docs/recipe_sweep.md): "
               + (", ".join(extras) if extras else "none"))
  lines.append(f"- evaluation: frozen encoders, MLP probe "
               f"({probe.hidden_units} hidden units, at most "
               f"{probe.max_epochs} epochs, patience {probe.patience}), "
               f"{scale.num_labeled} labelled notes of the train split, "
               f"scored on the test split, {scale.eval_seeds} evaluation "
               f"seed(s); no pretraining = the same CFN trained from scratch "
               f"on the labelled notes ({supervised.steps} steps of "
               f"batch {supervised.batch_size})")
  reduced = scales_lib.reductions(scale)
  if reduced:
    lines.append("- reduced against the paper's setting (`--scale=paper`): "
                 + "; ".join(reduced))
  return lines + [""]


def _table_lines(plan):
  """Tables I and II, and Table II's patch shapes untrained."""
  scale = plan.scale
  rows = list(tables.TABLE_ROWS) + [tables.PRETEXT_ROW]
  columns1 = tables.table1_columns(plan)
  cells1 = tables.table_cells(plan, columns1, rows)
  lines = [f"## Table I: objectives ({scale.num_patches} frequency bands)",
           ""]
  lines += tables.markdown_table(plan, columns1, rows, cells1,
                                 tables.PAPER_TABLE1)
  lines += ["## Table II: patch shapes "
            f"({plan.table2_objective}, {scale.num_patches} patches)", ""]
  columns2 = tables.table2_columns(plan)
  cells2 = tables.table_cells(plan, columns2, rows)
  lines += tables.markdown_table(plan, columns2, rows, cells2,
                                 tables.PAPER_TABLE2)
  lines += ["The same CFNs untrained (random encoder per patch shape; "
            "frequency's is Table I's; ours only): what each patch shape "
            "gives before any pretraining.", ""]
  cells2_random = tables.table_cells(plan, plan.table2_random,
                                     tables.TABLE_ROWS)
  lines += tables.markdown_table(plan, plan.table2_random,
                                 list(tables.TABLE_ROWS), cells2_random, {})
  return lines


def _figure_lines(plan, figure, columns, xlabel, curves_of, log_x,
                  report_dir):
  """A figure's table (one line per curve) and its plots, one per task row.

  Args:
    plan: the Plan.
    figure: "fig2" or "fig3" (the PNG names' prefix).
    columns: [(x, column header)] of the table.
    xlabel: the plots' x axis.
    curves_of: (task, metric) -> [(table name, plot label, [(mean, std,
      ...) per x])], one per curve.
    log_x: logarithmic x axis.
    report_dir: where the PNGs go.
  """
  name = "Fig. " + figure[-1]
  xs = [x for x, _ in columns]
  lines = [f"| task | metric | {'objective' if figure == 'fig3' else 'encoder'}"
           " | " + " | ".join(header for _, header in columns) + " |",
           "|---|---|---|" + "---:|" * len(xs)]
  rows = [row for row in tables.TABLE_ROWS if row[0] in plan.scale.tasks]
  for task, metric in rows:
    curves = curves_of(task, metric)
    for table_name, _, points in curves:
      lines.append(f"| {task} | {metric} | {table_name} | " + " | ".join(
          tables.fmt(p[0], metric, p[1]) for p in points) + " |")
    _plot(os.path.join(report_dir, f"{figure}_{task}_{metric}.png"),
          f"{name}: {task} ({metric})", xlabel, metric, xs,
          {label: points for _, label, points in curves}, log_x=log_x)
  lines.append("")
  for task, metric in rows:
    lines.append(f"![{name} {task} {metric}]({figure}_{task}_{metric}.png)")
  return lines + [""]


def _figures(plan, report_dir):
  """Fig. 3 (band counts) and Fig. 2 (label counts)."""
  scale = plan.scale
  sweep = scale.num_patches_sweep

  def fig3_curves(task, metric):
    return [(objective, tables.COLUMN_LABELS[objective], [
        tables.mean_std(tables.cell_values(plan, plan.fig3[(objective, n)],
                                           task, metric, scale.num_labeled))
        for n in sweep]) for objective in plan_lib.FIG3_OBJECTIVES]

  def fig2_curves(task, metric):
    curves = []
    for label, points in tables.fig2_curves(plan, task, metric).items():
      name = (f"pretrained ({plan.table2_objective})" if label == "pretrained"
              else tables.COLUMN_LABELS[label].lower())
      curves.append((name, name, points))
    return curves

  lines = ["## Fig. 3: number of frequency bands", ""]
  lines += _figure_lines(plan, "fig3", [(n, f"n = {n}") for n in sweep],
                         "frequency bands (n)", fig3_curves, False,
                         report_dir)
  lines += ["## Fig. 2: labelled notes", ""]
  lines += _figure_lines(plan, "fig2", [(n, str(n)) for n in
                                        plan_lib.fig2_regimes(plan)],
                         "labelled notes", fig2_curves, True, report_dir)
  return lines


def _discussion_lines(report_path):
  lines = ["## Discussion", ""]
  discussion = discussion_path(report_path)
  if os.path.exists(discussion):
    with open(discussion) as f:
      return lines + [f.read().strip(), ""]
  return lines + [f"_To be written by a person after the run, from the "
                  f"orderings above, in {os.path.basename(discussion)} beside "
                  f"this report (every rewrite of the report includes it)._",
                  ""]


def _every_run_lines(plan):
  """One line per run (its summary and scores), one per evaluation result."""
  scale = plan.scale
  rows = [(t, m) for t, m in tables.TABLE_ROWS if t in scale.tasks]
  lines = ["## Every run", "",
           "| run | objective | patching | n | seed | steps | train s | "
           "last train loss | valid partial-ranks acc. (chance) | "
           + " | ".join(f"{t} {m}" for t, m in rows) + " |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(
               rows)]
  for name, run in plan.runs.items():
    summary = plan.summary(name) or {}
    last = summary.get("last_logged") or {}
    metrics = [_run_metric(plan, name, task, metric) for task, metric in rows]
    lines.append(
        f"| {name} | {run.objective} | {run.patching} | {run.num_patches} | "
        f"{run.seed} | {summary.get('step', '—')} | "
        f"{_fmt_number(summary.get('seconds'))} | "
        f"{tables.fmt(last.get('loss'), 'mse')} | "
        f"{tables.fmt(summary.get('valid_partial_ranks_accuracy'))} "
        f"({1 / run.num_patches:.3f}) | " + " | ".join(metrics) + " |")
  lines += ["", "Every evaluation (values per evaluation seed):", "",
            "| evaluation | task | metric | labels | mean ± std | values | "
            "eval s |", "|---|---|---|---:|---:|---|---:|"]
  for name in plan.evals:
    stored = plan_lib.read_json(plan.eval_path(name))
    if not stored:
      lines.append(f"| {name} | (not run yet) | | | | | |")
      continue
    for r in stored["results"]:
      values = ", ".join(tables.fmt(v, r["metric"]) for v in r["values"])
      lines.append(
          f"| {name} | {r['task']} | {r['metric']} | {r['num_labeled']} | "
          f"{tables.fmt(r['mean'], r['metric'], r['std'])} | {values} | "
          f"{_fmt_number(stored.get('seconds'))} |")
  return lines + [""]


def _run_metric(plan, name, task, metric):
  mean, std = tables.mean_std(tables.cell_values(
      plan, [name], task, metric, plan.scale.num_labeled))
  return tables.fmt(mean, metric, std)


def _machine_lines(plan, invocations):
  """The commands, the machine and the time spent."""
  fmt_duration = plan_lib.fmt_duration
  lines = ["## Commands, machine, time", ""]
  commands = list(dict.fromkeys(i["command"] for i in invocations))
  lines += ["```"] + commands + ["```", ""]
  machine = machine_description()
  lines.append(
      f"- machine: {machine['nproc']} CPU cores ({machine['cpu_model']}), "
      f"{machine['memory_gib']} GiB memory, accelerators: "
      f"{machine['accelerators']}; {machine['platform']}; Python "
      f"{machine['python']}, TensorFlow {machine['tensorflow']}, Keras "
      f"{machine['keras']}")
  wall = sum(i.get("wall_seconds", 0.0) for i in invocations)
  train_seconds = sum((plan.summary(n) or {}).get("seconds") or 0.0
                      for n in plan.runs)
  eval_seconds = sum((plan_lib.read_json(plan.eval_path(n)) or {}).get(
      "seconds") or 0.0 for n in plan.evals)
  estimate = invocations[0].get("estimate_seconds") if invocations else None
  lines.append(
      f"- wall time: {fmt_duration(wall)} over {len(invocations)} "
      f"invocation(s) (pretraining {fmt_duration(train_seconds)}, "
      f"evaluations {fmt_duration(eval_seconds)}, the rest data and "
      "report)" + (f"; estimated beforehand: {fmt_duration(estimate)}"
                   if estimate else ""))
  lines.append(f"- runs: {len(plan.runs)} pretraining runs, "
               f"{len(plan.evals)} evaluations; outputs under "
               f"`{plan.out_dir}` (runs/, evals/)")
  return lines + [""]


def write_report(plan, report_path):
  """Writes the markdown report and its PNG plots from what is on disk.

  Returns:
    The report's path.
  """
  report_dir = os.path.dirname(os.path.abspath(report_path))
  os.makedirs(report_dir, exist_ok=True)
  invocations = []
  path = os.path.join(plan.out_dir, "invocations.jsonl")
  if os.path.exists(path):
    with open(path) as f:
      invocations = [json.loads(line) for line in f if line.strip()]
  lines = [f"# Results: the permutation study at scale `{plan.scale.name}`",
           "", f"Generated by `{GENERATOR}` on "
           f"{datetime.date.today().isoformat()}. Scale: {plan.scale.summary}. "
           "Every cell is the mean ± sample standard deviation over all "
           "pretraining seeds x evaluation seeds of that setting (count in "
           "the run list below); the paper's numbers are on NSynth, ours on "
           "notes rendered from a General MIDI soundfont, so only orderings "
           "compare, not values.", ""]
  lines += _setting_lines(plan)
  lines += _table_lines(plan)
  lines += _figures(plan, report_dir)
  lines += ["## Orderings (computed from the numbers above)", ""]
  lines += tables.ordering_facts(plan)
  lines += [""] + _discussion_lines(report_path)
  lines += _every_run_lines(plan)
  lines += _machine_lines(plan, invocations)
  with open(report_path, "w") as f:
    f.write("\n".join(lines))
  return report_path
