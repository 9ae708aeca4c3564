r"""Speed of the downstream evaluation: embeddings/s and the wall time of a run.

  python benchmarks/eval.py [--json=PATH] [--data_dir=DIR] [--max_notes=5000] \
      [--encoder=random] [--num_labeled=1000] [--seeds=3]

One encoder x 3 tasks (instrument_family, instrument, pitch: 4 probes, since
pitch is scored as regression and as classification) x --seeds seeds at
--num_labeled labels, on ~5,000 notes rendered with
data_prep.render.render_dataset into a temporary folder (or --data_dir).
The encoder defaults to `random`: the CFN at train.py's default architecture,
which costs what a trained one costs to run (pass a SavedModel path to time
that instead).

Reported:
  * render_notes_per_s: rendering speed (when rendering here);
  * embed_notes_per_s (= embedding_steady_examples_per_s): notes embedded
    per second in the evaluation's passes (read + decode + frontend +
    encoder), train and test splits together, without each pass's first
    batch (the encoder's tracing and the pipeline's fill; training's rate
    likewise leaves out its warm-up steps); embedding_examples_per_s
    counts them in;
  * train_examples_per_s: training examples/s of the same architecture
    (train.py's defaults, real input pipeline on the same data), timed in
    the same run after the evaluation, and embed_over_train, the ratio of
    the two (goal >= 2.5: a forward pass should cost well under a training
    step's forward + backward);
  * encoder_only_examples_per_s: the encoder alone on an in-memory batch;
  * handcrafted_examples_per_s: the handcrafted baseline on the same batch;
  * probe_seconds, seconds_per_probe: the probes on cached embeddings;
  * eval_wall_seconds: evaluation.evaluate end to end (labels, subsets,
    embeddings, probes), which is what `python eval.py` costs after imports;
  * load_average_1min: what else ran on the machine meanwhile.
"""

import json
import os
import shutil
import sys
import tempfile
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
flags.DEFINE_string("json", None, "Write the results to this JSON file.")
flags.DEFINE_string("data_dir", None,
                    "Folder dataset to evaluate on; default: render one.")
flags.DEFINE_integer("max_notes", 5000, "Notes to render without --data_dir.")
flags.DEFINE_string("encoder", "random",
                    "random, handcrafted or a SavedModel path.")
flags.DEFINE_integer("num_labeled", 1000, "Labels per probe.")
flags.DEFINE_integer("seeds", 3, "Seeds.")
flags.DEFINE_integer("batch_size", 64, "Embedding batch size.")
flags.DEFINE_enum("probe", "mlp", ["mlp", "linear"], "Probe.")
flags.DEFINE_integer("train_steps", 8, "Timed training steps (0: skip).")


def _encoder_only(encoder, audio, repeats=3):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  batch = tf.constant(audio)
  encoder(batch)  # Trace.
  start = time.perf_counter()
  for _ in range(repeats):
    encoder(batch).numpy()
  return repeats * len(audio) / (time.perf_counter() - start)


def _train_examples_per_s(data_dir, steps, warmup=3):
  """Median training examples/s of train.py's defaults on data_dir."""
  import statistics  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from audio_perm import config as config_lib  # pylint: disable=g-import-not-at-top
  from audio_perm import training  # pylint: disable=g-import-not-at-top
  config = config_lib.TrainConfig().replace(data_dir=data_dir, verbose=False)
  trainer = training.Trainer(config)
  iterator = trainer.distributed_iterator(training.make_dataset_fn(
      config, trainer.objective.permutation_set))
  train_fn = trainer.train_function()
  one = tf.constant(1)
  for _ in range(warmup):
    train_fn(iterator, one)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    float(train_fn(iterator, one)[0])
    times.append(time.perf_counter() - start)
  return config.batch_size / statistics.median(times)


def main(argv):
  del argv
  from audio_perm import evaluation  # pylint: disable=g-import-not-at-top
  from audio_perm import export  # pylint: disable=g-import-not-at-top
  from audio_perm import probe  # pylint: disable=g-import-not-at-top
  from data_prep import render  # pylint: disable=g-import-not-at-top

  figures = {"encoder": FLAGS.encoder, "num_labeled": FLAGS.num_labeled,
             "seeds": FLAGS.seeds, "probe": FLAGS.probe,
             "cpu_count": os.cpu_count()}
  tmp = None
  data_dir = FLAGS.data_dir
  try:
    if data_dir is None:
      tmp = tempfile.mkdtemp(prefix="eval_bench_")
      data_dir = os.path.join(tmp, "notes")
      start = time.perf_counter()
      summary = render.render_dataset(data_dir, max_notes=FLAGS.max_notes,
                                      seed=0, verbose=False)
      seconds = time.perf_counter() - start
      figures["render_seconds"] = seconds
      figures["render_notes_per_s"] = summary["total_notes"] / seconds
    config = evaluation.EvalConfig(
        encoders=(FLAGS.encoder,), dataset_dir=data_dir,
        num_labeled=(FLAGS.num_labeled,), seeds=FLAGS.seeds,
        probe=probe.ProbeConfig(probe=FLAGS.probe),
        batch_size=FLAGS.batch_size, progress=True)
    start = time.perf_counter()
    report = evaluation.evaluate(config)
    figures["eval_wall_seconds"] = time.perf_counter() - start
    resolved = report["config"]
    timing = resolved["timing"]
    embedded = (timing["train_embedding"]["num_examples"] +
                timing["test_embedding"]["num_examples"])
    embed_seconds = (timing["train_embedding"]["seconds"] +
                     timing["test_embedding"]["seconds"])
    # Steady state: without each pass's first batch (tracing, the pipeline's
    # fill), as training's rate leaves out its warm-up steps.
    passes = [timing["train_embedding"], timing["test_embedding"]]
    steady = None
    if all("steady_seconds" in p for p in passes):
      steady = (sum(p["steady_num_examples"] for p in passes) /
                sum(p["steady_seconds"] for p in passes))
    num_probes = len(report["results"]) * FLAGS.seeds
    figures.update({
        "dataset_splits": resolved["dataset_resolved"]["splits"],
        "notes_embedded": embedded,
        "embedding_seconds": embed_seconds,
        "embedding_examples_per_s": embedded / embed_seconds,
        "embedding_steady_examples_per_s": steady,
        "probe_seconds": timing["probe_seconds"],
        "num_probes": num_probes,
        "seconds_per_probe": timing["probe_seconds"] / num_probes,
        "results": [{k: r[k] for k in ("task", "metric", "mean", "std")}
                    for r in report["results"]],
    })

    # The encoders alone, on one in-memory batch of real notes.
    builder = evaluation.open_dataset(dataset_dir=data_dir)
    num_samples = evaluation.check_features(builder, ())
    _, audio, _ = evaluation.compute_embeddings(
        builder, "test", [], indices=list(range(min(
            FLAGS.batch_size, evaluation.split_size(builder, "test")))),
        keep_audio=True, progress=False)
    encoder = evaluation.make_encoder(
        FLAGS.encoder, export.EncoderConfig.from_dict(resolved["architecture"]),
        num_samples)
    figures["encoder_only_examples_per_s"] = _encoder_only(encoder, audio)
    figures["handcrafted_examples_per_s"] = _encoder_only(
        evaluation.handcrafted_encoder(num_samples), audio)
    figures["embed_notes_per_s"] = (steady if steady is not None else
                                    figures["embedding_examples_per_s"])
    if FLAGS.train_steps:
      figures["train_examples_per_s"] = _train_examples_per_s(
          data_dir, FLAGS.train_steps)
      figures["embed_over_train"] = (figures["embed_notes_per_s"]
                                     / figures["train_examples_per_s"])
    figures["load_average_1min"] = os.getloadavg()[0]
  finally:
    if tmp is not None:
      shutil.rmtree(tmp, ignore_errors=True)

  text = json.dumps(figures, indent=2)
  print(text)
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  app.run(main)
