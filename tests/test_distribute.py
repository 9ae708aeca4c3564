"""Tests for audio_perm.distribute and the distributed training step.

tests/conftest.py splits the CPU into two logical devices, so
MirroredStrategy can run two replicas here.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from audio_perm import distribute
from audio_perm import permutations
from audio_perm import training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_PATCHES, PATCH_SHAPE, GLOBAL_BATCH = 4, (10, 8), 8


def _fixed_batches(objective, num_batches=2):
  """Deterministic global batches of (patches, target), numpy."""
  rng = np.random.default_rng(0)
  patches = rng.normal(size=(num_batches * GLOBAL_BATCH, NUM_PATCHES)
                       + PATCH_SHAPE + (1,)).astype(np.float32)
  patches += np.arange(NUM_PATCHES, dtype=np.float32)[:, None, None, None]
  if objective == "classification":
    target = rng.integers(0, 6, size=len(patches)).astype(np.int32)
  else:
    target = np.stack([rng.permutation(NUM_PATCHES)
                       for _ in range(len(patches))]).astype(np.int32)
  return patches, target


def _first_updates(strategy, objective, normalization, steps=2, init_decay=0.0,
                   variance_penalty=0.0, covariance_penalty=0.0):
  config = training.TrainConfig().replace(
      objective=objective, num_patches=NUM_PATCHES, batch_size=GLOBAL_BATCH,
      optimizer="sgd", learning_rate=0.05, width=1 / 16, embedding_dim=8,
      normalization=normalization, num_permutations=6, seed=3,
      patching="frequency", init_decay=init_decay,
      variance_penalty=variance_penalty,
      covariance_penalty=covariance_penalty)
  trainer = training.Trainer(config, strategy, patch_shape=PATCH_SHAPE)
  patches, target = _fixed_batches(objective)

  def dataset_fn(input_context):
    # Consecutive per-replica batches: with one input pipeline, replica r of
    # step s gets per-replica batch s * replicas + r, so both layouts see the
    # same global batches.
    per_replica = input_context.get_per_replica_batch_size(GLOBAL_BATCH)
    return tf.data.Dataset.from_tensor_slices((patches, target)).batch(
        per_replica, drop_remainder=True)

  before = [np.array(w) for w in trainer.model.get_weights()]
  iterator = trainer.distributed_iterator(dataset_fn)
  train_fn = trainer.train_function()
  losses = [float(train_fn(iterator, tf.constant(1))[0])
            for _ in range(steps)]
  after = [np.array(w) for w in trainer.model.get_weights()]
  return before, after, losses


@pytest.mark.parametrize("objective,normalization,init_decay,vicreg", [
    pytest.param("soft_rank", "example", 0.0, False, marks=pytest.mark.slow),
    pytest.param("classification", "example", 0.0, False,
                 marks=pytest.mark.slow),
    # Synchronised BatchNorm also gives the same update.
    pytest.param("mse", "batch", 0.0, False, marks=pytest.mark.slow),
    # The pull towards the initial weights (second step) is added once per
    # update, not once per replica.
    pytest.param("mse", "batch", 10.0, False, marks=pytest.mark.slow),
    # The default recipe's terms: VICReg's statistics over the GLOBAL batch's
    # patches (summed over the replicas), with the pull.
    pytest.param("mse", "batch", 10.0, True, marks=pytest.mark.slow),
])
def test_one_and_two_replicas_give_the_same_updates(objective, normalization,
                                                    init_decay, vicreg,
                                                    two_replicas):
  one = tf.distribute.OneDeviceStrategy("/cpu:0")
  two = two_replicas
  assert two.num_replicas_in_sync == 2
  terms = (dict(variance_penalty=5.0, covariance_penalty=1.0) if vicreg
           else {})
  before1, after1, losses1 = _first_updates(one, objective, normalization,
                                            init_decay=init_decay, **terms)
  before2, after2, losses2 = _first_updates(two, objective, normalization,
                                            init_decay=init_decay, **terms)
  for b1, b2 in zip(before1, before2):
    np.testing.assert_array_equal(b1, b2)  # Same initialisation.
  np.testing.assert_allclose(losses1, losses2, rtol=1e-5)
  moved = max(np.abs(a - b).max() for a, b in zip(after1, before1))
  assert moved > 1e-4  # The step did something.
  for a1, a2, b in zip(after1, after2, before1):
    # Compare the updates: a per-replica mean loss would halve them.
    np.testing.assert_allclose(a2 - b, a1 - b, rtol=2e-3, atol=2e-6)


def test_get_strategy_names():
  assert distribute.get_strategy("default") is tf.distribute.get_strategy()
  assert isinstance(distribute.get_strategy("one_device"),
                    tf.distribute.OneDeviceStrategy)
  # No TF_CONFIG and no GPU here: "auto" is the default strategy.
  assert distribute.get_strategy("auto").num_replicas_in_sync == 1
  with pytest.raises(ValueError, match="strategy"):
    distribute.get_strategy("horovod")


def test_multi_worker_without_tf_config_says_what_to_set(monkeypatch):
  monkeypatch.delenv("TF_CONFIG", raising=False)
  with pytest.raises(ValueError, match="TF_CONFIG"):
    distribute.get_strategy("multi_worker")


def test_batch_must_divide_among_replicas(two_replicas):
  assert distribute.per_replica_batch_size(two_replicas, 8) == 4
  with pytest.raises(ValueError, match="batch_size=7"):
    distribute.per_replica_batch_size(two_replicas, 7)


_WORKER = r"""
import json, os, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from audio_perm import distribute, training
strategy = distribute.get_strategy("multi_worker")
config = training.TrainConfig().replace(**json.loads(sys.argv[2]))
result = training.train(config, strategy)
_, task_id = distribute.task_info(strategy)
np.savez(os.path.join(sys.argv[3], f"weights_{task_id}.npz"),
         *result["trainer"].model.get_weights())
print(json.dumps({"step": result["step"], "export_dir": result["export_dir"],
                  "replicas": strategy.num_replicas_in_sync}))
"""


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


@pytest.mark.slow
def test_two_workers_train_to_identical_weights(tmp_path, rendered_dataset_dir):
  ports = _free_ports(2)
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  config = dict(data_dir=rendered_dataset_dir, model_dir=str(tmp_path / "run"),
                objective="soft_rank", num_patches=4, batch_size=4,
                train_steps=3, checkpoint_every=2, log_every=1,
                image_every=100, width=1 / 16, embedding_dim=8,
                strategy="multi_worker", verbose=False)
  script = tmp_path / "worker.py"
  script.write_text(_WORKER)
  procs = []
  for index in range(2):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               TF_CONFIG=json.dumps({"cluster": cluster, "task": {
                   "type": "worker", "index": index}}))
    procs.append(subprocess.Popen(
        [sys.executable, str(script), ROOT, json.dumps(config), str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        cwd=str(tmp_path)))
  outputs = []
  try:
    for proc in procs:
      out, err = proc.communicate(timeout=150)
      assert proc.returncode == 0, err[-3000:]
      outputs.append(json.loads(out.strip().splitlines()[-1]))
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
  assert [o["replicas"] for o in outputs] == [2, 2]
  assert [o["step"] for o in outputs] == [3, 3]
  assert outputs[0]["export_dir"] and outputs[1]["export_dir"] is None
  w0 = np.load(tmp_path / "weights_0.npz")
  w1 = np.load(tmp_path / "weights_1.npz")
  for name in w0.files:
    np.testing.assert_array_equal(w0[name], w1[name])
  # Only the chief's checkpoints remain; the worker removed its own.
  run = tmp_path / "run"
  assert tf.train.latest_checkpoint(str(run)).endswith("ckpt-3")
  assert not [p for p in os.listdir(run) if p.startswith(".worker")]
  assert (run / "encoder" / "saved_model.pb").exists()
