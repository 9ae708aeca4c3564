"""data_prep's tools run behind audio_perm.cli's error boundary (one line).

This module is the thin data_prep side of it: the program names and the
checks of positional arguments shared by render and convert.
"""

import os


def run(main, program_name):
  """audio_perm.cli.run for a data_prep tool; TensorFlow logs kept quiet."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  from audio_perm import cli  # pylint: disable=g-import-not-at-top
  cli.run(main, program_name)


def check_output_dir(output_dir):
  """ValueError for a missing --output_dir (cli.run refuses stray words)."""
  if not output_dir:
    raise ValueError("--output_dir is required.")
