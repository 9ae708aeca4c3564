"""Tests of audio_perm.training.checkpoints: flags.json, layout, restores."""

import json

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from audio_perm import training


def test_a_model_dir_with_other_flags_is_refused_unless_overwrite(tiny_config, tmp_path):
  model_dir = tmp_path / "run"
  model_dir.mkdir()
  config = tiny_config(str(tmp_path), model_dir=str(model_dir),
                        objective="mse")
  training.check_model_dir(config)  # Writes flags.json.
  (model_dir / "checkpoint").write_text("stale")
  changed = tiny_config(str(tmp_path), model_dir=str(model_dir),
                         objective="soft_rank", train_steps=999)
  with pytest.raises(ValueError, match="objective: 'mse' -> 'soft_rank'"):
    training.check_model_dir(changed)
  # Runtime settings (here train_steps) may change on their own.
  training.check_model_dir(tiny_config(str(tmp_path), model_dir=str(model_dir),
                                        objective="mse", train_steps=999))
  training.check_model_dir(changed, overwrite=True)
  assert not (model_dir / "checkpoint").exists()
  assert json.load(open(model_dir / "flags.json"))["objective"] == "soft_rank"


@pytest.mark.slow
def test_checkpoint_restores_batchnorm_statistics(tiny_config, tmp_path,
                                                  rendered_dataset_dir):
  config = tiny_config(rendered_dataset_dir, objective="mse",
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

  # A checkpoint of the former layout (weights only through the optimizer,
  # BatchNorm statistics by path) is refused with one line naming the folder
  # instead of restoring a wrong encoder.
  old = tf.train.Checkpoint(
      optimizer=trainer.optimizer, step=trainer.step,
      non_trainable={v.path: v for v in statistics})
  old_dir = tmp_path / "old"
  tf.train.CheckpointManager(old, str(old_dir), max_to_keep=1).save(
      checkpoint_number=3)
  with pytest.raises(ValueError, match=f"checkpoint in {old_dir} has the "
                     "former layout"):
    training.Trainer(config).restore(str(old_dir))


def _variables_under(path, child):
  """{checkpoint key: value} of every variable reachable from root/child.

  A variable reachable along several paths (the model and the optimizer) is
  stored once, under its shortest path; the object graph keeps every edge.
  """
  reader = tf.train.load_checkpoint(path)
  graph = trackable_object_graph_pb2.TrackableObjectGraph()
  graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
  stack = [c.node_id for c in graph.nodes[0].children
           if c.local_name == child]
  seen, found = set(), {}
  while stack:
    node_id = stack.pop()
    if node_id in seen:
      continue
    seen.add(node_id)
    node = graph.nodes[node_id]
    for attribute in node.attributes:
      if attribute.name == "VARIABLE_VALUE":
        found[attribute.checkpoint_key] = reader.get_tensor(
            attribute.checkpoint_key)
    stack += [c.node_id for c in node.children]
  return found


def test_checkpoint_holds_every_model_variable_under_model(
    fixed_batch_trainer, tmp_path):
  trainer, iterator = fixed_batch_trainer(str(tmp_path))
  trainer.train_function()(iterator, tf.constant(2))
  path = tf.train.CheckpointManager(trainer.checkpoint, str(tmp_path),
                                    max_to_keep=1).save(checkpoint_number=2)
  saved = _variables_under(path, "model")
  assert len(saved) == len(trainer.model.variables) == 31
  # Every model variable's value is reachable from model/, exactly once.
  unmatched = dict(saved)
  for variable in trainer.model.variables:
    value = np.asarray(variable)
    key = next(k for k, v in unmatched.items()
               if v.shape == value.shape and np.array_equal(v, value))
    del unmatched[key]
  assert not unmatched


def test_model_only_restore_reproduces_the_trained_encoder(tiny_config, 
    tmp_path, rendered_dataset_dir):
  config = tiny_config(rendered_dataset_dir, objective="mse",
                        model_dir=str(tmp_path), train_steps=3,
                        checkpoint_every=3, log_every=1, image_every=3)
  result = training.train(config, log=lambda _: None)
  encoder, encoder_config = training.load_trained_encoder(str(tmp_path))
  assert encoder_config == config.encoder
  patches = tf.random.stateless_normal(
      [2, 4] + list(config.encoder.patch_shape()) + [1], seed=[3, 4])
  np.testing.assert_array_equal(
      encoder(patches, training=False).numpy(),
      result["trainer"].encoder(patches, training=False).numpy())
