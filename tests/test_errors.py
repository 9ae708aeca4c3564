"""Every program ends bad input in ONE line `<program>: error: ...`, exit 2.

The battery runs each bad command line in a fresh process, six at a time,
each forked from one launcher that has imported TensorFlow once (its
start-up would otherwise dominate; conftest.py's run_forked), and checks: a
non-zero exit status, no traceback, and a last stderr line that starts with
`<program>: error:` and names the culprit (flag, file or value, and for a bad
record its index).
Bad inputs: flags and values; data (missing, all non-finite, without audio,
malformed records after good ones, shards cut short, an unfinished render);
checkpoints that do not read; a diverging loss.
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

# Battery processes running at once (each holds a TensorFlow).
MAX_RUNNING = 6
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


def _good_records(num_notes):
  return [nsynth.serialize_example(_note(i, np.full(
      [nsynth.NUM_SAMPLES], 0.1, np.float32))) for i in range(num_notes)]


def _no_audio_record():
  example = tf.train.Example.FromString(_good_records(1)[0])
  del example.features.feature["audio"]
  return example.SerializeToString()


_NOT_AN_EXAMPLE = b"\x01 these bytes are no tf.Example"


def _write_with_bad_record(path, bad_record, index, num_notes=5):
  """Good NSynth notes, record `index` replaced by `bad_record`."""
  records = _good_records(num_notes)
  records[index] = bad_record
  nsynth.write_tfrecord_atomically(path, records)
  return path


def _magenta_records(num_notes):
  """Records in the schema of Magenta's released NSynth files."""
  records = []
  for i in range(num_notes):
    feature = {"audio": tf.train.Feature(float_list=tf.train.FloatList(
        value=np.full([nsynth.NUM_SAMPLES], 0.1, np.float32)))}
    for key in ("pitch", "velocity", "instrument", "instrument_family",
                "instrument_source"):
      feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(
          value=[60 if key == "pitch" else 1]))
    feature["note_str"] = tf.train.Feature(bytes_list=tf.train.BytesList(
        value=[b"note-%d" % i]))
    records.append(tf.train.Example(features=tf.train.Features(
        feature=feature)).SerializeToString())
  return records


def _cut(path, keep=0.5):
  """Cuts a file inside a record (a full disk, an interrupted copy)."""
  with open(path, "r+b") as f:
    f.truncate(int(os.path.getsize(path) * keep) + 1001)
  return path


def _dataset_copy(data_dir, out):
  """A folder dataset whose files link to data_dir's (so they can be
  replaced one by one)."""
  os.makedirs(out)
  for name in os.listdir(data_dir):
    if not name.startswith("."):
      os.symlink(os.path.join(data_dir, name), os.path.join(out, name))
  return out


def _replace_shard(data_dir, name, transform):
  """Writes transform(records of shard `name`) in place of its link."""
  path = os.path.join(data_dir, name)
  records = [r.numpy() for r in tf.data.TFRecordDataset(path)]
  os.remove(path)
  with tf.io.TFRecordWriter(path) as writer:
    for record in transform(records):
      writer.write(record)
  return path


def _unreadable_checkpoints(model_dir, with_flags=False):
  """A model_dir whose only checkpoint has a garbage index and data file."""
  os.makedirs(model_dir)
  with open(os.path.join(model_dir, "checkpoint"), "w") as f:
    f.write('model_checkpoint_path: "ckpt-2"\n'
            'all_model_checkpoint_paths: "ckpt-2"\n')
  for suffix in (".index", ".data-00000-of-00001"):
    with open(os.path.join(model_dir, "ckpt-2" + suffix), "wb") as f:
      f.write(b"\x00 not a checkpoint" * 8)
  if with_flags:
    from audio_perm import training  # pylint: disable=g-import-not-at-top
    training.check_model_dir(training.TrainConfig().replace(
        model_dir=model_dir, num_patches=4, width=0.0625, embedding_dim=8))
  return os.path.join(model_dir, "ckpt-2.index")


def _unfinished_render(out):
  """What a render killed mid-way leaves: a staging folder, no metadata."""
  os.makedirs(os.path.join(out, ".render_staging"))
  with open(os.path.join(out, ".render_staging", "manifest.json"), "w") as f:
    f.write('{"settings": {"max_notes": 120, "seed": 0}}')
  return out


def _new_fault_cases(tmp, data_dir):
  """Faults of #11's second part: checkpoints, records, shards, renders."""
  no_audio_mid = _write_with_bad_record(
      os.path.join(tmp, "mid-noaudio.tfrecord"), _no_audio_record(), 2)
  garbage_mid = _write_with_bad_record(
      os.path.join(tmp, "mid-garbage.tfrecord"), _NOT_AN_EXAMPLE, 3)
  bad_ckpt = _unreadable_checkpoints(os.path.join(tmp, "runs", "badckpt"))
  export_ckpt = _unreadable_checkpoints(os.path.join(tmp, "runs", "export"))
  diag_ckpt = _unreadable_checkpoints(os.path.join(tmp, "runs", "diagckpt"),
                                      with_flags=True)
  # A dataset with malformed records: test shard 0 record 2 lacks audio,
  # valid shard 0 record 1 is no tf.Example.
  bad = _dataset_copy(data_dir, os.path.join(tmp, "bad_records"))
  no_audio_shard = _replace_shard(
      bad, "nsynth-test.tfrecord-00000-of-00002",
      lambda r: r[:2] + [_no_audio_record()] + r[3:])
  garbage_shard = _replace_shard(
      bad, "nsynth-valid.tfrecord-00000-of-00002",
      lambda r: r[:1] + [_NOT_AN_EXAMPLE] + r[2:])
  # A dataset with cut shards: test shard 1 and valid shard 1.
  cut = _dataset_copy(data_dir, os.path.join(tmp, "cut"))
  cut_test = _cut(_replace_shard(cut, "nsynth-test.tfrecord-00001-of-00002",
                                 list))
  cut_valid = _cut(_replace_shard(
      cut, "nsynth-valid.tfrecord-00001-of-00002", list))
  unfinished = _unfinished_render(os.path.join(tmp, "unfinished"))
  magenta_cut = os.path.join(tmp, "magenta-cut.tfrecord")
  nsynth.write_tfrecord_atomically(magenta_cut, _magenta_records(4))
  _cut(magenta_cut, keep=0.6)
  magenta_garbage = os.path.join(tmp, "magenta-garbage.tfrecord")
  records = _magenta_records(4)
  records[2] = _NOT_AN_EXAMPLE
  nsynth.write_tfrecord_atomically(magenta_garbage, records)

  evaluate = ["--encoder=handcrafted", "--seeds=1", "--num_labeled=8",
              "--noprogress"]
  energy = ["--energy_rule=frequency:4", "--noprogress"]
  return [
      # Checkpoints that do not read.
      ("ckpt_unreadable", "train.py",
       [f"--data_dir={data_dir}", f"--model_dir={os.path.dirname(bad_ckpt)}"]
       + TINY_FLAGS, ["no readable checkpoint", bad_ckpt, "--model_dir"]),
      ("ckpt_export_only", "train.py",
       ["--export_only", f"--model_dir={os.path.dirname(export_ckpt)}"],
       ["no readable checkpoint", export_ckpt]),
      ("diag_ckpt_unreadable", "audio_perm.diagnostics",
       [f"--model_dir={os.path.dirname(diag_ckpt)}",
        f"--dataset_dir={data_dir}", "--noprogress"],
       [diag_ckpt, "unreadable"]),
      # Malformed records after good ones: file and record index.
      ("no_audio_mid_stream", "train.py",
       [f"--train_pattern={no_audio_mid}", f"--model_dir={tmp}/runs/nam"]
       + TINY_FLAGS, [f"record 2 of {no_audio_mid}", "audio"]),
      ("not_an_example_mid_stream", "train.py",
       [f"--train_pattern={garbage_mid}", f"--model_dir={tmp}/runs/gam"]
       + TINY_FLAGS, [f"record 3 of {garbage_mid}", "tf.Example"]),
      ("eval_no_audio_mid_stream", "eval.py",
       evaluate + [f"--dataset_dir={bad}"],
       [f"record 2 of {no_audio_shard}", "audio"]),
      ("diag_not_an_example", "audio_perm.diagnostics",
       energy + [f"--dataset_dir={bad}"],
       [f"record 1 of {garbage_shard}", "tf.Example"]),
      ("convert_not_an_example", "data_prep.convert",
       [f"--input={magenta_garbage}", f"--output_dir={tmp}/c3"],
       [magenta_garbage, "record 2"]),
      # Shards cut short: the file and its first unreadable record.
      ("eval_cut_shard", "eval.py", evaluate + [f"--dataset_dir={cut}"],
       [cut_test, "record index", "--skip_corrupt"]),
      ("diag_cut_shard", "audio_perm.diagnostics",
       energy + [f"--dataset_dir={cut}"], [cut_valid, "record index"]),
      ("convert_cut", "data_prep.convert",
       [f"--input={magenta_cut}", f"--output_dir={tmp}/c4"],
       [magenta_cut, "truncated", "record index 2"]),
      # A render killed mid-way, given to the readers.
      ("train_unfinished_render", "train.py",
       [f"--data_dir={unfinished}", f"--model_dir={tmp}/runs/ur"],
       [unfinished, "unfinished render", "data_prep.render"]),
      ("eval_unfinished_render", "eval.py",
       evaluate + [f"--dataset_dir={unfinished}"],
       [unfinished, "unfinished render"]),
  ]


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
      ("frequency_scale", "train.py", ["--frequency_scale=mel"],
       ["--frequency_scale=mel"]),
      ("objective", "train.py", ["--objective=x"], ["--objective=x"]),
      ("unknown_flag", "train.py", ["--learning_rat=1"], ["learning_rat"]),
      ("positional", "train.py", ["stray", model_dir("pos")], ["stray"]),
      # train.py: data and training.
      ("data_dir", "train.py", [f"--data_dir={tmp}/missing",
                                model_dir("dd")], [f"{tmp}/missing"]),
      ("train_pattern", "train.py", ["--train_pattern=/none/*",
                                     model_dir("tp")], ["/none/*"]),
      # On some batches the loss stays finite after the update has made the
      # weights NaN (1 run in 6); the loop checks the weights too.
      ("diverging", "train.py",
       [data, model_dir("div"), "--optimizer=sgd", "--learning_rate=1e30"]
       + TINY_FLAGS + ["--train_steps=6"], ["Loss is", "learning_rate"]),
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
  ] + _new_fault_cases(tmp, data_dir)


@pytest.mark.slow
def test_every_bad_input_ends_in_one_clear_line(tmp_path,
                                                rendered_dataset_dir,
                                                run_forked):
  cases = _cases(str(tmp_path), rendered_dataset_dir)
  assert len(cases) >= 25
  assert len({case[0] for case in cases}) == len(cases)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  env.pop(cli.DEBUG_VARIABLE, None)
  ended = run_forked(
      [PROGRAMS[program] + args for _, program, args, _ in cases], env=env,
      cwd=ROOT, max_running=MAX_RUNNING)
  failures, last_lines = [], {}
  for (name, program, _, culprits), (returncode, _, err) in zip(cases, ended):
    lines = err.strip().splitlines() or [""]
    last_lines[name] = lines[-1]
    problems = []
    if returncode != cli.EXIT_STATUS:
      problems.append(f"exit status {returncode}")
    if "Traceback" in err:
      problems.append("a traceback")
    if not lines[-1].startswith(f"{program}: error: "):
      problems.append("no error line last")
    problems += [f"{c!r} not named" for c in culprits if c not in lines[-1]]
    if problems:
      failures.append(f"{name}: {', '.join(problems)}:\n{err[-1500:]}")
  print(f"{len(cases)} bad inputs:")
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
