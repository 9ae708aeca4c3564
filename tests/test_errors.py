"""Every program ends bad input in ONE line `<program>: error: ...`, exit 2.

The battery runs each bad command line in a fresh process, all of them at
once (the start-up of TensorFlow dominates), and checks: a non-zero exit
status, no traceback, and a last stderr line that starts with
`<program>: error:` and names the culprit (flag, file or value).
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from audio_perm import cli
from data_prep import nsynth

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_FLAGS = ["--num_patches=4", "--batch_size=4", "--width=0.0625",
              "--embedding_dim=8", "--train_steps=2", "--noverbose"]

# The command line of each program, and the name its error lines start with.
PROGRAMS = {
    "train.py": [os.path.join(ROOT, "train.py")],
    "eval.py": [os.path.join(ROOT, "eval.py")],
    "audio_perm.study": ["-m", "audio_perm.study"],
    "audio_perm.diagnostics": ["-m", "audio_perm.diagnostics"],
    "data_prep.render": ["-m", "data_prep.render", "--noprogress"],
    "data_prep.convert": ["-m", "data_prep.convert", "--noprogress"],
}


def _note(i, audio):
  return {"id": f"bad-{i}", "audio": audio, "pitch": 60, "velocity": 100,
          "instrument": {"label": 0, "family": 0, "source": 0}}


def _write_nan_notes(path, num_notes=8):
  """A TFRecord of NSynth notes whose audio is all NaN."""
  audio = np.full([nsynth.NUM_SAMPLES], np.nan, np.float32)
  nsynth.write_tfrecord_atomically(
      path, [nsynth.serialize_example(_note(i, audio))
             for i in range(num_notes)])
  return path


def _write_notes_without_audio(path, num_notes=8):
  """A TFRecord of NSynth-like records that lack the `audio` feature."""
  records = []
  for i in range(num_notes):
    example = tf.train.Example()
    example.ParseFromString(nsynth.serialize_example(
        _note(i, np.zeros([nsynth.NUM_SAMPLES], np.float32))))
    del example.features.feature["audio"]
    records.append(example.SerializeToString())
  nsynth.write_tfrecord_atomically(path, records)
  return path


def _cases(tmp, data_dir):
  """(name, program, args, [substrings of the last line])."""
  nan_file = _write_nan_notes(os.path.join(tmp, "nan-train.tfrecord"))
  no_audio = _write_notes_without_audio(
      os.path.join(tmp, "noaudio-train.tfrecord"))
  not_a_run = os.path.join(tmp, "not_a_run")
  os.makedirs(not_a_run)
  not_a_dataset = os.path.join(tmp, "not_a_dataset")
  os.makedirs(not_a_dataset)

  def model_dir(name):
    return f"--model_dir={tmp}/runs/{name}"

  data = f"--data_dir={data_dir}"
  evaluate = ["--encoder=handcrafted", f"--dataset_dir={data_dir}",
              "--seeds=1", "--num_labeled=8"]
  return [
      # train.py: flags.
      ("batch_size", "train.py", ["--batch_size=abc"], ["--batch_size=abc"]),
      ("learning_rate", "train.py", ["--learning_rate=-1", model_dir("lr")],
       ["learning_rate", "-1"]),
      ("num_patches", "train.py", ["--num_patches=1", model_dir("np")],
       ["num_patches", "1"]),
      ("grid", "train.py", ["--grid=3", model_dir("grid")], ["--grid", "'3'"]),
      ("patching", "train.py", ["--patching=bands"], ["--patching=bands"]),
      ("objective", "train.py", ["--objective=x"], ["--objective=x"]),
      ("unknown_flag", "train.py", ["--learning_rat=1"], ["learning_rat"]),
      ("positional", "train.py", ["stray", model_dir("pos")], ["stray"]),
      # train.py: data and training.
      ("data_dir", "train.py", [f"--data_dir={tmp}/missing",
                                model_dir("dd")], [f"{tmp}/missing"]),
      ("train_pattern", "train.py", ["--train_pattern=/none/*",
                                     model_dir("tp")], ["/none/*"]),
      ("diverging", "train.py",
       [data, model_dir("div"), "--optimizer=sgd", "--learning_rate=1e30"]
       + TINY_FLAGS, ["Loss is", "learning_rate"]),
      ("all_nan", "train.py", [f"--train_pattern={nan_file}",
                               model_dir("nan")] + TINY_FLAGS,
       [nan_file, "non-finite"]),
      ("no_audio", "train.py", [f"--train_pattern={no_audio}",
                                model_dir("noaudio")] + TINY_FLAGS,
       [no_audio, "audio"]),
      # eval.py.
      ("encoder_path", "eval.py",
       [f"--encoder={tmp}/no/encoder", f"--dataset_dir={data_dir}"],
       [f"{tmp}/no/encoder"]),
      ("task", "eval.py", evaluate + ["--tasks=loudness"], ["'loudness'"]),
      ("num_labeled", "eval.py",
       ["--encoder=handcrafted", f"--dataset_dir={data_dir}",
        "--num_labeled=1"], ["num_labeled", "1"]),
      ("dataset_dir", "eval.py", ["--encoder=handcrafted",
                                  f"--dataset_dir={tmp}/missing"],
       [f"{tmp}/missing"]),
      ("seeds", "eval.py", ["--encoder=handcrafted", "--seeds=abc"],
       ["--seeds=abc"]),
      ("no_encoder", "eval.py", [f"--dataset_dir={data_dir}"],
       ["--encoder"]),
      # audio_perm.diagnostics.
      ("not_a_run", "audio_perm.diagnostics",
       [f"--model_dir={not_a_run}", f"--dataset_dir={data_dir}"],
       [not_a_run]),
      ("diag_tasks", "audio_perm.diagnostics",
       [f"--model_dir={not_a_run}", "--tasks=loudness"], ["'loudness'"]),
      ("diag_num_labeled", "audio_perm.diagnostics", ["--num_labeled=abc"],
       ["--num_labeled=abc"]),
      # audio_perm.study.
      ("scale", "audio_perm.study", ["--scale=huge", f"--out={tmp}/s1"],
       ["--scale=huge"]),
      ("study_data_dir", "audio_perm.study",
       ["--scale=smoke", f"--out={tmp}/s2", f"--data_dir={not_a_dataset}",
        "--noprogress"], [not_a_dataset]),
      ("study_out", "audio_perm.study", ["--scale=smoke"], ["--out"]),
      # data_prep.render.
      ("max_notes", "data_prep.render",
       [f"--output_dir={tmp}/r1", "--max_notes=0"], ["max_notes", "0"]),
      ("soundfont", "data_prep.render",
       [f"--output_dir={tmp}/r2", "--soundfont=/no/such.sf2"],
       ["/no/such.sf2"]),
      ("render_output_dir", "data_prep.render", [], ["--output_dir"]),
      # data_prep.convert.
      ("convert_input", "data_prep.convert",
       [f"--input={tmp}/none.tfrecord", f"--output_dir={tmp}/c1"],
       [f"{tmp}/none.tfrecord"]),
      ("convert_examples_per_shard", "data_prep.convert",
       [f"--input={nan_file}", f"--output_dir={tmp}/c2",
        "--examples_per_shard=many"], ["--examples_per_shard=many"]),
  ]


def _start(program, args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  env.pop(cli.DEBUG_VARIABLE, None)
  return subprocess.Popen([sys.executable] + PROGRAMS[program] + args,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=env, cwd=ROOT)


@pytest.mark.slow
def test_every_bad_input_ends_in_one_clear_line(tmp_path,
                                                rendered_dataset_dir):
  cases = _cases(str(tmp_path), rendered_dataset_dir)
  assert len(cases) >= 25
  procs = [(case, _start(case[1], case[2])) for case in cases]
  failures, last_lines = [], {}
  for (name, program, _, culprits), proc in procs:
    _, err = proc.communicate(timeout=600)
    lines = err.strip().splitlines() or [""]
    last_lines[name] = lines[-1]
    problems = []
    if proc.returncode != cli.EXIT_STATUS:
      problems.append(f"exit status {proc.returncode}")
    if "Traceback" in err:
      problems.append("a traceback")
    if not lines[-1].startswith(f"{program}: error: "):
      problems.append("no error line last")
    problems += [f"{c!r} not named" for c in culprits if c not in lines[-1]]
    if problems:
      failures.append(f"{name}: {', '.join(problems)}:\n{err[-1500:]}")
  print("\n".join(f"{k}: {v}" for k, v in last_lines.items()))
  assert not failures, "\n\n".join(failures)


@pytest.mark.slow
def test_debug_environment_variable_shows_the_traceback(tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
             **{cli.DEBUG_VARIABLE: "1"})
  proc = subprocess.run(
      [sys.executable, "-m", "data_prep.render", "--noprogress",
       f"--output_dir={tmp_path / 'out'}", "--max_notes=0"],
      capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
  assert proc.returncode != 0
  assert "Traceback" in proc.stderr and "ValueError" in proc.stderr


@pytest.mark.parametrize("error,expected", [
    (ValueError("bad --x=1."), "bad --x=1."),
    (FloatingPointError("Loss is inf at step 2; lower --learning_rate."),
     "Loss is inf at step 2; lower --learning_rate."),
    (FileNotFoundError(2, "No such file or directory", "/a/b"),
     "[Errno 2] No such file or directory: '/a/b'"),
    (PermissionError("denied"), "denied"),
    (tf.errors.NotFoundError(None, None, "/x/y; No such file\nmore"),
     "NotFoundError: /x/y; No such file"),
    (cli.Error("corrupt file /d/f"), "corrupt file /d/f"),
])
def test_error_message(error, expected):
  assert cli.error_message(error) == expected


def test_a_program_bug_is_not_an_error_line():
  assert cli.error_message(KeyError("x")) is None
  with pytest.raises(KeyError):
    cli.guard("prog", lambda: {}["x"])


def test_guard_prints_one_line_and_exits_2(capsys, monkeypatch):
  monkeypatch.delenv(cli.DEBUG_VARIABLE, raising=False)
  def bad():
    raise OSError(13, "Permission denied", "/etc/x")
  with pytest.raises(SystemExit) as exit_info:
    cli.guard("prog", bad)
  assert exit_info.value.code == 2
  assert capsys.readouterr().err == (
      "prog: error: [Errno 13] Permission denied: '/etc/x'\n")
  monkeypatch.setenv(cli.DEBUG_VARIABLE, "1")
  with pytest.raises(OSError):
    cli.guard("prog", bad)
