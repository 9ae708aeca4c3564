"""Running the study: its data, each run and evaluation, `run_experiments`.

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
  results.md + PNGs  the report (audio_perm.study.report).

The same command again skips what is done (audio_perm.study.plan); an
interrupted run resumes from its last checkpoint (training.train). The report
is rewritten at the end of every invocation from what is on disk.

Data: --data_dir (a folder dataset made by `python -m data_prep.render`), or
by default the harness renders one into ~/.cache/audio_perm/ (outside --out,
since it weighs 256 kB per note): FluidR3_GM from Debian's fluid-soundfont-gm
when /usr/share/sounds/sf2/FluidR3_GM.sf2 exists, else TimGM6mb (shipped with
pretty_midi), `max_notes` of the scale. The valid split gives the pretext
accuracy, the train split the labelled subsets, the test split the scores.
"""

import dataclasses
import datetime
import gc
import json
import os
import time

import numpy as np

from audio_perm.study import plan as plan_lib
from audio_perm.study import report as report_lib
from audio_perm.study import scales as scales_lib
from audio_perm.study import tables

FLUID_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
COMMAND = "python -m audio_perm.study"


# ------------------------------------------------------------------- data


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
    from audio_perm import data  # pylint: disable=g-import-not-at-top
    data.check_folder_dataset(
        data_dir, otherwise="omit --data_dir to let the harness render one")
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


def check_data_size(plan):
  """ValueError before any training when the train split is too small for
  the largest label count (the evaluation would refuse it only after the
  runs)."""
  from audio_perm import evaluation  # pylint: disable=g-import-not-at-top
  builder = evaluation.open_dataset(dataset_dir=plan.data_dir)
  needed = max(plan_lib.fig2_regimes(plan))
  available = evaluation.split_size(builder, "train")
  evaluation.split_size(builder, "test")
  if available < needed:
    raise ValueError(
        f"data_dir={plan.data_dir!r} has {available} train notes; scale "
        f"{plan.scale.name!r} draws up to {needed} labelled notes from it. "
        "Render more notes (python -m data_prep.render --max_notes=N) or "
        "omit --data_dir to let the harness render the scale's data.")


# ------------------------------------------------------- runs and evals


def _pretext_accuracy(trainer, config):
  """Partial-ranks accuracy of a trained model on the valid split.

  Deterministic: the same notes and permutations for every run of an
  (n, patching, objective) setting. None when the valid split holds less
  than one batch.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from audio_perm import data  # pylint: disable=g-import-not-at-top
  target = ("classification" if config.objective.name == "classification"
            else "ranks")
  frontend = config.frontend
  dataset = data.pretext_dataset(
      data_dir=config.data_dir, split="valid", batch_size=config.batch_size,
      patching=frontend.patching, num_patches=frontend.num_patches,
      grid=frontend.grid, crop_frames=frontend.crop_frames,
      patch_gap=frontend.patch_gap,
      frequency_scale=frontend.frequency_scale, target=target,
      permutation_set=trainer.objective.permutation_set, shuffle=False,
      deterministic=True, seed=0, repeat=False)
  objective = trainer.objective

  @tf.function
  def accuracy(patches, target):
    return objective.accuracy(trainer.scores(patches), target)

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
  previous = plan.summary(name) or {}
  # verbose (the progress bar) is a runtime field: flags.json ignores it.
  result = training.train(run.config.replace(verbose=progress), strategy,
                          log=lambda message: log(f"  {message}"))
  accuracy, count = _pretext_accuracy(result["trainer"], run.config)
  seconds = time.perf_counter() - start
  history = result["history"]
  summary = {
      "name": name,
      "step": int(result["step"]),
      "objective": run.objective, "patching": run.patching,
      "num_patches": run.num_patches, "seed": run.seed,
      "num_permutations": (run.config.objective.num_permutations
                           if run.objective == "classification" else None),
      "seconds": seconds + (previous.get("seconds") or 0.0),
      "last_logged": history[-1] if history else previous.get("last_logged"),
      "valid_partial_ranks_accuracy": accuracy,
      "valid_examples": count,
      "chance_partial_ranks_accuracy": 1.0 / run.num_patches,
  }
  plan_lib.write_json(
      os.path.join(plan.run_dir(name), plan_lib.SUMMARY_FILENAME), summary)
  return summary


def execute_eval(plan, name, progress=False):
  """Runs one evaluation and writes evals/<name>.json."""
  from audio_perm import evaluation  # pylint: disable=g-import-not-at-top
  spec = plan.evals[name]
  scale = plan.scale
  encoder = (os.path.join(plan.run_dir(spec.run), "encoder")
             if spec.encoder == "run" else spec.encoder)
  # Baselines take Table I's CFN, or the run they stand beside (Table II).
  architecture = plan.runs[spec.run if spec.run else
                           plan.table1["perturbed_fy"][0]].config
  config = evaluation.EvalConfig(
      encoders=(encoder,), dataset_dir=plan.data_dir, tasks=scale.tasks,
      num_labeled=spec.num_labeled, seeds=spec.seeds, probe=scale.probe,
      architecture=(architecture.encoder
                    if spec.encoder in ("random", "supervised") else None),
      encoder_seed=spec.encoder_seed, supervised=scale.supervised,
      progress=progress)
  start = time.perf_counter()
  report = evaluation.evaluate(config)
  report["experiment_spec"] = spec.spec(scale)
  report["seconds"] = time.perf_counter() - start
  plan_lib.write_json(plan.eval_path(name), report)
  return report


def _schedule(plan):
  """(kind, name) in execution order: each run then its evaluation; cheap
  baselines first, the no-pretraining baseline after Table I."""
  order = [("eval", name) for name, spec in plan.evals.items()
           if spec.encoder in ("random", "handcrafted")]
  table1_runs = [n for names in plan.table1.values() for n in names]
  table1_runs.sort(key=lambda n: (plan.runs[n].seed,
                                  plan_lib.TABLE1_OBJECTIVES.index(
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


def _strategy():
  """One strategy for every run: "auto" (mirrored over several GPUs)."""
  from audio_perm import distribute  # pylint: disable=g-import-not-at-top
  return distribute.get_strategy("auto")


def _execute(plan, result, progress, log):
  """Trains and evaluates what is not done yet, in schedule order."""
  strategy = None
  for kind, name in _schedule(plan):
    if kind == "train":
      if plan_lib.run_is_done(plan, name):
        result["skipped"].append(f"train {name}")
        continue
      if strategy is None:
        strategy = _strategy()
      log(f"[train] {name}")
      tick = time.perf_counter()
      summary = execute_run(plan, name, strategy, log=log, progress=progress)
      log(f"[train] {name}: step {summary['step']}, valid partial-ranks "
          f"accuracy {tables.fmt(summary['valid_partial_ranks_accuracy'])}, "
          f"{time.perf_counter() - tick:.1f} s")
    else:
      if plan_lib.eval_is_done(plan, name):
        result["skipped"].append(f"eval {name}")
        continue
      log(f"[eval] {name}")
      tick = time.perf_counter()
      execute_eval(plan, name, progress=progress)
      log(f"[eval] {name}: {time.perf_counter() - tick:.1f} s")
    result["executed"].append(f"{kind} {name}")
    gc.collect()


# ------------------------------------------------------------------ study


def canonical_command(scale_name, out_dir, data_dir, report_path,
                      table2_objective, deterministic=None):
  """The command line that reproduces this invocation."""
  parts = [COMMAND, f"--scale={scale_name}", f"--out={out_dir}"]
  if data_dir:
    parts.append(f"--data_dir={os.path.abspath(data_dir)}")
  if report_path != os.path.join(out_dir, "results.md"):
    parts.append(f"--report={report_path}")
  if table2_objective != "perturbed_fy":
    parts.append(f"--table2_objective={table2_objective}")
  if deterministic is not None:
    parts.append("--deterministic" if deterministic else "--nodeterministic")
  return " ".join(parts)


def _log_estimate(plan, log):
  """Logs the plan's size and the estimated time; returns the estimate."""
  scale, fmt_duration = plan.scale, plan_lib.fmt_duration
  estimate, counts = plan_lib.estimate_seconds(plan)
  total, total_counts = plan_lib.estimate_seconds(plan, only_pending=False)
  log(f"Scale {scale.name}: {len(plan.runs)} pretraining runs "
      f"({total_counts['steps']:,} steps), {len(plan.evals)} evaluations; "
      f"pending: {counts['runs']} runs ({counts['steps']:,} steps), "
      f"{counts['evals']} frozen-encoder evaluations ({counts['probes']} "
      f"probes), {counts['supervised_models']} no-pretraining models "
      f"({counts['supervised_steps']:,} steps).")
  if estimate is None:
    log("Estimated time: unknown for this scale (no measured step time); "
        f"{counts['steps']:,} pretraining steps of batch "
        f"{scale.train.batch_size} at width {scale.train.encoder.width:g} "
        "to go.")
  else:
    log(f"Estimated time: {fmt_duration(estimate)} (of "
        f"{fmt_duration(total)} for the whole study on the machine the "
        "scale was measured on: 2 shared CPU cores).")
  return estimate


def run_experiments(scale_name, out_dir, data_dir=None, report_path=None,
                    table2_objective="perturbed_fy", report_only=False,
                    dry_run=False, progress=False, deterministic=None,
                    log=print):
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
    deterministic: bit-reproducible runs (TrainConfig.deterministic); None:
      the scale's setting (on for smoke and cpu).
    log: function for one-line messages.

  Returns:
    dict: executed (list of "train NAME" / "eval NAME"), skipped (list),
    report (path or None), estimate_seconds, wall_seconds.
  """
  if scale_name not in scales_lib.SCALES:
    raise ValueError(f"scale must be one of {scales_lib.SCALE_NAMES}, got "
                     f"{scale_name!r}.")
  scale = scales_lib.SCALES[scale_name]
  if deterministic is not None:
    scale = dataclasses.replace(
        scale, train=scale.train.replace(deterministic=bool(deterministic)))
  wall_start = time.time()
  out_dir = os.path.abspath(out_dir)
  report_path = os.path.abspath(report_path or
                                os.path.join(out_dir, "results.md"))
  command = canonical_command(scale_name, out_dir, data_dir, report_path,
                              table2_objective, deterministic)
  if not data_dir and (dry_run or report_only):
    data_dir = _default_data_dir_path(scale)
  elif not (dry_run or report_only):
    data_dir = prepare_data(scale, data_dir, log=log)
  data_dir = os.path.abspath(data_dir)
  plan = plan_lib.make_plan(scale, out_dir, data_dir, table2_objective)
  plan_lib.check_same_study(plan, out_dir, dry_run or report_only)
  if not (dry_run or report_only):
    check_data_size(plan)

  estimate = _log_estimate(plan, log)
  result = {"executed": [], "skipped": [], "report": None,
            "estimate_seconds": estimate, "wall_seconds": 0.0}
  if dry_run:
    for name in plan.runs:
      done = plan_lib.run_is_done(plan, name)
      log(f"  run  {name}: {'done' if done else 'to do'}")
    for name in plan.evals:
      done = plan_lib.eval_is_done(plan, name)
      log(f"  eval {name}: {'done' if done else 'to do'}")
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
  result["report"] = report_lib.write_report(plan, report_path)
  result["wall_seconds"] = time.time() - wall_start
  log(f"Report: {result['report']} ({len(result['executed'])} executed, "
      f"{len(result['skipped'])} already done, "
      f"{plan_lib.fmt_duration(result['wall_seconds'])}).")
  return result
