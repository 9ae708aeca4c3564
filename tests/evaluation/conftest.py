"""Fixtures of the evaluation tests: a planted dataset and small settings.

The planted dataset (written with data_prep.nsynth): harmonic notes at 5
pitches, each instrument family marked by a partial at a fixed frequency and
instrument ids sparse (3, 250, 600, 1001). Handcrafted features encode both
linearly, so the probes must score far above chance; a misalignment between
embeddings and labels anywhere in the pipeline would bring them to chance.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from audio_perm import evaluation
from audio_perm import probe
from data_prep import nsynth

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
PITCHES = (48, 55, 60, 67, 72)
INSTRUMENT_IDS = (3, 250, 600, 1001)  # Sparse, as NSynth's are.
FAST_PROBE = probe.ProbeConfig(hidden_units=128, max_epochs=150, patience=15)


def _planted_note(pitch, family, rng, num_samples=nsynth.NUM_SAMPLES,
                  sample_rate_hz=nsynth.SAMPLE_RATE_HZ):
  t = np.arange(num_samples) / sample_rate_hz
  f0_hz = 440.0 * 2 ** ((pitch - 69) / 12)
  x = sum(np.sin(2 * np.pi * f0_hz * h * t + rng.uniform(0, 2 * np.pi)) / h
          for h in range(1, 6))
  x = x + 0.5 * np.sin(2 * np.pi * 2500.0 * (family + 1) * t)  # Marker.
  x = x * np.exp(-t) * rng.uniform(0.3, 1.0)
  x = x + 1e-3 * rng.standard_normal(num_samples)
  return (0.2 * x / np.max(np.abs(x))).astype(np.float32)


def write_planted_dataset(out_dir, sizes=(("train", 60), ("test", 30)),
                          seed=0, nan_notes=()):
  """A folder dataset in the nsynth format with linearly planted labels.

  Note i of a split has family i % 4 and pitch PITCHES[(i // 4) % 5].
  nan_notes: (split, index) of notes whose audio gets a NaN sample.
  """
  rng = np.random.default_rng(seed)
  os.makedirs(out_dir, exist_ok=True)
  lengths = {}
  for split, num_notes in sizes:
    records = []
    for i in range(num_notes):
      family, pitch = i % 4, PITCHES[(i // 4) % len(PITCHES)]
      audio = _planted_note(pitch, family, rng)
      if (split, i) in nan_notes:
        audio[1000] = np.nan
      records.append(nsynth.serialize_example({
          "id": f"{split}-{i}", "audio": audio,
          "pitch": pitch, "velocity": 100,
          "instrument": {"label": INSTRUMENT_IDS[family], "family": family,
                         "source": 0}}))
    nsynth.write_tfrecord_atomically(
        os.path.join(out_dir, nsynth.shard_filename(split, 0, 1)), records)
    lengths[split] = [num_notes]
  nsynth.write_folder_metadata(out_dir, lengths)
  return out_dir


@pytest.fixture(scope="session")
def planted_dir(tmp_path_factory):
  """The planted dataset: 60 train and 30 test notes (read only)."""
  return write_planted_dataset(str(tmp_path_factory.mktemp("planted")))


@pytest.fixture
def write_planted():
  """write_planted_dataset(out_dir, sizes, seed, nan_notes) -> out_dir."""
  return write_planted_dataset


@pytest.fixture
def planted_pitches():
  return PITCHES


@pytest.fixture
def fast_probe():
  return FAST_PROBE


def rows_of(report):
  """{(encoder, task, metric, num_labeled): row} of an evaluation report."""
  return {(r["encoder"], r["task"], r["metric"], r["num_labeled"]): r
          for r in report["results"]}


@pytest.fixture
def result_rows():
  return rows_of


@pytest.fixture
def eval_config():
  """EvalConfig(dataset_dir, **overrides): handcrafted, 8 labels, 1 seed."""

  def make(dataset_dir, **overrides):
    values = dict(encoders=("handcrafted",), dataset_dir=dataset_dir,
                  num_labeled=(8,), seeds=1, probe=FAST_PROBE, progress=False)
    values.update(overrides)
    return evaluation.EvalConfig(**values)

  return make


@pytest.fixture
def run_script():
  """Starts `python SCRIPT ARGS` at the repository root (a Popen)."""

  def start(script, args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    return subprocess.Popen(
        [sys.executable, os.path.join(ROOT, script)] + args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        cwd=ROOT)

  return start


@pytest.fixture
def truncated_copy():
  """truncated_copy(planted_dir, out_dir, split="test") -> the cut shard.

  A copy of the planted dataset whose `split` shard is cut mid-record.
  """
  import shutil  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  def copy(planted_dir, out_dir, split="test"):
    shutil.copytree(planted_dir, out_dir)
    (shard,) = tf.io.gfile.glob(
        os.path.join(out_dir, f"*-{split}.tfrecord*"))
    with open(shard, "r+b") as f:
      f.truncate(os.path.getsize(shard) // 2 + 1001)
    return shard

  return copy
