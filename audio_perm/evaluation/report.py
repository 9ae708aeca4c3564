"""Reports of an evaluation: a markdown table, JSON, report.md and plots.

All of them read the dict `evaluate` returns: {"results": rows, "config":
the resolved config}.
"""

import json
import os

from audio_perm import config as config_lib


def write_json(report, path):
  """Writes the evaluation dict as indented JSON (creating parent dirs)."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  with open(path, "w") as f:
    json.dump(report, f, indent=2, sort_keys=False)
    f.write("\n")


def short_name(encoder):
  """A label for tables and plots: the word, or the path's last part(s)."""
  if encoder in config_lib.ENCODER_WORDS:
    return encoder
  parts = os.path.normpath(encoder).split(os.sep)
  # train.py exports to MODEL_DIR/encoder: keep the run's name too.
  return os.sep.join(parts[-2:]) if parts[-1] == "encoder" and len(
      parts) > 1 else parts[-1]


def _metric_label(metric):
  return {"accuracy": "accuracy (higher is better)",
          "mse": "MSE, MIDI pitch^2 (lower is better)"}.get(metric, metric)


def markdown_table(report):
  """One markdown table: a row per (task, metric, num_labeled), a column per
  encoder, cells "mean ± std" over seeds."""
  results = report["results"]
  encoders = list(dict.fromkeys(r["encoder"] for r in results))
  keys = list(dict.fromkeys((r["task"], r["metric"], r["num_labeled"])
                            for r in results))
  cell = {(r["encoder"], r["task"], r["metric"], r["num_labeled"]): r
          for r in results}
  lines = ["| task | metric | labels | " + " | ".join(
      short_name(e) for e in encoders) + " |",
           "|---|---|---:|" + "---:|" * len(encoders)]
  for task, metric, num in keys:
    row = []
    for encoder in encoders:
      r = cell.get((encoder, task, metric, num))
      if r is None:
        row.append("")
      else:
        digits = 2 if metric == "mse" else 3
        row.append(f"{r['mean']:.{digits}f} ± {r['std']:.{digits}f}")
    lines.append(f"| {task} | {metric} | {num} | " + " | ".join(row) + " |")
  return "\n".join(lines) + "\n"


def write_report(report, report_dir):
  """Writes report.md (table + config summary) and one PNG per (task, metric).

  Returns:
    The list of files written.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  os.makedirs(report_dir, exist_ok=True)
  results = report["results"]
  config = report.get("config", {})
  written = []
  pairs = list(dict.fromkeys((r["task"], r["metric"]) for r in results))
  encoders = list(dict.fromkeys(r["encoder"] for r in results))
  plots = []
  for task, metric in pairs:
    figure, axis = plt.subplots(figsize=(5.0, 3.6))
    for encoder in encoders:
      rows = sorted((r for r in results if r["encoder"] == encoder and
                     r["task"] == task and r["metric"] == metric),
                    key=lambda r: r["num_labeled"])
      if not rows:
        continue
      axis.errorbar([r["num_labeled"] for r in rows],
                    [r["mean"] for r in rows],
                    yerr=[r["std"] for r in rows], marker="o", capsize=3,
                    label=short_name(encoder))
    regimes = sorted({r["num_labeled"] for r in results})
    if len(regimes) > 1:
      axis.set_xscale("log")
    axis.set_xticks(regimes)
    axis.set_xticklabels([str(n) for n in regimes])
    axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    axis.set_xlabel("labelled examples")
    axis.set_ylabel(_metric_label(metric))
    axis.set_title(f"{task}: {metric}")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize="small")
    figure.tight_layout()
    filename = f"{task}_{metric}.png"
    path = os.path.join(report_dir, filename)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    written.append(path)
    plots.append(filename)

  dataset = config.get("dataset_resolved", {})
  lines = ["# Downstream evaluation", "",
           "Frozen encoders, probes trained on labelled subsets of the train "
           "split and scored on the test split; mean ± sample std over "
           f"{config.get('seeds', '?')} seed(s).", "",
           markdown_table(report), "",
           f"- dataset: {dataset.get('name', config.get('dataset'))} at "
           f"{config.get('dataset_dir') or dataset.get('data_dir')}; train "
           f"split {config.get('train_split')!r} "
           f"({config.get('train_size')} notes), test split "
           f"{config.get('test_split')!r} ({config.get('test_size')} notes)",
           f"- probe: {json.dumps(config.get('probe', {}))}",
           "- encoders: " + "; ".join(
               f"{short_name(e)} = {e}" for e in encoders), ""]
  lines += [f"![{name}]({name})" for name in plots]
  path = os.path.join(report_dir, "report.md")
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  written.insert(0, path)
  return written

