"""Tests for audio_perm.training and train.py: objectives on real data,
checkpoints, kill -9 and resume, flags.json, TensorBoard logs, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from audio_perm import objectives
from audio_perm import training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_FLAGS = ["--num_patches=4", "--batch_size=4", "--width=0.0625",
              "--embedding_dim=8", "--objective=soft_rank", "--log_every=2",
              "--image_every=6", "--checkpoint_every=4", "--noverbose",
              "--learning_rate=0.003"]


def _tiny_config(data_dir, **kwargs):
  values = dict(data_dir=data_dir, num_patches=4, batch_size=4,
                width=1 / 16, embedding_dim=8, learning_rate=3e-3,
                num_permutations=12, perturbation_samples=20, verbose=False)
  values.update(kwargs)
  return training.TrainConfig(**values)


@pytest.mark.parametrize("objective", objectives.OBJECTIVES)
def test_each_objective_lowers_its_loss_on_rendered_data(objective,
                                                         rendered_dataset_dir):
  config = _tiny_config(rendered_dataset_dir, objective=objective)
  config.validate()
  trainer = training.Trainer(config)
  dataset_fn = training.make_dataset_fn(config,
                                        trainer.objective.permutation_set)
  patches, target = next(iter(dataset_fn(tf.distribute.InputContext())))
  assert patches.shape == (4, 4, 398, 128, 1)
  seed = tf.constant([5, 6], tf.int64)

  def loss_now():
    # Training mode: BatchNorm (the default) normalises with this batch's
    # statistics, as in the steps; its moving averages barely move in 8.
    outputs = trainer.model(patches, training=True)
    return float(tf.reduce_mean(trainer.objective.loss(outputs, target,
                                                       seed=seed)))

  before = loss_now()
  iterator = trainer.distributed_iterator(
      lambda ctx: tf.data.Dataset.from_tensors((patches, target)).repeat())
  trainer.train_function()(iterator, tf.constant(8))
  after = loss_now()
  assert np.isfinite(after)
  assert after < 0.9 * before, (before, after)


def test_crop_frames_trains_on_random_crops_and_exports_the_centred_one(
    tmp_path, rendered_dataset_dir):
  from audio_perm import export  # pylint: disable=g-import-not-at-top
  from audio_perm import patches as patches_lib  # pylint: disable=g-import-not-at-top
  from audio_perm import permutations  # pylint: disable=g-import-not-at-top
  config = _tiny_config(rendered_dataset_dir, objective="soft_rank",
                        crop_frames=100, model_dir=str(tmp_path / "run"))
  config.validate()
  trainer = training.Trainer(config)
  assert tuple(trainer.encoder.input.shape) == (None, 4, 100, 128, 1)
  dataset_fn = training.make_dataset_fn(config)
  patches, ranks = next(iter(dataset_fn(tf.distribute.InputContext())))
  assert patches.shape == (4, 4, 100, 128, 1)
  # Each training example is SOME 100-frame window of its note's spectrogram;
  # the un-shuffled bands stitched back together must be that window.
  original = permutations.unshuffle_patches(patches[..., 0], ranks)
  crops = patches_lib.assemble_patches(original, "frequency").numpy()
  assert crops.shape == (4, 100, 512)
  from audio_perm import data  # pylint: disable=g-import-not-at-top
  from audio_perm import spectrogram  # pylint: disable=g-import-not-at-top
  full = np.concatenate([  # [notes, 398, 512]
      spectrogram.log_magnitude_spectrogram(batch["audio"])[..., :512]
      for batch in data.waveform_dataset(rendered_dataset_dir, split="train",
                                         batch_size=32)])
  offsets = []
  for crop in crops:
    gaps = np.abs(full - crop[0]).max(axis=-1)  # [notes, 398]
    note, offset = np.unravel_index(np.argmin(gaps), gaps.shape)
    assert offset + 100 <= 398
    np.testing.assert_allclose(full[note, offset:offset + 100], crop,
                               atol=1e-5)
    offsets.append(int(offset))
  assert offsets != [(398 - 100) // 2] * 4, offsets  # Random, not centred.

  export_dir = trainer.export(str(tmp_path / "encoder"))
  assert export.read_config(export_dir).crop_frames == 100
  embed = export.load_encoder(export_dir)
  waveform = tf.random.stateless_normal([2, 64000], [3, 4])
  centred = patches_lib.frontend(waveform, "frequency", 4, crop_frames=100)
  np.testing.assert_allclose(
      embed(waveform), trainer.encoder(centred, training=False),
      rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="crop_frames=500"):
    _tiny_config(rendered_dataset_dir, crop_frames=500).validate()


@pytest.mark.parametrize("kwargs,match", [
    (dict(patching="time_frequency", num_patches=10, grid=(3, 4)), "grid"),
    (dict(patching="frequency", grid=(2, 2)), "grid"),
    (dict(objective="classification", num_patches=4, num_permutations=30),
     "4!"),
    (dict(batch_size=0), "batch_size"),
    (dict(train_steps=-5), "train_steps"),
    (dict(learning_rate=0.0), "learning_rate"),
    (dict(width=-1.0), "width"),
    (dict(num_patches=600), "num_patches=600"),
    (dict(optimizer="adagrad"), "optimizer"),
])
def test_bad_configs_raise_value_error(kwargs, match, tmp_path):
  config = _tiny_config(str(tmp_path), **kwargs)
  with pytest.raises(ValueError, match=match):
    config.validate(check_data=False)


def test_missing_data_dir_says_how_to_make_one(tmp_path):
  config = _tiny_config(str(tmp_path / "nowhere"))
  with pytest.raises(ValueError, match="python -m data_prep.render"):
    config.validate()


def test_settings_of_another_objective_are_reported_as_ignored():
  config = training.TrainConfig(objective="mse")
  messages = config.ignored_settings({"perturbation_sigma", "batch_size",
                                      "num_permutations"})
  assert len(messages) == 2
  assert any("--perturbation_sigma is ignored" in m for m in messages)
  assert any("--num_permutations is ignored" in m for m in messages)
  assert not training.TrainConfig(objective="perturbed_fy").ignored_settings(
      {"perturbation_sigma"})


def test_default_run_and_eval_baselines_share_one_architecture():
  # eval.py --encoder=random (no SavedModel listed) must build the network
  # `python train.py` trains by default, weight for weight.
  from audio_perm import evaluation  # pylint: disable=g-import-not-at-top
  from audio_perm import export  # pylint: disable=g-import-not-at-top
  default_run = training.TrainConfig()
  assert default_run.encoder_config() == export.EncoderConfig()
  baseline = evaluation.default_architecture(("random", "handcrafted"))
  assert baseline == default_run.encoder_config()
  random = evaluation.random_encoder(baseline)
  trained = training.Trainer(default_run).encoder
  # random.embed is the export.WaveformEncoder module.
  assert [tuple(w.shape) for w in random.embed.encoder.weights] == [
      tuple(w.shape) for w in trained.weights]


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


def test_a_model_dir_with_other_flags_is_refused_unless_overwrite(tmp_path):
  model_dir = tmp_path / "run"
  model_dir.mkdir()
  config = _tiny_config(str(tmp_path), model_dir=str(model_dir),
                        objective="mse")
  training.check_model_dir(config)  # Writes flags.json.
  (model_dir / "checkpoint").write_text("stale")
  changed = _tiny_config(str(tmp_path), model_dir=str(model_dir),
                         objective="soft_rank", train_steps=999)
  with pytest.raises(ValueError, match="objective: 'mse' -> 'soft_rank'"):
    training.check_model_dir(changed)
  # Runtime settings (here train_steps) may change on their own.
  training.check_model_dir(_tiny_config(str(tmp_path), model_dir=str(model_dir),
                                        objective="mse", train_steps=999))
  training.check_model_dir(changed, overwrite=True)
  assert not (model_dir / "checkpoint").exists()
  assert json.load(open(model_dir / "flags.json"))["objective"] == "soft_rank"


def test_bad_flags_give_one_clear_line(tmp_path):
  procs = {
      "grid": _train_py(["--patching=time_frequency", "--num_patches=10",
                         "--grid=3,4", f"--model_dir={tmp_path}/a"]),
      "data": _train_py(["--objective=mse", "--perturbation_sigma=2",
                         f"--data_dir={tmp_path}/missing",
                         f"--model_dir={tmp_path}/b"]),
  }
  results = {k: p.communicate(timeout=120) + (p.returncode,)
             for k, p in procs.items()}
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

  rc, out, err = _run(args + ["--skip_corrupt"])
  assert rc == 0, err[-3000:]
  assert "Trained to step 2" in out
  assert json.load(open(tmp_path / "run" / "flags.json"))["skip_corrupt"]


def _fixed_batch_trainer(data_dir, **kwargs):
  config = _tiny_config(data_dir, objective="soft_rank", seed=1, **kwargs)
  trainer = training.Trainer(config)
  rng = np.random.default_rng(0)
  patches = rng.normal(size=(4, 4, 398, 128, 1)).astype(np.float32)
  target = np.stack([rng.permutation(4) for _ in range(4)]).astype(np.int32)
  iterator = trainer.distributed_iterator(
      lambda ctx: tf.data.Dataset.from_tensors((patches, target)).repeat())
  return trainer, iterator


def test_steps_per_execution_and_jit_compile_give_the_same_training(tmp_path):
  """3 steps in one call == 3 calls of 1 step; XLA == no XLA (rounding)."""
  runs = {}
  for name, kwargs, chunks in [("plain", {}, [1, 1, 1]),
                               ("inner_loop", {}, [3]),
                               ("xla", dict(jit_compile=True), [1, 2])]:
    # SGD: Adam's first steps (~lr * sign(g)) would amplify rounding in tiny
    # gradients.
    trainer, iterator = _fixed_batch_trainer(str(tmp_path), optimizer="sgd",
                                             **kwargs)
    train_fn = trainer.train_function()
    losses = [float(train_fn(iterator, tf.constant(c))[0]) for c in chunks]
    assert int(trainer.step.numpy()) == 3
    runs[name] = (trainer.model.get_weights(), losses)
  for name in ("inner_loop", "xla"):
    tol = 1e-6 if name == "inner_loop" else 1e-3
    for a, b in zip(runs["plain"][0], runs[name][0]):
      np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=name)
  np.testing.assert_allclose(runs["plain"][1][0], runs["xla"][1][0],
                             rtol=1e-4)


def test_mixed_precision_trains_in_bfloat16_and_exports_float32(tmp_path):
  trainer, iterator = _fixed_batch_trainer(str(tmp_path), mixed_precision=True)
  conv = trainer.encoder.get_layer("backbone").blocks[0][0]
  assert conv.compute_dtype == "bfloat16" and conv.variable_dtype == "float32"
  loss, _ = trainer.train_function()(iterator, tf.constant(2))
  assert np.isfinite(float(loss))
  export_dir = trainer.export(str(tmp_path / "enc"))
  serve = tf.saved_model.load(export_dir).signatures["serving_default"]
  out = serve(waveform=tf.zeros([1, 64000]))["embedding"]
  assert out.dtype == tf.float32 and out.shape == (1, 8)


def test_checkpoint_restores_batchnorm_statistics(tmp_path,
                                                  rendered_dataset_dir):
  config = _tiny_config(rendered_dataset_dir, objective="mse",
                        normalization="batch")
  trainer = training.Trainer(config)
  iterator = trainer.distributed_iterator(training.make_dataset_fn(config))
  trainer.train_function()(iterator, tf.constant(3))
  statistics = trainer.model.non_trainable_variables
  assert statistics and all("moving" in v.path for v in statistics)
  tf.train.CheckpointManager(trainer.checkpoint, str(tmp_path),
                             max_to_keep=1).save(checkpoint_number=3)
  restored = training.Trainer(config)
  assert restored.restore(str(tmp_path)) == 3
  for before, after in zip(trainer.model.variables, restored.model.variables):
    np.testing.assert_array_equal(np.asarray(after), np.asarray(before))
  # The moving statistics did move, so the comparison above is not vacuous.
  assert not np.allclose(np.asarray(statistics[1]), 1.0)

  # A checkpoint without them (as written before they were saved) is refused
  # with one clear message instead of restoring a wrong encoder.
  old = tf.train.Checkpoint(model=trainer.model, optimizer=trainer.optimizer,
                            step=trainer.step)
  old_dir = tmp_path / "old"
  tf.train.CheckpointManager(old, str(old_dir), max_to_keep=1).save(
      checkpoint_number=3)
  with pytest.raises(ValueError, match="holds no BatchNorm moving statistics"):
    training.Trainer(config).restore(str(old_dir))
