"""Alias of audio_perm.study, kept so that old commands and imports work.

  python -m audio_perm.experiments ...  ==  python -m audio_perm.study ...
"""

import os

from audio_perm.study import COLUMN_LABELS
from audio_perm.study import EvalSpec
from audio_perm.study import FIG3_OBJECTIVES
from audio_perm.study import PATCHINGS
from audio_perm.study import Plan
from audio_perm.study import ROW_LABELS
from audio_perm.study import RunSpec
from audio_perm.study import SCALE_NAMES
from audio_perm.study import SCALES
from audio_perm.study import Scale
from audio_perm.study import TABLE1_OBJECTIVES
from audio_perm.study import TABLE_ROWS
from audio_perm.study import canonical_command
from audio_perm.study import default_data_dir
from audio_perm.study import estimate_seconds
from audio_perm.study import eval_is_done
from audio_perm.study import execute_eval
from audio_perm.study import execute_run
from audio_perm.study import main
from audio_perm.study import make_plan
from audio_perm.study import prepare_data
from audio_perm.study import reductions
from audio_perm.study import run_experiments
from audio_perm.study import run_is_done
from audio_perm.study import run_name
from audio_perm.study import write_report

__all__ = [
    "COLUMN_LABELS", "EvalSpec", "FIG3_OBJECTIVES", "PATCHINGS", "Plan",
    "ROW_LABELS", "RunSpec", "SCALES", "SCALE_NAMES", "Scale",
    "TABLE1_OBJECTIVES", "TABLE_ROWS", "canonical_command",
    "default_data_dir", "estimate_seconds", "eval_is_done", "execute_eval",
    "execute_run", "main", "make_plan", "prepare_data", "reductions",
    "run_experiments", "run_is_done", "run_name", "write_report",
]

if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  main()
