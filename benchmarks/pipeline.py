r"""Throughput of the pretext input pipeline against the bare STFT.

  python benchmarks/pipeline.py [--json=PATH] [--data_dir=DIR] \
      [--batch_size=32] [--num_batches=40] [--repeats=3] [--max_notes=300]

Measures in one process, at the same batch size:
  (a) STFT + log only: spectrogram.log_magnitude_spectrogram in a tf.function
      over a fixed in-memory batch [batch, 64000] of real rendered notes;
  (b) the whole pretext pipeline from TFRecords on disk
      (data.pretext_dataset: read, parse, STFT, patches, permutations,
      shuffled patches and targets), iterated as training would; with
      --pitch_copies=K, each note resampled into K copies first (the same
      number of STFTs per batch, batch_size / K notes).
For context it also times (a') the same STFT run per example in a tf.data map
over the in-memory batch (how the pipeline runs it by default), reported as
stft_per_example_tfdata_examples_per_s; the ratio is (b) / (a) as specified,
and ratio_to_fastest_stft = (b) / max((a), (a')) is the stricter figure (with
oneDNN on, the batched (a) can be the slower way to run the same STFT).
(a), (b) and (a') alternate `--repeats` times after a warm-up; the medians are
reported and ratio = pipeline / stft (goal on 2 cores: >= 0.8). Without
--data_dir a dataset of --max_notes notes is rendered with
data_prep.render.render_dataset into a temporary folder, and the render speed
is reported (notes/s, all cores). Peak memory is the peak resident set size of
this process (ru_maxrss; TensorFlow and TFDS imports alone take ~630 MB, and
the render may run in this process), also read after the pipeline's warm-up
before anything else runs (pipeline_only_peak_rss_mb), and that of the
render's worker processes separately.

The figures depend on what else runs: (a) is one multi-threaded op per batch
and loses more than the per-example pipeline when other processes compete for
the cores, so the 1-minute load average is recorded with the results.

Writes {"stft_examples_per_s", "pipeline_examples_per_s", "ratio",
"ratio_to_fastest_stft",
"render_notes_per_s", "peak_rss_mb", ...} to --json and prints them.
"""

import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
flags.DEFINE_string("json", None, "Write the results to this JSON file.")
flags.DEFINE_string("data_dir", None,
                    "Folder dataset to read; default: render one to a "
                    "temporary folder.")
flags.DEFINE_string("split", "train", "Split of the dataset to read.")
flags.DEFINE_integer("batch_size", 32, "Batch size of both measurements.")
flags.DEFINE_integer("num_batches", 40, "Batches timed per repeat.")
flags.DEFINE_integer("warmup_batches", 5, "Batches run before timing.")
flags.DEFINE_integer("repeats", 3, "Alternating (a)/(b) measurements.")
flags.DEFINE_integer("max_notes", 300, "Notes to render without --data_dir.")
flags.DEFINE_string("patching", "frequency", "Patching scheme.")
flags.DEFINE_integer("num_patches", 10, "Number of patches.")
flags.DEFINE_integer("frontend_batch_size", 1,
                     "Examples per frontend call in the pipeline "
                     "(data.pretext_dataset); 0 for whole batches.")
flags.DEFINE_integer("pitch_copies", 0,
                     "Time the pipeline with this many pitch-shifted copies "
                     "per note (--pitch_copies of train.py; each batch then "
                     "holds batch_size / pitch_copies notes). 0: off.")

flags.DEFINE_float("pitch_range", 3.0, "--pitch_range of the copies.")
flags.DEFINE_enum("pitch_band", "common", ["common", "full"],
                  "--pitch_band of the copies.")
flags.DEFINE_enum("pitch_envelope", "shifted", ["shifted", "original"],
                  "--pitch_envelope of the copies.")


def _peak_rss_mb(who=resource.RUSAGE_SELF):
  return resource.getrusage(who).ru_maxrss / 1024.0  # Linux: kB.


def _time_stft(audio, num_batches, warmup):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from audio_perm import spectrogram  # pylint: disable=g-import-not-at-top

  @tf.function
  def stft(x):
    return spectrogram.log_magnitude_spectrogram(x)

  for _ in range(warmup):
    stft(audio).numpy()
  start = time.perf_counter()
  for _ in range(num_batches):
    out = stft(audio)
  out.numpy()
  elapsed = time.perf_counter() - start
  return num_batches * int(audio.shape[0]) / elapsed


def _per_example_stft_iterator(audio):
  """(a') for context: the STFT per example in a tf.data map, in memory."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from audio_perm import spectrogram  # pylint: disable=g-import-not-at-top
  ds = tf.data.Dataset.from_tensor_slices(audio).repeat().map(
      lambda w: spectrogram.log_magnitude_spectrogram(w[tf.newaxis])[0],
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
  return iter(ds.batch(int(audio.shape[0])).prefetch(2))


def _time_batches(iterator, batch_size, num_batches, warmup):
  """Examples/s of `num_batches` batches drawn from a tf.data iterator."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  for _ in range(warmup):
    next(iterator)
  start = time.perf_counter()
  for _ in range(num_batches):
    out = next(iterator)
  tf.nest.map_structure(lambda t: t.numpy(), out)
  return num_batches * batch_size / (time.perf_counter() - start)


def main(argv):
  del argv
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  # audio_perm before TensorFlow: it turns oneDNN on, as in training.
  from audio_perm import data  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets  # pylint: disable=g-import-not-at-top,unused-import
  rss_after_import_mb = _peak_rss_mb()

  results = {
      "batch_size": FLAGS.batch_size,
      "num_batches": FLAGS.num_batches,
      "repeats": FLAGS.repeats,
      "patching": FLAGS.patching,
      "num_patches": FLAGS.num_patches,
      "frontend_batch_size": FLAGS.frontend_batch_size or FLAGS.batch_size,
      "pitch_copies": FLAGS.pitch_copies,
      "pitch_range": FLAGS.pitch_range,
      "pitch_band": FLAGS.pitch_band,
      "pitch_envelope": FLAGS.pitch_envelope,
      "cpu_count": os.cpu_count(),
      "tensorflow": tf.__version__,
  }
  tmp_dir = None
  data_dir = FLAGS.data_dir
  if data_dir is None:
    from data_prep import render  # pylint: disable=g-import-not-at-top
    tmp_dir = tempfile.mkdtemp(prefix="audio_perm_bench_")
    data_dir = os.path.join(tmp_dir, "nsynth")
    start = time.perf_counter()
    summary = render.render_dataset(data_dir, max_notes=FLAGS.max_notes,
                                    seed=0, progress=False, verbose=False)
    render_s = time.perf_counter() - start
    notes = _count_notes(summary, FLAGS.max_notes)
    results.update(
        render_notes=notes, render_seconds=round(render_s, 2),
        render_notes_per_s=round(notes / render_s, 1),
        render_workers_peak_rss_mb=round(_peak_rss_mb(
            resource.RUSAGE_CHILDREN), 1))
  results["data_dir"] = data_dir if FLAGS.data_dir else "(rendered, temporary)"

  try:
    # One real batch of audio for (a), read through the evaluation reader.
    audio = next(iter(data.waveform_dataset(
        data_dir=data_dir, split=FLAGS.split, batch_size=FLAGS.batch_size,
        drop_remainder=True)))["audio"]
    audio = tf.identity(audio)
    dataset = data.pretext_dataset(
        data_dir=data_dir, split=FLAGS.split, batch_size=FLAGS.batch_size,
        patching=FLAGS.patching, num_patches=FLAGS.num_patches, seed=0,
        frontend_batch_size=FLAGS.frontend_batch_size or None,
        pitch_copies=FLAGS.pitch_copies, pitch_range=FLAGS.pitch_range,
        pitch_band=FLAGS.pitch_band, pitch_envelope=FLAGS.pitch_envelope)
    iterator = iter(dataset)
    # Peak memory of the pipeline alone, before (a) and (a') allocate theirs.
    _time_batches(iterator, FLAGS.batch_size, 2 * FLAGS.warmup_batches, 0)
    pipeline_peak_rss_mb = _peak_rss_mb()
    per_example_stft = _per_example_stft_iterator(audio)
    stft_rates, pipeline_rates, per_example_rates = [], [], []
    for _ in range(FLAGS.repeats):
      stft_rates.append(_time_stft(audio, FLAGS.num_batches,
                                   FLAGS.warmup_batches))
      pipeline_rates.append(_time_batches(
          iterator, FLAGS.batch_size, FLAGS.num_batches,
          FLAGS.warmup_batches))
      per_example_rates.append(_time_batches(
          per_example_stft, FLAGS.batch_size, FLAGS.num_batches,
          FLAGS.warmup_batches))
    stft_rate = statistics.median(stft_rates)
    pipeline_rate = statistics.median(pipeline_rates)
    per_example_rate = statistics.median(per_example_rates)
    results.update(
        stft_examples_per_s=round(stft_rate, 1),
        pipeline_examples_per_s=round(pipeline_rate, 1),
        ratio=round(pipeline_rate / stft_rate, 3),
        stft_examples_per_s_all=[round(r, 1) for r in stft_rates],
        pipeline_examples_per_s_all=[round(r, 1) for r in pipeline_rates],
        stft_per_example_tfdata_examples_per_s=round(per_example_rate, 1),
        ratio_to_fastest_stft=round(
            pipeline_rate / max(stft_rate, per_example_rate), 3),
        peak_rss_mb=round(_peak_rss_mb(), 1),
        rss_after_imports_mb=round(rss_after_import_mb, 1),
        pipeline_only_peak_rss_mb=round(pipeline_peak_rss_mb, 1),
        load_average_1min=round(os.getloadavg()[0], 2))
  finally:
    if tmp_dir is not None:
      shutil.rmtree(tmp_dir, ignore_errors=True)

  text = json.dumps(results, indent=2)
  print(text)
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      f.write(text + "\n")


def _count_notes(summary, default):
  """Notes written by the render (its summary's "total_notes")."""
  if isinstance(summary, dict) and isinstance(summary.get("total_notes"), int):
    return summary["total_notes"]
  return default


if __name__ == "__main__":
  app.run(main)
