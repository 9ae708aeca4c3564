"""python -m audio_perm.study --scale=... --out=... (see cli.py)."""

from audio_perm.study import cli

if __name__ == "__main__":
  cli.main()  # TF_CPP_MIN_LOG_LEVEL: set in the package's __init__.
