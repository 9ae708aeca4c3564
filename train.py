r"""Pretrains an audio encoder by re-ordering shuffled spectrogram patches.

  python train.py                      # a few minutes on CPU, default dataset
  python train.py --flagfile=configs/paper.flags --train_pattern='/data/nsynth-train.tfrecord*'

Without --data_dir or --train_pattern, the embedded default dataset (notes
rendered from the General MIDI soundfont shipped with pretty_midi) is rendered
on first use by data_prep.render and reused afterwards.

model_dir receives flags.json (the resolved flags), checkpoints, TensorBoard
logs (model_dir/train) and, at the end, the encoder SavedModel (export_dir,
default model_dir/encoder). Run the same command again to resume a killed run
from its last checkpoint; a finished run is not retrained. A model_dir holding
a run with other flags is refused unless --overwrite.
"""

import os
import sys

# Before TensorFlow is imported: its C++ start-up INFO lines are noise here.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

# audio_perm before TensorFlow: it turns on TensorFlow's oneDNN kernels.
from audio_perm import cli  # noqa: E402
import tensorflow as tf  # noqa: E402
from audio_perm import config as config_lib  # noqa: E402
from audio_perm import data  # noqa: E402
from audio_perm import distribute  # noqa: E402
from audio_perm import training  # noqa: E402

# One flag per TrainConfig setting, defaults and help from audio_perm.config.
_CONFIG_FLAGS = config_lib.define_flags(config_lib.TrainConfig)
flags.DEFINE_bool("export_only", False,
                  "Only export the encoder from the latest checkpoint of "
                  "model_dir (its flags.json gives the architecture).")
flags.DEFINE_bool("overwrite", False,
                  "Delete a run with different flags found in model_dir.")

FLAGS = flags.FLAGS


def config_from_flags():
  """TrainConfig from the parsed flags (ValueError for a malformed grid)."""
  return config_lib.from_flags(config_lib.TrainConfig, FLAGS)


def _training_files(config, why):
  """The training files, saying so first when reading them takes a while."""
  files = (dict(data_dir=config.data_dir) if not config.train_pattern
           else dict(file_pattern=config.train_pattern))
  what = data.list_files(split="train", **files)
  num_bytes = sum(tf.io.gfile.stat(f).length for f in what)
  if num_bytes > 1 << 30:
    print(f"train.py: {why}; reading the {len(what)} files "
          f"({num_bytes / 2**30:.1f} GiB) to find which...", file=sys.stderr)
  return what


def corrupt_data_message(config, error):
  """One line naming the corrupt TFRecord file(s) and what to do.

  tf.data's DataLossError does not say which file is bad, so every training
  file is read once (data.find_corrupt_files; unparsed, at disk speed); the
  index of each one's first unreadable record is named too.
  """
  what = _training_files(config, "a training TFRecord file is corrupt")
  corrupt = data.find_corrupt_files(file_pattern=what)
  fix = ("render the dataset again into a new folder (python -m "
         "data_prep.render --output_dir=DIR)" if not config.train_pattern
         else "replace or remove the file")
  return data.corrupt_files_message(
      corrupt, error, capitalize=False,
      not_found="a training file (not found again on a second read: {first})",
      fix=(f"To fix, {fix}; or rerun the same command with --skip_corrupt, "
           "which skips the unreadable rest of each bad file and resumes "
           f"from the last checkpoint in {config.model_dir}."))


def main(argv):
  if not FLAGS["verbosity"].present:
    # TensorFlow's INFO lines (saver sharding, signature renames) would bury
    # the progress bar; --verbosity=0 brings them back.
    logging.set_verbosity(logging.WARNING)
  del argv  # Stray arguments are refused by cli.run.
  config = config_from_flags()
  if config.deterministic:
    training.enable_determinism()  # Before TensorFlow runs its first op.
  try:
    explicitly_set = {name for name in _CONFIG_FLAGS if FLAGS[name].present}
    for message in config.ignored_settings(explicitly_set):
      print(f"train.py: warning: {message}", file=sys.stderr)
    config.validate(check_data=False)
    if (not config.data_dir and not config.train_pattern
        and not FLAGS.export_only):
      from data_prep import render  # pylint: disable=g-import-not-at-top
      config.data_dir = render.ensure_default_dataset()
    if not FLAGS.export_only:
      training.check_data_source(config.data_dir, config.train_pattern)
    strategy = distribute.get_strategy(config.strategy, config.tpu)
    result = training.train(config, strategy, overwrite=FLAGS.overwrite,
                            export_only=FLAGS.export_only)
  except tf.errors.DataLossError as e:
    raise cli.Error(corrupt_data_message(config, e)) from e
  except tf.errors.InvalidArgumentError as e:
    # A record without audio names itself; one that does not parse is found
    # by reading the files again (data.bad_record_message).
    message = None
    if not FLAGS.export_only and "Iterator" in e.message:
      message = data.bad_record_message(
          lambda: _training_files(config, "a training record is malformed"),
          e)
    if message is None:
      raise
    raise cli.Error(message) from e
  if result["trained"]:
    print(f"Trained to step {result['step']} in {config.model_dir}.")


if __name__ == "__main__":
  cli.run(main, "train.py")
