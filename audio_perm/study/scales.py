"""How big each part of the study is: `Scale` and the three `SCALES`.

  smoke  seconds to a couple of minutes: tiny model, 2 steps per run, 1 seed,
         2 tasks, tiny label counts; exercises every code path (the test).
  cpu    bounded for 2 CPU cores (<= 2.5 hours, estimate printed first).
  paper  the paper's setting, for accelerators (`config.paper_train_config()`:
         width 1.0, Adam, lr 1e-6, batch 32, 1000 epochs of NSynth's 289,205
         training notes; 3 seeds). Give it NSynth itself: --data_dir=a folder
         dataset converted from Magenta's release by `python -m
         data_prep.convert` (its default data would be every note of the
         soundfont, ~40,000 notes, 10 GB).

A scale holds the settings of its runs, probes and no-pretraining baseline as
configs of audio_perm.config (a setting has one home there); only what is the
study's own (seeds, label counts, the Fig. 3 sweep, the time estimate) is a
field of `Scale`. `reductions` says what a scale reduces against the paper's.
"""

import dataclasses
from typing import Optional, Tuple

from audio_perm import config as config_lib

SCALE_NAMES = ("smoke", "cpu", "paper")
ALL_TASKS = config_lib.TASK_NAMES


@dataclasses.dataclass(frozen=True)
class Scale:
  """How big each part of the study is.

  Attributes:
    name: one of SCALE_NAMES.
    summary: one line for the report.
    max_notes: notes rendered when the harness renders the data (None: every
      program x pitch x velocity of the soundfont).
    train: the template of every pretraining run; `plan.make_plan` sets what
      differs between runs (data and model folders, patching, num_patches,
      objective, seed, K = min(num_permutations, n!), image_every, verbose).
      Its num_patches is that of Tables I and II and Fig. 2. The encoder's
      normalization is "batch" at every scale, pinned so that the study does
      not move with the default; per-example statistics at every layer
      ("example") lost instrument information (docs/results.md).
    probe: the MLP probe of every evaluation.
    supervised: the no-pretraining baseline (trained per task head, label
      count and evaluation seed).
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
    seconds_per_step: measured pretraining step time (Table I setting) used
      by the estimate; None where unknown (accelerators).
    seconds_per_run: fixed cost of a run (build, trace, export, valid pass).
    seconds_per_embedding: one frozen encoder embedding the train notes the
      probes see and the test split.
    seconds_per_probe: one probe fit on cached embeddings.
    seconds_per_supervised_model: fixed cost of one no-pretraining model
      (trace, held-out checks, test predictions).
    seconds_per_supervised_step: one step of the no-pretraining baseline.
    num_patches_sweep: Fig. 3's values.
  """
  name: str
  summary: str
  max_notes: Optional[int]
  train: config_lib.TrainConfig
  probe: config_lib.ProbeConfig
  supervised: config_lib.SupervisedConfig
  pretrain_seeds: int
  sweep_seeds: int
  tasks: Tuple[str, ...]
  num_labeled: int
  fig2_num_labeled: Tuple[int, ...]
  eval_seeds: int
  fig2_supervised_seeds: int
  seconds_per_step: Optional[float]
  seconds_per_run: float
  seconds_per_embedding: float
  seconds_per_probe: float
  seconds_per_supervised_model: float
  seconds_per_supervised_step: float
  num_patches_sweep: Tuple[int, ...] = (4, 8, 10, 12)

  @property
  def num_patches(self):
    """Patches of Tables I and II and Fig. 2 (the template's)."""
    return self.train.frontend.num_patches

  def settings(self):
    """The scale's settings as {section: {flat name: value}}.

    Sections: train, probe and supervised (config.flatten of each config) and
    study (the Scale's own fields, the time estimate's constants aside).
    """
    study = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
             if f.name not in ("train", "probe", "supervised")
             and not f.name.startswith("seconds_per_")}
    return {"train": config_lib.flatten(self.train),
            "probe": config_lib.flatten(self.probe),
            "supervised": config_lib.flatten(self.supervised),
            "study": study}


def _train(**flat):
  """A run template: TrainConfig's defaults with flat settings replaced.

  Every scale gives the settings the study pins (encoder, optimizer, K...),
  so that the study does not move with the package defaults.
  """
  return config_lib.TrainConfig().replace(**flat)


# train.py's default recipe outside the paper (config.RECIPE_EXTRAS; docs/
# recipe_sweep.md, rounds 33-35), pinned so that the study does not move
# with the defaults: every pretraining run of the smoke and cpu scales uses
# it, whatever its patching, objective or patch count. The paper scale is
# the paper's setting and has none of it.
RECIPE = dict(gain_jitter=3.0, tilt_jitter=2.0, eq_jitter=2.0, init_decay=10.0,
              variance_penalty=5.0, covariance_penalty=1.0)

SCALES = {
    "smoke": Scale(
        name="smoke",
        summary="every code path in about a minute: a tiny CFN trained 2 "
                "steps per run, 1 seed, 2 tasks, a few labelled notes, Fig. 3 "
                "at n = 4 and 10 only",
        max_notes=120,
        train=_train(
            patching="frequency", num_patches=10, width=1 / 16,
            embedding_dim=8, normalization="batch", perturbation_samples=4,
            num_permutations=100, optimizer="adam", learning_rate=1e-3,
            batch_size=4, train_steps=2, checkpoint_every=2, log_every=1,
            deterministic=True, **RECIPE),  # Pinned: the study does not move with it.
        probe=config_lib.ProbeConfig(hidden_units=16, max_epochs=10,
                                     patience=3),
        supervised=config_lib.SupervisedConfig(steps=2, batch_size=4),
        pretrain_seeds=1, sweep_seeds=1,
        tasks=("instrument_family", "pitch"), num_labeled=24,
        fig2_num_labeled=(12, 24), eval_seeds=1, fig2_supervised_seeds=1,
        num_patches_sweep=(4, 10),
        seconds_per_step=0.1, seconds_per_run=3.0, seconds_per_embedding=1.0,
        seconds_per_probe=0.3, seconds_per_supervised_model=2.0,
        seconds_per_supervised_step=0.1),
    # Measured in the 2026-12-06 run (width 1/4 with the recipe) on the 2
    # cores this was built on, shared with other jobs for most of it (load
    # average 4-5): 200 steps in 221-313 s per run (~1.2 s per step, start-up,
    # trace and export included), 117-191 s per frozen-encoder evaluation
    # (embedding the 2,379 + 299 notes, then 12 MLP probes of ~1.4 s), and
    # 1,539 s for the 12 no-pretraining models of 80 steps (~128 s each).
    # Width 1/8 without the recipe took 0.62-0.67 s per step and ~35 s per
    # embedding.
    "cpu": Scale(
        name="cpu",
        summary="2 CPU cores in about 2 h 15 min: width 1/4 with the default "
                "recipe's extras, 200 steps of batch 16 at lr 1e-3 on the "
                "default 2,975 rendered notes, 1 pretraining seed x 3 "
                "evaluation seeds",
        max_notes=3000,
        train=_train(
            patching="frequency", num_patches=10, width=0.25,
            embedding_dim=256, normalization="batch",
            perturbation_samples=100, num_permutations=100, optimizer="adam",
            learning_rate=1e-3, batch_size=16, train_steps=200,
            checkpoint_every=50, log_every=10, deterministic=True, **RECIPE),
        probe=config_lib.ProbeConfig(hidden_units=512, max_epochs=300,
                                     patience=20),
        supervised=config_lib.SupervisedConfig(steps=80, batch_size=16),
        pretrain_seeds=1, sweep_seeds=1, tasks=ALL_TASKS, num_labeled=1000,
        fig2_num_labeled=(100, 300, 1000, 2000), eval_seeds=3,
        fig2_supervised_seeds=1,
        seconds_per_step=1.2, seconds_per_run=20.0,
        seconds_per_embedding=110.0, seconds_per_probe=1.4,
        seconds_per_supervised_model=30.0, seconds_per_supervised_step=1.2),
    "paper": Scale(
        name="paper",
        summary="the paper's setting for accelerators: width 1.0, Adam at lr "
                "1e-6, batch 32, 9,038,000 steps (1000 epochs of NSynth's "
                "289,205 training notes), 3 seeds everywhere",
        max_notes=None,
        train=config_lib.paper_train_config(),
        probe=config_lib.ProbeConfig(hidden_units=512, max_epochs=300,
                                     patience=20),
        supervised=config_lib.SupervisedConfig(steps=3000, batch_size=32),
        pretrain_seeds=3, sweep_seeds=3, tasks=ALL_TASKS, num_labeled=1000,
        fig2_num_labeled=(100, 300, 1000, 3000), eval_seeds=3,
        fig2_supervised_seeds=3,
        seconds_per_step=None, seconds_per_run=60.0,
        seconds_per_embedding=300.0, seconds_per_probe=1.4,
        seconds_per_supervised_model=60.0, seconds_per_supervised_step=0.05),
}

# (section of Scale.settings(), flat name, label) of the settings a scale may
# reduce against the paper's, in the report's order.
_REDUCIBLE = (
    ("train", "width", "backbone width multiplier"),
    ("train", "embedding_dim", "embedding size"),
    ("train", "train_steps", "pretraining steps"),
    ("train", "batch_size", "batch size"),
    ("train", "learning_rate", "learning rate"),
    ("train", "perturbation_samples", "perturbed F-Y noise draws"),
    ("study", "pretrain_seeds", "Table I pretraining seeds"),
    ("study", "sweep_seeds", "Table II / Fig. 2 / Fig. 3 pretraining seeds"),
    ("study", "eval_seeds", "evaluation seeds"),
    ("study", "fig2_supervised_seeds",
     "no-pretraining seeds at Fig. 2's other label counts"),
    ("study", "num_labeled", "labelled notes in the tables"),
    ("study", "fig2_num_labeled", "Fig. 2 label counts"),
    ("study", "num_patches_sweep", "Fig. 3 patch counts"),
    ("study", "tasks", "tasks"),
    ("probe", "hidden_units", "probe hidden units"),
    ("probe", "max_epochs", "probe epochs at most"),
    ("supervised", "steps", "no-pretraining steps per model"),
    ("supervised", "batch_size", "no-pretraining batch size"),
)


def reductions(scale):
  """Lines saying what `scale` reduces against the paper's setting."""
  ours, theirs = scale.settings(), SCALES["paper"].settings()
  lines = []
  for section, name, label in _REDUCIBLE:
    mine, paper = ours[section][name], theirs[section][name]
    if mine != paper:
      lines.append(f"{label}: {_fmt_setting(mine)} (paper scale: "
                   f"{_fmt_setting(paper)})")
  return lines


def _fmt_setting(value):
  if isinstance(value, (tuple, list)):
    return ", ".join(str(v) for v in value)
  if isinstance(value, float):
    return f"{value:g}"
  if isinstance(value, int):
    return f"{value:,}"
  return str(value)
