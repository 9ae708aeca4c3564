r"""Command line of the study (flags are read here only).

  python -m audio_perm.study --scale=smoke --out=/tmp/smoke
  python -m audio_perm.study --scale=cpu --out=runs/study_cpu \
      --report=docs/results.md
  python -m audio_perm.study --scale=paper --out=/big/disk/paper \
      --data_dir=DIR

The same command again resumes; --report_only rewrites the report without
running anything; --dry_run prints the plan and the time estimate.
"""

from audio_perm import cli
from audio_perm.study import execution
from audio_perm.study import plan as plan_lib
from audio_perm.study import scales


def main(argv=None):
  """Command line: python -m audio_perm.study --scale=... --out=..."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top

  flags.DEFINE_enum("scale", None, scales.SCALE_NAMES, "Size of the study.")
  flags.DEFINE_string("out", None, "Output folder (runs/, evals/, report).")
  flags.DEFINE_string("data_dir", None,
                      "Folder dataset; default: rendered for the scale "
                      "(see audio_perm.study.execution).")
  flags.DEFINE_string("report", None,
                      "Markdown report path (default OUT/results.md); the "
                      "PNG plots go beside it.")
  flags.DEFINE_enum("table2_objective", "perturbed_fy",
                    plan_lib.TABLE1_OBJECTIVES,
                    "Objective of Table II and Fig. 2's pretrained encoder.")
  flags.DEFINE_bool("report_only", False,
                    "Only rewrite the report from what is in --out.")
  flags.DEFINE_bool("dry_run", False,
                    "Print the plan and the time estimate; run nothing.")
  flags.DEFINE_bool("progress", True, "Show progress bars.")
  flags.DEFINE_bool("deterministic", None,
                    "Bit-reproducible runs (train.py --deterministic); "
                    "default: the scale's (on for smoke and cpu).")
  flags.mark_flags_as_required(["scale", "out"])
  flags_ = flags.FLAGS

  def _main(args):
    del args  # Stray arguments are refused by cli.run.
    if not flags_["verbosity"].present:
      # Each run and probe builds fresh tf.functions by design, which makes
      # TensorFlow warn about retracing once per run; errors still show.
      logging.set_verbosity(logging.ERROR)
    deterministic = flags_.deterministic
    if deterministic is None:
      deterministic = scales.SCALES[flags_.scale].train.deterministic
    if deterministic and not (flags_.dry_run or flags_.report_only):
      from audio_perm import training  # pylint: disable=g-import-not-at-top
      training.enable_determinism()  # Before TensorFlow runs its first op.
    execution.run_experiments(
        flags_.scale, flags_.out, data_dir=flags_.data_dir,
        report_path=flags_.report,
        table2_objective=flags_.table2_objective,
        report_only=flags_.report_only, dry_run=flags_.dry_run,
        progress=flags_.progress, deterministic=flags_.deterministic,
        log=lambda message: print(message, flush=True))

  cli.run(_main, "audio_perm.study", argv)
