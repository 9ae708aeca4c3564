r"""The paper's study, end to end: pretraining grid, evaluations, report.

  python -m audio_perm.experiments --scale=smoke --out=/tmp/smoke
  python -m audio_perm.experiments --scale=cpu --out=runs/study_cpu \
      --report=docs/results.md
  python -m audio_perm.experiments --scale=paper --out=/big/disk/paper \
      --data_dir=DIR

What is run (the grid of issue 6; Carr et al., IEEE SPL 2021):

  * Table I: the four pretext objectives (classification over a fixed set of
    K = 100 permutations, soft_rank, perturbed_fy, mse) on 10 frequency bands,
    `pretrain_seeds` pretraining seeds each, beside the random (untrained)
    encoder, the handcrafted spectrogram statistics (ours only) and the CFN
    trained without pretraining (`supervised`), on instrument_family,
    instrument (accuracy) and pitch (MSE; the accuracy of a pitch classifier
    is reported too), at `num_labeled` (1000) labelled notes.
  * Table II: frequency / time / time_frequency patches with the Table II
    objective. That objective is FIXED before anything runs (default
    perturbed_fy, the paper's best; --table2_objective picks another) rather
    than chosen from Table I's results, so that the whole grid, its
    de-duplication and the time estimate are known up front; the report
    states which Table I objective did best on our data. Beside it, the
    same CFN untrained for each patch shape (random encoders built like the
    time and time-frequency runs; frequency's is Table I's), so that the
    table separates what the patch shape gives from what pretraining adds.
  * Fig. 3: num_patches 4, 8, 10, 12 on frequency bands, classification vs
    perturbed_fy. With n = 4 there are only 4! = 24 permutations, so the
    fixed set holds min(K, n!) of them.
  * Fig. 2: the downstream metrics against the number of labelled notes (100,
    300, 1000, 3000) for the pretrained encoder (the Table II objective on
    10 frequency bands) against no pretraining (and the random encoder).

Runs shared between tables are one run: Table I's perturbed_fy = Table II's
frequency = Fig. 3's perturbed_fy at n = 10 (likewise classification at
n = 10 in Table I and Fig. 3), and an encoder in Fig. 2 gets one evaluation
covering its Table I regime and Fig. 2's.

Where things go (under --out; runs/ is git-ignored, so --out=runs/NAME keeps
the ~10 MB of checkpoints per run out of the repository while --report puts
the report and its plots where they are committed):
  runs/<name>/       a train.py model_dir, written by audio_perm.training.train
                     (flags.json, checkpoints, TensorBoard logs, encoder/) plus
                     summary.json (this harness: steps, time, the last logged
                     training scalars, the partial-ranks accuracy on the valid
                     split);
  evals/<name>.json  one audio_perm.evaluation report each, with the spec it
                     was made from;
  invocations.jsonl  one line per invocation: command, start, wall time, what
                     was executed;
  results.md + PNGs  the report (--report elsewhere; the plots go beside it);
                     its Discussion is copied in from results_discussion.md
                     beside it (REPORT_discussion.md), which a person writes
                     and every rewrite keeps.

Resuming: the same command again skips every run whose export is current and
whose summary.json is written, and every evaluation whose JSON holds the same
spec; an interrupted run resumes from its last checkpoint (training.train).
The report is rewritten at the end of every invocation from what is on disk;
--report_only rewrites it without running anything.

Data: --data_dir (a folder dataset made by `python -m data_prep.render`), or
by default the harness renders one into ~/.cache/audio_perm/ (outside --out,
since it weighs 256 kB per note): FluidR3_GM from Debian's fluid-soundfont-gm
when /usr/share/sounds/sf2/FluidR3_GM.sf2 exists, else TimGM6mb (shipped with
pretty_midi), `max_notes` of the scale. The valid split gives the pretext
accuracy, the train split the labelled subsets, the test split the scores.

Scales (`SCALES`; the report lists what each reduces against the paper):
  smoke  seconds to a couple of minutes: tiny model, 2 steps per run, 1 seed,
         2 tasks, tiny label counts; exercises every code path (the test).
  cpu    bounded for 2 CPU cores (<= 75 minutes, estimate printed first).
  paper  the paper's setting, for accelerators (width 1.0, Adam, lr 1e-6,
         batch 32, 1000 epochs of NSynth's 289,205 training notes, 3 seeds).
         Give it NSynth itself: --data_dir=a folder dataset converted from
         Magenta's release by `python -m data_prep.convert` (its default
         data would be every note of the soundfont, ~40,000 notes, 10 GB).
"""

import dataclasses
import datetime
import gc
import json
import math
import os
import platform
import sys
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

# -------------------------------------------------------------- constants

SCALE_NAMES = ("smoke", "cpu", "paper")
TABLE1_OBJECTIVES = ("classification", "soft_rank", "perturbed_fy", "mse")
PATCHINGS = ("frequency", "time", "time_frequency")
FIG3_OBJECTIVES = ("classification", "perturbed_fy")
BASELINES = ("random", "handcrafted", "supervised")
FLUID_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"

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


def higher_is_better(metric):
  """Accuracies go up, MSE goes down."""
  return metric != "mse"


# ----------------------------------------------------------------- scales


@dataclasses.dataclass(frozen=True)
class Scale:
  """How big each part of the study is.

  Attributes:
    name: one of SCALE_NAMES.
    summary: one line for the report.
    max_notes: notes rendered when the harness renders the data (None: every
      program x pitch x velocity of the soundfont).
    train_steps, batch_size, learning_rate, optimizer, width, embedding_dim,
      normalization, perturbation_samples, num_permutations,
      checkpoint_every, log_every: the pretraining runs
      (audio_perm.training.TrainConfig fields). normalization is "batch"
      (the package default) at every scale, pinned here so that the study
      does not move with the default; per-example statistics at every layer
      ("example") lost instrument information (docs/results.md).
    num_patches: patches of Tables I and II and Fig. 2.
    num_patches_sweep: Fig. 3's values.
    pretrain_seeds: pretraining seeds of Table I's runs (and of the random
      encoder).
    sweep_seeds: pretraining seeds of Table II's, Fig. 3's and Fig. 2's runs
      (the first `sweep_seeds` of Table I's where they are shared).
    tasks: downstream tasks.
    num_labeled: labelled notes of the tables.
    fig2_num_labeled: Fig. 2's label counts.
    eval_seeds: seeds of every evaluation (labelled subset, probe init).
    fig2_supervised_seeds: evaluation seeds of the no-pretraining baseline at
      Fig. 2's label counts other than `num_labeled` (it trains one CFN per
      task head, label count and seed: the dearest part on CPU).
    hidden_units, max_epochs, patience: the MLP probe.
    supervised_steps, supervised_batch_size: the no-pretraining baseline
      (trained per task head, label count and evaluation seed).
    seconds_per_step: measured pretraining step time (Table I setting) used
      by the estimate; None where unknown (accelerators).
    seconds_per_run: fixed cost of a run (build, trace, export, valid pass).
    seconds_per_embedding: one frozen encoder embedding the train notes the
      probes see and the test split.
    seconds_per_probe: one probe fit on cached embeddings.
    seconds_per_supervised_model: fixed cost of one no-pretraining model
      (trace, held-out checks, test predictions).
    seconds_per_supervised_step: one step of the no-pretraining baseline.
  """
  name: str
  summary: str
  max_notes: Optional[int]
  train_steps: int
  batch_size: int
  learning_rate: float
  width: float
  embedding_dim: int
  perturbation_samples: int
  checkpoint_every: int
  log_every: int
  pretrain_seeds: int
  sweep_seeds: int
  tasks: Tuple[str, ...]
  num_labeled: int
  fig2_num_labeled: Tuple[int, ...]
  eval_seeds: int
  fig2_supervised_seeds: int
  hidden_units: int
  max_epochs: int
  patience: int
  supervised_steps: int
  supervised_batch_size: int
  seconds_per_step: Optional[float]
  seconds_per_run: float
  seconds_per_embedding: float
  seconds_per_probe: float
  seconds_per_supervised_model: float
  seconds_per_supervised_step: float
  optimizer: str = "adam"
  normalization: str = "batch"
  num_permutations: int = 100
  num_patches: int = 10
  num_patches_sweep: Tuple[int, ...] = (4, 8, 10, 12)


ALL_TASKS = ("instrument_family", "instrument", "pitch")

SCALES = {
    "smoke": Scale(
        name="smoke",
        summary="every code path in about a minute: a tiny CFN trained 2 "
                "steps per run, 1 seed, 2 tasks, a few labelled notes, Fig. 3 "
                "at n = 4 and 10 only",
        max_notes=120, train_steps=2, batch_size=4, learning_rate=1e-3,
        width=1 / 16, embedding_dim=8, perturbation_samples=4,
        checkpoint_every=2, log_every=1, pretrain_seeds=1, sweep_seeds=1,
        tasks=("instrument_family", "pitch"), num_labeled=24,
        fig2_num_labeled=(12, 24), eval_seeds=1, fig2_supervised_seeds=1,
        hidden_units=16, max_epochs=10, patience=3, supervised_steps=2,
        supervised_batch_size=4, num_patches_sweep=(4, 10),
        seconds_per_step=0.1, seconds_per_run=3.0, seconds_per_embedding=1.0,
        seconds_per_probe=0.3, seconds_per_supervised_model=2.0,
        seconds_per_supervised_step=0.1),
    # Measured on the 2 shared cores this was built on (load average 3-4 from
    # other jobs): 0.62-0.67 s per step at n = 10 frequency/width 1/8/batch
    # 16 (0.34 s with time slices), ~15 s per run on top (build, trace,
    # export; the K = 100 Hamming set adds ~10 s), ~35 s to embed the 2,379
    # + 299 notes with one encoder, ~1.4 s per MLP probe, and ~50 s for one
    # no-pretraining model of 50 steps (half of it fixed costs).
    "cpu": Scale(
        name="cpu",
        summary="2 CPU cores in about an hour: width 1/8, 200 steps of "
                "batch 16 at lr 1e-3 on the default 2,975 rendered notes, 1 "
                "pretraining seed x 3 evaluation seeds",
        max_notes=3000, train_steps=200, batch_size=16, learning_rate=1e-3,
        width=0.125, embedding_dim=256, perturbation_samples=100,
        checkpoint_every=50, log_every=10, pretrain_seeds=1, sweep_seeds=1,
        tasks=ALL_TASKS, num_labeled=1000,
        fig2_num_labeled=(100, 300, 1000, 2000), eval_seeds=3,
        fig2_supervised_seeds=1, hidden_units=512, max_epochs=300,
        patience=20, supervised_steps=80, supervised_batch_size=16,
        seconds_per_step=0.65, seconds_per_run=15.0,
        seconds_per_embedding=35.0, seconds_per_probe=1.4,
        seconds_per_supervised_model=25.0, seconds_per_supervised_step=0.5),
    "paper": Scale(
        name="paper",
        summary="the paper's setting for accelerators: width 1.0, Adam at lr "
                "1e-6, batch 32, 9,038,000 steps (1000 epochs of NSynth's "
                "289,205 training notes), 3 seeds everywhere",
        max_notes=None, train_steps=9_038_000, batch_size=32,
        learning_rate=1e-6, width=1.0, embedding_dim=1024,
        perturbation_samples=100, checkpoint_every=5000, log_every=100,
        pretrain_seeds=3, sweep_seeds=3, tasks=ALL_TASKS, num_labeled=1000,
        fig2_num_labeled=(100, 300, 1000, 3000), eval_seeds=3,
        fig2_supervised_seeds=3, hidden_units=512, max_epochs=300,
        patience=20, supervised_steps=3000, supervised_batch_size=32,
        seconds_per_step=None, seconds_per_run=60.0,
        seconds_per_embedding=300.0, seconds_per_probe=1.4,
        seconds_per_supervised_model=60.0, seconds_per_supervised_step=0.05),
}


def reductions(scale):
  """Lines saying what `scale` reduces against the paper's setting."""
  paper = SCALES["paper"]
  lines = []
  for field, label in (
      ("width", "backbone width multiplier"),
      ("embedding_dim", "embedding size"),
      ("train_steps", "pretraining steps"),
      ("batch_size", "batch size"),
      ("learning_rate", "learning rate"),
      ("perturbation_samples", "perturbed F-Y noise draws"),
      ("pretrain_seeds", "Table I pretraining seeds"),
      ("sweep_seeds", "Table II / Fig. 2 / Fig. 3 pretraining seeds"),
      ("eval_seeds", "evaluation seeds"),
      ("fig2_supervised_seeds",
       "no-pretraining seeds at Fig. 2's other label counts"),
      ("num_labeled", "labelled notes in the tables"),
      ("fig2_num_labeled", "Fig. 2 label counts"),
      ("num_patches_sweep", "Fig. 3 patch counts"),
      ("tasks", "tasks"),
      ("hidden_units", "probe hidden units"),
      ("max_epochs", "probe epochs at most"),
      ("supervised_steps", "no-pretraining steps per model"),
      ("supervised_batch_size", "no-pretraining batch size")):
    ours, theirs = getattr(scale, field), getattr(paper, field)
    if ours != theirs:
      lines.append(f"{label}: {_fmt_setting(ours)} (paper scale: "
                   f"{_fmt_setting(theirs)})")
  return lines


def _fmt_setting(value):
  if isinstance(value, (tuple, list)):
    return ", ".join(str(v) for v in value)
  if isinstance(value, float):
    return f"{value:g}"
  if isinstance(value, int):
    return f"{value:,}"
  return str(value)


# ------------------------------------------------------------------- plan


@dataclasses.dataclass
class RunSpec:
  """One pretraining run: its name (folder under runs/) and TrainConfig."""
  name: str
  config: object  # training.TrainConfig
  objective: str
  patching: str
  num_patches: int
  seed: int


@dataclasses.dataclass
class EvalSpec:
  """One evaluation: an encoder (a run's export or a baseline) and regimes."""
  name: str
  encoder: str  # "run", "random", "handcrafted" or "supervised".
  run: Optional[str]
  num_labeled: Tuple[int, ...]
  seeds: int
  encoder_seed: int = 0

  def spec(self, scale):
    """What the stored JSON must match to be reused."""
    return {"encoder": self.encoder, "run": self.run,
            "num_labeled": list(self.num_labeled), "seeds": self.seeds,
            "encoder_seed": self.encoder_seed, "tasks": list(scale.tasks),
            "hidden_units": scale.hidden_units,
            "max_epochs": scale.max_epochs, "patience": scale.patience,
            "supervised_steps": (scale.supervised_steps
                                 if self.encoder == "supervised" else None),
            "supervised_batch_size": (scale.supervised_batch_size
                                      if self.encoder == "supervised"
                                      else None)}


@dataclasses.dataclass
class Plan:
  """The de-duplicated grid and which runs fill which cell."""
  scale: Scale
  out_dir: str
  data_dir: str
  table2_objective: str
  runs: Dict[str, RunSpec]
  evals: Dict[str, EvalSpec]
  # Cells -> run names (over seeds).
  table1: Dict[str, List[str]]  # objective -> runs
  table1_random: List[str]  # eval names
  table2: Dict[str, List[str]]  # patching -> runs
  # patching -> eval names of the untrained CFN with those patches.
  table2_random: Dict[str, List[str]]
  fig3: Dict[Tuple[str, int], List[str]]  # (objective, n) -> runs
  fig2_pretrained: List[str]  # runs

  def run_dir(self, name):
    return os.path.join(self.out_dir, "runs", name)

  def eval_path(self, name):
    return os.path.join(self.out_dir, "evals", f"{name}.json")


def run_name(patching, num_patches, objective, seed):
  return f"{patching}_n{num_patches}_{objective}_s{seed}"


def make_plan(scale, out_dir, data_dir, table2_objective="perturbed_fy"):
  """The de-duplicated grid of runs and evaluations for a scale.

  Args:
    scale: a Scale.
    out_dir: the --out folder.
    data_dir: the folder dataset.
    table2_objective: the objective of Table II, Fig. 2's pretrained encoder.

  Returns:
    A Plan; runs and evals in execution order.
  """
  from audio_perm import training  # pylint: disable=g-import-not-at-top
  if table2_objective not in TABLE1_OBJECTIVES:
    raise ValueError(f"table2_objective must be one of {TABLE1_OBJECTIVES}, "
                     f"got {table2_objective!r}.")
  runs = {}

  def add_run(patching, n, objective, seed):
    name = run_name(patching, n, objective, seed)
    if name not in runs:
      config = training.TrainConfig(
          data_dir=data_dir, model_dir=os.path.join(out_dir, "runs", name),
          patching=patching, num_patches=n, objective=objective,
          num_permutations=min(scale.num_permutations, math.factorial(n)),
          perturbation_samples=scale.perturbation_samples,
          batch_size=scale.batch_size, learning_rate=scale.learning_rate,
          optimizer=scale.optimizer, train_steps=scale.train_steps,
          checkpoint_every=scale.checkpoint_every, log_every=scale.log_every,
          image_every=scale.train_steps, width=scale.width,
          embedding_dim=scale.embedding_dim,
          normalization=scale.normalization, seed=seed, verbose=False)
      runs[name] = RunSpec(name, config, objective, patching, n, seed)
    return name

  n = scale.num_patches
  table1 = {}
  for seed in range(scale.pretrain_seeds):
    for objective in TABLE1_OBJECTIVES:
      table1.setdefault(objective, []).append(
          add_run("frequency", n, objective, seed))
  table2 = {p: [add_run(p, n, table2_objective, seed)
                for seed in range(scale.sweep_seeds)] for p in PATCHINGS}
  fig3 = {}
  for objective in FIG3_OBJECTIVES:
    for num in scale.num_patches_sweep:
      fig3[(objective, num)] = [add_run("frequency", num, objective, seed)
                                for seed in range(scale.sweep_seeds)]
  fig2_pretrained = list(table2["frequency"])

  table_regime = (scale.num_labeled,)
  fig2_regimes = tuple(sorted(set(scale.fig2_num_labeled)
                              | {scale.num_labeled}))
  evals = {}
  random_names = []
  for seed in range(scale.pretrain_seeds):
    name = f"random_s{seed}"
    evals[name] = EvalSpec(name, "random", None,
                           fig2_regimes if seed < scale.sweep_seeds
                           else table_regime, scale.eval_seeds,
                           encoder_seed=seed)
    random_names.append(name)
  evals["handcrafted"] = EvalSpec("handcrafted", "handcrafted", None,
                                  table_regime, scale.eval_seeds)
  # Table II's random encoders: the same CFN as each patch shape's run,
  # untrained, so that the table separates the patch shape from pretraining
  # (frequency's is Table I's random encoder).
  table2_random = {"frequency": random_names[:scale.sweep_seeds]}
  for patching in PATCHINGS[1:]:
    table2_random[patching] = []
    for seed, run in enumerate(table2[patching]):
      name = f"random_{patching}_s{seed}"
      evals[name] = EvalSpec(name, "random", run, table_regime,
                             scale.eval_seeds, encoder_seed=seed)
      table2_random[patching].append(name)
  for name in runs:
    regimes = fig2_regimes if name in fig2_pretrained else table_regime
    evals[name] = EvalSpec(name, "run", name, regimes, scale.eval_seeds)
  evals["supervised"] = EvalSpec("supervised", "supervised", None,
                                 table_regime, scale.eval_seeds)
  other_regimes = tuple(n for n in fig2_regimes if n != scale.num_labeled)
  if other_regimes:
    evals["supervised_fig2"] = EvalSpec(
        "supervised_fig2", "supervised", None, other_regimes,
        scale.fig2_supervised_seeds)
  return Plan(scale=scale, out_dir=out_dir, data_dir=data_dir,
              table2_objective=table2_objective, runs=runs, evals=evals,
              table1=table1, table1_random=random_names, table2=table2,
              table2_random=table2_random, fig3=fig3,
              fig2_pretrained=fig2_pretrained)


# ------------------------------------------------------------------ state


def _read_json(path):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError):
    return None


def _write_json(path, values):
  """Writes JSON atomically (a killed write leaves the old file or none)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  temporary = f"{path}.tmp{os.getpid()}"
  with open(temporary, "w") as f:
    json.dump(values, f, indent=2)
    f.write("\n")
  os.replace(temporary, path)


SUMMARY_FILENAME = "summary.json"


def run_is_done(plan, name):
  """A run is done when its summary says so and its export is current."""
  run = plan.runs[name]
  summary = _read_json(os.path.join(plan.run_dir(name), SUMMARY_FILENAME))
  info = _read_json(os.path.join(plan.run_dir(name), "encoder",
                                 "export_info.json"))
  return bool(summary and info and summary.get("step", 0) >=
              run.config.train_steps and info.get("step") ==
              summary.get("step"))


def eval_is_done(plan, name):
  stored = _read_json(plan.eval_path(name))
  return bool(stored and stored.get("experiment_spec") ==
              plan.evals[name].spec(plan.scale))


# -------------------------------------------------------------- estimates


def estimate_seconds(plan, only_pending=True):
  """Seconds the plan's (pending) work should take on the measured machine.

  Returns:
    (seconds or None when the scale has no measured step time, dict of
    counts).
  """
  scale = plan.scale
  steps = 0
  num_runs = 0
  for name, run in plan.runs.items():
    if only_pending and run_is_done(plan, name):
      continue
    latest = _latest_step(plan.run_dir(name)) if only_pending else 0
    steps += max(0, run.config.train_steps - latest)
    num_runs += 1
  num_evals = num_probes = supervised_models = 0
  heads = sum(2 if t == "pitch" else 1 for t in scale.tasks)
  for name, spec in plan.evals.items():
    if only_pending and eval_is_done(plan, name):
      continue
    fits = heads * len(spec.num_labeled) * spec.seeds
    if spec.encoder == "supervised":
      supervised_models += fits
    else:
      num_evals += 1
      num_probes += fits
  counts = {"runs": num_runs, "steps": steps, "evals": num_evals,
            "probes": num_probes, "supervised_models": supervised_models,
            "supervised_steps": supervised_models * scale.supervised_steps}
  if scale.seconds_per_step is None:
    return None, counts
  seconds = (steps * scale.seconds_per_step + num_runs * scale.seconds_per_run
             + num_evals * scale.seconds_per_embedding
             + num_probes * scale.seconds_per_probe
             + supervised_models * (scale.seconds_per_supervised_model
                                    + scale.supervised_steps
                                    * scale.seconds_per_supervised_step))
  return seconds, counts


def _latest_step(model_dir):
  """Step of the latest checkpoint in model_dir (0 if none), from its name."""
  state = os.path.join(model_dir, "checkpoint")
  if not os.path.exists(state):
    return 0
  with open(state) as f:
    for line in f:
      if line.startswith("model_checkpoint_path:"):
        try:
          return int(line.split('"')[1].rsplit("-", 1)[1])
        except (IndexError, ValueError):
          return 0
  return 0


def _fmt_duration(seconds):
  if seconds is None:
    return "unknown"
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  if hours:
    return f"{hours} h {minutes:02d} min"
  if minutes:
    return f"{minutes} min {seconds:02d} s"
  return f"{seconds} s"


# -------------------------------------------------------------- execution


def default_data_dir(scale):
  """Where the harness renders a scale's data when no data_dir is given.

  None means train.py's default dataset (render.ensure_default_dataset),
  which is the same render (TimGM6mb, 3000 notes, seed 0).
  """
  from data_prep import render  # pylint: disable=g-import-not-at-top
  fluid = os.path.exists(FLUID_SOUNDFONT)
  if not fluid and scale.max_notes == render.DEFAULT_MAX_NOTES:
    return None  # train.py's default dataset: the same render.
  soundfont = "fluidr3" if fluid else "timgm6mb"
  notes = scale.max_notes if scale.max_notes is not None else "all"
  return os.path.join(os.path.dirname(render.DEFAULT_DATA_DIR),
                      f"experiments_{soundfont}_{notes}")


def _default_data_dir_path(scale):
  from data_prep import render  # pylint: disable=g-import-not-at-top
  return default_data_dir(scale) or render.DEFAULT_DATA_DIR


def prepare_data(scale, data_dir=None, log=print):
  """The folder dataset: data_dir as given, or rendered for the scale."""
  from data_prep import render  # pylint: disable=g-import-not-at-top
  if data_dir:
    if not os.path.exists(os.path.join(data_dir, "dataset_info.json")):
      raise ValueError(
          f"data_dir={data_dir!r} is not a folder dataset (no "
          "dataset_info.json); render one with `python -m data_prep.render "
          f"--output_dir={data_dir}`, or omit --data_dir to let the harness "
          "render one.")
    return os.path.abspath(data_dir)
  data_dir = default_data_dir(scale)
  if data_dir is None:
    return render.ensure_default_dataset(progress=False)
  if not render.is_complete(data_dir):
    soundfont = FLUID_SOUNDFONT if os.path.exists(FLUID_SOUNDFONT) else None
    log(f"Rendering {scale.max_notes or 'all'} notes from "
        f"{soundfont or 'TimGM6mb'} into {data_dir}.")
    render.render_dataset(data_dir, soundfont=soundfont,
                          max_notes=scale.max_notes, seed=0, progress=False,
                          verbose=False)
  return data_dir


def _pretext_accuracy(trainer, config):
  """Partial-ranks accuracy of a trained model on the valid split.

  Deterministic: the same notes and permutations for every run of an
  (n, patching, objective) setting. None when the valid split holds less
  than one batch.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from audio_perm import data  # pylint: disable=g-import-not-at-top
  target = ("classification" if config.objective == "classification"
            else "ranks")
  dataset = data.pretext_dataset(
      data_dir=config.data_dir, split="valid", batch_size=config.batch_size,
      patching=config.patching, num_patches=config.num_patches,
      grid=config.grid, target=target,
      permutation_set=trainer.objective.permutation_set, shuffle=False,
      deterministic=True, seed=0, repeat=False)
  model, objective = trainer.model, trainer.objective

  @tf.function
  def accuracy(patches, target):
    return objective.accuracy(model(patches, training=False), target)

  values = [accuracy(p, t).numpy() for p, t in dataset]
  if not values:
    return None, 0
  values = np.concatenate(values)
  return float(np.mean(values)), int(values.size)


def execute_run(plan, name, strategy=None, log=print, progress=False):
  """Trains (or resumes) one run and writes its summary.json."""
  from audio_perm import training  # pylint: disable=g-import-not-at-top
  run = plan.runs[name]
  start = time.perf_counter()
  previous = _read_json(os.path.join(plan.run_dir(name), SUMMARY_FILENAME))
  # verbose (the progress bar) is a runtime field: flags.json ignores it.
  result = training.train(dataclasses.replace(run.config, verbose=progress),
                          strategy, log=lambda message: log(f"  {message}"))
  accuracy, count = _pretext_accuracy(result["trainer"], run.config)
  seconds = time.perf_counter() - start
  history = result["history"]
  summary = {
      "name": name,
      "step": int(result["step"]),
      "objective": run.objective, "patching": run.patching,
      "num_patches": run.num_patches, "seed": run.seed,
      "num_permutations": (run.config.num_permutations
                           if run.objective == "classification" else None),
      "seconds": seconds + ((previous or {}).get("seconds") or 0.0),
      "last_logged": (history[-1] if history
                      else (previous or {}).get("last_logged")),
      "valid_partial_ranks_accuracy": accuracy,
      "valid_examples": count,
      "chance_partial_ranks_accuracy": 1.0 / run.num_patches,
  }
  _write_json(os.path.join(plan.run_dir(name), SUMMARY_FILENAME), summary)
  return summary


def execute_eval(plan, name, progress=False):
  """Runs one evaluation and writes evals/<name>.json."""
  from audio_perm import evaluation  # pylint: disable=g-import-not-at-top
  from audio_perm import probe  # pylint: disable=g-import-not-at-top
  spec = plan.evals[name]
  scale = plan.scale
  encoder = (os.path.join(plan.run_dir(spec.run), "encoder")
             if spec.encoder == "run" else spec.encoder)
  # Baselines take Table I's CFN, or the run they stand beside (Table II).
  architecture = plan.runs[spec.run if spec.run else
                           plan.table1["perturbed_fy"][0]].config
  config = evaluation.EvalConfig(
      encoders=(encoder,), dataset_dir=plan.data_dir, tasks=scale.tasks,
      num_labeled=spec.num_labeled, seeds=spec.seeds,
      probe=probe.ProbeConfig(hidden_units=scale.hidden_units,
                              max_epochs=scale.max_epochs,
                              patience=scale.patience),
      architecture=(architecture.encoder_config()
                    if spec.encoder in ("random", "supervised") else None),
      encoder_seed=spec.encoder_seed,
      supervised=evaluation.SupervisedConfig(
          steps=scale.supervised_steps,
          batch_size=scale.supervised_batch_size),
      progress=progress)
  start = time.perf_counter()
  report = evaluation.evaluate(config)
  report["experiment_spec"] = spec.spec(scale)
  report["seconds"] = time.perf_counter() - start
  _write_json(plan.eval_path(name), report)
  return report


def run_experiments(scale_name, out_dir, data_dir=None, report_path=None,
                    table2_objective="perturbed_fy", report_only=False,
                    dry_run=False, progress=False, log=print):
  """Runs what is missing of the study at a scale and writes the report.

  Args:
    scale_name: one of SCALE_NAMES.
    out_dir: where runs/, evals/ and the report go.
    data_dir: a folder dataset; None renders the scale's (see module doc).
    report_path: the markdown report (default out_dir/results.md); the PNG
      plots go beside it.
    table2_objective: Table II's objective (and Fig. 2's pretrained one).
    report_only: only rewrite the report from what is on disk.
    dry_run: print the plan and the estimate, run nothing, write nothing.
    progress: show progress bars.
    log: function for one-line messages.

  Returns:
    dict: executed (list of "train NAME" / "eval NAME"), skipped (list),
    report (path or None), estimate_seconds, wall_seconds.
  """
  if scale_name not in SCALES:
    raise ValueError(f"scale must be one of {SCALE_NAMES}, got "
                     f"{scale_name!r}.")
  scale = SCALES[scale_name]
  wall_start = time.time()
  out_dir = os.path.abspath(out_dir)
  report_path = os.path.abspath(report_path or
                                os.path.join(out_dir, "results.md"))
  command = canonical_command(scale_name, out_dir, data_dir, report_path,
                              table2_objective)
  if not data_dir and (dry_run or report_only):
    data_dir = _default_data_dir_path(scale)
  elif not (dry_run or report_only):
    data_dir = prepare_data(scale, data_dir, log=log)
  data_dir = os.path.abspath(data_dir)
  plan = make_plan(scale, out_dir, data_dir, table2_objective)
  _check_same_study(plan, out_dir, dry_run or report_only)
  if not (dry_run or report_only):
    check_data_size(plan)

  estimate, counts = estimate_seconds(plan)
  total, total_counts = estimate_seconds(plan, only_pending=False)
  log(f"Scale {scale.name}: {len(plan.runs)} pretraining runs "
      f"({total_counts['steps']:,} steps), {len(plan.evals)} evaluations; "
      f"pending: {counts['runs']} runs ({counts['steps']:,} steps), "
      f"{counts['evals']} frozen-encoder evaluations ({counts['probes']} "
      f"probes), {counts['supervised_models']} no-pretraining models "
      f"({counts['supervised_steps']:,} steps).")
  if estimate is None:
    log("Estimated time: unknown for this scale (no measured step time); "
        f"{counts['steps']:,} pretraining steps of batch {scale.batch_size} "
        f"at width {scale.width:g} to go.")
  else:
    log(f"Estimated time: {_fmt_duration(estimate)} (of "
        f"{_fmt_duration(total)} for the whole study on the machine the "
        "scale was measured on: 2 shared CPU cores).")
  result = {"executed": [], "skipped": [], "report": None,
            "estimate_seconds": estimate, "wall_seconds": 0.0}
  if dry_run:
    for name in plan.runs:
      log(f"  run  {name}: {'done' if run_is_done(plan, name) else 'to do'}")
    for name in plan.evals:
      log(f"  eval {name}: {'done' if eval_is_done(plan, name) else 'to do'}")
    return result

  invocation = {"command": command, "scale": scale.name,
                "start": datetime.datetime.now().isoformat(
                    timespec="seconds"),
                "report_only": report_only, "estimate_seconds": estimate}
  try:
    if not report_only:
      _execute(plan, result, progress, log)
  finally:
    # Logged even when interrupted, so the report's wall time counts it.
    invocation["executed"] = result["executed"]
    invocation["wall_seconds"] = time.time() - wall_start
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "invocations.jsonl"), "a") as f:
      f.write(json.dumps(invocation) + "\n")
  result["report"] = write_report(plan, report_path)
  result["wall_seconds"] = time.time() - wall_start
  log(f"Report: {result['report']} ({len(result['executed'])} executed, "
      f"{len(result['skipped'])} already done, "
      f"{_fmt_duration(result['wall_seconds'])}).")
  return result


def check_data_size(plan):
  """ValueError before any training when the train split is too small for
  the largest label count (the evaluation would refuse it only after the
  runs)."""
  from audio_perm import evaluation  # pylint: disable=g-import-not-at-top
  builder = evaluation.open_dataset(dataset_dir=plan.data_dir)
  needed = max(fig2_regimes(plan))
  available = evaluation.split_size(builder, "train")
  evaluation.split_size(builder, "test")
  if available < needed:
    raise ValueError(
        f"data_dir={plan.data_dir!r} has {available} train notes; scale "
        f"{plan.scale.name!r} draws up to {needed} labelled notes from it. "
        "Render more notes (python -m data_prep.render --max_notes=N) or "
        "omit --data_dir to let the harness render the scale's data.")


def _execute(plan, result, progress, log):
  """Trains and evaluates what is not done yet, in schedule order."""
  strategy = None
  for kind, name in _schedule(plan):
    if kind == "train":
      if run_is_done(plan, name):
        result["skipped"].append(f"train {name}")
        continue
      if strategy is None:
        strategy = _strategy()
      log(f"[train] {name}")
      tick = time.perf_counter()
      summary = execute_run(plan, name, strategy, log=log, progress=progress)
      log(f"[train] {name}: step {summary['step']}, valid partial-ranks "
          f"accuracy {_fmt(summary['valid_partial_ranks_accuracy'])}, "
          f"{time.perf_counter() - tick:.1f} s")
    else:
      if eval_is_done(plan, name):
        result["skipped"].append(f"eval {name}")
        continue
      log(f"[eval] {name}")
      tick = time.perf_counter()
      execute_eval(plan, name, progress=progress)
      log(f"[eval] {name}: {time.perf_counter() - tick:.1f} s")
    result["executed"].append(f"{kind} {name}")
    gc.collect()


def _strategy():
  """One strategy for every run: "auto" (mirrored over several GPUs)."""
  from audio_perm import distribute  # pylint: disable=g-import-not-at-top
  return distribute.get_strategy("auto")


def _schedule(plan):
  """(kind, name) in execution order: each run then its evaluation; cheap
  baselines first, the no-pretraining baseline after Table I."""
  order = [("eval", name) for name, spec in plan.evals.items()
           if spec.encoder in ("random", "handcrafted")]
  table1_runs = [n for names in plan.table1.values() for n in names]
  table1_runs.sort(key=lambda n: (plan.runs[n].seed,
                                  TABLE1_OBJECTIVES.index(
                                      plan.runs[n].objective)))
  rest = [n for n in plan.runs if n not in table1_runs]
  for name in table1_runs:
    order += [("train", name), ("eval", name)]
  order.append(("eval", "supervised"))
  for name in rest:
    order += [("train", name), ("eval", name)]
  if "supervised_fig2" in plan.evals:
    order.append(("eval", "supervised_fig2"))
  return order


STUDY_FILENAME = "study.json"


def _check_same_study(plan, out_dir, read_only):
  """Refuses an out_dir holding another scale's study (runs would clash)."""
  path = os.path.join(out_dir, STUDY_FILENAME)
  stored = _read_json(path)
  current = {"scale": plan.scale.name,
             "table2_objective": plan.table2_objective,
             "data_dir": plan.data_dir}
  if stored is not None and stored.get("scale") != current["scale"]:
    raise ValueError(
        f"out={out_dir!r} holds a {stored.get('scale')!r} study; use another "
        f"--out for --scale={plan.scale.name}.")
  if not read_only:
    _write_json(path, current)


def canonical_command(scale_name, out_dir, data_dir, report_path,
                      table2_objective):
  """The command line that reproduces this invocation."""
  parts = ["python -m audio_perm.experiments", f"--scale={scale_name}",
           f"--out={out_dir}"]
  if data_dir:
    parts.append(f"--data_dir={os.path.abspath(data_dir)}")
  if report_path != os.path.join(out_dir, "results.md"):
    parts.append(f"--report={report_path}")
  if table2_objective != "perturbed_fy":
    parts.append(f"--table2_objective={table2_objective}")
  return " ".join(parts)


# ----------------------------------------------------------------- results


def _fmt(value, metric="accuracy", std=None):
  if value is None or (isinstance(value, float) and not math.isfinite(value)):
    return "—"
  digits = 1 if metric == "mse" else 3
  text = f"{value:.{digits}f}"
  if std is not None and math.isfinite(std):
    text += f" ± {std:.{digits}f}"
  return text


def _eval_rows(plan, name):
  """{(task, metric, num_labeled): [values over eval seeds]} of one eval."""
  stored = _read_json(plan.eval_path(name))
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
  values = []
  for name in run_names:
    summary = _read_json(os.path.join(plan.run_dir(name), SUMMARY_FILENAME))
    value = (summary or {}).get("valid_partial_ranks_accuracy")
    if value is not None:
      values.append(value)
  return values


def _mean_std(values):
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
                  for objective in TABLE1_OBJECTIVES})
  return columns


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
      mean, std = _mean_std(values)
      cells[(row, column)] = (mean, std, len(values))
  return cells


def _better(a, b, metric):
  """True/False, "tie" for equal values, None when one is missing."""
  if a is None or b is None:
    return None
  if a == b:
    return "tie"
  return a > b if higher_is_better(metric) else a < b


def _yes_no(value):
  return {True: "yes", False: "no", None: "n/a", "tie": "tie"}[value]


def _within_noise(cell_a, cell_b):
  """Whether two (mean, std, count) cells differ by less than a std."""
  (mean_a, std_a, count_a), (mean_b, std_b, count_b) = cell_a, cell_b
  if None in (mean_a, mean_b) or min(count_a, count_b) < 2:
    return None
  return abs(mean_a - mean_b) <= max(std_a, std_b)


def ordering_facts(plan):
  """Lines of computed orderings (ours, the paper's, whether they agree)."""
  lines = []
  columns1 = table1_columns(plan)
  rows = list(TABLE_ROWS) + [PRETEXT_ROW]
  cells1 = table_cells(plan, columns1, rows)

  def fact(label, row, a, b, cells, paper):
    metric = row[1]
    ours = _better(cells[(row, a)][0], cells[(row, b)][0], metric)
    theirs = _better(paper.get(row, {}).get(a), paper.get(row, {}).get(b),
                     metric)
    agree = "" if theirs is None or ours is None else (
        "; agrees with the paper" if ours == theirs
        else "; DISAGREES with the paper")
    noise = ("; the gap is within one std" if _within_noise(
        cells[(row, a)], cells[(row, b)]) else "")
    lines.append(
        f"- {label} on {ROW_LABELS[row]}: {_yes_no(ours)} "
        f"({_fmt(cells[(row, a)][0], metric)} vs "
        f"{_fmt(cells[(row, b)][0], metric)}{noise}; paper: "
        f"{_yes_no(theirs)}{agree})")

  # The rows the paper reports (pitch accuracy is in the tables only).
  paper_rows = [row for row in TABLE_ROWS if row != ("pitch", "accuracy")
                and row[0] in plan.scale.tasks]
  lines.append("### Table I")
  for row in paper_rows:
    for objective in ("soft_rank", "perturbed_fy", "mse"):
      fact(f"{objective} > classification", row, objective,
           "classification", cells1, PAPER_TABLE1)
    for objective in TABLE1_OBJECTIVES:
      fact(f"{objective} > random", row, objective, "random", cells1,
           PAPER_TABLE1)
    for objective in TABLE1_OBJECTIVES:
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

  lines.append("")
  lines.append("### Table II")
  cells2 = table_cells(plan, plan_table2_evals(plan), TABLE_ROWS)
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
    for patching in PATCHINGS:
      fact(f"{patching}: pretrained > the same CFN untrained", row,
           ("pretrained", patching), ("random", patching), both, {})

  lines.append("")
  lines.append("### Fig. 3 (the paper: perturbed_fy far above classification "
               "for 4 to 12 bands; better up to 9-10 bands)")
  sweep = plan.scale.num_patches_sweep
  for row in paper_rows:
    task, metric = row
    means = {key: _mean_std(cell_values(plan, names, task, metric,
                                        plan.scale.num_labeled))[0]
             for key, names in plan.fig3.items()}
    wins = [_yes_no(_better(means[("perturbed_fy", n)],
                            means[("classification", n)], metric))
            for n in sweep]
    lines.append(f"- perturbed_fy > classification on {ROW_LABELS[row]} at "
                 f"n = {', '.join(str(n) for n in sweep)}: "
                 f"{', '.join(wins)}")
    for objective in FIG3_OBJECTIVES:
      known = [(means[(objective, n)], n) for n in sweep
               if means[(objective, n)] is not None]
      if not known:
        continue
      best_n = (max(known) if higher_is_better(metric) else min(known))[1]
      lines.append(f"- best n for {objective} on {ROW_LABELS[row]}: {best_n}")
    if min(sweep) != plan.scale.num_patches:
      for objective in FIG3_OBJECTIVES:
        lines.append(
            f"- {objective}: n = {plan.scale.num_patches} better than "
            f"n = {min(sweep)} on {ROW_LABELS[row]}: " + _yes_no(_better(
                means[(objective, plan.scale.num_patches)],
                means[(objective, min(sweep))], metric)))

  lines.append("")
  lines.append("### Fig. 2")
  regimes = fig2_regimes(plan)
  for row in paper_rows:
    task, metric = row
    curves = fig2_curves(plan, task, metric)
    for other in ("supervised", "random"):
      wins = [_yes_no(_better(curves["pretrained"][i][0], curves[other][i][0],
                              metric)) for i in range(len(regimes))]
      lines.append(
          f"- pretrained ({plan.table2_objective}) > "
          f"{COLUMN_LABELS[other].lower()} on {ROW_LABELS[row]} at "
          f"{', '.join(str(n) for n in regimes)} labels: {', '.join(wins)}")
  return lines


def best_objective(plan, cells):
  """The Table I objective with the best mean rank over the paper's
  downstream rows (ties in rank go to the earlier objective of
  TABLE1_OBJECTIVES); None until every cell is filled."""
  ranks = {objective: [] for objective in TABLE1_OBJECTIVES}
  for row in TABLE_ROWS:
    if row[0] not in plan.scale.tasks or row == ("pitch", "accuracy"):
      continue
    means = {o: cells[(row, o)][0] for o in TABLE1_OBJECTIVES}
    if any(v is None for v in means.values()):
      return None
    order = sorted(means, key=means.get, reverse=higher_is_better(row[1]))
    for position, objective in enumerate(order):
      ranks[objective].append(position)
  if not any(ranks.values()):
    return None
  return min(TABLE1_OBJECTIVES, key=lambda o: (np.mean(ranks[o]),
                                               TABLE1_OBJECTIVES.index(o)))


def plan_table2_evals(plan):
  return dict(plan.table2)


def fig2_regimes(plan):
  return sorted(set(plan.scale.fig2_num_labeled) | {plan.scale.num_labeled})


def fig2_curves(plan, task, metric):
  """{"pretrained"|"supervised"|"random": [(mean, std, count) per regime]}."""
  random_names = [n for n in plan.table1_random
                  if plan.evals[n].num_labeled == tuple(fig2_regimes(plan))]
  groups = {"pretrained": plan.fig2_pretrained,
            "supervised": [n for n in ("supervised", "supervised_fig2")
                           if n in plan.evals],
            "random": random_names}
  curves = {}
  for label, names in groups.items():
    curve = []
    for num in fig2_regimes(plan):
      values = cell_values(plan, names, task, metric, num)
      mean, std = _mean_std(values)
      curve.append((mean, std, len(values)))
    curves[label] = curve
  return curves


def _plot(path, title, xlabel, metric, xs, curves, log_x=False):
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


def write_report(plan, report_path):
  """Writes the markdown report and its PNG plots from what is on disk.

  Returns:
    The report's path.
  """
  scale = plan.scale
  report_dir = os.path.dirname(os.path.abspath(report_path))
  os.makedirs(report_dir, exist_ok=True)
  invocations = []
  path = os.path.join(plan.out_dir, "invocations.jsonl")
  if os.path.exists(path):
    with open(path) as f:
      invocations = [json.loads(line) for line in f if line.strip()]
  dataset = _read_json(os.path.join(plan.data_dir, "render_summary.json"))
  lines = [f"# Results: the permutation study at scale `{scale.name}`", "",
           f"Generated by `python -m audio_perm.experiments` on "
           f"{datetime.date.today().isoformat()}. Scale: {scale.summary}. "
           "Every cell is the mean ± sample standard deviation over all "
           "pretraining seeds x evaluation seeds of that setting (count in "
           "the run list below); the paper's numbers are on NSynth, ours on "
           "notes rendered from a General MIDI soundfont, so only orderings "
           "compare, not values.", ""]

  lines += ["## Setting", ""]
  lines.append(f"- data: `{plan.data_dir}`" + (
      f" ({_dataset_line(dataset)})" if dataset else ""))
  lines.append(f"- pretraining: CFN width {scale.width:g}, embedding "
               f"{scale.embedding_dim}, {scale.normalization} normalisation, "
               f"{scale.num_patches} patches, "
               f"{scale.optimizer} at lr {scale.learning_rate:g}, batch "
               f"{scale.batch_size}, {scale.train_steps:,} steps; fixed "
               f"permutation sets of K = min({scale.num_permutations}, n!); "
               f"Table II / Fig. 2 objective: {plan.table2_objective} (fixed "
               "before the run; the paper's best)")
  lines.append(f"- evaluation: frozen encoders, MLP probe "
               f"({scale.hidden_units} hidden units, at most "
               f"{scale.max_epochs} epochs, patience {scale.patience}), "
               f"{scale.num_labeled} labelled notes of the train split, "
               f"scored on the test split, {scale.eval_seeds} evaluation "
               f"seed(s); no pretraining = the same CFN trained from scratch "
               f"on the labelled notes ({scale.supervised_steps} steps of "
               f"batch {scale.supervised_batch_size})")
  reduced = reductions(scale)
  if reduced:
    lines.append("- reduced against the paper's setting (`--scale=paper`): "
                 + "; ".join(reduced))
  lines.append("")

  # Table I.
  columns1 = table1_columns(plan)
  rows = list(TABLE_ROWS) + [PRETEXT_ROW]
  cells1 = table_cells(plan, columns1, rows)
  lines += ["## Table I: objectives (10 frequency bands)".replace(
      "10", str(scale.num_patches)), ""]
  lines += _table(plan, columns1, rows, cells1, PAPER_TABLE1)
  lines += ["## Table II: patch shapes "
            f"({plan.table2_objective}, {scale.num_patches} patches)", ""]
  columns2 = plan_table2_evals(plan)
  cells2 = table_cells(plan, columns2, list(TABLE_ROWS) + [PRETEXT_ROW])
  lines += _table(plan, columns2, list(TABLE_ROWS) + [PRETEXT_ROW], cells2,
                  PAPER_TABLE2)
  lines += ["The same CFNs untrained (random encoder per patch shape; "
            "frequency's is Table I's; ours only): what each patch shape "
            "gives before any pretraining.", ""]
  cells2_random = table_cells(plan, plan.table2_random, TABLE_ROWS)
  lines += _table(plan, plan.table2_random, list(TABLE_ROWS), cells2_random,
                  {})

  # Fig. 3.
  lines += ["## Fig. 3: number of frequency bands", ""]
  sweep = scale.num_patches_sweep
  header = "| task | metric | objective | " + " | ".join(
      f"n = {n}" for n in sweep) + " |"
  lines += [header, "|---|---|---|" + "---:|" * len(sweep)]
  for row in TABLE_ROWS:
    if row[0] not in scale.tasks:
      continue
    curves = {}
    for objective in FIG3_OBJECTIVES:
      points = [_mean_std(cell_values(plan, plan.fig3[(objective, n)], row[0],
                                      row[1], scale.num_labeled))
                for n in sweep]
      curves[COLUMN_LABELS[objective]] = points
      lines.append(f"| {row[0]} | {row[1]} | {objective} | " + " | ".join(
          _fmt(m, row[1], s) for m, s in points) + " |")
    filename = f"fig3_{row[0]}_{row[1]}.png"
    _plot(os.path.join(report_dir, filename),
          f"Fig. 3: {row[0]} ({row[1]})", "frequency bands (n)", row[1],
          sweep, curves)
  lines.append("")
  for row in TABLE_ROWS:
    if row[0] in scale.tasks:
      lines.append(f"![Fig. 3 {row[0]} {row[1]}](fig3_{row[0]}_{row[1]}.png)")
  lines.append("")

  # Fig. 2.
  regimes = fig2_regimes(plan)
  lines += ["## Fig. 2: labelled notes", ""]
  lines += ["| task | metric | encoder | " + " | ".join(
      str(n) for n in regimes) + " |", "|---|---|---|" + "---:|" * len(
          regimes)]
  for row in TABLE_ROWS:
    if row[0] not in scale.tasks:
      continue
    curves = fig2_curves(plan, row[0], row[1])
    named = {}
    for label, points in curves.items():
      name = (f"pretrained ({plan.table2_objective})" if label == "pretrained"
              else COLUMN_LABELS[label].lower())
      named[name] = points
      lines.append(f"| {row[0]} | {row[1]} | {name} | " + " | ".join(
          _fmt(m, row[1], s) for m, s, _ in points) + " |")
    filename = f"fig2_{row[0]}_{row[1]}.png"
    _plot(os.path.join(report_dir, filename), f"Fig. 2: {row[0]} ({row[1]})",
          "labelled notes", row[1], regimes, named, log_x=True)
  lines.append("")
  for row in TABLE_ROWS:
    if row[0] in scale.tasks:
      lines.append(f"![Fig. 2 {row[0]} {row[1]}](fig2_{row[0]}_{row[1]}.png)")
  lines.append("")

  lines += ["## Orderings (computed from the numbers above)", ""]
  lines += ordering_facts(plan)
  lines += ["", "## Discussion", ""]
  discussion = discussion_path(report_path)
  if os.path.exists(discussion):
    with open(discussion) as f:
      lines += [f.read().strip(), ""]
  else:
    lines += [f"_To be written by a person after the run, from the orderings "
              f"above, in {os.path.basename(discussion)} beside this report "
              f"(every rewrite of the report includes it)._", ""]

  # Every run and evaluation.
  lines += ["## Every run", "",
            "| run | objective | patching | n | seed | steps | train s | "
            "last train loss | valid partial-ranks acc. (chance) | "
            + " | ".join(f"{t} {m}" for t, m in TABLE_ROWS
                         if t in scale.tasks) + " |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|" + "---:|" * sum(
                1 for t, _ in TABLE_ROWS if t in scale.tasks)]
  for name, run in plan.runs.items():
    summary = _read_json(os.path.join(plan.run_dir(name), SUMMARY_FILENAME))
    summary = summary or {}
    last = summary.get("last_logged") or {}
    metrics = []
    for task, metric in TABLE_ROWS:
      if task not in scale.tasks:
        continue
      mean, std = _mean_std(cell_values(plan, [name], task, metric,
                                        scale.num_labeled))
      metrics.append(_fmt(mean, metric, std))
    lines.append(
        f"| {name} | {run.objective} | {run.patching} | {run.num_patches} | "
        f"{run.seed} | {summary.get('step', '—')} | "
        f"{_fmt_number(summary.get('seconds'))} | "
        f"{_fmt(last.get('loss'), 'mse')} | "
        f"{_fmt(summary.get('valid_partial_ranks_accuracy'))} "
        f"({1 / run.num_patches:.3f}) | " + " | ".join(metrics) + " |")
  lines += ["", "Every evaluation (values per evaluation seed):", "",
            "| evaluation | task | metric | labels | mean ± std | values | "
            "eval s |", "|---|---|---|---:|---:|---|---:|"]
  for name in plan.evals:
    stored = _read_json(plan.eval_path(name))
    if not stored:
      lines.append(f"| {name} | (not run yet) | | | | | |")
      continue
    for r in stored["results"]:
      values = ", ".join(_fmt(v, r["metric"]) for v in r["values"])
      lines.append(
          f"| {name} | {r['task']} | {r['metric']} | {r['num_labeled']} | "
          f"{_fmt(r['mean'], r['metric'], r['std'])} | {values} | "
          f"{_fmt_number(stored.get('seconds'))} |")
  lines.append("")

  # Commands, machine, time.
  lines += ["## Commands, machine, time", ""]
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
  train_seconds = sum(
      (_read_json(os.path.join(plan.run_dir(n), SUMMARY_FILENAME)) or {}).get(
          "seconds") or 0.0 for n in plan.runs)
  eval_seconds = sum((_read_json(plan.eval_path(n)) or {}).get("seconds")
                     or 0.0 for n in plan.evals)
  lines.append(
      f"- wall time: {_fmt_duration(wall)} over {len(invocations)} "
      f"invocation(s) (pretraining {_fmt_duration(train_seconds)}, "
      f"evaluations {_fmt_duration(eval_seconds)}, the rest data and "
      "report)" + (f"; estimated beforehand: "
                   f"{_fmt_duration(invocations[0]['estimate_seconds'])}"
                   if invocations and invocations[0].get("estimate_seconds")
                   else ""))
  lines.append(f"- runs: {len(plan.runs)} pretraining runs, "
               f"{len(plan.evals)} evaluations; outputs under "
               f"`{plan.out_dir}` (runs/, evals/)")
  lines.append("")
  with open(report_path, "w") as f:
    f.write("\n".join(lines))
  return report_path


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


def _table(plan, columns, rows, cells, paper):
  """Markdown rows: ours, then the paper's (NSynth) under each metric."""
  names = list(columns)
  lines = ["| metric | " + " | ".join(COLUMN_LABELS[c] for c in names)
           + " |", "|---|" + "---:|" * len(names)]
  for row in rows:
    metric = row[1]
    evaluated = row == PRETEXT_ROW or row[0] in plan.scale.tasks
    if evaluated:
      ours = [_fmt(cells[(row, c)][0], metric, cells[(row, c)][1])
              for c in names]
    else:
      ours = ["not evaluated at this scale"] + [""] * (len(names) - 1)
    lines.append(f"| {ROW_LABELS[row]} | " + " | ".join(ours) + " |")
    if row in paper:
      theirs = [_fmt(paper[row].get(c), metric) if c in paper[row] else ""
                for c in names]
      lines.append(f"| &nbsp;&nbsp;paper (NSynth) | " + " | ".join(theirs)
                   + " |")
  lines.append("")
  return lines


# ------------------------------------------------------------------- main


def main(argv=None):
  """Command line: python -m audio_perm.experiments --scale=... --out=..."""
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top

  flags.DEFINE_enum("scale", None, SCALE_NAMES, "Size of the study.")
  flags.DEFINE_string("out", None, "Output folder (runs/, evals/, report).")
  flags.DEFINE_string("data_dir", None,
                      "Folder dataset; default: rendered for the scale "
                      "(see the module docstring).")
  flags.DEFINE_string("report", None,
                      "Markdown report path (default OUT/results.md); the "
                      "PNG plots go beside it.")
  flags.DEFINE_enum("table2_objective", "perturbed_fy", TABLE1_OBJECTIVES,
                    "Objective of Table II and Fig. 2's pretrained encoder.")
  flags.DEFINE_bool("report_only", False,
                    "Only rewrite the report from what is in --out.")
  flags.DEFINE_bool("dry_run", False,
                    "Print the plan and the time estimate; run nothing.")
  flags.DEFINE_bool("progress", True, "Show progress bars.")
  flags.mark_flags_as_required(["scale", "out"])
  flags_ = flags.FLAGS

  def _main(args):
    if len(args) > 1:
      raise app.UsageError(f"Unexpected arguments: {' '.join(args[1:])}")
    if not flags_["verbosity"].present:
      # Each run and probe builds fresh tf.functions by design, which makes
      # TensorFlow warn about retracing once per run; errors still show.
      logging.set_verbosity(logging.ERROR)
    try:
      run_experiments(flags_.scale, flags_.out, data_dir=flags_.data_dir,
                      report_path=flags_.report,
                      table2_objective=flags_.table2_objective,
                      report_only=flags_.report_only,
                      dry_run=flags_.dry_run, progress=flags_.progress,
                      log=lambda message: print(message, flush=True))
    except ValueError as error:
      print(f"audio_perm.experiments: error: {error}", file=sys.stderr)
      sys.exit(2)

  app.run(_main, argv)


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  main()
