r"""Throughput of audio_perm.embed in seconds of audio per second.

  python benchmarks/embed.py [--json=PATH] [--encoder=DIR] [--num_files=24] \
      [--seconds=10] [--sample_rate=44100] [--channels=2] [--batch_size=16] \
      [--timestamp_files=2]

Writes --num_files WAV files of --seconds each (16-bit, --sample_rate Hz,
--channels channels: decaying tones and noise) into a temporary folder and
embeds them with an exported encoder (default: train.py's default
architecture with random weights, exported here with the default hops; a
trained one costs the same to run).

Reported:
  * command_audio_s_per_s: `python -m audio_perm.embed --input=DIR/*.wav`
    end to end, in a fresh process (TensorFlow's import, loading the
    SavedModel, tracing, reading, resampling, embedding, writing the .npz);
  * embed_audio_s_per_s: audio_perm.embed.embed_files in this process after
    a warm-up run (reading, resampling and scene embeddings);
  * decode_audio_s_per_s: reading and resampling alone (read_audio);
  * timestamps_audio_s_per_s: embed_files with timestamps=True on
    --timestamp_files files (scene + one 4 s window every timestamp hop);
  * load_average_1min: what else ran on the machine meanwhile.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

FLAGS = flags.FLAGS
flags.DEFINE_string("json", None, "Write the results to this JSON file.")
flags.DEFINE_string("encoder", None, "Exported encoder; default: export the "
                    "default architecture with random weights.")
flags.DEFINE_integer("num_files", 24, "WAV files to embed.")
flags.DEFINE_float("seconds", 10.0, "Length of each file.")
flags.DEFINE_integer("sample_rate", 44100, "Sample rate of the files.")
flags.DEFINE_integer("channels", 2, "Channels of the files.")
flags.DEFINE_integer("batch_size", 16, "audio_perm.embed --batch_size.")
flags.DEFINE_integer("timestamp_files", 2, "Files for the timestamps "
                     "measurement (0: skip it).")


def _write_files(folder, count, seconds, rate, channels):
  import numpy as np  # pylint: disable=g-import-not-at-top
  import soundfile  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  t = np.arange(int(seconds * rate)) / rate
  paths = []
  for i in range(count):
    tones = [0.3 * np.sin(2 * np.pi * rng.uniform(100, 3000) * t)
             * np.exp(-(t % 2.0)) for _ in range(channels)]
    audio = np.stack(tones, 1) + 0.01 * rng.normal(size=(len(t), channels))
    path = os.path.join(folder, f"clip{i:03d}.wav")
    soundfile.write(path, audio.astype(np.float32), rate, subtype="PCM_16")
    paths.append(path)
  return paths


def main(argv):
  del argv
  from audio_perm import embed  # pylint: disable=g-import-not-at-top
  from audio_perm import export  # pylint: disable=g-import-not-at-top

  tmp = tempfile.mkdtemp(prefix="embed_bench_")
  figures = {"num_files": FLAGS.num_files, "seconds": FLAGS.seconds,
             "sample_rate": FLAGS.sample_rate, "channels": FLAGS.channels,
             "batch_size": FLAGS.batch_size, "cpu_count": os.cpu_count()}
  try:
    encoder = FLAGS.encoder
    if encoder is None:
      module = export.random_encoder(seed=0)
      encoder = export.export_encoder(module.encoder,
                                      os.path.join(tmp, "encoder"),
                                      module.config)
      figures["encoder"] = "random, default architecture"
      figures["timestamp_hop_ms"] = export.DEFAULT_TIMESTAMP_HOP_MS
      figures["scene_hop_ms"] = export.DEFAULT_SCENE_HOP_MS
    else:
      figures["encoder"] = encoder
    clips = os.path.join(tmp, "clips")
    os.makedirs(clips)
    paths = _write_files(clips, FLAGS.num_files, FLAGS.seconds,
                         FLAGS.sample_rate, FLAGS.channels)
    audio_seconds = FLAGS.num_files * FLAGS.seconds

    command = [sys.executable, "-m", "audio_perm.embed",
               f"--encoder={encoder}", f"--input={clips}/*.wav",
               f"--output={os.path.join(tmp, 'out.npz')}", "--noprogress",
               f"--batch_size={FLAGS.batch_size}"]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    seconds = time.perf_counter() - start
    if proc.returncode:
      raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stderr[-2000:]}")
    figures["command_seconds"] = round(seconds, 2)
    figures["command_audio_s_per_s"] = round(audio_seconds / seconds, 1)

    embed.embed_files(encoder, paths[:2], progress=False)  # Warm-up.
    start = time.perf_counter()
    embed.embed_files(encoder, paths, batch_size=FLAGS.batch_size,
                      progress=False)
    seconds = time.perf_counter() - start
    figures["embed_seconds"] = round(seconds, 2)
    figures["embed_audio_s_per_s"] = round(audio_seconds / seconds, 1)

    start = time.perf_counter()
    for path in paths:
      embed.read_audio(path)
    figures["decode_audio_s_per_s"] = round(
        audio_seconds / (time.perf_counter() - start), 1)

    if FLAGS.timestamp_files:
      some = paths[:FLAGS.timestamp_files]
      embed.embed_files(encoder, some[:1], timestamps=True, progress=False)
      start = time.perf_counter()
      embed.embed_files(encoder, some, timestamps=True,
                        batch_size=FLAGS.batch_size, progress=False)
      seconds = time.perf_counter() - start
      figures["timestamps_seconds"] = round(seconds, 2)
      figures["timestamps_audio_s_per_s"] = round(
          len(some) * FLAGS.seconds / seconds, 2)
    figures["load_average_1min"] = round(os.getloadavg()[0], 2)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  text = json.dumps(figures, indent=2)
  print(text)
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  app.run(main)
