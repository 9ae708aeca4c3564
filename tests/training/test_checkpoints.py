"""Tests of audio_perm.training.checkpoints: flags.json, layout, restores."""

import json

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from audio_perm import config as config_lib
from audio_perm import training
from audio_perm.training import checkpoints


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


def test_a_flag_newer_than_the_run_counts_as_its_default(tiny_config, tmp_path):
  model_dir = tmp_path / "run"
  model_dir.mkdir()
  config = tiny_config(str(tmp_path), model_dir=str(model_dir))
  training.check_model_dir(config)
  flags_path = model_dir / "flags.json"
  saved = json.load(open(flags_path))
  del saved["init_decay"]  # As written before the flag existed.
  flags_path.write_text(json.dumps(saved))
  training.check_model_dir(config)  # Same run: the default was in force.
  with pytest.raises(ValueError, match="init_decay: 0.0 -> 2.0"):
    training.check_model_dir(tiny_config(str(tmp_path),
                                         model_dir=str(model_dir),
                                         init_decay=2.0))
  # The recipe's extras were off until they became the default: a run that
  # predates one ran without it, whatever today's default, and is read so.
  assert training.TrainConfig().optimizer.init_decay == 10.0
  for name in config_lib.RECIPE_EXTRAS:
    saved.pop(name, None)
  flags_path.write_text(json.dumps(saved))
  assert checkpoints.read_flags(str(model_dir)).to_dict() == (
      config.to_dict())
  with pytest.raises(ValueError, match="init_decay: 0.0 -> 10.0"):
    training.check_model_dir(config.replace(init_decay=10.0))


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


@pytest.mark.parametrize("normalization,init_decay",
                         [("none", 0.0), ("example", 0.0), ("none", 1.0),
                          ("batch", 1.0)])
def test_a_model_only_restore_works_without_batchnorm_statistics(
    fixed_batch_trainer, tmp_path, normalization, init_decay):
  # Without moving statistics every model variable is also the optimizer's
  # and may be stored under optimizer/ only: the restore must still work.
  trainer, iterator = fixed_batch_trainer(
      str(tmp_path), normalization=normalization, init_decay=init_decay)
  trainer.train_function()(iterator, tf.constant(1))
  tf.train.CheckpointManager(trainer.checkpoint, str(tmp_path),
                             max_to_keep=1).save(checkpoint_number=1)
  model, _ = training.Trainer.build_model(trainer.config)
  checkpoints.restore_model(model, str(tmp_path))
  changed = 0
  for fresh, after, trained in zip(
      training.Trainer.build_model(trainer.config)[0].variables,
      model.variables, trainer.model.variables):
    np.testing.assert_array_equal(np.asarray(after), np.asarray(trained))
    changed += not np.array_equal(np.asarray(fresh), np.asarray(trained))
  assert changed  # The step moved weights: the comparison is not vacuous.


def _truncate(path, keep=0.5):
  with open(path, "r+b") as f:
    f.truncate(int(f.seek(0, 2) * keep))


def test_an_unreadable_newest_checkpoint_is_named_and_the_previous_restored(
    fixed_batch_trainer, tmp_path, caplog):
  trainer, iterator = fixed_batch_trainer(str(tmp_path))
  train = trainer.train_function()
  manager = tf.train.CheckpointManager(trainer.checkpoint, str(tmp_path),
                                       max_to_keep=3)
  weights = {}
  for step in (1, 2, 3):
    train(iterator, tf.constant(1))
    manager.save(checkpoint_number=step)
    weights[step] = [np.asarray(v) for v in trainer.model.variables]
  newest_data = str(tmp_path / "ckpt-3.data-00000-of-00001")
  _truncate(newest_data)  # A full disk, an interrupted copy.

  def restored():
    fresh, _ = fixed_batch_trainer(str(tmp_path))
    return fresh.restore(str(tmp_path)), fresh

  caplog.clear()
  step, fresh = restored()
  assert step == 2
  for before, after in zip(weights[2], fresh.model.variables):
    np.testing.assert_array_equal(np.asarray(after), before)
  (line,) = [r.getMessage() for r in caplog.records
             if "Unreadable checkpoint" in r.getMessage()]
  assert newest_data in line and "cut short" in line
  assert line.endswith(f"resuming from {tmp_path}/ckpt-2 (step 2).")

  # A garbage index of the next one: the oldest kept is restored.
  (tmp_path / "ckpt-2.index").write_bytes(b"not a checkpoint index" * 4)
  caplog.clear()
  assert restored()[0] == 1
  (line,) = [r.getMessage() for r in caplog.records
             if "Unreadable checkpoint" in r.getMessage()]
  assert newest_data in line and f"{tmp_path}/ckpt-2.index is not" in line

  # None readable: one line naming every file and what to do.
  (tmp_path / "ckpt-1.data-00000-of-00001").write_bytes(b"")
  with pytest.raises(ValueError) as raised:
    restored()
  message = str(raised.value)
  assert message.startswith(f"no readable checkpoint in {tmp_path}: ")
  assert "\n" not in message and "--model_dir" in message
  for name in ("ckpt-3.data-00000-of-00001", "ckpt-2.index",
               "ckpt-1.data-00000-of-00001"):
    assert f"{tmp_path}/{name}" in message


@pytest.mark.parametrize("damage", ["truncated_data", "garbage_index"])
def test_a_model_only_restore_names_the_unreadable_file(
    tiny_config, fixed_batch_trainer, tmp_path, damage):
  trainer, _ = fixed_batch_trainer(str(tmp_path))
  tf.train.CheckpointManager(trainer.checkpoint, str(tmp_path),
                             max_to_keep=3).save(checkpoint_number=5)
  if damage == "truncated_data":
    bad = str(tmp_path / "ckpt-5.data-00000-of-00001")
    _truncate(bad, keep=0.1)
  else:
    bad = str(tmp_path / "ckpt-5.index")
    with open(bad, "wb") as f:
      f.write(b"\x00" * 100)
  model, _ = training.Trainer.build_model(trainer.config)
  with pytest.raises(ValueError) as raised:
    checkpoints.restore_model(model, str(tmp_path))
  message = str(raised.value)
  assert message.startswith(f"the latest checkpoint of {tmp_path} is "
                            f"unreadable: {bad} ")
  assert "\n" not in message and "train.py again" in message
