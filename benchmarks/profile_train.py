r"""Where a training step's time goes, from the TensorFlow profiler.

  python benchmarks/profile_train.py [--steps=5] [--json=PATH] [--top=12]

Builds train.py's default Trainer (override --width, --batch_size,
--objective, --mixed_precision), feeds it one fixed in-memory batch of
random patches (so the input pipeline is not in the picture: see
benchmarks/pipeline.py and the real/cached ratio of benchmarks/train.py),
warms it up, then records --steps steps with `tf.profiler.experimental`
and reads the trace (the XSpace protobuf the profiler writes) itself, so
no TensorBoard plugin is needed. Every TensorFlow op executed on the
compute threads is attributed by its name scope to a part of the model:

  blockK conv/norm/relu/pool, forward or backward (gradient_tape/...),
  standardize, dense (fc1, fc2, head), objective (the ranking loss),
  optimizer, other.

Printed: CPU milliseconds per step summed over threads, and each part's
share; the wall-clock step time for comparison. Op names follow the
Keras layers' names (models.py); an op the rules do not recognise is
reported as other:<op type>.
"""

import collections
import glob
import json
import os
import re
import sys
import tempfile
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
import audio_perm  # noqa: F401  (before TensorFlow: oneDNN on)
import numpy as np
import tensorflow as tf

from audio_perm import config as config_lib
from audio_perm import training

_D = config_lib.TrainConfig().to_dict()
flags.DEFINE_integer("steps", 5, "Profiled steps.")
flags.DEFINE_integer("warmup", 3, "Steps before profiling.")
flags.DEFINE_integer("top", 12, "Parts to print.")
flags.DEFINE_string("json", None, "Write the breakdown here.")
flags.DEFINE_float("width", _D["width"], "Backbone width.")
flags.DEFINE_integer("batch_size", _D["batch_size"], "Batch size.")
flags.DEFINE_string("objective", _D["objective"], "Objective.")
flags.DEFINE_bool("mixed_precision", False, "mixed_bfloat16 on CPU.")
FLAGS = flags.FLAGS

_BLOCK = re.compile(r"(block\d)(?:_\d+)?/(conv|norm|relu|pool)")


def part_of(op_name):
  """The model part an op belongs to, from its name scope."""
  backward = "gradient_tape" in op_name
  match = _BLOCK.search(op_name)
  if match:
    return (f"{match.group(1)} {match.group(2)} "
            f"{'backward' if backward else 'forward'}")
  lowered = op_name.lower()
  for key, part in (("standardize", "standardize"), ("fc1", "dense"),
                    ("fc2", "dense"), ("/head", "dense"), ("concat", "dense"),
                    ("adam", "optimizer"), ("optimizer", "optimizer"),
                    ("perturb", "objective"), ("rank", "objective"),
                    ("loss", "objective"), ("sort", "objective")):
    if key in lowered:
      return part
  return "other:" + op_name.rsplit(":", 1)[-1]


def op_times(logdir):
  """{op name: total ms} over the compute threads of the newest trace."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-direct-tensorflow-import
  path = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"),
                          recursive=True))[-1]
  space = xplane_pb2.XSpace()
  with open(path, "rb") as f:
    space.ParseFromString(f.read())
  totals = collections.Counter()
  for plane in space.planes:
    for line in plane.lines:
      if not line.name.startswith("tf_Compute"):
        continue
      for event in line.events:
        name = plane.event_metadata[event.metadata_id].name
        if name in ("ExecutorState::Process", "ParallelFor"):
          continue  # Containers of the ops, not ops.
        totals[name] += event.duration_ps / 1e9
  return totals


def main(argv):
  del argv
  config = config_lib.TrainConfig().replace(
      width=FLAGS.width, batch_size=FLAGS.batch_size,
      objective=FLAGS.objective, mixed_precision=FLAGS.mixed_precision,
      verbose=False)
  trainer = training.Trainer(config)
  n = config.frontend.num_patches
  frames, bins = config.frontend.patch_shape()
  rng = np.random.default_rng(0)
  patches = rng.normal(size=(config.batch_size, n, frames, bins, 1))
  target = np.stack([rng.permutation(n) for _ in range(config.batch_size)])
  dataset = tf.data.Dataset.from_tensors(
      (tf.constant(patches, tf.float32), tf.constant(target, tf.int32)))
  iterator = trainer.distributed_iterator(lambda _: dataset.repeat())
  train_fn = trainer.train_function()
  one = tf.constant(1)
  for _ in range(FLAGS.warmup):
    float(train_fn(iterator, one)[0])
  start = time.perf_counter()
  for _ in range(FLAGS.steps):
    float(train_fn(iterator, one)[0])
  step_ms = (time.perf_counter() - start) / FLAGS.steps * 1000
  logdir = tempfile.mkdtemp(prefix="profile_train_")
  tf.profiler.experimental.start(logdir)
  for _ in range(FLAGS.steps):
    float(train_fn(iterator, one)[0])
  tf.profiler.experimental.stop()
  parts = collections.Counter()
  for name, ms in op_times(logdir).items():
    parts[part_of(name)] += ms / FLAGS.steps
  total = sum(parts.values())
  print(f"wall {step_ms:.0f} ms/step; ops {total:.0f} CPU ms/step over the "
        f"compute threads; load {os.getloadavg()[0]:.1f}")
  for part, ms in parts.most_common(FLAGS.top):
    print(f"{ms:9.1f} ms {100 * ms / total:5.1f} %  {part}")
  groups = collections.Counter()
  for part, ms in parts.items():
    words = part.split()
    groups[" ".join(w for w in words if not w.startswith("block"))] += ms
  print("by kind:", ", ".join(f"{k} {100 * v / total:.0f}%"
                              for k, v in groups.most_common(8)))
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump({"wall_ms_per_step": step_ms, "op_ms_per_step": total,
                 "parts_ms_per_step": dict(parts.most_common()),
                 "load_average_1min": os.getloadavg()[0],
                 "onednn": training.trainer.onednn_enabled()}, f, indent=2)


if __name__ == "__main__":
  app.run(main)
