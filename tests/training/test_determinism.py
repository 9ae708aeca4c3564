"""--deterministic: the same command and seed give bit-identical runs."""

import os

import numpy as np
import pytest
import tensorflow as tf

from audio_perm import training


def _checkpoint_values(model_dir):
  path = tf.train.latest_checkpoint(model_dir)
  return {name: tf.train.load_variable(path, name)
          for name, _ in tf.train.list_variables(path)
          if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def _run(tiny_config, data_dir, model_dir, strategy=None, **kwargs):
  config = tiny_config(data_dir, objective="perturbed_fy",
                       model_dir=model_dir, deterministic=True,
                       train_steps=4, checkpoint_every=4, log_every=2,
                       image_every=4, **kwargs)
  training.train(config, strategy, log=lambda _: None)
  return _checkpoint_values(model_dir)


def _assert_identical(a, b):
  assert a.keys() == b.keys()
  for name in a:
    np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# Runs in a fresh process, as `train.py --deterministic` does: one inter-op
# thread can only be set before TensorFlow runs its first op, and the test
# process has long started with several (with which runs may differ in the
# last bits, as the README says).
_FRESH_RUNS = r"""
import json, os, sys
import numpy as np
import audio_perm  # Before TensorFlow, as the programs do.
import tensorflow as tf
config_json, replicas, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if replicas == 2:
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from audio_perm import export, training
training.enable_determinism()
assert tf.config.threading.get_inter_op_parallelism_threads() == 1
strategy = (tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
            if replicas == 2 else None)
values = json.loads(config_json)
waveforms = tf.random.stateless_normal([3, 64000], seed=[5, 6]) * 0.1
arrays = {}
for run, seed in (("a", 0), ("b", 0), ("c", 1)):
  model_dir = os.path.join(os.path.dirname(out), run)
  config = training.TrainConfig().replace(**dict(values, model_dir=model_dir,
                                                 seed=seed))
  training.train(config, strategy, log=lambda _: None)
  path = tf.train.latest_checkpoint(model_dir)
  for name, _ in tf.train.list_variables(path):
    if name != "_CHECKPOINTABLE_OBJECT_GRAPH":
      arrays[f"{run}|{name}"] = tf.train.load_variable(path, name)
  arrays[f"{run}|embeddings"] = export.load_encoder(
      os.path.join(model_dir, "encoder"))(waveforms).numpy()
np.savez(out, **arrays)
"""


@pytest.mark.slow
@pytest.mark.parametrize("replicas", [1, 2])
def test_same_seed_gives_bit_identical_checkpoints_and_embeddings(
    replicas, tiny_config, rendered_dataset_dir, tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  config = tiny_config(rendered_dataset_dir, objective="perturbed_fy",
                       deterministic=True, train_steps=4, checkpoint_every=4,
                       log_every=2, image_every=4)
  values = {k: v for k, v in config.to_dict().items()
            if k not in ("model_dir", "seed")}
  script = tmp_path / "runs.py"
  script.write_text(_FRESH_RUNS)
  out = tmp_path / "runs.npz"
  proc = subprocess.run(
      [sys.executable, str(script), json.dumps(values), str(replicas),
       str(out)], capture_output=True, text=True, timeout=900,
      # Several replicas are bit-identical with oneDNN off only (the
      # trainer warns; multi_replica_determinism_warning).
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               **({"TF_ENABLE_ONEDNN_OPTS": "0"} if replicas > 1 else {})))
  assert proc.returncode == 0, proc.stderr[-3000:]
  arrays = np.load(out)
  runs = {run: {k.split("|", 1)[1]: arrays[k] for k in arrays.files
                if k.startswith(run + "|")} for run in "abc"}
  _assert_identical(runs["a"], runs["b"])
  # The runs did learn something, so the equality is not that of two
  # untouched initialisations.
  assert any(not np.array_equal(runs["a"][k], runs["c"][k])
             for k in runs["a"] if k.startswith("model/"))


@pytest.mark.slow
def test_a_resumed_run_is_reproducible(tiny_config, rendered_dataset_dir,
                                       tmp_path):
  """Two resumptions from one checkpoint end in the same weights.

  (They differ from the uninterrupted run: the input pipeline is not
  checkpointed, and a resumed run restarts it with a seed derived from
  (seed, step); see README, "Reproducibility".)
  """
  import shutil  # pylint: disable=g-import-not-at-top
  base = str(tmp_path / "base")
  config = tiny_config(rendered_dataset_dir, objective="perturbed_fy",
                       model_dir=base, deterministic=True, train_steps=2,
                       checkpoint_every=2, log_every=2, image_every=2)
  training.train(config, log=lambda _: None)
  finals = []
  for name in ("r1", "r2"):
    shutil.copytree(base, str(tmp_path / name))
    finals.append(_run(tiny_config, rendered_dataset_dir,
                       str(tmp_path / name)))
  _assert_identical(*finals)
  assert os.path.basename(tf.train.latest_checkpoint(
      str(tmp_path / "r1"))) == "ckpt-4"


def test_multi_replica_determinism_warning_names_the_fix(monkeypatch):
  from audio_perm.training import trainer  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(trainer, "onednn_enabled", lambda: True)
  assert trainer.multi_replica_determinism_warning(1) is None
  warning = trainer.multi_replica_determinism_warning(2)
  assert "2 CPU replicas" in warning and "TF_ENABLE_ONEDNN_OPTS=0" in warning
  monkeypatch.setattr(trainer, "onednn_enabled", lambda: False)
  assert trainer.multi_replica_determinism_warning(2) is None
