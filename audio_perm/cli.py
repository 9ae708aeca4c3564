"""The error boundary every program's main() runs behind: one line, exit 2.

  from audio_perm import cli
  cli.run(main, "train.py")

Bad input (ValueError, flag-parsing errors, tf.errors.OpError, OSError,
FloatingPointError, cli.Error) ends the program with ONE line on stderr,
`<program>: error: <message>`, and exit status 2, no traceback. Set
AUDIO_PERM_DEBUG=1 in the environment to get the exception (and its
traceback) instead. Nothing here imports TensorFlow.
"""

import os
import sys

EXIT_STATUS = 2
DEBUG_VARIABLE = "AUDIO_PERM_DEBUG"


class Error(Exception):
  """A message for the user, shown as is (e.g. a corrupt-file report)."""


def debugging():
  """True when AUDIO_PERM_DEBUG asks for full tracebacks."""
  return os.environ.get(DEBUG_VARIABLE, "").strip().lower() not in (
      "", "0", "false", "no")


def fail(program_name, message):
  """Prints `<program_name>: error: <message>` on stderr and exits with 2."""
  sys.stdout.flush()
  text = " ".join(str(message).split("\n")).strip() or "(no message)"
  print(f"{program_name}: error: {text}", file=sys.stderr, flush=True)
  sys.exit(EXIT_STATUS)


def _first_line(text):
  lines = [line.strip() for line in str(text).splitlines() if line.strip()]
  return lines[0] if lines else ""


def _op_error_message(error):
  """First line of a TensorFlow OpError's message, with its kind."""
  message = _first_line(error.message) or type(error).__name__
  kind = type(error).__name__
  return message if message.startswith(kind) else f"{kind}: {message}"


def _os_error_message(error):
  """str(OSError) names the path in most cases; make sure it does."""
  message = _first_line(error) or type(error).__name__
  for name in (error.filename, getattr(error, "filename2", None)):
    if name is not None and str(name) not in message:
      message = f"{message}: {name}"
  return message


def _flag_error_message(error):
  """The line of an absl flags.Error that names the flag."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  named = [line for line in lines if "--" in line or "flag" in line.lower()]
  return (named or lines or [type(error).__name__])[0]


def error_message(error):
  """One line for a user-facing exception, or None for a program bug."""
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  tf = sys.modules.get("tensorflow")  # Loaded if it raised anything.
  if isinstance(error, flags.Error):
    return _flag_error_message(error)
  if isinstance(error, app.UsageError):
    return _first_line(error)
  if tf is not None and isinstance(error, tf.errors.OpError):
    return _op_error_message(error)
  if isinstance(error, (Error, ValueError, FloatingPointError)):
    return str(error).strip()
  if isinstance(error, OSError):
    return _os_error_message(error)
  return None


def _parse_flags(argv):
  """absl flag parsing, letting flags.Error through to the boundary."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  return flags.FLAGS(argv)


def guard(program_name, function, *args, **kwargs):
  """Calls function(*args, **kwargs) behind the error boundary."""
  try:
    return function(*args, **kwargs)
  except Exception as error:  # pylint: disable=broad-except
    message = error_message(error)
    if message is None or debugging():
      raise
    fail(program_name, message)


def run(main, program_name, argv=None):
  """absl's app.run(main, argv) behind the error boundary.

  Args:
    main: the program's main(argv) (flags are parsed before it is called).
    program_name: how the program is called on the command line, e.g.
      "train.py" or "audio_perm.study"; it starts every error line.
    argv: the command line (default sys.argv).
  """
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top

  def parse(args):
    try:
      return _parse_flags(args)
    except flags.Error as error:
      if debugging():
        raise
      fail(program_name, _flag_error_message(error))

  def checked_main(args):
    # Every program takes flags only: stray words are refused here, once.
    if len(args) > 1:
      raise ValueError(f"unexpected arguments {args[1:]}; flags are "
                       "--name=value.")
    return main(args)

  app.run(lambda args: guard(program_name, checked_main, args), argv=argv,
          flags_parser=parse)
