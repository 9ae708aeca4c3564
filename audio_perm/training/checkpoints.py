"""A run's folder: flags.json, checkpoints, and what may be resumed.

model_dir holds flags.json (the resolved flags, flat: flag name -> value),
checkpoints written by tf.train.CheckpointManager (the last 3 kept) and
TensorBoard logs. A checkpoint is `tf.train.Checkpoint(model, optimizer,
step)`: every model variable lies under `model/`. Checkpoints of the former
layout (weights reachable only through the optimizer, BatchNorm statistics
saved by path under `non_trainable/`) are refused with one line.

Unreadable checkpoints (a data file cut short by a full disk or an
interrupted copy, a garbage or missing .index): `restore_latest` reads every
tensor of a checkpoint (`checkpoint_problem`, checksums included) before
restoring it, names the bad newest one(s) in ONE warning line and resumes from
the newest readable one (three are kept); with none readable it raises one
ValueError saying what to do. Verifying first means a half-read checkpoint
never leaves its values in the variables. Writes stay atomic:
tf.train.CheckpointManager lists a checkpoint in model_dir/checkpoint only
after its files are complete.
"""

import json
import os
import re
import shutil

from absl import logging
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

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
  return config_lib.TrainConfig.from_dict(
      config_lib.TrainConfig.saved_values(read_json(path)))


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
    # A flag that the run's flags.json predates held its default then.
    saved = config_lib.TrainConfig.saved_values(read_json(path))
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


def _root_children(path):
  """Names of the objects the checkpoint at `path` was saved with."""
  graph = trackable_object_graph_pb2.TrackableObjectGraph()
  graph.ParseFromString(tf.train.load_checkpoint(path).get_tensor(
      "_CHECKPOINTABLE_OBJECT_GRAPH"))
  return {child.local_name for child in graph.nodes[0].children}


def check_layout(path):
  """ValueError when the checkpoint at `path` has the former layout.

  Judged by the objects of the checkpoint's object graph, not by its
  variable keys: a variable reachable from the model and the optimizer is
  stored once, under its shortest path, so a model without BatchNorm
  statistics (normalization "none" or "example") has no key under model/
  although every one of its variables is reachable from there.
  """
  roots = _root_children(path)
  if _OLD_LAYOUT_KEY in roots or "model" not in roots:
    folder = os.path.dirname(path)
    raise ValueError(
        f"the checkpoint in {folder} has the former layout (model weights "
        "saved only through the optimizer) and cannot be restored; its "
        "encoder/ export is complete, or retrain with --overwrite.")


def _step_of(path):
  match = re.search(r"-(\d+)$", path)
  return int(match.group(1)) if match else -1


def checkpoint_paths(model_dir):
  """The checkpoints of model_dir, newest first (prefixes, no suffix).

  The ones listed in model_dir/checkpoint (CheckpointManager's state, which
  names a checkpoint only once it is complete); when that file is itself
  unreadable, every `<prefix>.index` found, by step.
  """
  state_file = os.path.join(model_dir, "checkpoint")
  if not tf.io.gfile.exists(state_file):
    return []
  try:
    state = tf.train.get_checkpoint_state(model_dir)
  except (tf.errors.OpError, ValueError) as e:  # A garbage text proto.
    logging.warning("%s is unreadable (%s); looking for checkpoints by name.",
                    state_file, _first_line(e))
    state = None
  if state is not None and state.model_checkpoint_path:
    # get_checkpoint_state has already joined relative paths to model_dir.
    paths = list(state.all_model_checkpoint_paths)
    if state.model_checkpoint_path not in paths:
      paths.append(state.model_checkpoint_path)
  else:
    paths = [p[:-len(".index")] for p in
             tf.io.gfile.glob(os.path.join(model_dir, "*.index"))]
  return sorted(dict.fromkeys(paths), key=_step_of, reverse=True)


def _first_line(error):
  text = getattr(error, "message", None) or str(error) or type(error).__name__
  return text.strip().splitlines()[0] if text.strip() else type(
      error).__name__


def checkpoint_problem(path):
  """None when every tensor of the checkpoint at `path` reads, else one line.

  Reads the whole checkpoint once (TensorFlow checks each tensor's
  checksum): 0.01-0.03 s for the default recipe's 2.5 MB on 2 busy cores.

  Args:
    path: a checkpoint prefix, e.g. model_dir/ckpt-20.

  Returns:
    None, or "<file> <what is wrong> (<reader's error>)".
  """
  index = path + ".index"
  if not tf.io.gfile.exists(index):
    return f"{index} is missing"
  try:
    reader = tf.train.load_checkpoint(path)
    names = list(reader.get_variable_to_shape_map())
  except Exception as e:  # pylint: disable=broad-except
    return f"{index} is not a readable checkpoint index ({_first_line(e)})"
  data_files = sorted(tf.io.gfile.glob(path + ".data-*"))
  shown = ", ".join(data_files) or f"{path}.data-*"
  try:
    for name in names:
      reader.get_tensor(name)
  except Exception as e:  # pylint: disable=broad-except
    # IndexError "Read less bytes than requested" for a file cut short,
    # DataLossError for a checksum mismatch, NotFoundError for a lost shard.
    what = ("is cut short" if isinstance(e, IndexError)
            else "is missing" if isinstance(e, tf.errors.NotFoundError)
            else "is corrupt")
    return f"{shown} {what} ({_first_line(e)})"
  return None


def restore_latest(checkpoint, step, model_dir):
  """Restores the newest readable checkpoint of model_dir into `checkpoint`.

  A newest checkpoint that does not read completely (`checkpoint_problem`)
  is named in one warning line and the previous one is restored instead.

  Args:
    checkpoint: tf.train.Checkpoint(model, optimizer, step).
    step: its step variable.
    model_dir: the run's folder.

  Returns:
    The restored step, or 0 when model_dir has no checkpoint.

  Raises:
    ValueError: checkpoints exist but none is readable (each is named), or
      the newest readable one has the former layout.
  """
  paths = checkpoint_paths(model_dir)
  if not paths:
    return 0
  problems = []
  for path in paths:
    problem = checkpoint_problem(path)
    if problem is None:
      break
    problems.append(problem)
  else:
    raise ValueError(
        f"no readable checkpoint in {model_dir}: {'; '.join(problems)}. "
        f"Move or delete {model_dir} to start this run over, or pass another "
        "--model_dir.")
  check_layout(path)
  checkpoint.restore(path).assert_existing_objects_matched()
  restored = int(step.numpy())
  if problems:
    logging.warning("Unreadable checkpoint: %s; resuming from %s (step %d).",
                    "; ".join(problems), path, restored)
  return restored


def restore_model(model, model_dir):
  """Restores only the model's variables from model_dir's latest checkpoint.

  Returns:
    The checkpoint path restored.

  Raises:
    ValueError: no checkpoint, one of the former layout, or a latest
      checkpoint that does not read (its file named; no older one is used,
      so that what is evaluated is what the run's last step wrote).
  """
  paths = checkpoint_paths(model_dir)
  if not paths:
    raise ValueError(f"{model_dir!r} has no checkpoint.")
  latest = paths[0]
  try:
    check_layout(latest)
    status = tf.train.Checkpoint(model=model).restore(latest)
    status.expect_partial()  # The optimizer's slots and the step stay unread.
    status.assert_existing_objects_matched()
  except (IndexError, tf.errors.OpError) as e:
    # Only a failed restore pays for a full read, to say which file is bad.
    problem = checkpoint_problem(latest) or (
        f"{latest} could not be restored ({_first_line(e)})")
    raise ValueError(
        f"the latest checkpoint of {model_dir} is unreadable: {problem}. Run "
        "train.py again with this run's flags: it resumes from the previous "
        "checkpoint and writes this one again.") from None
  return latest
