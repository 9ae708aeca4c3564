"""python -m audio_perm.study --scale=... --out=... (see cli.py)."""

import os

from audio_perm.study import cli

if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  cli.main()
