"""Downstream evaluation: frozen encoders x tasks x label regimes x seeds.

The paper's protocol (Section III): a frozen encoder embeds NSynth notes, a
small probe (3-layer MLP) is trained on a few labelled notes of the train split
and scored on the test split; instrument family and instrument by accuracy,
pitch as regression by MSE (and here also as classification by accuracy).

Flow of `evaluate(EvalConfig)`:

1. `open_dataset`: a TFDS dataset by name (`tfds.builder(name, data_dir)`,
   never downloaded) or a folder dataset (`tfds.builder_from_directory`), with
   the checks that give one clear error each (missing dataset or split, task
   labels absent from the features, num_labeled larger than the split).
   The metadata (builder) says what the dataset holds; the notes themselves
   are read from the split's TFRecord shards by `data.waveform_dataset`, the
   reader the training pipeline is built on, so the same per-record rules
   hold: audio fitted to the dataset's length, notes with non-finite audio
   dropped (counted in the report's "dropped_nonfinite"), a record without
   audio an error naming its file.
2. One pass over the train split reads the labels only (`read_labels`).
3. The labelled subsets are drawn from the labels alone, per task, regime and
   seed (`probe.stratified_subset`; the same subsets for every encoder).
4. One pass over the train split restricted to the union of the subsets, and
   one over the whole test split, embed the notes with every frozen encoder at
   once (`compute_embeddings`: batched, each encoder a `tf.function`, with a
   progress bar). Only the notes some probe will see are embedded, which makes
   the full NSynth train split (289,205 notes) affordable: 3 tasks x 3 seeds x
   1000 labels embed at most 9,000 of them.
5. Probes (`audio_perm.probe`) are fitted per encoder, task, head, regime and
   seed on the cached embeddings; the `supervised` baseline trains the CFN end
   to end on the same subset instead (`fit_supervised`).
6. Results: rows {"encoder", "task", "metric", "num_labeled", "mean", "std",
   "values"} plus the resolved config, written as JSON; `write_report` adds a
   markdown table and one PNG per (task, metric).

Encoders (`make_encoder`): the path of a SavedModel exported by train.py (its
`serving_default` signature: float32 waveforms [batch, samples] ->
{"embedding": [batch, dim]}), `random` (the CFN untrained, built from
`export.EncoderConfig` with `encoder_seed`), `handcrafted` (mean and standard
deviation over time of the log-magnitude spectrogram, per bin: 2 x 513 dims)
or `supervised` (the CFN trained from scratch on each labelled subset).

Test notes whose class never occurs in the labelled subset are kept and count
as errors (see audio_perm.probe).
"""

import dataclasses
import json
import math
import os
import platform
import time
from typing import Optional, Tuple

import keras
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
import tqdm

from audio_perm import data as data_lib
from audio_perm import export
from audio_perm import probe as probe_lib
from audio_perm import spectrogram as spectrogram_lib


class EvaluationError(ValueError):
  """Bad user input to the evaluation (a message meant to be shown as is)."""


@dataclasses.dataclass(frozen=True)
class Head:
  """One probe on a task: its type and the metric it is scored by."""
  task_type: str  # "classification" or "regression".
  metric: str  # "accuracy" or "mse".


@dataclasses.dataclass(frozen=True)
class Task:
  """A downstream task: where its label lives in the nsynth features."""
  name: str
  feature_path: Tuple[str, ...]
  heads: Tuple[Head, ...]


TASKS = {
    "instrument_family": Task(
        "instrument_family", ("instrument", "family"),
        (Head("classification", "accuracy"),)),
    "instrument": Task(
        "instrument", ("instrument", "label"),
        (Head("classification", "accuracy"),)),
    "pitch": Task(
        "pitch", ("pitch",),
        (Head("regression", "mse"), Head("classification", "accuracy"))),
}
ENCODER_WORDS = ("random", "handcrafted", "supervised")
SERVING_SIGNATURE = "serving_default"
EMBEDDING_KEY = "embedding"
HOW_TO_PREPARE = (
    "render a folder dataset with `python -m data_prep.render "
    "--output_dir=DIR` (or convert Magenta's NSynth files with "
    "`python -m data_prep.convert`) and pass --dataset_dir=DIR")


# ----------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class SupervisedConfig:
  """Training budget of the `supervised` (no pretraining) baseline.

  Attributes:
    steps: Adam steps per (task, head, regime, seed); the held-out loss is
      checked every `eval_every` steps and the best weights are kept.
    batch_size: minibatch size (capped at the fitting part's size).
    learning_rate: Adam learning rate.
    eval_every: steps between held-out checks.
  """
  steps: int = 300
  batch_size: int = 32
  learning_rate: float = 1e-3
  eval_every: int = 25


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """Everything `evaluate` needs; eval.py fills it from flags.

  Attributes:
    encoders: SavedModel paths and/or words of ENCODER_WORDS.
    dataset: TFDS name (with data_dir) when dataset_dir is None.
    data_dir: TFDS data_dir (None: TFDS's default).
    dataset_dir: a TFDS folder dataset (overrides dataset/data_dir).
    train_split, test_split: split names.
    tasks: names from TASKS.
    num_labeled: label regimes (labelled examples drawn from train_split).
    seeds: number of seeds (0..seeds-1): subsets, probe init and order.
    probe: a probe_lib.ProbeConfig.
    batch_size: notes per embedding batch.
    architecture: export.EncoderConfig of the random and supervised
      encoders; None: `default_architecture(encoders)` (the encoder_config.json
      of the first SavedModel listed, else EncoderConfig()).
    encoder_seed: initialisation seed of the random encoder.
    supervised: budget of the supervised baseline.
    progress: show progress bars.
    skip_corrupt: read each TFRecord shard up to its first corrupt record and
      skip the rest (data.waveform_dataset(skip_corrupt=True)); without it a
      corrupt shard is an EvaluationError naming the file.
  """
  encoders: Tuple[str, ...] = ("handcrafted",)
  dataset: str = "nsynth/full"
  data_dir: Optional[str] = None
  dataset_dir: Optional[str] = None
  train_split: str = "train"
  test_split: str = "test"
  tasks: Tuple[str, ...] = tuple(TASKS)
  num_labeled: Tuple[int, ...] = (1000,)
  seeds: int = 3
  probe: probe_lib.ProbeConfig = probe_lib.ProbeConfig()
  batch_size: int = 64
  architecture: Optional[export.EncoderConfig] = None
  encoder_seed: int = 0
  supervised: SupervisedConfig = SupervisedConfig()
  progress: bool = True
  skip_corrupt: bool = False

  def validate(self):
    """Checks what can be checked without data; raises EvaluationError."""
    if not self.encoders:
      raise EvaluationError("--encoder is empty; pass a SavedModel path or "
                            f"one of {', '.join(ENCODER_WORDS)}.")
    if len(set(self.encoders)) != len(self.encoders):
      raise EvaluationError(
          f"--encoder lists an encoder twice: {','.join(self.encoders)}.")
    if not self.tasks:
      raise EvaluationError(
          f"--tasks is empty; choose from {', '.join(TASKS)}.")
    for task in self.tasks:
      if task not in TASKS:
        raise EvaluationError(
            f"Unknown task {task!r} in --tasks; choose from "
            f"{', '.join(TASKS)}.")
    if len(set(self.tasks)) != len(self.tasks):
      raise EvaluationError(f"--tasks lists a task twice: {self.tasks}.")
    if not self.num_labeled:
      raise EvaluationError("--num_labeled is empty; pass e.g. 1000.")
    if len(set(self.num_labeled)) != len(self.num_labeled):
      raise EvaluationError(
          f"--num_labeled lists a regime twice: {list(self.num_labeled)}.")
    for num in self.num_labeled:
      if int(num) < 2:
        raise EvaluationError(
            f"--num_labeled={num}: each regime needs at least 2 labelled "
            "examples (one to fit, one to stop early on).")
    if self.seeds < 1:
      raise EvaluationError(f"--seeds={self.seeds} must be >= 1.")
    if self.batch_size < 1:
      raise EvaluationError(f"--batch_size={self.batch_size} must be >= 1.")
    for name in ("steps", "batch_size", "eval_every"):
      if getattr(self.supervised, name) < 1:
        raise EvaluationError(
            f"supervised {name}={getattr(self.supervised, name)} must be >= 1.")
    try:
      self.probe.validate()
    except ValueError as error:
      raise EvaluationError(str(error)) from None
    return self


def config_to_dict(config):
  """A JSON-ready dict of an EvalConfig (nested dataclasses as dicts)."""
  return json.loads(json.dumps(dataclasses.asdict(config)))


# ------------------------------------------------------------------- data


def open_dataset(dataset="nsynth/full", data_dir=None, dataset_dir=None):
  """The TFDS builder of the evaluation data, or a clear EvaluationError.

  Args:
    dataset: registered TFDS name (e.g. "nsynth/full"), used when
      dataset_dir is None; it must already be prepared in data_dir (nothing is
      downloaded).
    data_dir: TFDS data directory for `dataset` (None: TFDS's default).
    dataset_dir: a TFDS folder dataset (the directory holding
      dataset_info.json, as data_prep writes it).

  Returns:
    A tfds DatasetBuilder.
  """
  if dataset_dir:
    if not os.path.isdir(dataset_dir):
      raise EvaluationError(
          f"--dataset_dir={dataset_dir!r} does not exist; "
          + HOW_TO_PREPARE.replace("DIR", dataset_dir) + ".")
    if not os.path.exists(os.path.join(dataset_dir, "dataset_info.json")):
      raise EvaluationError(
          f"--dataset_dir={dataset_dir!r} is not a TFDS folder dataset (no "
          "dataset_info.json in it); pass the directory data_prep wrote, or "
          + HOW_TO_PREPARE.replace("DIR", dataset_dir) + ".")
    try:
      return tfds.builder_from_directory(dataset_dir)
    except Exception as error:  # pylint: disable=broad-except
      raise EvaluationError(
          f"--dataset_dir={dataset_dir!r} could not be read as a TFDS folder "
          f"dataset ({type(error).__name__}: {str(error).splitlines()[0]})."
      ) from None
  try:
    builder = tfds.builder(dataset, data_dir=data_dir)
  except Exception as error:  # pylint: disable=broad-except
    raise EvaluationError(
        f"--dataset={dataset!r} is not a TFDS dataset this installation knows "
        f"({type(error).__name__}: {str(error).splitlines()[0]}); "
        + HOW_TO_PREPARE + ".") from None
  if not builder.is_prepared():
    where = data_dir or "TFDS's default data_dir"
    raise EvaluationError(
        f"--dataset={dataset!r} is not prepared in {where} (nothing is "
        "downloaded here); prepare it there with tfds, or "
        + HOW_TO_PREPARE + _default_dataset_hint() + ".")
  return builder


def _default_dataset_hint():
  try:
    from data_prep import render  # pylint: disable=g-import-not-at-top
  except ImportError:
    return ""
  where = render.DEFAULT_DATA_DIR
  if os.path.exists(os.path.join(where, "dataset_info.json")):
    return f" (train.py's default dataset is ready: --dataset_dir={where})"
  return ""


def dataset_description(builder):
  """A short JSON-ready description of a builder (name, version, location)."""
  return {"name": builder.info.full_name,
          "data_dir": str(builder.data_dir),
          "splits": {name: int(split.num_examples)
                     for name, split in builder.info.splits.items()}}


def split_size(builder, split):
  """Number of examples of a split; EvaluationError if it is not there."""
  splits = builder.info.splits
  if split not in splits:
    raise EvaluationError(
        f"Split {split!r} is not in dataset {builder.info.full_name} (splits: "
        f"{', '.join(sorted(splits.keys())) or 'none'}); pass --train_split/"
        "--test_split.")
  return int(splits[split].num_examples)


def _feature_at(features, path):
  node = features
  for key in path:
    try:
      keys = node.keys()
    except AttributeError:
      return None
    if key not in keys:
      return None
    node = node[key]
  return node


def check_features(builder, tasks):
  """Raises EvaluationError when audio or a task's label is missing.

  Returns:
    The number of samples per note (static audio length).
  """
  features = builder.info.features
  audio = _feature_at(features, ("audio",))
  if audio is None:
    raise EvaluationError(
        f"Dataset {builder.info.full_name} has no 'audio' feature; the "
        "evaluation needs nsynth-style notes.")
  for name in tasks:
    if _feature_at(features, TASKS[name].feature_path) is None:
      raise EvaluationError(
          f"Task {name!r} needs the label "
          f"'{'/'.join(TASKS[name].feature_path)}', which dataset "
          f"{builder.info.full_name} does not have; drop it from --tasks.")
  shape = tuple(audio.shape)
  if len(shape) != 1 or shape[0] is None:
    raise EvaluationError(
        f"Dataset {builder.info.full_name} has audio of shape {shape}; the "
        "evaluation needs fixed-length mono notes [samples].")
  return int(shape[0])


def _labels_of(example, tasks):
  # data.waveform_dataset names its labels as the tasks are named
  # ("instrument_family", "instrument", "pitch"), for both record schemas.
  return {name: tf.cast(example[name], tf.int64) for name in tasks}


def split_files(builder, split):
  """The TFRecord shards of a split, in order; EvaluationError if none."""
  split_size(builder, split)
  file_format = getattr(builder.info, "file_format", None)
  file_format = getattr(file_format, "value", file_format)
  if file_format not in (None, "tfrecord"):
    raise EvaluationError(
        f"Dataset {builder.info.full_name} is stored as {file_format!r}; the "
        "evaluation reads TFRecord shards (prepare it with TFDS's default "
        "file_format=tfrecord, or " + HOW_TO_PREPARE + ").")
  files = [os.fspath(p) for p in builder.info.splits[split].filepaths]
  if not files:
    raise EvaluationError(
        f"Split {split!r} of {builder.info.full_name} lists no shard file.")
  return files


def _read_split(builder, split, num_samples=None, skip_corrupt=False):
  """Single examples of a split through data.waveform_dataset.

  The training pipeline's per-record rules apply: audio fitted to
  num_samples (first samples kept, zero-padded at the end), records with
  non-finite audio dropped, a record without audio an error naming its file.
  One ordered, deterministic pass: indices taken from one pass address the
  same notes in the next (checked in compute_embeddings). A corrupt shard
  raises tf.errors.DataLossError while iterating, unless skip_corrupt, which
  reads each shard up to its first bad record (the same records every pass).

  Returns:
    tf.data.Dataset of dicts ("audio" float32 [num_samples], the labels
    int32 [] named as data.LABELS).
  """
  if num_samples is None:
    num_samples = check_features(builder, ())
  try:
    return data_lib.waveform_dataset(
        file_pattern=split_files(builder, split), batch_size=None,
        shuffle=False, deterministic=True, num_samples=num_samples,
        skip_corrupt=skip_corrupt)
  except EvaluationError:
    raise
  except ValueError as error:
    raise EvaluationError(
        f"Split {split!r} of {builder.info.full_name}: {error}") from None


def read_labels(builder, split, tasks, batch_size=256, progress=True,
                num_samples=None, skip_corrupt=False):
  """Labels of every usable example of a split, in reading order.

  Examples the pipeline drops (non-finite audio) are left out here and in
  every later pass alike.

  Returns:
    {task: int64 [num_examples]}.
  """
  dataset = _read_split(builder, split, num_samples, skip_corrupt).map(
      lambda example: _labels_of(example, tasks),
      num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
  total = math.ceil(split_size(builder, split) / batch_size)
  chunks = {name: [] for name in tasks}
  for batch in tqdm.tqdm(dataset, total=total, disable=not progress,
                         desc=f"labels of {split}", unit="batch"):
    for name in tasks:
      chunks[name].append(batch[name].numpy())
  return {name: (np.concatenate(values) if values else np.zeros(0, np.int64))
          for name, values in chunks.items()}


# --------------------------------------------------------------- encoders


class FrozenEncoder:
  """A named waveform -> embedding function.

  Attributes:
    name: the --encoder entry it came from.
    embed: callable float32 [batch, samples] -> float32 [batch, dim], on graph.
    description: JSON-ready facts about it (kind, dim, path, ...).
  """

  def __init__(self, name, embed, description):
    self.name = name
    self.embed = embed
    self.description = description

  def __call__(self, waveforms):
    return self.embed(waveforms)


def handcrafted_features(waveforms):
  """Mean and standard deviation over time of the log spectrogram, per bin.

  Args:
    waveforms: float32 [batch, samples] at 16 kHz.

  Returns:
    float32 [batch, 2 * bins] (2 * 513 = 1026 with the default STFT): the
    per-bin means followed by the per-bin standard deviations.
  """
  spec = spectrogram_lib.log_magnitude_spectrogram(waveforms)  # [B, T, F]
  mean, variance = tf.nn.moments(spec, axes=[1])  # [B, F] each
  return tf.concat([mean, tf.sqrt(variance)], axis=-1)  # [B, 2F]


def handcrafted_encoder(num_samples=spectrogram_lib.NUM_SAMPLES):
  embed = tf.function(
      handcrafted_features,
      input_signature=[tf.TensorSpec([None, num_samples], tf.float32)])
  dim = 2 * spectrogram_lib.num_bins()
  return FrozenEncoder("handcrafted", embed,
                       {"kind": "handcrafted", "embedding_dim": dim})


def default_architecture(encoder_specs=()):
  """The CFN the `random` and `supervised` baselines are built with.

  The encoder_config.json written by export beside the first SavedModel in
  `encoder_specs` (so the baselines share the pretrained encoder's
  architecture and frontend), else `export.EncoderConfig()`.
  """
  for spec in encoder_specs:
    if spec in ENCODER_WORDS:
      continue
    path = os.path.join(spec, export.CONFIG_FILENAME)
    if os.path.exists(path):
      try:
        return export.read_config(spec)
      except (ValueError, TypeError, json.JSONDecodeError) as error:
        raise EvaluationError(
            f"{path} could not be read as an encoder config: {error}") from None
  return export.EncoderConfig()


def _checked_architecture(architecture, num_samples):
  architecture = dataclasses.replace(architecture, num_samples=num_samples)
  try:
    architecture.patch_shape()
  except ValueError as error:
    raise EvaluationError(
        f"CFN architecture {architecture.to_dict()}: {error}") from None
  return architecture


def random_encoder(architecture, num_samples=spectrogram_lib.NUM_SAMPLES,
                   seed=0):
  """The CFN with random (untrained) weights: the paper's Random Embedding.

  Args:
    architecture: export.EncoderConfig.
    num_samples: samples per note of the dataset.
    seed: initialisation seed (also seeds Python's and numpy's generators,
      through keras.utils.set_random_seed).
  """
  architecture = _checked_architecture(architecture, num_samples)
  module = export.random_encoder(architecture, seed=int(seed))
  description = {"kind": "random", "seed": int(seed),
                 "embedding_dim": int(module.embedding_dim),
                 "architecture": architecture.to_dict()}
  return FrozenEncoder("random", module, description)


def saved_model_encoder(path):
  """Loads an exported encoder; EvaluationError if it is not one.

  The SavedModel must have a `serving_default` signature taking one float32
  tensor [batch, samples] and returning {"embedding": [batch, dim]}.
  """
  if not os.path.isdir(path):
    raise EvaluationError(
        f"--encoder={path!r} is neither a directory nor one of "
        f"{', '.join(ENCODER_WORDS)}; pass the --export_dir of a train.py run "
        "(default MODEL_DIR/encoder).")
  if not (os.path.exists(os.path.join(path, "saved_model.pb")) or
          os.path.exists(os.path.join(path, "saved_model.pbtxt"))):
    raise EvaluationError(
        f"--encoder={path!r} is not a SavedModel (no saved_model.pb); pass the "
        "--export_dir of a train.py run (default MODEL_DIR/encoder).")
  try:
    loaded = tf.saved_model.load(path)
  except Exception as error:  # pylint: disable=broad-except
    raise EvaluationError(
        f"--encoder={path!r} could not be loaded as a SavedModel "
        f"({type(error).__name__}: {str(error).splitlines()[0]}).") from None
  signatures = getattr(loaded, "signatures", {})
  if SERVING_SIGNATURE not in signatures:
    raise EvaluationError(
        f"--encoder={path!r} has no {SERVING_SIGNATURE!r} signature (it has: "
        f"{', '.join(signatures.keys()) or 'none'}); export it with train.py "
        "--export_only.")
  signature = signatures[SERVING_SIGNATURE]
  _, input_specs = signature.structured_input_signature
  outputs = signature.structured_outputs
  problem = None
  if len(input_specs) != 1:
    problem = f"it takes {len(input_specs)} inputs"
  else:
    (input_name, spec), = input_specs.items()
    if spec.dtype != tf.float32 or spec.shape.rank != 2:
      problem = f"its input {input_name!r} is {spec.dtype.name} {spec.shape}"
  if problem is None and (not isinstance(outputs, dict) or
                          EMBEDDING_KEY not in outputs):
    problem = f"its outputs are {sorted(outputs) if isinstance(outputs, dict) else outputs}"
  if problem is None and outputs[EMBEDDING_KEY].shape.rank != 2:
    problem = f"its embedding has shape {outputs[EMBEDDING_KEY].shape}"
  if problem is not None:
    raise EvaluationError(
        f"--encoder={path!r}: signature {SERVING_SIGNATURE!r} is not the "
        "encoder signature (float32 waveforms [batch, samples] -> "
        f"{{'embedding': [batch, dim]}}): {problem}.")

  def embed(waveforms):
    return signature(**{input_name: waveforms})[EMBEDDING_KEY]

  embed.loaded = loaded  # Keeps the variables alive.
  description = {"kind": "saved_model", "path": os.path.abspath(path),
                 "input": input_name,
                 "embedding_dim": outputs[EMBEDDING_KEY].shape[-1]}
  return FrozenEncoder(path, embed, description)


def make_encoder(spec, architecture=None,
                 num_samples=spectrogram_lib.NUM_SAMPLES, encoder_seed=0):
  """A FrozenEncoder from an --encoder entry (not for `supervised`).

  Args:
    spec: "handcrafted", "random" or a SavedModel path.
    architecture: export.EncoderConfig for "random" (None: the default).
    num_samples: samples per note of the dataset.
    encoder_seed: initialisation seed for "random".
  """
  if spec == "handcrafted":
    return handcrafted_encoder(num_samples)
  if spec == "random":
    return random_encoder(architecture or export.EncoderConfig(), num_samples,
                          encoder_seed)
  if spec == "supervised":
    raise ValueError("`supervised` is trained per subset; see fit_supervised.")
  return saved_model_encoder(spec)


# ------------------------------------------------------------- embeddings


def compute_embeddings(builder, split, encoders, indices=None, batch_size=64,
                       expected_labels=None, keep_audio=False, progress=True,
                       num_samples=None, skip_corrupt=False):
  """Embeds notes of a split with every encoder in one batched pass.

  Args:
    builder: the TFDS builder.
    split: split name.
    encoders: list of FrozenEncoder (may be empty when only audio is kept).
    indices: sorted int64 positions (in reading order, see `_read_split`)
      of the notes to embed, or None for all.
    batch_size: notes per batch.
    expected_labels: optional {task: int64 [split size]} from `read_labels`;
      the labels seen in this pass must agree (guards the stored order).
    keep_audio: also return the waveforms (float32 [len(indices), samples]).
    progress: show a progress bar.
    num_samples: samples per note (default: the dataset's audio length).
    skip_corrupt: as `_read_split`.

  Returns:
    (embeddings {encoder name: float32 [num, dim]}, audio or None, stats
    {"num_examples", "seconds", "examples_per_second"}).
  """
  size = split_size(builder, split)
  if expected_labels:
    size = len(next(iter(expected_labels.values())))
  dataset = _read_split(builder, split, num_samples, skip_corrupt).enumerate()
  if indices is not None:
    indices = np.asarray(indices, np.int64)
    mask = np.zeros(size, bool)
    mask[indices] = True
    mask = tf.constant(mask)
    dataset = dataset.filter(lambda i, example: tf.gather(mask, i))
    total_notes = len(indices)
  else:
    total_notes = size
  tasks = sorted(expected_labels) if expected_labels else []
  dataset = dataset.map(
      lambda i, example: (i, example["audio"], _labels_of(example, tasks)),
      num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)

  outputs = {encoder.name: [] for encoder in encoders}
  seen, audio_chunks = [], []
  start = time.perf_counter()
  with tqdm.tqdm(total=total_notes, disable=not progress, unit="note",
                 desc=f"embedding {split}") as bar:
    for index, audio, labels in dataset:
      audio = tf.cast(audio, tf.float32)
      for encoder in encoders:
        outputs[encoder.name].append(encoder(audio).numpy())
      seen.append(index.numpy())
      if keep_audio:
        audio_chunks.append(audio.numpy())
      for name in tasks:
        if not np.array_equal(labels[name].numpy(),
                              expected_labels[name][index.numpy()]):
          raise RuntimeError(
              f"Split {split!r} was read in a different order on two passes; "
              "the labels do not line up.")
      bar.update(int(index.shape[0]))
  seconds = time.perf_counter() - start
  seen = np.concatenate(seen) if seen else np.zeros(0, np.int64)
  if indices is not None and not np.array_equal(seen, indices):
    raise RuntimeError(
        f"Expected {len(indices)} notes of split {split!r}, read {len(seen)}.")
  embeddings = {}
  for encoder in encoders:
    values = np.concatenate(outputs[encoder.name], axis=0).astype(np.float32)
    if values.ndim != 2:
      raise EvaluationError(
          f"Encoder {encoder.name!r} returned embeddings of shape "
          f"{values.shape[1:]} per batch; expected [batch, dim].")
    bad = int(np.sum(~np.all(np.isfinite(values), axis=1)))
    if bad:
      raise EvaluationError(
          f"Encoder {encoder.name!r} returned NaN or infinite embeddings for "
          f"{bad} of {len(values)} notes of split {split!r}.")
    embeddings[encoder.name] = values
  audio = np.concatenate(audio_chunks) if keep_audio and audio_chunks else None
  stats = {"num_examples": int(len(seen)), "seconds": seconds,
           "examples_per_second": len(seen) / seconds if seconds else 0.0}
  return embeddings, audio, stats


# ------------------------------------------------------------- supervised


def fit_supervised(audio, labels, task_type, seed, architecture,
                   probe_config=probe_lib.ProbeConfig(),
                   config=SupervisedConfig()):
  """Trains the CFN and a probe-shaped head end to end on a labelled subset.

  The paper's "Without Pretraining": the same encoder architecture, randomly
  initialised, trained from scratch on the labelled subset alone. The subset
  is split as for the probes (`probe.holdout_split`); the held-out part picks
  the best weights (checked every `config.eval_every` steps).

  Args:
    audio: float32 [n, samples] waveforms of the labelled subset.
    labels: [n] class ids (classification) or targets (regression).
    task_type: "classification" or "regression".
    seed: int; initialisation, split and minibatch order.
    architecture: export.EncoderConfig of the CFN.
    probe_config: the head: 2 hidden layers ("mlp") or none ("linear").
    config: SupervisedConfig (step budget).

  Returns:
    predict: callable float32 [m, samples] -> [m] predictions (original class
    ids or target units), plus attribute `steps_to_best`.
  """
  labels = np.asarray(labels)
  fit_index, val_index = probe_lib.holdout_split(
      labels, probe_config.holdout_fraction, seed)
  architecture = _checked_architecture(architecture, audio.shape[1])
  keras.utils.set_random_seed(int(seed))  # Initial weights.
  encoder = export.build_waveform_model(architecture)
  head_layers = []
  if probe_config.probe == "mlp":
    head_layers = [keras.layers.Dense(probe_config.hidden_units,
                                      activation="relu") for _ in range(2)]
  if task_type == "classification":
    dense, _, classes = probe_lib.remap_labels(labels)
    targets = dense.astype(np.int32)
    head_layers.append(keras.layers.Dense(len(classes)))
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    target_mean, target_scale = 0.0, 1.0
  else:
    values = labels.astype(np.float64)
    target_mean = float(values[fit_index].mean())
    target_scale = float(values[fit_index].std()) or 1.0
    targets = ((values - target_mean) / target_scale).astype(
        np.float32)[:, None]
    head_layers.append(keras.layers.Dense(1))
    loss_fn = keras.losses.MeanSquaredError()
  head = keras.Sequential(
      [keras.Input((architecture.embedding_dim,))] + head_layers)
  variables = encoder.trainable_variables + head.trainable_variables
  optimizer = keras.optimizers.Adam(config.learning_rate)
  optimizer.build(variables)

  def forward(waveforms, training):
    return head(encoder(waveforms, training=training), training=training)

  num_samples = int(audio.shape[1])
  waveform_spec = tf.TensorSpec([None, num_samples], tf.float32)
  target_spec = tf.TensorSpec([None] + list(targets.shape[1:]),
                              tf.as_dtype(targets.dtype))

  @tf.function(input_signature=[waveform_spec, target_spec])
  def train_step(waveforms, target):
    with tf.GradientTape() as tape:
      loss = loss_fn(target, forward(waveforms, True))
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

  @tf.function(input_signature=[waveform_spec])
  def predict_batch(waveforms):
    return forward(waveforms, False)

  def outputs_of(waveforms, batch_size=64):
    chunks = [predict_batch(tf.constant(waveforms[i:i + batch_size])).numpy()
              for i in range(0, len(waveforms), batch_size)]
    return np.concatenate(chunks, axis=0)

  rng = np.random.default_rng(seed)
  batch_size = min(config.batch_size, len(fit_index))
  order, position = rng.permutation(fit_index), 0
  best_loss, best_step = np.inf, 0
  best_weights = [v.numpy() for v in variables]
  val_audio = audio[val_index]
  val_targets = tf.constant(targets[val_index])
  for step in range(1, config.steps + 1):
    if position + batch_size > len(order):
      order, position = rng.permutation(fit_index), 0
    batch = order[position:position + batch_size]
    position += batch_size
    train_step(tf.constant(audio[batch]), tf.constant(targets[batch]))
    if step % config.eval_every == 0 or step == config.steps:
      val_loss = float(loss_fn(val_targets, outputs_of(val_audio)))
      if val_loss < best_loss:
        best_loss, best_step = val_loss, step
        best_weights = [v.numpy() for v in variables]
  for variable, value in zip(variables, best_weights):
    variable.assign(value)

  def predict(waveforms):
    outputs = outputs_of(np.asarray(waveforms, np.float32))
    if task_type == "classification":
      return classes[np.argmax(outputs, axis=-1)]
    return outputs[:, 0].astype(np.float64) * target_scale + target_mean

  predict.steps_to_best = best_step
  return predict


# ------------------------------------------------------------------- loop


def subset_seed(seed, task, num_labeled):
  """The RNG seed of the labelled subset of (seed, task, regime)."""
  return [int(seed), list(TASKS).index(task), int(num_labeled)]


def draw_subsets(train_labels, tasks, num_labeled, seeds):
  """{(task, num_labeled, seed): int64 indices into the train split}."""
  subsets = {}
  for task in tasks:
    for num in num_labeled:
      for seed in range(seeds):
        subsets[(task, int(num), seed)] = probe_lib.stratified_subset(
            train_labels[task], int(num), subset_seed(seed, task, num))
  return subsets


def _iter_test_audio(builder, split, batch_size, num_samples=None,
                     skip_corrupt=False):
  dataset = _read_split(builder, split, num_samples, skip_corrupt).map(
      lambda example: example["audio"], num_parallel_calls=tf.data.AUTOTUNE)
  return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def evaluate(config: EvalConfig):
  """Runs the whole evaluation; returns {"results": [...], "config": {...}}.

  Raises:
    EvaluationError: bad input (one clear message each), a corrupt TFRecord
      shard included (named; see `corrupt_shards_message`).
  """
  try:
    return _evaluate(config)
  except tf.errors.DataLossError as error:
    raise EvaluationError(corrupt_shards_message(config, error)) from None


def corrupt_shards_message(config, error):
  """Names the corrupt shard(s) behind a DataLossError, and what to do.

  tf.data's error does not say which file is bad: the train and test splits'
  shards are read once more, unparsed (data.find_corrupt_files).
  """
  builder = open_dataset(config.dataset, config.data_dir, config.dataset_dir)
  corrupt = {}
  for split in dict.fromkeys((config.train_split, config.test_split)):
    corrupt.update(data_lib.find_corrupt_files(
        file_pattern=split_files(builder, split)))
  first = (error.message or "").strip().splitlines()
  found = ("; ".join(f"{path} ({message})" for path, message in
                     corrupt.items()) if corrupt else
           f"not found again on a second read ({first[0] if first else ''})")
  return (f"Corrupt or truncated TFRecord shard: {found}. Re-create the "
          "dataset, or pass --skip_corrupt to read each shard up to its "
          "first bad record.")


def _evaluate(config):
  config.validate()
  start = time.perf_counter()
  builder = open_dataset(config.dataset, config.data_dir, config.dataset_dir)
  num_samples = check_features(builder, config.tasks)
  train_size = split_size(builder, config.train_split)
  test_size = split_size(builder, config.test_split)
  if config.train_split == config.test_split:
    raise EvaluationError(
        f"--train_split and --test_split are both {config.train_split!r}; the "
        "test split must be held out.")
  if test_size < 1:
    raise EvaluationError(f"Split {config.test_split!r} is empty.")
  architecture = _checked_architecture(
      config.architecture or default_architecture(config.encoders),
      num_samples)
  frozen_specs = [s for s in config.encoders if s != "supervised"]
  encoders = [make_encoder(spec, architecture, num_samples,
                           config.encoder_seed) for spec in frozen_specs]
  largest = max(int(n) for n in config.num_labeled)
  if largest > train_size:
    raise EvaluationError(
        f"--num_labeled={largest} is larger than split "
        f"{config.train_split!r} ({train_size} examples); pass at most "
        f"{train_size}.")

  with_supervised = "supervised" in config.encoders

  train_labels = read_labels(builder, config.train_split, config.tasks,
                             progress=config.progress,
                             num_samples=num_samples,
                             skip_corrupt=config.skip_corrupt)
  test_labels = read_labels(builder, config.test_split, config.tasks,
                            progress=config.progress, num_samples=num_samples,
                            skip_corrupt=config.skip_corrupt)
  # Notes with non-finite audio are dropped by the reader (data's rule).
  dropped = {config.train_split: train_size, config.test_split: test_size}
  train_size = len(train_labels[config.tasks[0]])
  test_size = len(test_labels[config.tasks[0]])
  dropped[config.train_split] -= train_size
  dropped[config.test_split] -= test_size
  if largest > train_size or test_size < 1:
    raise EvaluationError(
        f"After dropping the notes with non-finite audio ({dropped}), split "
        f"{config.train_split!r} has {train_size} notes and "
        f"{config.test_split!r} {test_size}; --num_labeled={largest} needs "
        "at least that many train notes and the test split at least one.")
  subsets = draw_subsets(train_labels, config.tasks, config.num_labeled,
                         config.seeds)
  union = np.unique(np.concatenate(list(subsets.values())))
  train_embeddings, train_audio, train_stats = compute_embeddings(
      builder, config.train_split, encoders, union, config.batch_size,
      expected_labels=train_labels, keep_audio=with_supervised,
      progress=config.progress, num_samples=num_samples,
      skip_corrupt=config.skip_corrupt)
  test_embeddings, _, test_stats = compute_embeddings(
      builder, config.test_split, encoders, None, config.batch_size,
      expected_labels=test_labels, progress=config.progress,
      num_samples=num_samples, skip_corrupt=config.skip_corrupt)
  row_of = {index: row for row, index in enumerate(union)}

  values = {}  # (encoder, task, metric, num_labeled) -> [per seed]
  jobs = [(task, head, int(num), seed) for task in config.tasks
          for head in TASKS[task].heads for num in config.num_labeled
          for seed in range(config.seeds)]
  names = [encoder.name for encoder in encoders] + (
      ["supervised"] if with_supervised else [])
  probe_start = time.perf_counter()
  supervised_seconds = 0.0
  with tqdm.tqdm(total=len(jobs) * len(names), disable=not config.progress,
                 desc="probes", unit="probe") as bar:
    for task, head, num, seed in jobs:
      subset = subsets[(task, num, seed)]
      rows = np.array([row_of[i] for i in subset])
      y_train = train_labels[task][subset]
      y_test = test_labels[task]
      for encoder in encoders:
        scores = probe_lib.fit_and_score(
            train_embeddings[encoder.name][rows], y_train,
            test_embeddings[encoder.name], y_test, head.task_type, seed,
            config.probe)
        values.setdefault((encoder.name, task, head.metric, num), []).append(
            scores[head.metric])
        bar.update(1)
      if with_supervised:
        tick = time.perf_counter()
        predict = fit_supervised(
            train_audio[rows], y_train, head.task_type, seed,
            architecture, config.probe, config.supervised)
        predictions = np.concatenate(
            [predict(batch.numpy()) for batch in
             _iter_test_audio(builder, config.test_split, config.batch_size,
                              num_samples, config.skip_corrupt)])
        scores = probe_lib.score(head.task_type, y_test, predictions)
        values.setdefault(("supervised", task, head.metric, num), []).append(
            scores[head.metric])
        supervised_seconds += time.perf_counter() - tick
        bar.update(1)
  probe_seconds = time.perf_counter() - probe_start

  results = []
  for name in names:
    for task in config.tasks:
      for head in TASKS[task].heads:
        for num in config.num_labeled:
          per_seed = values[(name, task, head.metric, int(num))]
          mean, std = probe_lib.summarize(per_seed)
          results.append({"encoder": name, "task": task,
                          "metric": head.metric, "num_labeled": int(num),
                          "mean": mean, "std": std, "values": per_seed})
  resolved = config_to_dict(config)
  resolved.update({
      "architecture": architecture.to_dict(),
      "dataset_resolved": dataset_description(builder),
      "num_samples": num_samples,
      "train_size": train_size,
      "test_size": test_size,
      "dropped_nonfinite": dropped,
      "num_train_embedded": int(len(union)),
      "encoders_resolved": [e.description for e in encoders],
      "num_classes_train": {task: int(len(np.unique(train_labels[task])))
                            for task in config.tasks},
      "timing": {
          "train_embedding": train_stats,
          "test_embedding": test_stats,
          "probe_seconds": probe_seconds,
          "supervised_seconds": supervised_seconds,
          "total_seconds": time.perf_counter() - start,
      },
      "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                   "tensorflow_datasets": tfds.__version__,
                   "python": platform.python_version()},
  })
  return {"results": results, "config": resolved}


# ---------------------------------------------------------------- reports


def write_json(report, path):
  """Writes the evaluation dict as indented JSON (creating parent dirs)."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  with open(path, "w") as f:
    json.dump(report, f, indent=2, sort_keys=False)
    f.write("\n")


def short_name(encoder):
  """A label for tables and plots: the word, or the path's last part(s)."""
  if encoder in ENCODER_WORDS:
    return encoder
  parts = os.path.normpath(encoder).split(os.sep)
  # train.py exports to MODEL_DIR/encoder: keep the run's name too.
  return os.sep.join(parts[-2:]) if parts[-1] == "encoder" and len(
      parts) > 1 else parts[-1]


def _metric_label(metric):
  return {"accuracy": "accuracy (higher is better)",
          "mse": "MSE, MIDI pitch^2 (lower is better)"}.get(metric, metric)


def markdown_table(report):
  """One markdown table: a row per (task, metric, num_labeled), a column per
  encoder, cells "mean ± std" over seeds."""
  results = report["results"]
  encoders = list(dict.fromkeys(r["encoder"] for r in results))
  keys = list(dict.fromkeys((r["task"], r["metric"], r["num_labeled"])
                            for r in results))
  cell = {(r["encoder"], r["task"], r["metric"], r["num_labeled"]): r
          for r in results}
  lines = ["| task | metric | labels | " + " | ".join(
      short_name(e) for e in encoders) + " |",
           "|---|---|---:|" + "---:|" * len(encoders)]
  for task, metric, num in keys:
    row = []
    for encoder in encoders:
      r = cell.get((encoder, task, metric, num))
      if r is None:
        row.append("")
      else:
        digits = 2 if metric == "mse" else 3
        row.append(f"{r['mean']:.{digits}f} ± {r['std']:.{digits}f}")
    lines.append(f"| {task} | {metric} | {num} | " + " | ".join(row) + " |")
  return "\n".join(lines) + "\n"


def write_report(report, report_dir):
  """Writes report.md (table + config summary) and one PNG per (task, metric).

  Returns:
    The list of files written.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  os.makedirs(report_dir, exist_ok=True)
  results = report["results"]
  config = report.get("config", {})
  written = []
  pairs = list(dict.fromkeys((r["task"], r["metric"]) for r in results))
  encoders = list(dict.fromkeys(r["encoder"] for r in results))
  plots = []
  for task, metric in pairs:
    figure, axis = plt.subplots(figsize=(5.0, 3.6))
    for encoder in encoders:
      rows = sorted((r for r in results if r["encoder"] == encoder and
                     r["task"] == task and r["metric"] == metric),
                    key=lambda r: r["num_labeled"])
      if not rows:
        continue
      axis.errorbar([r["num_labeled"] for r in rows],
                    [r["mean"] for r in rows],
                    yerr=[r["std"] for r in rows], marker="o", capsize=3,
                    label=short_name(encoder))
    regimes = sorted({r["num_labeled"] for r in results})
    if len(regimes) > 1:
      axis.set_xscale("log")
    axis.set_xticks(regimes)
    axis.set_xticklabels([str(n) for n in regimes])
    axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    axis.set_xlabel("labelled examples")
    axis.set_ylabel(_metric_label(metric))
    axis.set_title(f"{task}: {metric}")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize="small")
    figure.tight_layout()
    filename = f"{task}_{metric}.png"
    path = os.path.join(report_dir, filename)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    written.append(path)
    plots.append(filename)

  dataset = config.get("dataset_resolved", {})
  lines = ["# Downstream evaluation", "",
           "Frozen encoders, probes trained on labelled subsets of the train "
           "split and scored on the test split; mean ± sample std over "
           f"{config.get('seeds', '?')} seed(s).", "",
           markdown_table(report), "",
           f"- dataset: {dataset.get('name', config.get('dataset'))} at "
           f"{config.get('dataset_dir') or dataset.get('data_dir')}; train "
           f"split {config.get('train_split')!r} "
           f"({config.get('train_size')} notes), test split "
           f"{config.get('test_split')!r} ({config.get('test_size')} notes)",
           f"- probe: {json.dumps(config.get('probe', {}))}",
           f"- encoders: " + "; ".join(
               f"{short_name(e)} = {e}" for e in encoders), ""]
  lines += [f"![{name}]({name})" for name in plots]
  path = os.path.join(report_dir, "report.md")
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  written.insert(0, path)
  return written

