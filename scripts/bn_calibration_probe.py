"""Probe: BatchNorm statistics refitted on natural (unaugmented) audio.

For each train.py run, probes four encoders of the same architecture and seed
on the conv features and fc1 (diagnostics' layers, evaluation's probes):

  random        the untrained twin (BatchNorm at its initial statistics:
                mean 0, variance 1, i.e. the identity);
  random+cal    the twin with its BatchNorm statistics set to those of
                NUM_CAL train-split notes (unlabelled), natural view;
  trained       the run's encoder (statistics as pretraining left them, i.e.
                moving averages over the augmented pretext inputs);
  trained+cal   the run's encoder, statistics refitted as for random+cal.

The statistics are those of one forward pass in training mode over all
NUM_CAL notes at once (momentum 0: the population statistics, each layer
normalised by the statistics of the layers below). Train split only; nothing
is fitted on the test split. docs/recipe_sweep.md reports what it gave.

  .venv/bin/python scripts/bn_calibration_probe.py NUM_CAL OUT.json RUN...
"""
import json
import sys

import numpy as np

import audio_perm  # noqa: F401  (sets the TF environment before TF loads)
from audio_perm import diagnostics
from audio_perm import evaluation
from audio_perm import export
from audio_perm import models
from audio_perm import training
from audio_perm.training import checkpoints
from data_prep import render
import tensorflow as tf

KINDS = ("random", "random+cal", "trained", "trained+cal")


def calibration_audio(builder, num_cal):
  """num_cal train-split waveforms, a seeded shuffle: [num_cal, samples]."""
  split = evaluation.datasets.read_split(builder, "train").map(
      lambda example: example["audio"])
  return np.stack(list(
      split.shuffle(4096, seed=0).take(num_cal).as_numpy_iterator()))


def calibrate(encoder, frontend, audio):
  """Sets every BatchNorm's moving statistics to those of `audio`."""
  norms = [layer for layer in encoder._flatten_layers(  # pylint: disable=protected-access
      include_self=False, recursive=True)
           if isinstance(layer, models.SyncBatchNormalization)]
  if not norms:
    raise ValueError("the encoder has no BatchNorm to calibrate")
  momenta = [layer.momentum for layer in norms]
  for layer in norms:
    layer.momentum = 0.0
  encoder(export.waveform_to_patches(tf.constant(audio), frontend),
          training=True)
  for layer, momentum in zip(norms, momenta):
    layer.momentum = momentum


def main(argv):
  if len(argv) < 4:
    sys.exit(__doc__)
  num_cal, out, runs = int(argv[1]), argv[2], argv[3:]
  builder = evaluation.open_dataset(
      dataset_dir=render.ensure_default_dataset())
  audio = calibration_audio(builder, num_cal)
  encoders = []
  for run in runs:
    seed = checkpoints.read_flags(run).seed
    for kind in KINDS:
      encoder, config = training.load_trained_encoder(run)
      if kind.startswith("random"):
        encoder = export.random_encoder(config, seed=seed).encoder
      if kind.endswith("+cal"):
        calibrate(encoder, config.frontend, audio)
      encoders += diagnostics.layer_encoders(encoder, config,
                                             f"{run} {kind}")
  tasks = list(diagnostics.DEFAULT_TASKS)
  result = evaluation.embed_and_probe(builder, encoders, tasks, [1000], 3,
                                      progress=False)
  rows = []
  for encoder in encoders:
    prefix, layer = encoder.name.rsplit("/", 1)
    run, kind = prefix.rsplit(" ", 1)
    row = {"run": run, "kind": kind, "layer": layer}
    for task in tasks:
      for head in evaluation.TASKS[task].heads:
        row[f"{task}/{head.metric}"] = [float(v) for v in result.values(
            encoder.name, task, head.metric, 1000)]
    rows.append(row)
    print(run, kind, layer, " ".join(
        f"{key} {np.mean(value):.3f}" for key, value in row.items()
        if "/" in key))
  with open(out, "w") as f:
    json.dump(rows, f, indent=1)


if __name__ == "__main__":
  main(sys.argv)
