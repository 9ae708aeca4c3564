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
