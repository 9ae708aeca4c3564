"""The paper's study (Carr et al., IEEE SPL 2021), end to end.

  python -m audio_perm.study --scale=smoke|cpu|paper --out=DIR

  scales     Scale (run/probe/baseline configs + the study's own sizes), SCALES
  plan       the de-duplicated grid of runs and evaluations; what is done;
             the time estimate
  execution  the data, each run and evaluation, run_experiments
  tables     table cells, Fig. 2 curves, the computed orderings
  report     the markdown report and its plots
  cli        the absl command line (__main__ runs it)
"""

import os

# `python -m audio_perm.study` imports this package, and TensorFlow with it,
# before __main__.py runs: quiet TensorFlow's C++ start-up lines here (an
# explicit TF_CPP_MIN_LOG_LEVEL wins).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# pylint: disable=g-import-not-at-top,wrong-import-position

from audio_perm.study.cli import main
from audio_perm.study.execution import canonical_command
from audio_perm.study.execution import default_data_dir
from audio_perm.study.execution import execute_eval
from audio_perm.study.execution import execute_run
from audio_perm.study.execution import prepare_data
from audio_perm.study.execution import run_experiments
from audio_perm.study.plan import EvalSpec
from audio_perm.study.plan import FIG3_OBJECTIVES
from audio_perm.study.plan import PATCHINGS
from audio_perm.study.plan import Plan
from audio_perm.study.plan import RunSpec
from audio_perm.study.plan import TABLE1_OBJECTIVES
from audio_perm.study.plan import estimate_seconds
from audio_perm.study.plan import eval_is_done
from audio_perm.study.plan import make_plan
from audio_perm.study.plan import run_is_done
from audio_perm.study.plan import run_name
from audio_perm.study.report import write_report
from audio_perm.study.scales import SCALE_NAMES
from audio_perm.study.scales import SCALES
from audio_perm.study.scales import Scale
from audio_perm.study.scales import reductions
from audio_perm.study.tables import COLUMN_LABELS
from audio_perm.study.tables import ROW_LABELS
from audio_perm.study.tables import TABLE_ROWS
