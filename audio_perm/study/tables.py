"""The study's numbers: table cells, Fig. 2 curves, computed orderings.

Every number is read back from what the harness wrote (evals/<name>.json and
runs/<name>/summary.json) and pooled over pretraining x evaluation seeds; the
paper's numbers on NSynth (Carr et al. 2021) sit beside ours.
"""

import math

import numpy as np

from audio_perm.study import plan as plan_lib

BASELINES = ("random", "handcrafted", "supervised")

# (task, metric) rows of the tables, in the paper's order; pitch accuracy is
# ours only (the evaluation scores pitch both ways).
TABLE_ROWS = (("instrument_family", "accuracy"), ("instrument", "accuracy"),
              ("pitch", "mse"), ("pitch", "accuracy"))
PRETEXT_ROW = ("pretext", "partial_ranks_accuracy")
ROW_LABELS = {
    ("instrument_family", "accuracy"): "Instrument family accuracy",
    ("instrument", "accuracy"): "Instrument label accuracy",
    ("pitch", "mse"): "Pitch MSE",
    ("pitch", "accuracy"): "Pitch accuracy (ours only)",
    PRETEXT_ROW: "Partial-ranks accuracy (valid split)",
}
COLUMN_LABELS = {
    "random": "Random embedding",
    "handcrafted": "Handcrafted (ours only)",
    "supervised": "No pretraining",
    "classification": "Fixed permutation (XE)",
    "soft_rank": "Fast Soft Ranking",
    "perturbed_fy": "Perturbed F-Y",
    "mse": "MSE",
    "frequency": "Frequency",
    "time": "Time",
    "time_frequency": "Time-Frequency",
}

# The paper's numbers on NSynth, 1000 labelled examples (Carr et al. 2021).
PAPER_TABLE1 = {
    ("instrument_family", "accuracy"): {
        "random": 0.46, "classification": 0.75, "soft_rank": 0.84,
        "perturbed_fy": 0.85, "mse": 0.79},
    ("instrument", "accuracy"): {
        "random": 0.35, "classification": 0.70, "soft_rank": 0.72,
        "perturbed_fy": 0.76, "mse": 0.71},
    ("pitch", "mse"): {
        "random": 258.76, "classification": 144.48, "soft_rank": 133.85,
        "perturbed_fy": 124.6, "mse": 156.08},
    PRETEXT_ROW: {"soft_rank": 0.57, "perturbed_fy": 0.58, "mse": 0.51},
}
PAPER_TABLE2 = {
    ("instrument_family", "accuracy"): {
        "frequency": 0.82, "time": 0.79, "time_frequency": 0.73},
    ("instrument", "accuracy"): {
        "frequency": 0.75, "time": 0.68, "time_frequency": 0.45},
    ("pitch", "mse"): {
        "frequency": 136.68, "time": 206.11, "time_frequency": 137.81},
}

_OBJECTIVES = plan_lib.TABLE1_OBJECTIVES


def higher_is_better(metric):
  """Accuracies go up, MSE goes down."""
  return metric != "mse"


def fmt(value, metric="accuracy", std=None):
  """A cell's text: 3 decimals (1 for MSE), "± std" when given; "—" if
  missing."""
  if value is None or (isinstance(value, float) and not math.isfinite(value)):
    return "—"
  digits = 1 if metric == "mse" else 3
  text = f"{value:.{digits}f}"
  if std is not None and math.isfinite(std):
    text += f" ± {std:.{digits}f}"
  return text


# ------------------------------------------------------------------ cells


def _eval_rows(plan, name):
  """{(task, metric, num_labeled): [values over eval seeds]} of one eval."""
  stored = plan_lib.read_json(plan.eval_path(name))
  if not stored:
    return {}
  return {(r["task"], r["metric"], int(r["num_labeled"])): list(r["values"])
          for r in stored.get("results", [])}


def cell_values(plan, eval_names, task, metric, num_labeled):
  """Values pooled over evaluations (pretraining seeds) x evaluation seeds."""
  values = []
  for name in eval_names:
    values += _eval_rows(plan, name).get((task, metric, num_labeled), [])
  return values


def pretext_values(plan, run_names):
  """The valid partial-ranks accuracies of the runs that have one."""
  values = []
  for name in run_names:
    value = (plan.summary(name) or {}).get("valid_partial_ranks_accuracy")
    if value is not None:
      values.append(value)
  return values


def mean_std(values):
  """(mean, sample std) of values; (None, None) when empty, std 0 for one."""
  if not values:
    return None, None
  values = np.asarray(values, np.float64)
  std = float(values.std(ddof=1)) if values.size > 1 else 0.0
  return float(values.mean()), std


def table1_columns(plan):
  """Column -> eval names of Table I (baselines, then the objectives)."""
  columns = {"random": plan.table1_random, "handcrafted": ["handcrafted"],
             "supervised": ["supervised"]}
  columns.update({objective: plan.table1[objective]
                  for objective in _OBJECTIVES})
  return columns


def table2_columns(plan):
  """Column (patching) -> run (= eval) names of Table II."""
  return dict(plan.table2)


def table_cells(plan, columns, rows):
  """{(row, column): (mean, std, count)} for the given columns."""
  cells = {}
  for row in rows:
    for column, names in columns.items():
      if row == PRETEXT_ROW:
        values = ([] if column in BASELINES
                  else pretext_values(plan, names))
      else:
        values = cell_values(plan, names, row[0], row[1],
                             plan.scale.num_labeled)
      mean, std = mean_std(values)
      cells[(row, column)] = (mean, std, len(values))
  return cells


def fig2_curves(plan, task, metric):
  """{"pretrained"|"supervised"|"random": [(mean, std, count) per regime]}."""
  regimes = plan_lib.fig2_regimes(plan)
  random_names = [n for n in plan.table1_random
                  if plan.evals[n].num_labeled == tuple(regimes)]
  groups = {"pretrained": plan.fig2_pretrained,
            "supervised": [n for n in ("supervised", "supervised_fig2")
                           if n in plan.evals],
            "random": random_names}
  curves = {}
  for label, names in groups.items():
    curve = []
    for num in regimes:
      values = cell_values(plan, names, task, metric, num)
      mean, std = mean_std(values)
      curve.append((mean, std, len(values)))
    curves[label] = curve
  return curves


def markdown_table(plan, columns, rows, cells, paper):
  """Markdown rows: ours, then the paper's (NSynth) under each metric."""
  names = list(columns)
  lines = ["| metric | " + " | ".join(COLUMN_LABELS[c] for c in names)
           + " |", "|---|" + "---:|" * len(names)]
  for row in rows:
    metric = row[1]
    evaluated = row == PRETEXT_ROW or row[0] in plan.scale.tasks
    if evaluated:
      ours = [fmt(cells[(row, c)][0], metric, cells[(row, c)][1])
              for c in names]
    else:
      ours = ["not evaluated at this scale"] + [""] * (len(names) - 1)
    lines.append(f"| {ROW_LABELS[row]} | " + " | ".join(ours) + " |")
    if row in paper:
      theirs = [fmt(paper[row].get(c), metric) if c in paper[row] else ""
                for c in names]
      lines.append("| &nbsp;&nbsp;paper (NSynth) | " + " | ".join(theirs)
                   + " |")
  lines.append("")
  return lines


# -------------------------------------------------------------- orderings


def better(a, b, metric):
  """True/False, "tie" for equal values, None when one is missing."""
  if a is None or b is None:
    return None
  if a == b:
    return "tie"
  return a > b if higher_is_better(metric) else a < b


def _yes_no(value):
  return {True: "yes", False: "no", None: "n/a", "tie": "tie"}[value]


# Run-to-run spread of a pretrained encoder's downstream scores on the
# default recipe (train.py's defaults without --deterministic, 1000 labels,
# 3 evaluation seeds): the std of the means of pretraining seeds 0, 1, 2 and
# a repeat of seed 0 (docs/noise_floor.md has every run and the commands). A gap between
# two pretrained cells smaller than this says nothing about an ordering.
NOISE_FLOOR = {
    ("instrument_family", "accuracy"): 0.030,
    ("instrument", "accuracy"): 0.022,
    ("pitch", "mse"): 17.5,
    ("pitch", "accuracy"): 0.011,
}


def noise_floor_note(row, mean_a, mean_b):
  """"; the gap exceeds / is within the run-to-run noise floor (x)"."""
  floor = NOISE_FLOOR.get(row)
  if floor is None or None in (mean_a, mean_b):
    return ""
  verdict = "exceeds" if abs(mean_a - mean_b) > floor else "is within"
  return (f"; the gap {verdict} the run-to-run noise floor "
          f"({fmt(floor, row[1])})")


def _within_noise(cell_a, cell_b):
  """Whether two (mean, std, count) cells differ by less than a std."""
  (mean_a, std_a, count_a), (mean_b, std_b, count_b) = cell_a, cell_b
  if None in (mean_a, mean_b) or min(count_a, count_b) < 2:
    return None
  return abs(mean_a - mean_b) <= max(std_a, std_b)


def best_objective(plan, cells):
  """The Table I objective with the best mean rank over the paper's
  downstream rows (ties in rank go to the earlier objective of
  TABLE1_OBJECTIVES); None until every cell is filled."""
  ranks = {objective: [] for objective in _OBJECTIVES}
  for row in TABLE_ROWS:
    if row[0] not in plan.scale.tasks or row == ("pitch", "accuracy"):
      continue
    means = {o: cells[(row, o)][0] for o in _OBJECTIVES}
    if any(v is None for v in means.values()):
      return None
    order = sorted(means, key=means.get, reverse=higher_is_better(row[1]))
    for position, objective in enumerate(order):
      ranks[objective].append(position)
  if not any(ranks.values()):
    return None
  return min(_OBJECTIVES, key=lambda o: (np.mean(ranks[o]),
                                         _OBJECTIVES.index(o)))


def ordering_facts(plan):
  """Lines of computed orderings (ours, the paper's, whether they agree)."""
  lines = []
  cells1 = table_cells(plan, table1_columns(plan),
                       list(TABLE_ROWS) + [PRETEXT_ROW])

  def fact(label, row, a, b, cells, paper):
    metric = row[1]
    ours = better(cells[(row, a)][0], cells[(row, b)][0], metric)
    theirs = better(paper.get(row, {}).get(a), paper.get(row, {}).get(b),
                    metric)
    agree = "" if theirs is None or ours is None else (
        "; agrees with the paper" if ours == theirs
        else "; DISAGREES with the paper")
    noise = ("; the gap is within one std" if _within_noise(
        cells[(row, a)], cells[(row, b)]) else "")
    noise += noise_floor_note(row, cells[(row, a)][0], cells[(row, b)][0])
    lines.append(
        f"- {label} on {ROW_LABELS[row]}: {_yes_no(ours)} "
        f"({fmt(cells[(row, a)][0], metric)} vs "
        f"{fmt(cells[(row, b)][0], metric)}{noise}; paper: "
        f"{_yes_no(theirs)}{agree})")

  # The rows the paper reports (pitch accuracy is in the tables only).
  paper_rows = [row for row in TABLE_ROWS if row != ("pitch", "accuracy")
                and row[0] in plan.scale.tasks]
  lines.append("### Table I")
  for row in paper_rows:
    for objective in ("soft_rank", "perturbed_fy", "mse"):
      fact(f"{objective} > classification", row, objective,
           "classification", cells1, PAPER_TABLE1)
    for objective in _OBJECTIVES:
      fact(f"{objective} > random", row, objective, "random", cells1,
           PAPER_TABLE1)
    for objective in _OBJECTIVES:
      fact(f"{objective} > no pretraining", row, objective, "supervised",
           cells1, PAPER_TABLE1)
  fact("perturbed_fy > soft_rank", PRETEXT_ROW, "perturbed_fy", "soft_rank",
       cells1, PAPER_TABLE1)
  fact("soft_rank > mse", PRETEXT_ROW, "soft_rank", "mse", cells1,
       PAPER_TABLE1)
  best = best_objective(plan, cells1)
  if best is not None:
    lines.append(
        f"- Best Table I objective by mean rank over the downstream rows: "
        f"{best}; Table II uses {plan.table2_objective} "
        f"({'the same' if best == plan.table2_objective else 'a different one'}"
        "; the paper's best: perturbed_fy).")

  lines += ["", "### Table II"]
  cells2 = table_cells(plan, table2_columns(plan), TABLE_ROWS)
  for row in paper_rows:
    fact("frequency > time", row, "frequency", "time", cells2, PAPER_TABLE2)
    fact("frequency > time_frequency", row, "frequency", "time_frequency",
         cells2, PAPER_TABLE2)
    fact("time > time_frequency", row, "time", "time_frequency", cells2,
         PAPER_TABLE2)
  cells2_random = table_cells(plan, plan.table2_random, TABLE_ROWS)
  both = {(row, (kind, column)): cell for kind, cells in
          (("pretrained", cells2), ("random", cells2_random))
          for (row, column), cell in cells.items()}
  for row in paper_rows:
    for patching in plan_lib.PATCHINGS:
      fact(f"{patching}: pretrained > the same CFN untrained", row,
           ("pretrained", patching), ("random", patching), both, {})

  lines += ["", "### Fig. 3 (the paper: perturbed_fy far above "
            "classification for 4 to 12 bands; better up to 9-10 bands)"]
  sweep = plan.scale.num_patches_sweep
  num_patches = plan.scale.num_patches
  for row in paper_rows:
    task, metric = row
    means = {key: mean_std(cell_values(plan, names, task, metric,
                                       plan.scale.num_labeled))[0]
             for key, names in plan.fig3.items()}
    wins = [_yes_no(better(means[("perturbed_fy", n)],
                           means[("classification", n)], metric))
            for n in sweep]
    lines.append(f"- perturbed_fy > classification on {ROW_LABELS[row]} at "
                 f"n = {', '.join(str(n) for n in sweep)}: "
                 f"{', '.join(wins)}")
    for objective in plan_lib.FIG3_OBJECTIVES:
      known = [(means[(objective, n)], n) for n in sweep
               if means[(objective, n)] is not None]
      if not known:
        continue
      best_n = (max(known) if higher_is_better(metric) else min(known))[1]
      lines.append(f"- best n for {objective} on {ROW_LABELS[row]}: {best_n}")
    if min(sweep) != num_patches:
      for objective in plan_lib.FIG3_OBJECTIVES:
        lines.append(
            f"- {objective}: n = {num_patches} better than "
            f"n = {min(sweep)} on {ROW_LABELS[row]}: " + _yes_no(better(
                means[(objective, num_patches)],
                means[(objective, min(sweep))], metric)))

  lines += ["", "### Fig. 2"]
  regimes = plan_lib.fig2_regimes(plan)
  for row in paper_rows:
    task, metric = row
    curves = fig2_curves(plan, task, metric)
    for other in ("supervised", "random"):
      wins = [_yes_no(better(curves["pretrained"][i][0], curves[other][i][0],
                             metric)) for i in range(len(regimes))]
      lines.append(
          f"- pretrained ({plan.table2_objective}) > "
          f"{COLUMN_LABELS[other].lower()} on {ROW_LABELS[row]} at "
          f"{', '.join(str(n) for n in regimes)} labels: {', '.join(wins)}")
  return lines
