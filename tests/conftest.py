"""Shared pytest fixtures.

Two logical CPU devices are configured before TensorFlow initialises its
devices so that MirroredStrategy tests can run two replicas on one CPU.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

# Before TensorFlow, as the programs do: audio_perm turns on oneDNN kernels.
import audio_perm  # noqa: E402,F401  pylint: disable=unused-import
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
  tf.config.set_logical_device_configuration(
      _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:  # Devices already initialised by another plugin.
  pass


@pytest.fixture(scope="session")
def two_replicas():
  """One MirroredStrategy over the two logical CPUs for the whole session.

  Strategies created one after the other over the same devices can reuse
  collective instance keys in one process (synchronised BatchNorm then
  all-reduces mismatched tensors), so every test shares this one.
  """
  from audio_perm import distribute  # pylint: disable=g-import-not-at-top
  return distribute.get_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])


@pytest.fixture(autouse=True)
def _op_determinism_reset():
  """Op determinism (--deterministic) is process-wide: no test leaks it."""
  yield
  from tensorflow.python.framework import config as tf_config  # pylint: disable=g-import-not-at-top,g-direct-tensorflow-import
  if tf_config.is_op_determinism_enabled():
    tf_config.disable_op_determinism()


# Notes in the shared tiny dataset: enough for every split to hold several
# programs of several families, small enough to render in a few seconds.
TINY_NUM_NOTES = 120


@pytest.fixture(scope="session")
def rendered_dataset_dir(tmp_path_factory):
  """A tiny NSynth-protocol folder dataset rendered from the default soundfont.

  Returns the directory path (str); loadable with tfds.builder_from_directory,
  splits train/valid/test.
  """
  from data_prep import render
  out = tmp_path_factory.mktemp("tiny_nsynth")
  render.render_dataset(str(out), max_notes=TINY_NUM_NOTES, seed=0)
  return str(out)


# Starting TensorFlow costs ~6 s of CPU a process. `run_forked`'s launcher
# imports what the programs start with (audio_perm, then TensorFlow, as they
# do; no op has run) and forks a child per command line. From there each child
# is the program's own process: sys.argv and sys.path[0] as `python PROGRAM
# ARGS` sets them, the program run as __main__, its own stdout and stderr, and
# the interpreter's own exit (status, traceback, atexit handlers): nothing in
# the launcher catches what the program raises. The launcher prints
# [index, exit status] as each child ends.
_LAUNCHER = r"""
import json, os, runpy, signal, sys, time
import audio_perm  # Before TensorFlow, as the programs do.
import tensorflow  # noqa: F401


def run_children(commands, max_running, timeout_s):
  waiting, running = list(enumerate(commands)), {}
  while waiting or running:
    while waiting and len(running) < max_running:
      index, command = waiting.pop(0)
      sys.stdout.flush()
      sys.stderr.flush()
      pid = os.fork()
      if pid == 0:
        return command
      running[pid] = (index, time.time())
    pid, status = os.waitpid(-1, os.WNOHANG)
    if pid:
      index, _ = running.pop(pid)
      print(json.dumps([index, os.waitstatus_to_exitcode(status)]),
            flush=True)
      continue
    for pid, (_, started) in running.items():
      if time.time() - started > timeout_s:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.05)
  return None


def run_program(command):
  for fd, path in ((1, command["stdout"]), (2, command["stderr"])):
    opened = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(opened, fd)
    os.close(opened)
  argv = command["argv"]
  if argv[0] == "-m":  # python -m MODULE ARGS
    sys.path[0] = os.getcwd()
    sys.argv = argv[1:]  # run_module puts the module's file in argv[0].
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
  else:  # python SCRIPT ARGS
    sys.path[0] = os.path.dirname(os.path.realpath(argv[0]))
    sys.argv = list(argv)
    runpy.run_path(argv[0], run_name="__main__")


command = run_children(json.load(sys.stdin), int(sys.argv[1]),
                       float(sys.argv[2]))
if command is not None:
  run_program(command)
"""


@pytest.fixture
def run_forked(tmp_path):
  """run_forked(commands, env, cwd, max_running=6, timeout_s=600).

  Runs each command (what follows `python`: [SCRIPT, ARGS...] or ["-m",
  MODULE, ARGS...]) in its own process forked from one launcher that has
  imported TensorFlow once, at most max_running at a time; a command still
  running after timeout_s is killed. Returns [(exit status, stdout, stderr)]
  in the order of the commands.
  """
  import json  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  def run(commands, env, cwd, max_running=6, timeout_s=600):
    logs = tmp_path / "forked_logs"
    logs.mkdir(exist_ok=True)
    first = len(list(logs.iterdir()))
    specs = [{"argv": list(argv),
              "stdout": str(logs / f"{first + i}.out"),
              "stderr": str(logs / f"{first + i}.err")}
             for i, argv in enumerate(commands)]
    launcher_err = logs / f"launcher-{first}.log"
    with open(launcher_err, "w") as err_file:
      launcher = subprocess.Popen(
          [sys.executable, "-c", _LAUNCHER, str(max_running),
           str(timeout_s)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
          stderr=err_file, text=True, env=env, cwd=cwd)
    out, _ = launcher.communicate(json.dumps(specs))
    assert launcher.returncode == 0, launcher_err.read_text()[-3000:]
    status = dict(json.loads(line) for line in out.splitlines())
    assert sorted(status) == list(range(len(specs))), (
        out, launcher_err.read_text()[-3000:])
    return [(status[i], open(spec["stdout"]).read(),
             open(spec["stderr"]).read()) for i, spec in enumerate(specs)]

  return run
