"""A run's folder: flags.json, checkpoints, and what may be resumed.

model_dir holds flags.json (the resolved flags, flat: flag name -> value),
checkpoints written by tf.train.CheckpointManager (the last 3 kept) and
TensorBoard logs. A checkpoint is `tf.train.Checkpoint(model, optimizer,
step)`: every model variable lies under `model/`. Checkpoints of the former
layout (weights reachable only through the optimizer, BatchNorm statistics
saved by path under `non_trainable/`) are refused with one line.
"""

import json
import os
import shutil

import tensorflow as tf

from audio_perm import config as config_lib

FLAGS_FILENAME = "flags.json"
# Fields that may change between a run and its resumption: they say how long,
# how often and on what hardware, not what is learned.
RUNTIME_FIELDS = config_lib.runtime_names(config_lib.TrainConfig)
_OLD_LAYOUT_KEY = "non_trainable"


def read_json(path):
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def write_json(path, values):
  """Writes JSON atomically (a temporary file renamed over the target)."""
  tmp = path + ".tmp"
  with tf.io.gfile.GFile(tmp, "w") as f:
    json.dump(values, f, indent=2, sort_keys=True)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def read_flags(model_dir):
  """The TrainConfig recorded in model_dir/flags.json.

  Raises:
    ValueError: model_dir has no flags.json.
  """
  path = os.path.join(model_dir, FLAGS_FILENAME)
  if not tf.io.gfile.exists(path):
    raise ValueError(f"{model_dir!r} has no {FLAGS_FILENAME}: not a train.py "
                     "model_dir.")
  return config_lib.TrainConfig.from_dict(read_json(path))


def check_model_dir(config, overwrite=False, write=True):
  """Refuses a model_dir that holds a different run; writes flags.json.

  Args:
    config: TrainConfig.
    overwrite: delete a different run found in model_dir instead of refusing.
    write: write flags.json (the chief only).

  Raises:
    ValueError: model_dir holds a run whose flags differ (other than
      RUNTIME_FIELDS), listing the differences.
  """
  path = os.path.join(config.model_dir, FLAGS_FILENAME)
  if tf.io.gfile.exists(path):
    saved = read_json(path)
    current = config.to_dict()
    diffs = [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}"
             for k in sorted(set(saved) | set(current))
             if k not in RUNTIME_FIELDS and saved.get(k) != current.get(k)]
    if diffs:
      if not overwrite:
        raise ValueError(
            f"model_dir={config.model_dir!r} holds a run with different "
            f"flags ({'; '.join(diffs)}); use another --model_dir, or "
            f"--overwrite to delete that run.")
      if write:
        shutil.rmtree(config.model_dir)
  elif (overwrite and write and tf.io.gfile.exists(config.model_dir)
        and tf.train.latest_checkpoint(config.model_dir)):
    shutil.rmtree(config.model_dir)
  if write:
    tf.io.gfile.makedirs(config.model_dir)
    write_json(path, config.to_dict())


def check_layout(path):
  """ValueError when the checkpoint at `path` has the former layout."""
  roots = {name.split("/", 1)[0] for name, _ in tf.train.list_variables(path)}
  if _OLD_LAYOUT_KEY in roots or "model" not in roots:
    folder = os.path.dirname(path)
    raise ValueError(
        f"the checkpoint in {folder} has the former layout (model weights "
        "saved only through the optimizer) and cannot be restored; its "
        "encoder/ export is complete, or retrain with --overwrite.")


def restore_latest(checkpoint, step, model_dir):
  """Restores the latest checkpoint of model_dir into `checkpoint`.

  Args:
    checkpoint: tf.train.Checkpoint(model, optimizer, step).
    step: its step variable.
    model_dir: the run's folder.

  Returns:
    The restored step, or 0 when model_dir has no checkpoint.
  """
  latest = tf.train.latest_checkpoint(model_dir)
  if latest is None:
    return 0
  check_layout(latest)
  checkpoint.restore(latest).assert_existing_objects_matched()
  return int(step.numpy())


def restore_model(model, model_dir):
  """Restores only the model's variables from model_dir's latest checkpoint.

  Returns:
    The checkpoint path restored.

  Raises:
    ValueError: no checkpoint, or one of the former layout.
  """
  latest = tf.train.latest_checkpoint(model_dir)
  if latest is None:
    raise ValueError(f"{model_dir!r} has no checkpoint.")
  check_layout(latest)
  status = tf.train.Checkpoint(model=model).restore(latest)
  status.expect_partial()  # The optimizer's slots and the step stay unread.
  status.assert_existing_objects_matched()
  return latest
