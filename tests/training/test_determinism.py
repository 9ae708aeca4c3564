"""--deterministic: the same command and seed give bit-identical runs."""

import os

import numpy as np
import pytest
import tensorflow as tf

from audio_perm import export
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


@pytest.mark.slow
@pytest.mark.parametrize("replicas", [1, 2])
def test_same_seed_gives_bit_identical_checkpoints_and_embeddings(
    replicas, tiny_config, rendered_dataset_dir, tmp_path, two_replicas):
  strategy = two_replicas if replicas == 2 else None
  first = _run(tiny_config, rendered_dataset_dir, str(tmp_path / "a"),
               strategy)
  second = _run(tiny_config, rendered_dataset_dir, str(tmp_path / "b"),
                strategy)
  _assert_identical(first, second)
  waveforms = tf.random.stateless_normal([3, 64000], seed=[5, 6]) * 0.1
  embeddings = [export.load_encoder(str(tmp_path / run / "encoder"))(
      waveforms).numpy() for run in ("a", "b")]
  np.testing.assert_array_equal(*embeddings)
  from tensorflow.python.framework import config as tf_config  # pylint: disable=g-import-not-at-top,g-direct-tensorflow-import
  assert tf_config.is_op_determinism_enabled()
  # The runs did learn something, so the equality is not that of two
  # untouched initialisations.
  third = _run(tiny_config, rendered_dataset_dir, str(tmp_path / "c"),
               strategy, seed=1)
  assert any(not np.array_equal(first[k], third[k]) for k in first
             if k.startswith("model/"))


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
