r"""Training speed of the default configuration.

  python benchmarks/train.py [--json=PATH] [--data_dir=DIR] [--steps=N]
                             [--rounds=R] [--variants=float32,default,...]
                             [--noreference]

Measures, for train.py's default configuration (override the model with
--width, --batch_size, --objective, ...):
  * the speed-up of today's default over the float32 reference (the
    previous default: TensorFlow's Eigen kernels, i.e. oneDNN off, and
    Keras's unfused synchronised BatchNorm), and the mixed_bfloat16 variant
    of today's default, on real data: `float32_examples_per_s`,
    `default_examples_per_s`, `mixed_bfloat16_examples_per_s` and
    `default_over_float32` (goal >= 2). oneDNN is switched when TensorFlow
    is imported, so each variant runs in a child process of its own; the
    children run one after another in --rounds rounds (reference, default,
    bf16, reference, ...) and each variant's figure is the median of its
    rounds' medians;
  * examples/s and step time with the real input pipeline;
  * step time with cached data (the first batches of the same pipeline,
    `.take(k).cache().repeat()`): real / cached should be <= 1.1, i.e. the
    input pipeline keeps up with the model;
  * step time with jit_compile (XLA) on vs off (cached data), and with 4
    steps per tf.function call (--steps_per_execution=4, real data) against
    one: `steps_per_execution_4_speedup`;
  * the cost of --deterministic's op determinism and order-keeping input
    pipeline on real data: `deterministic_cost` = det / default - 1 (its
    third part, one inter-op thread, is process-wide and set before the first
    op, so it cannot be interleaved here: time train.py runs for it);
  * the ranking op's share of the step (goal < 5%): the step with the
    objective's ranking (perturbed_fy, soft_rank) against the same step with
    the ranking replaced by the identity (the "mse" objective: same model, the
    scores compared with the ranks directly), and the ranking loss alone
    (forward + backward on [batch, n] scores) timed in isolation.
Times are medians over --steps single-step calls after --warmup steps (the
first call also traces), the variants' steps interleaved round-robin so that
the load of other processes on shared cores hits them alike. Everything runs on this process's devices (CPU here).
"""

import json
import os
import platform
import statistics
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
# audio_perm before TensorFlow: it turns on oneDNN unless the environment
# says TF_ENABLE_ONEDNN_OPTS=0 (the float32 reference's child).
import audio_perm  # noqa: F401  pylint: disable=unused-import
import tensorflow as tf

from audio_perm import config as config_lib
from audio_perm import objectives
from audio_perm import training

_D = config_lib.TrainConfig().to_dict()

# Child variants: environment and TrainConfig overrides.
REFERENCE_VARIANTS = {
    "float32": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, {}),
    "default": ({}, {}),
    "mixed_bfloat16": ({}, {"mixed_precision": True}),
}

flags.DEFINE_string("json", None, "Write the results here as JSON.")
flags.DEFINE_string("data_dir", None,
                    "Folder dataset (default: the embedded default dataset).")
flags.DEFINE_integer("steps", 10, "Timed steps per measurement.")
flags.DEFINE_integer("warmup", 3, "Untimed steps first (tracing, buffers).")
flags.DEFINE_integer("cached_batches", 4, "Batches kept by the cached input.")
flags.DEFINE_float("width", _D["width"], "Backbone width.")
flags.DEFINE_integer("batch_size", _D["batch_size"], "Global batch size.")
flags.DEFINE_integer("num_patches", _D["num_patches"], "Patches.")
flags.DEFINE_string("patching", _D["patching"], "Patching scheme.")
flags.DEFINE_string("objective", _D["objective"], "Objective of the main runs.")
flags.DEFINE_integer("ranking_repeats", 50, "Calls of the isolated loss.")
flags.DEFINE_integer("rounds", 2, "Rounds of the reference/default/bf16 "
                     "child processes.")
flags.DEFINE_bool("reference", True, "Time the float32 reference and bf16 "
                  "variants in child processes.")
flags.DEFINE_list("variants", list(REFERENCE_VARIANTS),
                  "Child variants to time (float32 and default are needed "
                  "for default_over_float32).")
flags.DEFINE_enum("child", None, list(REFERENCE_VARIANTS),
                  "Internal: time one variant in this process and print "
                  "its JSON.")
FLAGS = flags.FLAGS


def _config(**overrides):
  values = dict(data_dir=FLAGS.data_dir, width=FLAGS.width,
                batch_size=FLAGS.batch_size, num_patches=FLAGS.num_patches,
                patching=FLAGS.patching, objective=FLAGS.objective,
                verbose=False)
  values.update(overrides)
  return config_lib.TrainConfig().replace(**values)


def _set_op_determinism(enabled):
  from tensorflow.python.framework import config as tf_config  # pylint: disable=g-direct-tensorflow-import
  if enabled:
    tf_config.enable_op_determinism()
  else:
    tf_config.disable_op_determinism()


class StepTimer:
  """A fresh Trainer on real or cached input, warmed up, timed step by step."""

  def __init__(self, config, cached):
    trainer = training.Trainer(config)
    dataset_fn = training.make_dataset_fn(config,
                                          trainer.objective.permutation_set)
    if cached:
      real_fn = dataset_fn

      def dataset_fn(ctx):  # pylint: disable=function-redefined
        return real_fn(ctx).take(FLAGS.cached_batches).cache().repeat()

    self.iterator = trainer.distributed_iterator(dataset_fn)
    self.train_fn = trainer.train_function()
    # Steps per call (--steps_per_execution); times are per step.
    self.chunk = config.steps_per_execution
    self.one = tf.constant(self.chunk)
    self.deterministic = config.deterministic
    _set_op_determinism(self.deterministic)
    for _ in range(max(FLAGS.warmup, FLAGS.cached_batches if cached else 0)):
      self.train_fn(self.iterator, self.one)
    self.times = []

  def step(self):
    # Op determinism is process-wide: each timer runs its steps under its
    # own setting (the tf.data half of --deterministic is per pipeline).
    _set_op_determinism(self.deterministic)
    start = time.perf_counter()
    loss, _ = self.train_fn(self.iterator, self.one)
    float(loss)  # Waits for the step.
    self.times.append((time.perf_counter() - start) / self.chunk)

  @property
  def median(self):
    return statistics.median(self.times)


def time_variants(variants):
  """{name: median s/step}, the variants' steps interleaved round-robin.

  Interleaving makes a change of machine load (other processes on shared
  cores) hit every variant alike instead of whichever ran at that time.
  """
  timers = {name: StepTimer(config, cached)
            for name, (config, cached) in variants.items()}
  for _ in range(FLAGS.steps):
    for timer in timers.values():
      timer.step()
  return {name: timer.median for name, timer in timers.items()}


def time_loss_alone(config):
  """Median seconds of the objective's loss forward + backward on scores."""
  objective = objectives.from_config(config.objective,
                                     config.frontend.num_patches)
  scores = tf.random.normal([config.batch_size, objective.head_size])
  if objective.name == "classification":
    target = tf.zeros([config.batch_size], tf.int32)
  else:
    target = tf.argsort(tf.random.normal([config.batch_size,
                                          objective.num_patches]))
  seed = tf.constant([1, 2], tf.int64)

  @tf.function
  def loss_and_grad(scores):
    with tf.GradientTape() as tape:
      tape.watch(scores)
      loss = tf.reduce_sum(objective.loss(scores, target, seed=seed))
    return tape.gradient(loss, scores)

  loss_and_grad(scores).numpy()
  times = []
  for _ in range(FLAGS.ranking_repeats):
    start = time.perf_counter()
    loss_and_grad(scores).numpy()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def run_child(name):
  """Times REFERENCE_VARIANTS[name] here; prints {"step_s": ...} as JSON."""
  from audio_perm import models  # pylint: disable=g-import-not-at-top
  from audio_perm.training import trainer  # pylint: disable=g-import-not-at-top
  env, overrides = REFERENCE_VARIANTS[name]
  if env.get("TF_ENABLE_ONEDNN_OPTS") == "0":
    if trainer.onednn_enabled():
      raise RuntimeError("the float32 reference needs oneDNN off.")
    models.SyncBatchNormalization.use_fused_kernel = False
  elif trainer.onednn_enabled() is False:
    raise RuntimeError(f"{name}: oneDNN is off in this child.")
  timer = StepTimer(_config(**overrides), cached=False)
  for _ in range(FLAGS.steps):
    timer.step()
  print("CHILD_RESULT " + json.dumps({"variant": name,
                                      "step_s": timer.median}), flush=True)


def time_reference_variants():
  """{variant: median s/step over rounds}, each in its own child process."""
  import subprocess  # pylint: disable=g-import-not-at-top
  rounds = {name: [] for name in FLAGS.variants}
  for _ in range(FLAGS.rounds):
    for name in FLAGS.variants:
      env, _ = REFERENCE_VARIANTS[name]
      command = [sys.executable, os.path.abspath(__file__), f"--child={name}",
                 f"--data_dir={FLAGS.data_dir}", f"--steps={FLAGS.steps}",
                 f"--warmup={FLAGS.warmup}", f"--width={FLAGS.width}",
                 f"--batch_size={FLAGS.batch_size}",
                 f"--num_patches={FLAGS.num_patches}",
                 f"--patching={FLAGS.patching}",
                 f"--objective={FLAGS.objective}"]
      child_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **env)
      child_env.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
      out = subprocess.run(command, env=child_env, check=True,
                           capture_output=True, text=True).stdout
      line = [l for l in out.splitlines() if l.startswith("CHILD_RESULT ")]
      rounds[name].append(json.loads(line[-1].split(" ", 1)[1])["step_s"])
      print(f"  {name:16s} {rounds[name][-1] * 1000:9.1f} ms/step", flush=True)
  return {name: statistics.median(times) for name, times in rounds.items()}


def main(argv):
  del argv
  if FLAGS.data_dir is None:
    from data_prep import render
    FLAGS.data_dir = render.ensure_default_dataset()
  if FLAGS.child:
    run_child(FLAGS.child)
    return
  base = _config()
  base.validate()
  results = {
      "device": "CPU" if not tf.config.list_physical_devices("GPU") else "GPU",
      "cpu_count": os.cpu_count(),
      "load_average_1min": os.getloadavg()[0],
      "platform": platform.platform(),
      "tensorflow": tf.__version__,
      "config": {k: base.to_dict()[k] for k in (
          "patching", "num_patches", "objective", "batch_size", "width",
          "embedding_dim", "perturbation_samples")},
      "steps_timed": FLAGS.steps,
  }

  def report(name, seconds):
    results[name] = seconds
    print(f"{name:40s} {seconds * 1000:9.1f} ms/step "
          f"({base.batch_size / seconds:7.1f} examples/s)", flush=True)

  if FLAGS.reference:
    print("float32 reference / default / mixed_bfloat16, one child process "
          "each, real data:", flush=True)
    medians = time_reference_variants()
    for name, seconds in medians.items():
      results[f"{name}_examples_per_s"] = base.batch_size / seconds
      results[f"{name}_step_s"] = seconds
    if "float32" in medians and "default" in medians:
      results["default_over_float32"] = (medians["float32"]
                                         / medians["default"])
      print(f"default / float32 reference = "
            f"{results['default_over_float32']:.2f}x (goal >= 2)", flush=True)
    if "mixed_bfloat16" in medians and "default" in medians:
      results["mixed_bfloat16_over_default"] = (medians["default"]
                                                / medians["mixed_bfloat16"])
      print(f"mixed_bfloat16 / default = "
            f"{results['mixed_bfloat16_over_default']:.2f}x", flush=True)

  variants = {
      "real_data": (base, False),
      "steps_per_execution=4": (_config(steps_per_execution=4), False),
      "deterministic": (_config(deterministic=True), False),
      "cached_data": (base, True),
      "jit_compile": (_config(jit_compile=True, deterministic=False), True),
      "identity_ranking(mse)": (_config(objective="mse"), True),
  }
  for name in ("perturbed_fy", "soft_rank"):
    if name != base.objective:
      variants[name] = (_config(objective=name), True)
  medians = time_variants(variants)
  for name, seconds in medians.items():
    report(f"{name}_step_s", seconds)
  results["examples_per_second"] = base.batch_size / medians["real_data"]
  results["deterministic_cost"] = (medians["deterministic"]
                                  / medians["real_data"] - 1.0)
  results["real_over_cached"] = medians["real_data"] / medians["cached_data"]
  results["steps_per_execution_4_speedup"] = (
      medians["real_data"] / medians["steps_per_execution=4"])
  results["jit_speedup"] = medians["cached_data"] / medians["jit_compile"]
  identity = medians["identity_ranking(mse)"]
  shares = {}
  for name in ("perturbed_fy", "soft_rank"):
    step = medians["cached_data" if name == base.objective else name]
    alone = time_loss_alone(_config(objective=name))
    shares[name] = {
        "step_s": step,
        "loss_alone_s": alone,
        "share_by_difference": (step - identity) / step,
        "share_by_isolated_loss": alone / step,
    }
    print(f"{name:14s} step {step * 1000:8.1f} ms, loss alone "
          f"{alone * 1000:7.2f} ms: share {100 * alone / step:5.2f}% "
          f"(difference with identity {100 * (step - identity) / step:+.1f}%)",
          flush=True)
  results["ranking_share"] = shares
  print(f"--deterministic costs {100 * results['deterministic_cost']:+.1f}% "
        "per step on real data", flush=True)
  print(f"real / cached = {results['real_over_cached']:.3f} (goal <= 1.1); "
        f"jit speed-up = {results['jit_speedup']:.2f}x; "
        f"4 steps per call: {results['steps_per_execution_4_speedup']:.2f}x; "
        f"{results['examples_per_second']:.1f} examples/s")
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump(results, f, indent=2, default=str)


if __name__ == "__main__":
  app.run(main)
