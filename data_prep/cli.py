"""Command-line plumbing shared by data_prep's tools: one error line, exit 2."""

import sys


def fail(message):
  """Prints one error line on stderr and exits with status 2."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def parse_flags_or_exit(argv):
  """absl flag parsing that reports a bad flag in one line, exit status 2."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(str(e))


def check_main_args(argv, output_dir):
  """One error line for stray positional arguments or a missing --output_dir."""
  if len(argv) > 1:
    fail(f"unexpected arguments {argv[1:]}")
  if not output_dir:
    fail("--output_dir is required.")
