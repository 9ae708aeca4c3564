"""tf.distribute strategies from a name, and distributed input.

`get_strategy(name)` with name in `STRATEGIES`:
  * "auto": "tpu" if a TPU address is given, else "multi_worker" if TF_CONFIG
    describes more than one task, else "mirrored" if there are several GPUs,
    else "default".
  * "default": tf.distribute's default (no-op) strategy, one device.
  * "one_device": OneDeviceStrategy on the first GPU, else the CPU.
  * "mirrored": MirroredStrategy over `devices` (default: all local GPUs, or
    the CPU when there is none) - synchronous data parallelism on one machine.
  * "multi_worker": MultiWorkerMirroredStrategy; the cluster and this task's
    role come from the TF_CONFIG environment variable, e.g.
      {"cluster": {"worker": ["host1:port", "host2:port"]},
       "task": {"type": "worker", "index": 0}}
    Every worker runs the same program; worker 0 is the chief (it writes
    checkpoints, summaries and the export; see `is_chief`).
  * "tpu": TPUStrategy on the TPU at `tpu` (a name or grpc:// address, or
    "local" for a TPU VM), after connecting to the cluster and initialising
    the TPU system. Not exercised by the tests (no TPU here); the training
    step only uses ops that TPUs support (no Python at step time, static
    shapes, drop_remainder batches).

Input goes through `distribute_dataset`, which calls
`strategy.distribute_datasets_from_function` with a `dataset_fn(input_context)`
that must batch with the PER-REPLICA batch size
(`input_context.get_per_replica_batch_size(global_batch_size)`) and shard by
`input_context.input_pipeline_id` (audio_perm.data.pretext_dataset does both
when given `input_context`).
"""

import json
import os

import tensorflow as tf

from audio_perm import config as config_lib

STRATEGIES = config_lib.STRATEGIES


def _tf_config():
  try:
    return json.loads(os.environ.get("TF_CONFIG", "") or "{}")
  except json.JSONDecodeError as e:
    raise ValueError(f"TF_CONFIG is not valid JSON ({e}): "
                     f"{os.environ.get('TF_CONFIG')!r}.") from None


def _num_tasks(tf_config):
  cluster = tf_config.get("cluster", {})
  return sum(len(v) for k, v in cluster.items() if k in ("chief", "worker"))


def get_strategy(name="auto", tpu=None, devices=None):
  """A tf.distribute.Strategy from its name.

  Args:
    name: one of STRATEGIES (see the module docstring).
    tpu: TPU name or address for "tpu" (and "auto"); None otherwise.
    devices: optional device list for "mirrored" (e.g. ["/cpu:0", "/cpu:1"]
      over logical CPUs); ignored by the other strategies.

  Returns:
    A tf.distribute.Strategy. Create it once per process, before any other
    TensorFlow op for "multi_worker" and "tpu".

  Raises:
    ValueError: unknown name, or "multi_worker" without a TF_CONFIG cluster.
  """
  if name not in STRATEGIES:
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}.")
  if name == "auto":
    if tpu:
      name = "tpu"
    elif _num_tasks(_tf_config()) > 1:
      name = "multi_worker"
    elif len(tf.config.list_logical_devices("GPU")) > 1:
      name = "mirrored"
    else:
      name = "default"
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "one_device":
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
  if name == "mirrored":
    return tf.distribute.MirroredStrategy(devices=devices)
  if name == "multi_worker":
    tf_config = _tf_config()
    if not tf_config.get("cluster"):
      raise ValueError(
          "strategy 'multi_worker' needs a TF_CONFIG environment variable "
          "describing the cluster, e.g. TF_CONFIG='{\"cluster\": {\"worker\": "
          "[\"host1:12345\", \"host2:12345\"]}, \"task\": {\"type\": "
          "\"worker\", \"index\": 0}}' on the first worker.")
    # AUTO: NCCL all-reduce between GPUs, RING (gRPC) otherwise.
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation
        .AUTO)
    return tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=options)
  # name == "tpu"
  resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
      tpu=tpu or "local")
  tf.config.experimental_connect_to_cluster(resolver)
  tf.tpu.experimental.initialize_tpu_system(resolver)
  return tf.distribute.TPUStrategy(resolver)


def task_info(strategy):
  """(task_type, task_id) of this process; ("worker", 0) when not clustered."""
  resolver = getattr(strategy, "cluster_resolver", None)
  task_type = getattr(resolver, "task_type", None) or "worker"
  task_id = getattr(resolver, "task_id", None) or 0
  if isinstance(strategy, tf.distribute.TPUStrategy):
    return "worker", 0  # One host program drives the TPU.
  return task_type, int(task_id)


def is_chief(strategy):
  """True for the task that writes checkpoints, summaries and exports."""
  task_type, task_id = task_info(strategy)
  return task_type == "chief" or (task_type == "worker" and task_id == 0)


def per_replica_batch_size(strategy, global_batch_size):
  """global_batch_size / replicas, or ValueError if it does not divide."""
  replicas = strategy.num_replicas_in_sync
  if global_batch_size % replicas:
    raise ValueError(
        f"batch_size={global_batch_size} (the global batch) is not divisible "
        f"by the {replicas} replicas of the strategy; use a multiple of "
        f"{replicas}.")
  return global_batch_size // replicas


def distribute_dataset(strategy, dataset_fn):
  """Distributed dataset from `dataset_fn(input_context)`.

  Args:
    strategy: a tf.distribute.Strategy.
    dataset_fn: input_context -> tf.data.Dataset of per-replica batches.

  Returns:
    A tf.distribute.DistributedDataset whose elements are per-replica values.
  """
  return strategy.distribute_datasets_from_function(dataset_fn)
