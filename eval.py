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

import dataclasses
import os
import sys

# Before TensorFlow is imported: its C++ start-up INFO lines are noise here.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from audio_perm import cli  # noqa: E402
from audio_perm import config as config_lib  # noqa: E402

# One flag per EvalConfig setting (defaults and help from audio_perm.config),
# and the random/supervised CFN's architecture as optional overrides.
config_lib.define_flags(config_lib.EvalConfig)
_ARCHITECTURE_FLAGS = config_lib.define_flags(
    config_lib.EncoderConfig, optional=True,
    help_prefix="Random/supervised CFN (default: from the first SavedModel's "
    "encoder_config.json, else train.py's default): ")
_OUTPUT = flags.DEFINE_string(
    "output", None,
    "JSON results path (default: REPORT_DIR/results.json when --report_dir "
    "is set).")
_REPORT_DIR = flags.DEFINE_string(
    "report_dir", None, "Writes report.md and one PNG per task and metric.")


def config_from_flags():
  """The EvalConfig the flags describe (ValueError for malformed lists)."""
  from audio_perm import evaluation  # pylint: disable=g-import-not-at-top

  if not flags.FLAGS["encoder"].present or not flags.FLAGS.encoder:
    raise ValueError(
        "Pass --encoder: a SavedModel path written by train.py and/or "
        "random, handcrafted, supervised (comma list).")
  config = config_lib.from_flags(config_lib.EvalConfig, flags.FLAGS)
  overrides = config_lib.flag_overrides(config_lib.EncoderConfig, flags.FLAGS,
                                        only_present=True)
  if overrides:
    base = evaluation.default_architecture(config.encoders).to_dict()
    if overrides.get("patching", "time_frequency") != "time_frequency":
      base["grid"] = None
    base.update(overrides)
    config = dataclasses.replace(
        config, architecture=config_lib.EncoderConfig.from_dict(base))
  return config


def main(argv):
  del argv  # Stray arguments are refused by cli.run.
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # TFDS logs every dataset read.
  from audio_perm import evaluation  # pylint: disable=g-import-not-at-top
  config = config_from_flags()
  report = evaluation.evaluate(config)
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
  cli.run(main, "eval.py")
