"""The training loop: run, resume, or just export a pretraining run.

`train(config)`:

  1. validates the config (ValueError naming the bad value);
  2. checks model_dir (checkpoints.check_model_dir): its flags.json must match
     this config except for the runtime fields (how long, how often, on what
     hardware); a different run is refused unless `overwrite=True`;
  3. builds a Trainer (model, optimizer, step under `strategy.scope()`) and
     restores the latest checkpoint if there is one;
  4. trains: one `tf.function` call runs `steps_per_execution` steps; every
     `checkpoint_every` steps a checkpoint is written (the last 3 kept), so a
     killed run restarted with the same command loses at most one interval;
     TensorBoard scalars every `log_every` steps and spectrogram images
     (shuffled, re-ordered by the predicted ranks, original) every
     `image_every` steps under model_dir/train; a Keras progress bar;
  5. exports the encoder as a SavedModel (audio_perm.export) to export_dir.

A finished run (checkpoint step >= train_steps) is not retrained; it is only
re-exported when the export is missing or older than the checkpoint. The
input pipeline is not checkpointed: a resumed run starts a fresh pipeline
whose shuffling seed is derived from (seed, step).

Multi-worker: every worker runs the same code. The chief (worker 0) writes
flags.json, summaries, checkpoints in model_dir and the export; the others
write their checkpoints (which they must, since saving takes part in the
collective protocol) to model_dir/.worker_<id> and delete them at the end.
"""

import inspect
import math
import os
import shutil
import time

import keras
import tensorflow as tf

from audio_perm import distribute
from audio_perm import pitch
from audio_perm import spectrogram
from audio_perm.training import checkpoints
from audio_perm.training import summaries
from audio_perm.training.trainer import Trainer

EXPORT_INFO_FILENAME = "export_info.json"


def make_dataset_fn(config, permutation_set=None):
  """input_context -> per-replica tf.data.Dataset of (patches, target), with
  --pitch_copies (patches, target, shifts), and with --pitch_pretext=note or
  note_batch (patches, target, copies' patches, shifts)."""
  from audio_perm import data  # pylint: disable=g-import-not-at-top
  target = ("classification" if config.objective.name == "classification"
            else "ranks")
  frontend = config.frontend
  augment = config.augment

  def dataset_fn(input_context, seed=config.seed):
    if augment.pitch_copies and augment.pitch_pretext != "copies":
      notes = pretext_fn(input_context, seed, pitch_copies=0)
      # The notes in another order than the pretext's (a seed of their own).
      copies = pretext_fn(input_context, seed + 7_919,
                          pitch_copies=augment.pitch_copies)
      return tf.data.Dataset.zip((notes, copies)).map(
          lambda n, c: (n[0], n[1], c[0], c[2]))
    return pretext_fn(input_context, seed,
                      pitch_copies=augment.pitch_copies)

  def pretext_fn(input_context, seed, pitch_copies):
    # batch_size is the GLOBAL batch: pretext_dataset batches by
    # input_context.get_per_replica_batch_size(batch_size) itself.
    return data.pretext_dataset(
        data_dir=config.data_dir, file_pattern=config.train_pattern,
        split="train", batch_size=config.batch_size,
        patching=frontend.patching, num_patches=frontend.num_patches,
        grid=frontend.grid, crop_frames=frontend.crop_frames, target=target,
        permutation_set=permutation_set, shuffle=True, seed=seed,
        deterministic=config.deterministic, input_context=input_context,
        repeat=True,
        skip_corrupt=config.skip_corrupt,
        patch_gap=frontend.patch_gap,
        frequency_scale=frontend.frequency_scale,
        gain_jitter=config.augment.gain_jitter,
        tilt_jitter=config.augment.tilt_jitter,
        eq_jitter=config.augment.eq_jitter,
        pitch_copies=pitch_copies,
        pitch_range=config.augment.pitch_range,
        pitch_band=config.augment.pitch_band,
        pitch_envelope=config.augment.pitch_envelope)

  return dataset_fn


def report_skipped(config):
  """Logs which training files --skip_corrupt cuts short, and what is lost.

  One unparsed read of the training files (data.report_skipped; about 1 s
  for the 763 MB default dataset); the records lost are counted against the
  folder dataset's metadata (unknown for --train_pattern files).

  Returns:
    data.report_skipped's {path: {"records_read", "records_lost", "error"}}.
  """
  from audio_perm import data  # pylint: disable=g-import-not-at-top
  if config.train_pattern:
    return data.report_skipped(data.list_files(
        file_pattern=config.train_pattern))
  expected = data.shard_lengths(config.data_dir, "train")
  return data.report_skipped(list(expected), expected)


def _export_is_current(export_dir, step):
  info = os.path.join(export_dir, EXPORT_INFO_FILENAME)
  return (tf.io.gfile.exists(os.path.join(export_dir, "saved_model.pb"))
          and tf.io.gfile.exists(info)
          and checkpoints.read_json(info).get("step") == step)


def _export(trainer, config, step, log):
  export_dir = config.resolved_export_dir
  trainer.export(export_dir)
  checkpoints.write_json(os.path.join(export_dir, EXPORT_INFO_FILENAME),
              {"step": step, "model_dir": config.model_dir})
  log(f"Exported the encoder (step {step}) to {export_dir}")
  return export_dir


def _nothing_to_train_on_message(config, step, custom_data=False):
  """Why the training data ran out: it yields no example at all."""
  if custom_data:
    return f"nothing left to train on at step {step}: the dataset is empty."
  from audio_perm import data  # pylint: disable=g-import-not-at-top
  try:
    files = (data.list_files(file_pattern=config.train_pattern)
             if config.train_pattern
             else data.list_files(data_dir=config.data_dir, split="train"))
  except ValueError:
    files = [config.train_pattern or config.data_dir]
  shown = ", ".join(files[:5]) + (f" (+{len(files) - 5} more)"
                                  if len(files) > 5 else "")
  skipped = (" or in the readable part of each file (--skip_corrupt)"
             if config.skip_corrupt else "")
  return (f"nothing left to train on at step {step}: the training files"
          f"{skipped} hold no note with finite audio (every note is "
          f"non-finite, NaN/inf, or there is no record); files: {shown}.")


def train(config, strategy=None, *, dataset_fn=None, overwrite=False,
          export_only=False, log=print):
  """Runs (or resumes, or just exports) a pretraining run.

  Args:
    config: TrainConfig.
    strategy: a tf.distribute.Strategy; None builds one from config.strategy.
    dataset_fn: optional input_context -> dataset of (patches, target)
      per-replica batches (default: audio_perm.data.pretext_dataset over
      config's data); it may take a `seed` keyword, set per resumption.
    overwrite: replace a different run found in model_dir.
    export_only: only export the latest checkpoint, with the architecture
      recorded in model_dir's flags.json when there is one (config then only
      gives model_dir and export_dir).
    log: function for one-line messages.

  Returns:
    dict: step (final), history (list of dicts of the logged scalars),
    export_dir (or None if this task does not export), trained (bool),
    trainer (the Trainer, holding model, encoder and optimizer) and, with
    skip_corrupt, skipped (`report_skipped`'s answer).

  Raises:
    ValueError: bad settings, missing data, a model_dir holding another run,
      export_only without a checkpoint, or data with no finite note.
  """
  saved_flags = os.path.join(config.model_dir, checkpoints.FLAGS_FILENAME)
  if export_only and tf.io.gfile.exists(saved_flags):
    # Export what was trained: the run's own flags, only where to export
    # coming from this call.
    config = checkpoints.read_flags(config.model_dir).replace(
        model_dir=config.model_dir, export_dir=config.export_dir,
        verbose=config.verbose)
  config.validate(check_data=dataset_fn is None and not export_only)
  if strategy is None:
    strategy = distribute.get_strategy(config.strategy, config.tpu)
  chief = distribute.is_chief(strategy)
  if not export_only:
    checkpoints.check_model_dir(config, overwrite=overwrite, write=chief)
  trainer = Trainer(config, strategy)
  step = trainer.restore(config.model_dir)
  result = dict(step=step, history=[], export_dir=None, trained=False,
                trainer=trainer)
  if export_only:
    if step == 0:
      raise ValueError(f"--export_only: model_dir={config.model_dir!r} has no "
                       "checkpoint; train first.")
    if chief:
      result["export_dir"] = _export(trainer, config, step, log)
    return result
  if step >= config.train_steps:
    log(f"Run in {config.model_dir} already trained ({step} steps >= "
        f"train_steps={config.train_steps}); not training.")
    if chief:
      if _export_is_current(config.resolved_export_dir, step):
        log(f"Export at {config.resolved_export_dir} is up to date.")
        result["export_dir"] = config.resolved_export_dir
      else:
        result["export_dir"] = _export(trainer, config, step, log)
    return result
  if step:
    log(f"Resuming from the checkpoint at step {step} in {config.model_dir}.")

  custom_data = dataset_fn is not None
  augment = config.augment
  if (augment.pitch_copies and augment.pitch_band == "common"
      and augment.pitch_pretext == "copies"):
    # The copies are also the pretext's examples: the common band limits
    # everything pretraining sees, which matters at a wide range.
    cutoff_khz = (spectrogram.SAMPLE_RATE_HZ / 2000.0
                  * pitch.common_band(augment.pitch_range))
    log(f"--pitch_band=common: every pretraining input is low-passed at "
        f"{cutoff_khz:.1f} kHz (--pitch_range={augment.pitch_range:g}); "
        "evaluation and export see the whole band. --pitch_band=full keeps "
        "it.")
  if dataset_fn is None:
    if config.skip_corrupt and chief:
      result["skipped"] = report_skipped(config)
    dataset_fn = make_dataset_fn(config, trainer.objective.permutation_set)
  try:
    resumed_fn = _with_seed(dataset_fn, config.seed * 1_000_003 + step)
  except TypeError:
    resumed_fn = dataset_fn
  iterator = trainer.distributed_iterator(resumed_fn)
  train_fn = trainer.train_function()

  task_type, task_id = distribute.task_info(strategy)
  checkpoint_dir = (config.model_dir if chief else os.path.join(
      config.model_dir, f".worker_{task_type}_{task_id}"))
  manager = tf.train.CheckpointManager(trainer.checkpoint, checkpoint_dir,
                                       max_to_keep=3)
  writer = (tf.summary.create_file_writer(os.path.join(config.model_dir,
                                                       "train"))
            if chief else tf.summary.create_noop_writer())
  progbar = (keras.utils.Progbar(config.train_steps, stateful_metrics=[
      "loss", "partial_ranks_accuracy", "examples_per_second",
      "pitch_ranks_accuracy"])
             if chief and config.verbose else None)
  image_batch = None
  log_loss = log_accuracy = log_pitch = 0.0
  log_count = 0
  log_start = time.perf_counter()
  while step < config.train_steps:
    # One execution never crosses a checkpoint or log boundary.
    chunk = min(config.steps_per_execution, config.train_steps - step,
                config.checkpoint_every - step % config.checkpoint_every,
                config.log_every - step % config.log_every)
    try:
      loss, accuracy = train_fn(iterator, tf.constant(chunk, tf.int32))
    except tf.errors.OutOfRangeError as e:  # A repeated dataset that is empty.
      raise ValueError(_nothing_to_train_on_message(
          config, step, custom_data=custom_data)) from e
    loss, accuracy = float(loss), float(accuracy)
    step += chunk
    log_loss += loss * chunk
    log_accuracy += accuracy * chunk
    if config.augment.pitch_copies:
      log_pitch += float(trainer.pitch_accuracy.numpy()) * chunk
    log_count += chunk
    if not math.isfinite(loss):
      raise FloatingPointError(
          f"Loss is {loss} at step {step}; lower --learning_rate.")
    if not trainer.weights_are_finite():
      # Raised before the checkpoint below: the last saved one stays good.
      raise FloatingPointError(
          f"Loss is {loss} at step {step} but the weights hold NaN or inf "
          "(an update overflowed); lower --learning_rate.")
    if step % config.log_every == 0 or step == config.train_steps:
      elapsed = time.perf_counter() - log_start
      scalars = {
          "loss": log_loss / log_count,
          "partial_ranks_accuracy": log_accuracy / log_count,
          "learning_rate": float(keras.ops.convert_to_numpy(
              trainer.optimizer.learning_rate)),
          "examples_per_second": log_count * config.batch_size / elapsed,
      }
      if config.augment.pitch_copies:
        scalars["pitch_ranks_accuracy"] = log_pitch / log_count
      with writer.as_default():
        for name, value in scalars.items():
          summaries.write_scalar(name, value, step)
      result["history"].append(dict(step=step, **scalars))
      if progbar is not None:
        progbar.update(step, [(k, v) for k, v in scalars.items()
                              if k != "learning_rate"])
      log_loss = log_accuracy = log_pitch = 0.0
      log_count = 0
      log_start = time.perf_counter()
    if chief and (step % config.image_every == 0
                  or step == config.train_steps):
      if image_batch is None:
        image_batch = next(iter(dataset_fn(tf.distribute.InputContext())))
      images = trainer.spectrogram_images(*image_batch[:2])
      with writer.as_default():
        summaries.write_images("spectrogram/shuffled_reordered_original", images, step)
    if step % config.checkpoint_every == 0 or step == config.train_steps:
      manager.save(checkpoint_number=step)
  writer.flush()
  result.update(step=step, trained=True)
  if not chief:
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return result
  result["export_dir"] = _export(trainer, config, step, log)
  return result


def _with_seed(dataset_fn, seed):
  """dataset_fn with its `seed` keyword bound (TypeError if it has none)."""
  if "seed" not in inspect.signature(dataset_fn).parameters:
    raise TypeError("dataset_fn takes no seed")

  def seeded(input_context):
    return dataset_fn(input_context, seed=seed)

  return seeded


def load_trained_encoder(model_dir):
  """(keras encoder, EncoderConfig) of a run, from flags.json + checkpoint.

  Only the model is restored (checkpoints.restore_model); no optimizer is
  built.

  Raises:
    ValueError: no flags.json, no checkpoint, or one of the former layout.
  """
  config = checkpoints.read_flags(model_dir)
  model, encoder = Trainer.build_model(config)
  checkpoints.restore_model(model, model_dir)
  return encoder, config.encoder
