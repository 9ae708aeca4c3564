"""Tests of train.py in fresh processes: kill -9 and resume, TensorBoard logs,
--export_only, one clear line for bad flags and corrupt data."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_FLAGS = ["--num_patches=4", "--batch_size=4", "--width=0.0625",
              "--embedding_dim=8", "--objective=soft_rank", "--log_every=2",
              "--image_every=6", "--checkpoint_every=4", "--noverbose",
              "--learning_rate=0.003"]

pytestmark = pytest.mark.slow


def _train_py(args, **kwargs):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  return subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py")]
                          + args, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env,
                          cwd=ROOT, **kwargs)


def _run(args, timeout=180):
  proc = _train_py(args)
  out, err = proc.communicate(timeout=timeout)
  return proc.returncode, out, err


def _events(model_dir):
  """{tag: [(step, value or image count)]} from the TensorBoard logs."""
  found = {}
  for path in tf.io.gfile.glob(os.path.join(model_dir, "train", "events.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        tensor = tf.make_ndarray(value.tensor)
        entry = float(tensor) if tensor.ndim == 0 else len(tensor) - 2
        found.setdefault(value.tag, []).append((event.step, entry))
  return found


def test_kill_and_resume_then_no_retraining(tmp_path, rendered_dataset_dir):
  model_dir = str(tmp_path / "run")
  args = [f"--data_dir={rendered_dataset_dir}", f"--model_dir={model_dir}",
          "--train_steps=24"] + TINY_FLAGS
  proc = _train_py(args)
  deadline = time.time() + 150
  try:
    while tf.train.latest_checkpoint(model_dir) is None:
      assert proc.poll() is None, proc.communicate()[1][-3000:]
      assert time.time() < deadline, "no checkpoint in time"
      time.sleep(0.2)
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  killed_at = int(tf.train.latest_checkpoint(model_dir).rsplit("-", 1)[1])
  assert killed_at % 4 == 0 and 4 <= killed_at < 24

  saved = json.load(open(os.path.join(model_dir, "flags.json")))
  assert saved["train_steps"] == 24 and saved["num_patches"] == 4

  rc, out, err = _run(args)
  assert rc == 0, err[-3000:]
  assert f"Resuming from the checkpoint at step {killed_at}" in out
  assert tf.train.latest_checkpoint(model_dir).endswith("ckpt-24")
  export_dir = os.path.join(model_dir, "encoder")
  assert os.path.exists(os.path.join(export_dir, "saved_model.pb"))
  embed = tf.saved_model.load(export_dir).signatures["serving_default"]
  assert embed(waveform=tf.zeros([2, 64000]))["embedding"].shape == (2, 8)

  events = _events(model_dir)
  for tag in ("loss", "partial_ranks_accuracy", "learning_rate",
              "examples_per_second"):
    steps = [s for s, _ in events[tag]]
    assert max(steps) == 24 and all(np.isfinite(v) for _, v in events[tag])
  assert events["learning_rate"][-1][1] == pytest.approx(3e-3)
  images = events["spectrogram/shuffled_reordered_original"]
  assert images[-1] == (24, 3)

  # Finished: the same command neither trains nor re-exports.
  mtime = os.path.getmtime(os.path.join(export_dir, "saved_model.pb"))
  rc, out, err = _run(args)
  assert rc == 0, err[-3000:]
  assert "already trained" in out and "up to date" in out
  assert "Trained to step" not in out
  assert os.path.getmtime(os.path.join(export_dir, "saved_model.pb")) == mtime

  # --export_only re-exports the latest checkpoint elsewhere; the run's own
  # flags.json says what the model is.
  other = str(tmp_path / "exported")
  rc, out, err = _run([f"--model_dir={model_dir}", "--export_only",
                       f"--export_dir={other}"])
  assert rc == 0, err[-3000:]
  assert os.path.exists(os.path.join(other, "saved_model.pb"))
  again = tf.saved_model.load(other).signatures["serving_default"]
  w = tf.random.stateless_normal([1, 64000], [1, 2])
  np.testing.assert_allclose(again(waveform=w)["embedding"],
                             embed(waveform=w)["embedding"], rtol=1e-6)


def test_bad_flags_give_one_clear_line(tmp_path, run_forked):
  args = {
      "grid": ["--patching=time_frequency", "--num_patches=10", "--grid=3,4",
               f"--model_dir={tmp_path}/a"],
      "data": ["--objective=mse", "--perturbation_sigma=2",
               f"--data_dir={tmp_path}/missing", f"--model_dir={tmp_path}/b"],
  }
  # Each in its own process, forked after TensorFlow's start-up (conftest.py).
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  ended = run_forked([[os.path.join(ROOT, "train.py")] + a
                      for a in args.values()], env=env, cwd=ROOT,
                     timeout_s=120)
  results = {name: (out, err, rc)
             for name, (rc, out, err) in zip(args, ended)}
  for name, (_, err, rc) in results.items():
    assert rc == 2, (name, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
  grid_err = results["grid"][1].strip().splitlines()
  assert grid_err[-1].startswith("train.py: error: ")
  assert "grid" in grid_err[-1] and "num_patches=10" in grid_err[-1]
  data_err = results["data"][1].strip().splitlines()
  assert "python -m data_prep.render" in data_err[-1]
  assert any("--perturbation_sigma is ignored" in line for line in data_err)


def test_a_truncated_shard_is_named_in_one_line_then_skip_corrupt_trains(
    tmp_path, rendered_dataset_dir):
  import shutil  # pylint: disable=g-import-not-at-top
  data_dir = str(tmp_path / "data")
  shutil.copytree(rendered_dataset_dir, data_dir)
  shard = sorted(tf.io.gfile.glob(os.path.join(data_dir,
                                               "nsynth-train.tfrecord-*")))[-1]
  with open(shard, "r+b") as f:  # Cut in the middle of a record.
    f.truncate(os.path.getsize(shard) // 2 + 1001)
  args = [f"--data_dir={data_dir}", f"--model_dir={tmp_path}/run",
          "--train_steps=2", "--checkpoint_every=2"] + TINY_FLAGS
  rc, _, err = _run(args)
  assert rc == 2, err[-3000:]
  assert "Traceback" not in err, err[-3000:]
  last = err.strip().splitlines()[-1]
  assert last.startswith("train.py: error: corrupt or truncated TFRecord "
                         f"file: {shard} ("), last
  assert "--skip_corrupt" in last and "data_prep.render" in last
  assert [p for p in tf.io.gfile.glob(os.path.join(data_dir, "*train*"))
          if p in last] == [shard]  # Only the bad shard is named.
  readable = sum(1 for _ in tf.data.TFRecordDataset(shard).take(
      10000).ignore_errors())
  assert f"{shard} (record index {readable}: " in last  # First unreadable.

  rc, out, err = _run(args + ["--skip_corrupt"])
  assert rc == 0, err[-3000:]
  assert "Trained to step 2" in out
  assert json.load(open(tmp_path / "run" / "flags.json"))["skip_corrupt"]
  # What was skipped is said once: the file, where it was cut, what is lost.
  (line,) = [x for x in err.splitlines() if "skip_corrupt: " in x]
  shard_lengths = json.load(open(os.path.join(data_dir, "dataset_info.json")))
  (split,) = [s for s in shard_lengths["splits"] if s["name"] == "train"]
  index = int(shard.rsplit("-", 3)[-3])
  lost = int(split["shardLengths"][index]) - readable
  assert (f"{shard} is cut short at record index {readable} (" in line
          and line.endswith(f"{readable} record(s) read, {lost} record(s) "
                            "lost.")), line


def test_a_truncated_latest_checkpoint_is_named_and_the_previous_resumed(
    tmp_path, rendered_dataset_dir):
  model_dir = tmp_path / "run"
  args = [f"--data_dir={rendered_dataset_dir}", f"--model_dir={model_dir}",
          "--train_steps=4"] + TINY_FLAGS + ["--checkpoint_every=2"]
  rc, _, err = _run(args)
  assert rc == 0, err[-3000:]
  data_file = model_dir / "ckpt-4.data-00000-of-00001"
  with open(data_file, "r+b") as f:  # A full disk, an interrupted copy.
    f.truncate(os.path.getsize(data_file) // 2)
  rc, out, err = _run(args)
  assert rc == 0, err[-3000:]
  assert "Traceback" not in err
  (line,) = [x for x in err.splitlines() if str(data_file) in x]
  assert f"Unreadable checkpoint: {data_file} is cut short (" in line
  assert line.endswith(f"resuming from {model_dir}/ckpt-2 (step 2).")
  assert f"Resuming from the checkpoint at step 2 in {model_dir}" in out
  assert "Trained to step 4" in out
  # Step 4 was trained again and written in full.
  reader = tf.train.load_checkpoint(str(model_dir / "ckpt-4"))
  for name in reader.get_variable_to_shape_map():
    reader.get_tensor(name)
  assert int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")) == 4
