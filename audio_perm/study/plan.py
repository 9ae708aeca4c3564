"""The study's grid (`make_plan`) and what of it is done (resume state).

What is run (Carr et al., IEEE SPL 2021):

  * Table I: the four pretext objectives (classification over a fixed set of
    K = 100 permutations, soft_rank, perturbed_fy, mse) on 10 frequency bands,
    `pretrain_seeds` pretraining seeds each, beside the random (untrained)
    encoder, the handcrafted spectrogram statistics (ours only) and the CFN
    trained without pretraining (`supervised`), on instrument_family,
    instrument (accuracy) and pitch (MSE; the accuracy of a pitch classifier
    is reported too), at `num_labeled` (1000) labelled notes.
  * Table II: frequency / time / time_frequency patches with the Table II
    objective. That objective is FIXED before anything runs (default
    perturbed_fy, the paper's best; --table2_objective picks another) so that
    the whole grid, its de-duplication and the time estimate are known up
    front; the report states which Table I objective did best on our data.
    Beside it, the same CFN untrained for each patch shape, so that the table
    separates what the patch shape gives from what pretraining adds.
  * Fig. 3: num_patches 4, 8, 10, 12 on frequency bands, classification vs
    perturbed_fy; with n = 4 the fixed set holds min(K, n!) = 24.
  * Fig. 2: the downstream metrics against the number of labelled notes (100,
    300, 1000, 3000) for the pretrained encoder (the Table II objective on
    10 frequency bands) against no pretraining (and the random encoder).

Runs shared between tables are one run (Table I's perturbed_fy = Table II's
frequency = Fig. 3's perturbed_fy at n = 10), and an encoder in Fig. 2 gets
one evaluation covering its Table I regime and Fig. 2's.

Resuming: a run is done when its summary.json is written and its export is
current; an evaluation when its JSON holds the same spec. study.json refuses
an --out folder holding another scale's study.
"""

import dataclasses
import json
import math
import os
from typing import Dict, List, Optional, Tuple

from audio_perm.study import scales as scales_lib

TABLE1_OBJECTIVES = ("classification", "soft_rank", "perturbed_fy", "mse")
PATCHINGS = ("frequency", "time", "time_frequency")
FIG3_OBJECTIVES = ("classification", "perturbed_fy")
SUMMARY_FILENAME = "summary.json"
STUDY_FILENAME = "study.json"


@dataclasses.dataclass
class RunSpec:
  """One pretraining run: its name (folder under runs/) and TrainConfig."""
  name: str
  config: object  # config.TrainConfig
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
    supervised = self.encoder == "supervised"
    return {"encoder": self.encoder, "run": self.run,
            "num_labeled": list(self.num_labeled), "seeds": self.seeds,
            "encoder_seed": self.encoder_seed, "tasks": list(scale.tasks),
            "hidden_units": scale.probe.hidden_units,
            "max_epochs": scale.probe.max_epochs,
            "patience": scale.probe.patience,
            "supervised_steps": (scale.supervised.steps if supervised
                                 else None),
            "supervised_batch_size": (scale.supervised.batch_size
                                      if supervised else None)}


@dataclasses.dataclass
class Plan:
  """The de-duplicated grid and which runs fill which cell."""
  scale: scales_lib.Scale
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

  def summary(self, name):
    """A run's summary.json as a dict (None when not written)."""
    return read_json(os.path.join(self.run_dir(name), SUMMARY_FILENAME))


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
  if table2_objective not in TABLE1_OBJECTIVES:
    raise ValueError(f"table2_objective must be one of {TABLE1_OBJECTIVES}, "
                     f"got {table2_objective!r}.")
  runs = {}
  template = scale.train

  def add_run(patching, n, objective, seed):
    name = run_name(patching, n, objective, seed)
    if name not in runs:
      config = template.replace(
          data_dir=data_dir, model_dir=os.path.join(out_dir, "runs", name),
          patching=patching, num_patches=n, objective=objective,
          num_permutations=min(template.objective.num_permutations,
                               math.factorial(n)),
          image_every=template.train_steps, seed=seed, verbose=False)
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
  fig2 = tuple(sorted(set(scale.fig2_num_labeled) | {scale.num_labeled}))
  evals = {}
  random_names = []
  for seed in range(scale.pretrain_seeds):
    name = f"random_s{seed}"
    evals[name] = EvalSpec(name, "random", None,
                           fig2 if seed < scale.sweep_seeds
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
    regimes = fig2 if name in fig2_pretrained else table_regime
    evals[name] = EvalSpec(name, "run", name, regimes, scale.eval_seeds)
  evals["supervised"] = EvalSpec("supervised", "supervised", None,
                                 table_regime, scale.eval_seeds)
  other_regimes = tuple(n for n in fig2 if n != scale.num_labeled)
  if other_regimes:
    evals["supervised_fig2"] = EvalSpec(
        "supervised_fig2", "supervised", None, other_regimes,
        scale.fig2_supervised_seeds)
  return Plan(scale=scale, out_dir=out_dir, data_dir=data_dir,
              table2_objective=table2_objective, runs=runs, evals=evals,
              table1=table1, table1_random=random_names, table2=table2,
              table2_random=table2_random, fig3=fig3,
              fig2_pretrained=fig2_pretrained)


def fig2_regimes(plan):
  """Fig. 2's label counts, the tables' included, ascending."""
  return sorted(set(plan.scale.fig2_num_labeled) | {plan.scale.num_labeled})


# ------------------------------------------------------------------ state


def read_json(path):
  """The JSON at path, or None when it is missing or unreadable."""
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError):
    return None


def write_json(path, values):
  """Writes JSON atomically (a killed write leaves the old file or none)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  temporary = f"{path}.tmp{os.getpid()}"
  with open(temporary, "w") as f:
    json.dump(values, f, indent=2)
    f.write("\n")
  os.replace(temporary, path)


def run_is_done(plan, name):
  """A run is done when its summary says so and its export is current."""
  run = plan.runs[name]
  summary = plan.summary(name)
  info = read_json(os.path.join(plan.run_dir(name), "encoder",
                                "export_info.json"))
  return bool(summary and info and summary.get("step", 0) >=
              run.config.train_steps and info.get("step") ==
              summary.get("step"))


def eval_is_done(plan, name):
  stored = read_json(plan.eval_path(name))
  return bool(stored and stored.get("experiment_spec") ==
              plan.evals[name].spec(plan.scale))


def check_same_study(plan, out_dir, read_only):
  """Refuses an out_dir holding another scale's study (runs would clash);
  records this one in study.json unless read_only."""
  path = os.path.join(out_dir, STUDY_FILENAME)
  stored = read_json(path)
  current = {"scale": plan.scale.name,
             "table2_objective": plan.table2_objective,
             "data_dir": plan.data_dir}
  if stored is not None and stored.get("scale") != current["scale"]:
    raise ValueError(
        f"out={out_dir!r} holds a {stored.get('scale')!r} study; use another "
        f"--out for --scale={plan.scale.name}.")
  if not read_only:
    write_json(path, current)


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
    latest = latest_step(plan.run_dir(name)) if only_pending else 0
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
  supervised_steps = scale.supervised.steps
  counts = {"runs": num_runs, "steps": steps, "evals": num_evals,
            "probes": num_probes, "supervised_models": supervised_models,
            "supervised_steps": supervised_models * supervised_steps}
  if scale.seconds_per_step is None:
    return None, counts
  seconds = (steps * scale.seconds_per_step + num_runs * scale.seconds_per_run
             + num_evals * scale.seconds_per_embedding
             + num_probes * scale.seconds_per_probe
             + supervised_models * (scale.seconds_per_supervised_model
                                    + supervised_steps
                                    * scale.seconds_per_supervised_step))
  return seconds, counts


def latest_step(model_dir):
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


def fmt_duration(seconds):
  """E.g. "1 h 05 min", "3 min 07 s", "42 s"; "unknown" for None."""
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
