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

import sys

from absl import app
from absl import flags
from absl import logging

import tensorflow as tf

from audio_perm import data
from audio_perm import distribute
from audio_perm import models
from audio_perm import objectives
from audio_perm import patches
from audio_perm import training

_D = training.TrainConfig()  # Defaults.

flags.DEFINE_string("data_dir", None,
                    "Folder dataset (made by python -m data_prep.render). "
                    "Default: the embedded default dataset, rendered on first "
                    "use.")
flags.DEFINE_string("train_pattern", None,
                    "Alternative to --data_dir: a glob of Magenta NSynth "
                    "TFRecord files.")
flags.DEFINE_string("model_dir", _D.model_dir,
                    "Checkpoints, flags.json, TensorBoard logs.")
flags.DEFINE_string("export_dir", None,
                    "Where the encoder SavedModel goes (default "
                    "model_dir/encoder).")
flags.DEFINE_enum("patching", _D.patching, patches.SCHEMES,
                  "How the spectrogram is cut into patches.")
flags.DEFINE_integer("num_patches", _D.num_patches, "Patches per example.")
flags.DEFINE_list("grid", None,
                  "rows,cols of the time_frequency grid (rows along "
                  "frequency); default: the most square factorisation.")
flags.DEFINE_integer("crop_frames", _D.crop_frames,
                     "Train on a random crop of this many spectrogram frames "
                     "per example (an augmentation; 398 frames per 4 s note). "
                     "The exported encoder takes the CENTRED crop of the same "
                     "length, since its patch shape depends on it. Default: "
                     "all frames.")
flags.DEFINE_enum("objective", _D.objective, objectives.OBJECTIVES,
                  "Pretext objective.")
flags.DEFINE_enum("regularization", _D.regularization,
                  objectives.REGULARIZATIONS, "soft_rank regularisation.")
flags.DEFINE_float("regularization_strength", _D.regularization_strength,
                   "soft_rank regularisation strength.")
flags.DEFINE_integer("num_permutations", _D.num_permutations,
                     "Size K of the fixed Hamming permutation set "
                     "(classification).")
flags.DEFINE_integer("perturbation_samples", _D.perturbation_samples,
                     "Noise draws per example (perturbed_fy).")
flags.DEFINE_float("perturbation_sigma", _D.perturbation_sigma,
                   "Noise scale (perturbed_fy).")
flags.DEFINE_integer("batch_size", _D.batch_size,
                     "GLOBAL batch size, split over the replicas.")
flags.DEFINE_float("learning_rate", _D.learning_rate,
                   "Constant learning rate (the paper: 1e-6).")
flags.DEFINE_enum("optimizer", _D.optimizer, training.OPTIMIZERS,
                  "Optimizer.")
flags.DEFINE_integer("train_steps", _D.train_steps,
                     "Total optimisation steps.")
flags.DEFINE_integer("steps_per_execution", _D.steps_per_execution,
                     "Steps run inside one tf.function call.")
flags.DEFINE_integer("checkpoint_every", _D.checkpoint_every,
                     "Steps between checkpoints.")
flags.DEFINE_integer("log_every", _D.log_every,
                     "Steps between TensorBoard scalars / progress updates.")
flags.DEFINE_integer("image_every", _D.image_every,
                     "Steps between TensorBoard spectrogram images.")
flags.DEFINE_float("width", _D.width,
                   "Channel multiplier of the conv backbone (1.0: AlexNet "
                   "sizes 96-384).")
flags.DEFINE_integer("embedding_dim", _D.embedding_dim,
                     "Size of the embedding (first fully connected layer).")
flags.DEFINE_enum("normalization", _D.normalization, models.NORMALIZATIONS,
                  "Normalisation in the conv backbone.")
flags.DEFINE_enum("strategy", _D.strategy, distribute.STRATEGIES,
                  "tf.distribute strategy (multi_worker reads TF_CONFIG).")
flags.DEFINE_string("tpu", None, "TPU name or address (strategy tpu/auto).")
flags.DEFINE_bool("mixed_precision", _D.mixed_precision,
                  "mixed_float16 on GPU, mixed_bfloat16 on CPU/TPU.")
flags.DEFINE_bool("jit_compile", _D.jit_compile,
                  "XLA-compile the forward/backward pass.")
flags.DEFINE_integer("seed", _D.seed, "Seed of weights, data and noise.")
flags.DEFINE_bool("export_only", False,
                  "Only export the encoder from the latest checkpoint of "
                  "model_dir (its flags.json gives the architecture).")
flags.DEFINE_bool("overwrite", False,
                  "Delete a run with different flags found in model_dir.")
flags.DEFINE_bool("verbose", _D.verbose, "Show the progress bar.")
flags.DEFINE_bool("skip_corrupt", _D.skip_corrupt,
                  "Read each TFRecord file up to its first corrupt record and "
                  "skip the rest of it (a warning per skip) instead of "
                  "stopping; may be added when resuming a run.")

FLAGS = flags.FLAGS
_CONFIG_FLAGS = [f.name for f in training.dataclasses.fields(
    training.TrainConfig)]


def config_from_flags():
  """TrainConfig from the parsed flags (ValueError for a malformed grid)."""
  values = {name: FLAGS[name].value for name in _CONFIG_FLAGS}
  if values["grid"] is not None:
    try:
      values["grid"] = tuple(int(g) for g in values["grid"])
    except ValueError:
      raise ValueError(f"--grid must be two integers rows,cols, got "
                       f"{','.join(values['grid'])!r}.") from None
    if len(values["grid"]) != 2:
      raise ValueError(f"--grid must be two integers rows,cols, got "
                       f"{FLAGS.grid!r}.")
  return training.TrainConfig(**values)


def corrupt_data_message(config, error):
  """One line naming the corrupt TFRecord file(s) and what to do.

  tf.data's DataLossError does not say which file is bad, so every training
  file is read once (data.find_corrupt_files; unparsed, at disk speed).
  """
  files = (dict(data_dir=config.data_dir) if not config.train_pattern
           else dict(file_pattern=config.train_pattern))
  what = data.list_files(split="train", **files)
  num_bytes = sum(tf.io.gfile.stat(f).length for f in what)
  if num_bytes > 1 << 30:
    print(f"train.py: a training TFRecord file is corrupt; reading the "
          f"{len(what)} files ({num_bytes / 2**30:.1f} GiB) to find which...",
          file=sys.stderr)
  corrupt = data.find_corrupt_files(file_pattern=what)
  first = str(error.message).strip().splitlines()[0] if error.message else ""
  found = ("; ".join(f"{path} ({message})" for path, message in
                     corrupt.items()) if corrupt else
           f"a training file (not found again on a second read: {first})")
  fix = ("render the dataset again into a new folder (python -m "
         "data_prep.render --output_dir=DIR)" if not config.train_pattern
         else "replace or remove the file")
  return (f"corrupt or truncated TFRecord file: {found}. To fix, {fix}; or "
          "rerun the same command with --skip_corrupt, which skips the "
          "unreadable rest of each bad file and resumes from the last "
          f"checkpoint in {config.model_dir}.")


def _fail(message):
  print(f"train.py: error: {message}", file=sys.stderr)
  sys.exit(2)


def main(argv):
  if not FLAGS["verbosity"].present:
    # TensorFlow's INFO lines (saver sharding, signature renames) would bury
    # the progress bar; --verbosity=0 brings them back.
    logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; flags are --name=value.")
  try:
    config = config_from_flags()
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
  except ValueError as e:
    _fail(e)
  except tf.errors.DataLossError as e:
    _fail(corrupt_data_message(config, e))
  if result["trained"]:
    print(f"Trained to step {result['step']} in {config.model_dir}.")


if __name__ == "__main__":
  app.run(main)
