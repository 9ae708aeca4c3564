"""NSynth records -> shuffled spectrogram patches and targets (tf.data).

Inputs (exactly one of):
  * `data_dir`: a TFDS folder dataset with the official nsynth features, as
    written by data_prep (shards listed by its dataset_info.json; serialized
    keys "audio", "pitch", "velocity", "instrument/label", "instrument/family",
    "instrument/source", "id").
  * `file_pattern`: a glob (or a list of globs/paths) of TFRecord files, either
    Magenta's released NSynth files (keys "audio", "pitch", "velocity",
    "instrument", "instrument_family", "instrument_source", "note_str") or the
    shards of a folder dataset; the schema is detected from the first record.

Pipeline (`pretext_dataset`), everything on graph:
  files -> [shard by files] -> [shuffle files] -> parallel interleave of
  TFRecordDataset (record, file name) -> [shard by examples] -> [shuffle
  records] -> one parallel map per example: parse "audio" (fixed to 64000
  samples), log spectrogram, optional random crop in time, patches in
  natural order (patches.frontend), a uniform permutation (or one of a fixed
  set), shuffled patches and the target -> drop examples with non-finite
  audio -> repeat -> batch(drop_remainder) -> prefetch.
The frontend runs per example by default (`frontend_batch_size=1`): measured
on 2 CPU cores, that was about 1.1-1.2 times faster than running it on whole
batches of 32 on an otherwise idle machine, and 1.5-3 times faster when other
processes competed for the cores (a [32, 398, 1024] frame tensor is 52 MB and
every elementwise pass goes to memory, and one batched op needs all its
threads at once; one example's 1.6 MB stays in cache, and two examples run
side by side). See benchmarks/pipeline.py.

Rules for imperfect data (each is tested):
  * Audio length: the first 64000 samples are kept and shorter audio is
    zero-padded at the end (the same rule as export.fit_length).
  * Non-finite audio (NaN or inf anywhere): the example is DROPPED by a filter
    before batching (a zero-filled stand-in would be a silent example whose
    patches cannot be ordered). `inspect_records` counts them.
  * A record without an "audio" float feature (wrong schema): a ValueError
    naming the file when the pipeline is built (the first record of the first
    files is checked), or tf.errors.InvalidArgumentError naming the file
    during iteration for a later record.
  * A corrupt or truncated TFRecord: tf.data raises tf.errors.DataLossError
    during iteration ("corrupted record at <offset>"; tf.data does not say
    which file; `find_corrupt_files` names it afterwards, and train.py and
    eval.py do so for their one-line errors). `check_files=True` scans every
    file when the pipeline is built and raises a ValueError naming the
    corrupt file(s) instead; `inspect_records` reports them too. With `skip_corrupt=True` each file is
    read up to its first bad record and the rest of that file is skipped
    (tf.data logs a warning per skip; `inspect_records` gives the counts).
  * No file matching, a missing or non-dataset directory, an unknown split:
    ValueError naming the pattern/directory/split.

Normalisation: none here. The features are raw log magnitudes
(log(|X| + 1e-6)); the encoder standardises each example over all its patches
(models.ExampleStandardization), which is order-invariant and keeps the
relative level of the patches. `patches.frontend(normalize=True)` exists for
models without that layer.

Sharding: with a tf.distribute.InputContext, each input pipeline reads
disjoint data: whole files when there are at least as many files as
pipelines, else every k-th record of the (identically ordered) stream. The
per-replica batch is `input_context.get_per_replica_batch_size(batch_size)`.
Permutation and crop seeds differ per pipeline.
"""

import dataclasses
import math
import os
import re

from absl import logging
import numpy as np
import tensorflow as tf

from audio_perm import patches as patches_lib
from audio_perm import permutations as perm_lib
from audio_perm import spectrogram as spectrogram_lib
from audio_perm.patches import frontend  # pylint: disable=unused-import

NUM_SAMPLES = spectrogram_lib.NUM_SAMPLES
TARGETS = ("ranks", "classification")
# Unified label names -> serialized keys, per schema.
LABEL_KEYS = {
    "tfds": {
        "pitch": "pitch",
        "velocity": "velocity",
        "instrument": "instrument/label",
        "instrument_family": "instrument/family",
        "instrument_source": "instrument/source",
        "id": "id",
    },
    "magenta": {
        "pitch": "pitch",
        "velocity": "velocity",
        "instrument": "instrument",
        "instrument_family": "instrument_family",
        "instrument_source": "instrument_source",
        "id": "note_str",
    },
}
LABELS = ("pitch", "velocity", "instrument", "instrument_family",
          "instrument_source")
# How many files' first records are read to check the schema at build time.
_MAX_FILES_PEEKED = 16
_READ_BUFFER_BYTES = 4 << 20


# ---------------------------------------------------------------------------
# Finding the files.


def _glob(file_pattern):
  patterns = ([file_pattern] if isinstance(file_pattern, (str, os.PathLike))
              else list(file_pattern))
  if not patterns:
    raise ValueError("file_pattern is empty; pass a glob of TFRecord files.")
  files = []
  for pattern in patterns:
    pattern = os.fspath(pattern)
    if not pattern:
      raise ValueError(
          "file_pattern is an empty string; pass a glob of TFRecord files, "
          "e.g. '/data/nsynth/nsynth-train.tfrecord*'.")
    matched = sorted(tf.io.gfile.glob(pattern))
    if not matched:
      raise ValueError(
          f"file_pattern={pattern!r} matches no file; check the path.")
    files.extend(m for m in matched if not tf.io.gfile.isdir(m))
  if not files:
    raise ValueError(f"file_pattern={file_pattern!r} matches only folders.")
  return files


def _folder_dataset_files(data_dir, split):
  data_dir = os.fspath(data_dir)
  if not data_dir:
    raise ValueError("data_dir is an empty string; pass a dataset folder.")
  if not tf.io.gfile.isdir(data_dir):
    raise ValueError(
        f"data_dir={data_dir!r} does not exist or is not a folder; render one "
        "with `python -m data_prep.render --output_dir=DIR`.")
  if not tf.io.gfile.exists(os.path.join(data_dir, "dataset_info.json")):
    raise ValueError(
        f"data_dir={data_dir!r} is not a TFDS folder dataset (no "
        "dataset_info.json; an interrupted render leaves none): rerun "
        "`python -m data_prep.render --output_dir=DIR`, or pass "
        "file_pattern= for bare TFRecord files.")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    builder = tfds.builder_from_directory(data_dir)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(
        f"data_dir={data_dir!r}: cannot read the folder dataset's metadata "
        f"({type(e).__name__}: {e}).") from None
  splits = builder.info.splits
  if split not in splits:
    raise ValueError(
        f"split={split!r} is not in data_dir={data_dir!r}; available splits: "
        f"{sorted(splits.keys())}.")
  info = splits[split]
  files = [os.fspath(p) for p in info.filepaths]
  if not files or info.num_examples == 0:
    raise ValueError(
        f"split={split!r} of data_dir={data_dir!r} holds no example.")
  for f in files:
    if not tf.io.gfile.exists(f):
      raise ValueError(
          f"Shard {f!r} of split {split!r} listed in {data_dir!r}'s metadata "
          "is missing; render the dataset again.")
  serialized = builder.info.features.get_serialized_info()
  audio_info = serialized.get("audio") if hasattr(serialized, "get") else None
  if audio_info is None or audio_info.dtype != tf.float32:
    raise ValueError(
        f"data_dir={data_dir!r}: its features have no float32 'audio' tensor "
        f"({audio_info}); expected the nsynth features (data_prep).")
  return files


def list_files(data_dir=None, file_pattern=None, split="train"):
  """The TFRecord files of a folder dataset split or of a glob, sorted.

  Raises:
    ValueError: neither or both sources given, nothing found (see the module
      docstring).
  """
  if (data_dir is None) == (file_pattern is None):
    raise ValueError(
        f"Pass exactly one of data_dir= (a folder dataset from data_prep) or "
        f"file_pattern= (TFRecord files); got data_dir={data_dir!r}, "
        f"file_pattern={file_pattern!r}.")
  if data_dir is not None:
    return _folder_dataset_files(data_dir, split)
  return _glob(file_pattern)


# ---------------------------------------------------------------------------
# Schema check (at build time, in Python, on a few records).


def _error_line(error):
  """The op error's own message, without a graph-execution traceback."""
  lines = []
  for line in error.message.splitlines():
    stripped = line.strip()
    if (not stripped or stripped.startswith(("File ", "[[", "Detected at")) or
        stripped.startswith("Graph execution error")):
      continue
    lines.append(re.sub(r"\s*\[Op:[^\]]*\].*$", "", stripped))
  return " ".join(lines) or error.message.strip()


def _first_record(path, skip_corrupt):
  try:
    for record in tf.data.TFRecordDataset(path).take(1):
      return record.numpy()
  except tf.errors.DataLossError as e:
    if skip_corrupt:
      logging.warning("Skipping corrupt TFRecord file %s: %s", path,
                      _error_line(e))
      return None
    raise ValueError(
        f"Corrupt or truncated TFRecord file {path!r} ({_error_line(e)}); "
        "remove or re-create it, or pass skip_corrupt=True.") from None
  except tf.errors.OpError as e:
    raise ValueError(f"Cannot read {path!r}: {_error_line(e)}") from None
  return None


def _schema_of(record, path):
  example = tf.train.Example.FromString(record)
  feature = example.features.feature
  if "audio" not in feature:
    raise ValueError(
        f"Wrong schema in {path!r}: the record has no 'audio' feature "
        f"(features: {sorted(feature.keys())}); expected an NSynth record "
        "(float 'audio' of 64000 samples at 16 kHz).")
  kind = feature["audio"].WhichOneof("kind")
  if kind != "float_list":
    raise ValueError(
        f"Wrong schema in {path!r}: 'audio' is a {kind}, expected a float_list "
        "of 64000 samples at 16 kHz.")
  if "instrument/family" in feature:
    return "tfds"
  if "instrument_family" in feature:
    return "magenta"
  return "audio_only"


def detect_schema(files, skip_corrupt=False):
  """"tfds", "magenta" or "audio_only", from the first record of the files.

  Reads the first record of up to 16 files (all must agree).

  Raises:
    ValueError: naming the file, for a record without float "audio", a
      corrupt first record (unless skip_corrupt), or when no record is found.
  """
  schemas = {}
  for path in files[:_MAX_FILES_PEEKED]:
    record = _first_record(path, skip_corrupt)
    if record is not None:
      schemas[path] = _schema_of(record, path)
  if not schemas:
    raise ValueError(
        f"No readable record in {files[:_MAX_FILES_PEEKED]}"
        f"{' ...' if len(files) > _MAX_FILES_PEEKED else ''}; the files are "
        "empty or corrupt.")
  if len(set(schemas.values())) > 1:
    raise ValueError(f"Files with different schemas: {schemas}.")
  return next(iter(schemas.values()))


# ---------------------------------------------------------------------------
# Per-record parsing (graph).


def _fit_length(audio, num_samples):
  """[L] -> [num_samples]: keep the first num_samples, zero-pad the end."""
  audio = audio[:num_samples]
  audio = tf.pad(audio, [[0, num_samples - tf.shape(audio)[0]]])
  return tf.ensure_shape(audio, [num_samples])


def _parse_audio(record, path, num_samples):
  """Serialized tf.Example -> (audio float32 [num_samples], finite bool)."""
  parsed = tf.io.parse_single_example(record, {
      "audio": tf.io.FixedLenSequenceFeature([], tf.float32,
                                             allow_missing=True)})
  audio = parsed["audio"]
  check = tf.debugging.Assert(
      tf.size(audio) > 0,
      ["Wrong schema: a record without 'audio' samples in file", path])
  with tf.control_dependencies([check]):
    audio = _fit_length(audio, num_samples)
  return audio


def _parse_with_labels(record, path, schema, num_samples):
  keys = LABEL_KEYS["magenta" if schema == "magenta" else "tfds"]
  spec = {
      "audio": tf.io.FixedLenSequenceFeature([], tf.float32,
                                             allow_missing=True)}
  for name in LABELS:
    spec[keys[name]] = tf.io.FixedLenFeature([], tf.int64, default_value=-1)
  spec[keys["id"]] = tf.io.FixedLenFeature([], tf.string, default_value="")
  parsed = tf.io.parse_single_example(record, spec)
  check = tf.debugging.Assert(
      tf.size(parsed["audio"]) > 0,
      ["Wrong schema: a record without 'audio' samples in file", path])
  with tf.control_dependencies([check]):
    audio = _fit_length(parsed["audio"], num_samples)
  out = {"audio": audio, "id": parsed[keys["id"]]}
  for name in LABELS:
    out[name] = tf.cast(parsed[keys[name]], tf.int32)
  return out


def _is_finite(audio):
  return tf.reduce_all(tf.math.is_finite(audio))


# ---------------------------------------------------------------------------
# Reading records.


def _sharding(input_context, num_files):
  """(num_pipelines, pipeline_id, by_files)."""
  if input_context is None or input_context.num_input_pipelines <= 1:
    return 1, 0, False
  n = input_context.num_input_pipelines
  return n, input_context.input_pipeline_id, num_files >= n


def _pipeline_seed(seed, pipeline_id, salt):
  if seed is None:
    return None
  return (int(seed) * 1000003 + pipeline_id * 7919 + salt) % (2**31 - 1)


def _records(files, *, shuffle, deterministic, seed, input_context,
             skip_corrupt, shuffle_buffer_size, num_parallel_reads):
  """(serialized record, file path) pairs, sharded and shuffled.

  Returns:
    (dataset, pipeline_id, num_pipelines).
  """
  num_pipelines, pipeline_id, by_files = _sharding(input_context, len(files))
  ds = tf.data.Dataset.from_tensor_slices(files)
  if by_files:
    ds = ds.shard(num_pipelines, pipeline_id)
    file_seed = _pipeline_seed(seed, pipeline_id, 1)
  else:
    # Sharding by records needs the same file order in every pipeline.
    file_seed = _pipeline_seed(seed, 0, 1) if seed is not None else (
        0 if num_pipelines > 1 else None)
  num_local_files = (math.ceil((len(files) - pipeline_id) / num_pipelines)
                     if by_files else len(files))
  if shuffle and num_local_files > 1:
    ds = ds.shuffle(num_local_files, seed=file_seed,
                    reshuffle_each_iteration=True)

  def read(path):
    records = tf.data.TFRecordDataset(path, buffer_size=_READ_BUFFER_BYTES)
    if skip_corrupt:
      records = records.ignore_errors(log_warning=True)
    return records.map(lambda r: (r, path))

  cycle_length = max(1, min(num_local_files, num_parallel_reads))
  if cycle_length > 1:
    ds = ds.interleave(
        read, cycle_length=cycle_length, block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic or (num_pipelines > 1 and not by_files))
  else:
    ds = ds.flat_map(read)
  if num_pipelines > 1 and not by_files:
    ds = ds.shard(num_pipelines, pipeline_id)
  if shuffle:
    ds = ds.shuffle(shuffle_buffer_size,
                    seed=_pipeline_seed(seed, pipeline_id, 2),
                    reshuffle_each_iteration=True)
  return ds, pipeline_id, num_pipelines


def _options(deterministic):
  options = tf.data.Options()
  options.deterministic = bool(deterministic)
  options.autotune.enabled = True
  options.experimental_optimization.map_parallelization = True
  options.experimental_optimization.parallel_batch = True
  return options


# ---------------------------------------------------------------------------
# The pretext pipeline.


def _check_permutation_set(permutation_set, num_patches):
  if permutation_set is None:
    raise ValueError(
        "target='classification' needs permutation_set= (an int array "
        "[K, num_patches], e.g. permutations.hamming_permutation_set(100, "
        f"{num_patches})[0]).")
  perm_set = np.asarray(permutation_set)
  if (perm_set.ndim != 2 or perm_set.shape[1] != num_patches or
      perm_set.shape[0] < 1 or
      not np.issubdtype(perm_set.dtype, np.integer)):
    raise ValueError(
        f"permutation_set must be an int array [K, {num_patches}], got shape "
        f"{perm_set.shape} and dtype {perm_set.dtype}.")
  if not np.all(np.sort(perm_set, axis=1) == np.arange(num_patches)):
    bad = int(np.argmin(np.all(np.sort(perm_set, axis=1) ==
                               np.arange(num_patches), axis=1)))
    raise ValueError(
        f"permutation_set row {bad} ({perm_set[bad].tolist()}) is not a "
        f"permutation of 0..{num_patches - 1}.")
  if perm_set.shape[0] > math.factorial(num_patches):
    raise ValueError(
        f"permutation_set has {perm_set.shape[0]} rows, more than "
        f"{num_patches}! = {math.factorial(num_patches)} permutations.")
  return perm_set.astype(np.int32)


def pretext_dataset(data_dir=None,
                    file_pattern=None,
                    split="train",
                    *,
                    batch_size,
                    patching="frequency",
                    num_patches=10,
                    grid=None,
                    target="ranks",
                    permutation_set=None,
                    crop_frames=None,
                    shuffle=True,
                    deterministic=False,
                    seed=None,
                    input_context=None,
                    repeat=True,
                    skip_corrupt=False,
                    check_files=False,
                    normalize=False,
                    num_samples=NUM_SAMPLES,
                    shuffle_buffer_size=256,
                    num_parallel_reads=4,
                    frontend_batch_size=1,
                    prefetch=2):
  """Batches of shuffled spectrogram patches and their targets.

  Args:
    data_dir: folder dataset (data_prep output); or
    file_pattern: glob(s) of NSynth TFRecords (Magenta's or a folder
      dataset's shards).
    split: split of `data_dir` ("train", "valid", "test").
    batch_size: GLOBAL batch size; with `input_context` each pipeline yields
      input_context.get_per_replica_batch_size(batch_size).
    patching: "frequency", "time" or "time_frequency" (audio_perm.patches).
    num_patches: n.
    grid: (rows, cols) for "time_frequency".
    target: "ranks" (int32 [B, n], 0-based rank vectors, see
      audio_perm.permutations) or "classification" (int32 [B], the index k of
      the permutation permutation_set[k] applied).
    permutation_set: int [K, n], required for target="classification".
    crop_frames: None, or a random crop of this many spectrogram frames
      (uniform offset per example) before patching.
    shuffle: shuffle files and records (buffer of `shuffle_buffer_size`).
    deterministic: same elements in the same order for the same seed (a seed
      of 0 is used if seed is None); slower when False is faster.
    seed: int seed of the file/record shuffles, crops and permutations.
    input_context: tf.distribute.InputContext for per-replica sharding.
    repeat: repeat forever (training) or stop after one pass.
    skip_corrupt: skip the rest of a corrupt/truncated file instead of
      failing.
    check_files: scan every record of every file when the pipeline is built
      (inspect_records) and raise a ValueError naming corrupt files (unless
      skip_corrupt) or files without audio; a full read of the data.
    normalize: standardise each example's spectrogram in the frontend (off:
      the encoder does it; see the module docstring).
    num_samples: audio length after the pad/crop rule.
    shuffle_buffer_size: records held by the example shuffle (each ~256 kB).
    num_parallel_reads: files read at once.
    frontend_batch_size: examples per call of the frontend (STFT, patches,
      permutations) before the final batch; 1 (default) runs it per example,
      which keeps its buffers in cache and was faster on CPU than whole
      batches (module docstring); None runs it on whole batches.
    prefetch: batches prefetched.

  Returns:
    tf.data.Dataset of (patches float32 [B, n, patch_frames, patch_bins, 1],
    target), patches in the shuffled order, static shapes.

  Raises:
    ValueError: bad arguments or data found while building (see the module
      docstring).
  """
  if int(batch_size) < 1:
    raise ValueError(f"batch_size={batch_size} must be >= 1.")
  if target not in TARGETS:
    raise ValueError(f"target={target!r} must be one of {TARGETS}.")
  num_patches = int(num_patches)
  # Validates scheme, num_patches, grid and crop_frames before any I/O.
  patches_lib.frontend_patch_shape(patching, num_patches, grid, num_samples,
                                   crop_frames)
  perm_set = (_check_permutation_set(permutation_set, num_patches)
              if target == "classification" else None)
  if deterministic and seed is None:
    seed = 0

  files = list_files(data_dir, file_pattern, split)
  detect_schema(files, skip_corrupt)
  if check_files:
    _raise_for_bad_files(files, skip_corrupt, num_samples)

  ds, pipeline_id, _ = _records(
      files, shuffle=shuffle, deterministic=deterministic, seed=seed,
      input_context=input_context, skip_corrupt=skip_corrupt,
      shuffle_buffer_size=shuffle_buffer_size,
      num_parallel_reads=num_parallel_reads)
  per_replica_batch = (input_context.get_per_replica_batch_size(batch_size)
                       if input_context is not None else int(batch_size))

  chunk = (per_replica_batch if frontend_batch_size is None else
           max(1, min(int(frontend_batch_size), per_replica_batch)))
  # Stateless seeds (shape [2]) for the crops and permutations, one per
  # example (chunk == 1) or per chunk, from a seeded stream that differs
  # from epoch to epoch.
  seeds = tf.data.Dataset.random(
      seed=_pipeline_seed(seed, pipeline_id, 3),
      rerandomize_each_iteration=True).batch(2)
  frames = spectrogram_lib.num_frames(num_samples)
  perm_table = tf.constant(perm_set) if perm_set is not None else None

  def make_examples(audio, chunk_seed):
    """[C, S] waveforms -> (shuffled patches [C, N, H, W, 1], target)."""
    crop_seed, perm_seed = tf.unstack(
        tf.random.experimental.stateless_split(chunk_seed, 2))
    size = tf.shape(audio)[0]
    offsets = None
    if crop_frames is not None:
      offsets = tf.random.stateless_uniform(
          [size], crop_seed, minval=0, maxval=frames - int(crop_frames) + 1,
          dtype=tf.int32)
    patches = patches_lib.frontend(
        audio, patching, num_patches, grid, crop_frames=crop_frames,
        crop_offsets=offsets, normalize=normalize)  # [C, N, H, W, 1]
    if perm_table is None:
      perm = perm_lib.sample_permutations(size, num_patches, perm_seed)
      label = perm_lib.ranks_from_permutation(perm)
    else:
      label = tf.random.stateless_uniform(
          [size], perm_seed, minval=0, maxval=perm_table.shape[0],
          dtype=tf.int32)
      perm = tf.gather(perm_table, label)  # [C, N]
    return perm_lib.shuffle_patches(patches, perm), label

  if chunk == 1:
    # One map does parse + frontend per example (fewer stages, measured
    # ~10% faster than separate maps); non-finite examples are computed and
    # then dropped, which only costs anything when they exist.
    def parse_and_make(record_and_path, example_seed):
      record, path = record_and_path
      audio = _parse_audio(record, path, num_samples)  # [S]
      patches, label = make_examples(audio[tf.newaxis], example_seed)
      return patches[0], label[0], _is_finite(audio)

    ds = tf.data.Dataset.zip((ds, seeds))
    ds = ds.map(parse_and_make, num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=deterministic)
    ds = ds.filter(lambda patches, label, finite: finite)
    ds = ds.map(lambda patches, label, finite: (patches, label))
    # Repeat after the filter: an epoch with nothing left ends the dataset
    # instead of looping forever.
    if repeat:
      ds = ds.repeat()
    ds = ds.batch(per_replica_batch, drop_remainder=True,
                  num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=deterministic)
  else:
    ds = ds.map(lambda r, p: _parse_audio(r, p, num_samples),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=deterministic)
    ds = ds.filter(_is_finite)
    if repeat:
      ds = ds.repeat()
    ds = ds.batch(chunk, drop_remainder=chunk == per_replica_batch,
                  num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=deterministic)  # [C, S]
    ds = tf.data.Dataset.zip((ds, seeds))
    ds = ds.map(make_examples, num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=deterministic)
    if chunk < per_replica_batch:
      ds = ds.unbatch().batch(per_replica_batch, drop_remainder=True,
                              num_parallel_calls=tf.data.AUTOTUNE,
                              deterministic=deterministic)
  ds = ds.prefetch(prefetch)
  return ds.with_options(_options(deterministic))


def waveform_dataset(data_dir=None,
                     file_pattern=None,
                     split="test",
                     *,
                     batch_size,
                     shuffle=False,
                     repeat=False,
                     drop_remainder=False,
                     deterministic=True,
                     seed=None,
                     input_context=None,
                     skip_corrupt=False,
                     num_samples=NUM_SAMPLES,
                     shuffle_buffer_size=256,
                     num_parallel_reads=4):
  """Batches of waveforms and labels (for evaluation and probes).

  Label names are the same for both input formats.

  Args:
    data_dir, file_pattern, split: as `pretext_dataset`.
    batch_size: global batch size (per pipeline with `input_context`); None
      yields single examples (no batch axis), e.g. to select examples by
      position before batching (audio_perm.evaluation does).
    shuffle, repeat, drop_remainder, deterministic, seed, input_context,
      skip_corrupt, num_samples, shuffle_buffer_size, num_parallel_reads: as
      `pretext_dataset` (by default: one ordered pass, last batch kept; with
      deterministic=True and shuffle=False every pass yields the same
      examples in the same order).

  Returns:
    tf.data.Dataset of dicts: "audio" float32 [B, num_samples], "pitch",
    "velocity", "instrument", "instrument_family", "instrument_source" int32
    [B] (-1 where a record lacks the label), "id" string [B]. Records with
    non-finite audio are dropped.
  """
  if batch_size is not None and int(batch_size) < 1:
    raise ValueError(f"batch_size={batch_size} must be >= 1 (or None for "
                     "single examples).")
  if deterministic and seed is None:
    seed = 0
  files = list_files(data_dir, file_pattern, split)
  schema = detect_schema(files, skip_corrupt)
  ds, _, _ = _records(
      files, shuffle=shuffle, deterministic=deterministic, seed=seed,
      input_context=input_context, skip_corrupt=skip_corrupt,
      shuffle_buffer_size=shuffle_buffer_size,
      num_parallel_reads=num_parallel_reads)
  ds = ds.map(lambda r, p: _parse_with_labels(r, p, schema, num_samples),
              num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=deterministic)
  ds = ds.filter(lambda ex: _is_finite(ex["audio"]))
  if repeat:
    ds = ds.repeat()
  if batch_size is not None:
    per_replica_batch = (input_context.get_per_replica_batch_size(batch_size)
                         if input_context is not None else int(batch_size))
    ds = ds.batch(per_replica_batch, drop_remainder=drop_remainder,
                  num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=deterministic)
  ds = ds.prefetch(tf.data.AUTOTUNE)
  return ds.with_options(_options(deterministic))


# ---------------------------------------------------------------------------
# Data checks.


@dataclasses.dataclass
class RecordReport:
  """What `inspect_records` found.

  Attributes:
    num_files: files read.
    num_records: records read (up to the first bad record of corrupt files).
    num_missing_audio: records without "audio" samples.
    num_nonfinite: records whose audio has NaN or inf (dropped by the
      pipelines).
    num_wrong_length: records whose audio is not num_samples long (padded or
      cropped by the pipelines).
    corrupt_files: {path: error message, with the records read before it}.
    missing_audio_files: paths holding records without audio.
  """
  num_files: int = 0
  num_records: int = 0
  num_missing_audio: int = 0
  num_nonfinite: int = 0
  num_wrong_length: int = 0
  corrupt_files: dict = dataclasses.field(default_factory=dict)
  missing_audio_files: list = dataclasses.field(default_factory=list)


def _record_flags(record, num_samples):
  parsed = tf.io.parse_single_example(record, {
      "audio": tf.io.FixedLenSequenceFeature([], tf.float32,
                                             allow_missing=True)})
  audio = parsed["audio"]
  size = tf.size(audio)
  return tf.stack([
      tf.constant(1, tf.int64),
      tf.cast(size == 0, tf.int64),
      tf.cast(tf.logical_not(_is_finite(audio)), tf.int64),
      tf.cast(tf.logical_and(size > 0, size != num_samples), tf.int64),
  ])


def inspect_records(data_dir=None, file_pattern=None, split="train",
                    num_samples=NUM_SAMPLES):
  """Reads every record once and counts problems (a full pass over the data).

  Each file is counted on graph (tf.data reduce); a corrupt file is named
  with the tf.data error and the number of records read before it.

  Returns:
    RecordReport.
  """
  files = list_files(data_dir, file_pattern, split)
  report = RecordReport(num_files=len(files))

  def counter(skip_errors):
    @tf.function
    def count(path):
      records = tf.data.TFRecordDataset(path, buffer_size=_READ_BUFFER_BYTES)
      if skip_errors:
        records = records.ignore_errors()
      flags = records.map(lambda r: _record_flags(r, num_samples),
                          num_parallel_calls=tf.data.AUTOTUNE)
      return flags.reduce(tf.zeros([4], tf.int64), lambda a, b: a + b)
    return count

  count, count_readable = counter(False), counter(True)
  for path in files:
    try:
      counts = count(tf.constant(path)).numpy()
    except tf.errors.DataLossError as e:
      counts = count_readable(tf.constant(path)).numpy()
      report.corrupt_files[path] = (
          f"{_error_line(e)} (after {int(counts[0])} readable records)")
    except tf.errors.InvalidArgumentError as e:
      raise ValueError(
          f"Wrong schema in {path!r}: {_error_line(e)}; expected NSynth "
          "records with a float 'audio' feature.") from None
    report.num_records += int(counts[0])
    report.num_missing_audio += int(counts[1])
    report.num_nonfinite += int(counts[2])
    report.num_wrong_length += int(counts[3])
    if counts[1]:
      report.missing_audio_files.append(path)
  return report


def find_corrupt_files(data_dir=None, file_pattern=None, split="train"):
  """The files tf.data cannot read to the end, with the reader's error.

  A DataLossError raised while iterating a pipeline does not say which file
  is bad; this finds it. Every record of every file is read once WITHOUT
  parsing (only the TFRecord framing and checksums are checked), so it costs
  a read of the data at disk speed, less than `inspect_records`.

  Returns:
    {path: error message} (empty when every file reads to the end).
  """
  files = list_files(data_dir, file_pattern, split)

  @tf.function
  def count(path):
    records = tf.data.TFRecordDataset(path, buffer_size=_READ_BUFFER_BYTES)
    return records.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1)

  corrupt = {}
  for path in files:
    try:
      count(tf.constant(path))
    except tf.errors.DataLossError as e:
      corrupt[path] = _error_line(e)
  return corrupt


def _raise_for_bad_files(files, skip_corrupt, num_samples):
  report = inspect_records(file_pattern=files, num_samples=num_samples)
  if report.corrupt_files:
    message = "; ".join(f"{p}: {m}" for p, m in report.corrupt_files.items())
    if not skip_corrupt:
      raise ValueError(
          f"Corrupt or truncated TFRecord file(s): {message}. Remove or "
          "re-create them, or pass skip_corrupt=True.")
    logging.warning("Skipping the unreadable rest of: %s", message)
  if report.missing_audio_files:
    raise ValueError(
        f"Wrong schema: {report.num_missing_audio} record(s) without 'audio' "
        f"in {report.missing_audio_files}.")
  if report.num_nonfinite or report.num_wrong_length:
    logging.warning(
        "%d record(s) with non-finite audio will be dropped; %d record(s) of "
        "a length other than %d samples will be padded/cropped.",
        report.num_nonfinite, report.num_wrong_length, num_samples)
  return report
