r"""Evaluates frozen encoders with small probes on NSynth-style notes.

The paper's protocol: embed the notes with a frozen encoder, train a 3-layer
MLP on a few labelled notes of the train split, score it on the test split
(instrument family and instrument by accuracy; pitch by MSE as regression and
by accuracy as classification); mean and std over seeds.

  python eval.py --encoder=runs/default/encoder,random,handcrafted \
      --dataset_dir=DIR --num_labeled=100,1000 --seeds=3 \
      --output=/tmp/eval.json --report_dir=/tmp/eval_report

Encoders: a SavedModel exported by train.py, `random` (the same CFN untrained),
`handcrafted` (per-bin mean and std over time of the log spectrogram) and
`supervised` (the CFN trained from scratch on each labelled subset, with a step
budget: --supervised_steps). The random and supervised CFNs copy the
architecture recorded beside the first SavedModel listed (encoder_config.json),
unless --patching/--num_patches/--grid/--width/--embedding_dim/--crop_frames
say otherwise.

Data: --dataset (a prepared TFDS dataset, default nsynth/full, in --data_dir;
nothing is downloaded) or --dataset_dir (a folder dataset written by
`python -m data_prep.render --output_dir=DIR`). Notes are read with the
training pipeline's reader (audio_perm.data): notes with non-finite audio are
dropped, and a corrupt or truncated shard stops the run with one line naming
it (--skip_corrupt reads each shard up to its first bad record instead).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

_ENCODER = flags.DEFINE_list(
    "encoder", None,
    "Comma list of encoders: SavedModel paths (train.py --export_dir) and/or "
    "random, handcrafted, supervised.")
_DATASET = flags.DEFINE_string(
    "dataset", "nsynth/full",
    "TFDS dataset name, already prepared in --data_dir (never downloaded).")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "TFDS data_dir of --dataset (default: TFDS's).")
_DATASET_DIR = flags.DEFINE_string(
    "dataset_dir", None,
    "A TFDS folder dataset (python -m data_prep.render --output_dir=DIR); "
    "overrides --dataset/--data_dir.")
_TRAIN_SPLIT = flags.DEFINE_string(
    "train_split", "train", "Split the labelled subsets are drawn from.")
_TEST_SPLIT = flags.DEFINE_string(
    "test_split", "test", "Split the probes are scored on.")
_TASKS = flags.DEFINE_list(
    "tasks", ["instrument_family", "instrument", "pitch"],
    "Tasks: instrument_family, instrument, pitch.")
_NUM_LABELED = flags.DEFINE_list(
    "num_labeled", ["1000"],
    "Label regimes: labelled examples per probe, e.g. 100,300,1000.")
_SEEDS = flags.DEFINE_integer(
    "seeds", 3, "Number of seeds (subset, probe init); mean and std over them.")
_PROBE = flags.DEFINE_enum(
    "probe", "mlp", ["mlp", "linear"],
    "mlp: 3 dense layers (as in the paper); linear: one.")
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 64, "Notes per embedding batch.")
_OUTPUT = flags.DEFINE_string(
    "output", None,
    "JSON results path (default: REPORT_DIR/results.json when --report_dir "
    "is set).")
_REPORT_DIR = flags.DEFINE_string(
    "report_dir", None, "Writes report.md and one PNG per task and metric.")
_HIDDEN_UNITS = flags.DEFINE_integer(
    "hidden_units", 512, "Width of the MLP probe's hidden layers.")
_MAX_EPOCHS = flags.DEFINE_integer(
    "max_epochs", 300, "Probe epochs at most (early stopping on a held-out "
    "part of the labelled subset).")
_PATIENCE = flags.DEFINE_integer(
    "patience", 20, "Probe epochs without improvement before stopping.")
_ENCODER_SEED = flags.DEFINE_integer(
    "encoder_seed", 0, "Initialisation seed of the random encoder.")
_SUPERVISED_STEPS = flags.DEFINE_integer(
    "supervised_steps", 300,
    "Training steps of each supervised (no pretraining) model: one per task "
    "head, regime and seed, so 4 x regimes x seeds models. Slow on CPU: "
    "about 4 s per step at batch 32 and width 0.25 on 2 busy cores, i.e. "
    "~20 min per model at 300 steps (measured at width 0.25; the default "
    "0.125 is cheaper). The labelled notes' audio is held in "
    "memory (256 KB per note).")
_SUPERVISED_BATCH_SIZE = flags.DEFINE_integer(
    "supervised_batch_size", 32, "Batch size of the supervised baseline.")
_PATCHING = flags.DEFINE_enum(
    "patching", None, ["frequency", "time", "time_frequency"],
    "Random/supervised CFN: patching scheme (default: from the SavedModel's "
    "encoder_config.json, else frequency).")
_NUM_PATCHES = flags.DEFINE_integer(
    "num_patches", None, "Random/supervised CFN: number of patches.")
_GRID = flags.DEFINE_list(
    "grid", None, "Random/supervised CFN: rows,cols for time_frequency.")
_WIDTH = flags.DEFINE_float(
    "width", None, "Random/supervised CFN: backbone width multiplier "
    "(default: from the SavedModel's encoder_config.json, else train.py's "
    "default, export.EncoderConfig().width).")
_EMBEDDING_DIM = flags.DEFINE_integer(
    "embedding_dim", None, "Random/supervised CFN: embedding size.")
_CROP_FRAMES = flags.DEFINE_integer(
    "crop_frames", None, "Random/supervised CFN: centred crop in frames.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show progress bars.")
_SKIP_CORRUPT = flags.DEFINE_bool(
    "skip_corrupt", False,
    "Read each TFRecord shard up to its first corrupt record and skip the "
    "rest (fewer notes) instead of stopping with an error naming the shard.")


def _ints(name, values):
  try:
    return tuple(int(v) for v in values)
  except ValueError:
    from audio_perm import evaluation  # pylint: disable=g-import-not-at-top
    raise evaluation.EvaluationError(
        f"--{name}={','.join(values)} must be a comma list of integers."
    ) from None


def config_from_flags():
  """The EvalConfig the flags describe."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  from audio_perm import evaluation  # pylint: disable=g-import-not-at-top
  from audio_perm import probe  # pylint: disable=g-import-not-at-top

  if not _ENCODER.value:
    raise evaluation.EvaluationError(
        "Pass --encoder: a SavedModel path written by train.py and/or "
        "random, handcrafted, supervised (comma list).")
  encoders = tuple(e.strip() for e in _ENCODER.value if e.strip())
  overrides = {}
  for name, flag in (("patching", _PATCHING), ("num_patches", _NUM_PATCHES),
                     ("width", _WIDTH), ("embedding_dim", _EMBEDDING_DIM),
                     ("crop_frames", _CROP_FRAMES)):
    if flag.value is not None:
      overrides[name] = flag.value
  if _GRID.value is not None:
    overrides["grid"] = _ints("grid", _GRID.value)
  architecture = None
  if overrides:
    base = evaluation.default_architecture(encoders)
    architecture = dataclasses.replace(base, **overrides)
    if architecture.patching != "time_frequency" and "grid" not in overrides:
      architecture = dataclasses.replace(architecture, grid=None)
  return evaluation.EvalConfig(
      encoders=encoders,
      dataset=_DATASET.value,
      data_dir=_DATA_DIR.value,
      dataset_dir=_DATASET_DIR.value,
      train_split=_TRAIN_SPLIT.value,
      test_split=_TEST_SPLIT.value,
      tasks=tuple(t.strip() for t in _TASKS.value),
      num_labeled=_ints("num_labeled", _NUM_LABELED.value),
      seeds=_SEEDS.value,
      probe=probe.ProbeConfig(probe=_PROBE.value,
                              hidden_units=_HIDDEN_UNITS.value,
                              max_epochs=_MAX_EPOCHS.value,
                              patience=_PATIENCE.value),
      batch_size=_BATCH_SIZE.value,
      architecture=architecture,
      encoder_seed=_ENCODER_SEED.value,
      supervised=evaluation.SupervisedConfig(
          steps=_SUPERVISED_STEPS.value,
          batch_size=_SUPERVISED_BATCH_SIZE.value),
      progress=_PROGRESS.value,
      skip_corrupt=_SKIP_CORRUPT.value,
  )


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # TFDS logs every dataset read.
  from audio_perm import evaluation  # pylint: disable=g-import-not-at-top
  try:
    config = config_from_flags()
    report = evaluation.evaluate(config)
  except evaluation.EvaluationError as error:
    print(f"eval.py: error: {error}", file=sys.stderr)
    sys.exit(1)
  report["config"]["command"] = " ".join(sys.argv)
  output = _OUTPUT.value
  if output is None and _REPORT_DIR.value:
    output = os.path.join(_REPORT_DIR.value, "results.json")
  print(evaluation.markdown_table(report))
  if output:
    evaluation.write_json(report, output)
    print(f"Results: {output}")
  if _REPORT_DIR.value:
    written = evaluation.write_report(report, _REPORT_DIR.value)
    print(f"Report: {written[0]} (+{len(written) - 1} plots)")


if __name__ == "__main__":
  app.run(main)
