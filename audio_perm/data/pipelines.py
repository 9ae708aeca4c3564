"""The tf.data pipelines: pretext batches and waveform batches.

`pretext_dataset`, everything on graph:
  files -> [shard by files] -> [shuffle files] -> parallel interleave of
  TFRecordDataset (record, file name) -> [shard by examples] -> [shuffle
  records] -> one parallel map per example: parse "audio" (fit to
  num_samples), log spectrogram, optional random crop in time, patches in
  natural order (patches.frontend), a uniform permutation (or one of a fixed
  set), shuffled patches and the target -> drop examples with non-finite
  audio -> repeat -> batch(drop_remainder) -> prefetch.
`waveform_dataset` reads the same records into waveforms and labels.

The frontend runs per example by default (`frontend_batch_size=1`): on 2 CPU
cores that was 1.1-1.2 times faster than whole batches of 32 on an idle
machine and 1.5-3 times faster on a busy one (one example's 1.6 MB of frames
stays in cache; see benchmarks/pipeline.py).

Normalisation: none here. The features are raw log magnitudes; the encoder
standardises each example over all its patches
(models.ExampleStandardization). `patches.frontend(normalize=True)` exists
for models without that layer.

Sharding: with a tf.distribute.InputContext, each input pipeline reads
disjoint data: whole files when there are at least as many files as
pipelines, else every k-th record of the (identically ordered) stream. The
per-replica batch is `input_context.get_per_replica_batch_size(batch_size)`.
Permutation and crop seeds differ per pipeline.
"""

import math

import numpy as np
import tensorflow as tf

from audio_perm import patches as patches_lib
from audio_perm import pitch as pitch_lib
from audio_perm import permutations as perm_lib
from audio_perm import spectrogram as spectrogram_lib
from audio_perm.data import checks
from audio_perm.data import files as files_lib
from audio_perm.data import records as records_lib

NUM_SAMPLES = records_lib.NUM_SAMPLES
TARGETS = ("ranks", "classification")


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
  """(serialized record, file path, index in the file) triples, sharded and
  shuffled (the index names a bad record in an error).

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
    records = tf.data.TFRecordDataset(
        path, buffer_size=records_lib.READ_BUFFER_BYTES)
    if skip_corrupt:
      records = records.ignore_errors(log_warning=True)
    return records.enumerate().map(lambda i, r: (r, path, i))

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
                    prefetch=2,
                    patch_gap=0,
                    gain_jitter=0.0,
                    tilt_jitter=0.0,
                    eq_jitter=0.0,
                    frequency_scale="linear",
                    pitch_copies=0,
                    pitch_range=3.0,
                    pitch_band="common",
                    pitch_envelope="shifted"):
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
    patch_gap: frames/bins cut off each patch at a random offset inside its
      cell (patches.cut_patches); 0: whole cells.
    gain_jitter, tilt_jitter, eq_jitter: pretext augmentations in log
      magnitude units (config.AugmentConfig): a random offset per patch, a
      random tilt and a smooth random EQ over the bins per example; 0: off.
    frequency_scale: the spectrogram's frequency axis
      (spectrogram.FREQUENCY_SCALES); tilt and EQ run over its bins.
    pitch_copies: K >= 2 shows each note as K consecutive examples, its
      copies resampled by audio_perm.pitch.shifted_copies (each with its
      own crop, augmentations and permutation), and adds their shifts
      to each batch; B / K notes per batch. 0: off.
    pitch_range: largest shift of the copies, in semitones.
    pitch_band: "common" or "full" (audio_perm.pitch.shifted_copies).
    pitch_envelope: "shifted" or "original" (each copy keeps the note's
      smooth envelope, audio_perm.pitch.envelope_offsets).

  Returns:
    tf.data.Dataset of (patches float32 [B, n, patch_frames, patch_bins, 1],
    target), patches in the shuffled order, static shapes; with
    pitch_copies, (patches, target, pitch shifts float32 [B] in
    semitones), where examples b*K .. b*K+K-1 are the copies of one note
    (audio_perm.pitch.shift_ranks gives their pitch ranks).

  Raises:
    ValueError: bad arguments, or bad data found while building (no files,
      wrong schema, corrupt first records; see data.files, data.records and,
      with check_files, data.checks).
  """
  if int(batch_size) < 1:
    raise ValueError(f"batch_size={batch_size} must be >= 1.")
  if target not in TARGETS:
    raise ValueError(f"target={target!r} must be one of {TARGETS}.")
  num_patches = int(num_patches)
  # Validates scheme, num_patches, grid and crop_frames before any I/O.
  patches_lib.frontend_patch_shape(patching, num_patches, grid, num_samples,
                                   crop_frames,
                                   frequency_scale=frequency_scale)
  perm_set = (_check_permutation_set(permutation_set, num_patches)
              if target == "classification" else None)
  if deterministic and seed is None:
    seed = 0

  files = files_lib.list_files(data_dir, file_pattern, split)
  records_lib.detect_schema(files, skip_corrupt)
  if check_files:
    checks.raise_for_bad_files(files, skip_corrupt, num_samples)

  ds, pipeline_id, _ = _records(
      files, shuffle=shuffle, deterministic=deterministic, seed=seed,
      input_context=input_context, skip_corrupt=skip_corrupt,
      shuffle_buffer_size=shuffle_buffer_size,
      num_parallel_reads=num_parallel_reads)
  per_replica_batch = (input_context.get_per_replica_batch_size(batch_size)
                       if input_context is not None else int(batch_size))

  chunk = (per_replica_batch if frontend_batch_size is None else
           max(1, min(int(frontend_batch_size), per_replica_batch)))
  pitch_copies = int(pitch_copies)
  if pitch_copies:
    if pitch_copies < 2 or per_replica_batch % pitch_copies:
      raise ValueError(
          f"pitch_copies={pitch_copies} must be 0 (off) or at least 2 and "
          f"divide each replica's batch ({per_replica_batch}).")
    pitch_lib.check_range(pitch_range)
    pitch_lib.check_band(pitch_band)
    pitch_lib.check_envelope(pitch_envelope)
    if chunk != 1:
      raise ValueError(
          f"pitch_copies={pitch_copies} needs frontend_batch_size=1 (one "
          f"note per frontend call), got {frontend_batch_size}.")
  # Stateless seeds (shape [2]) for the crops and permutations, one per
  # example (chunk == 1) or per chunk, from a seeded stream that differs
  # from epoch to epoch.
  seeds = tf.data.Dataset.random(
      seed=_pipeline_seed(seed, pipeline_id, 3),
      rerandomize_each_iteration=True).batch(2)
  frames = spectrogram_lib.num_frames(num_samples)
  perm_table = tf.constant(perm_set) if perm_set is not None else None
  for name, value in (("patch_gap", patch_gap), ("gain_jitter", gain_jitter),
                      ("tilt_jitter", tilt_jitter), ("eq_jitter", eq_jitter)):
    if not value >= 0:
      raise ValueError(f"{name}={value!r} must be >= 0.")

  def augmentations(seed, size):
    """(gap offsets, spectral offsets, per-patch gains), None where off."""
    gap_seed, tilt_seed, eq_seed, gain_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 4))
    gap_offsets = spectral = gains = None
    if patch_gap:
      gap_offsets = tf.random.stateless_uniform(
          [size, num_patches, 2], gap_seed, minval=0,
          maxval=int(patch_gap) + 1, dtype=tf.int32)
    bins = spectrogram_lib.num_scale_bins(frequency_scale)
    position = tf.linspace(0.0, 1.0, bins)  # [F]
    if tilt_jitter:
      tilt = tf.random.stateless_uniform([size, 1, 1], tilt_seed,
                                         -tilt_jitter, tilt_jitter)
      spectral = tilt * (2.0 * position - 1.0)  # [C, 1, F]
    if eq_jitter:
      amp_seed, phase_seed = tf.unstack(
          tf.random.experimental.stateless_split(eq_seed, 2))
      amplitudes = tf.random.stateless_uniform(
          [size, 1, 3, 1], amp_seed, -eq_jitter / 2, eq_jitter / 2)
      phases = tf.random.stateless_uniform([size, 1, 3, 1], phase_seed, 0.0,
                                           2.0 * math.pi)
      half_periods = tf.constant([1.0, 2.0, 3.0])[:, tf.newaxis]  # [3, 1]
      eq = tf.reduce_sum(amplitudes * tf.cos(
          math.pi * half_periods * position + phases), axis=2)  # [C, 1, F]
      spectral = eq if spectral is None else spectral + eq
    if gain_jitter:
      gains = tf.random.stateless_uniform(
          [size, num_patches, 1, 1, 1], gain_seed, -gain_jitter, gain_jitter)
    return gap_offsets, spectral, gains

  def make_examples(audio, chunk_seed, extra_offsets=None, specs=None):
    """[C, S] waveforms -> (shuffled patches [C, N, H, W, 1], target).

    extra_offsets: None or [C, frames, bins] added to the log spectrograms
    (with the spectral jitter).
    specs: None, or the waveforms' log spectrograms [C, frames, bins] on
    `frequency_scale` when the caller has them (not computed again)."""
    crop_seed, perm_seed = tf.unstack(
        tf.random.experimental.stateless_split(chunk_seed, 2))
    size = tf.shape(audio)[0]
    offsets = None
    if crop_frames is not None:
      offsets = tf.random.stateless_uniform(
          [size], crop_seed, minval=0, maxval=frames - int(crop_frames) + 1,
          dtype=tf.int32)
    # The augmentations' seeds are folded from the chunk's, so that the
    # crops and permutations stay those of a run without augmentations.
    gap_offsets = spectral_offsets = gains = None
    if patch_gap or gain_jitter or tilt_jitter or eq_jitter:
      gap_offsets, spectral_offsets, gains = augmentations(
          tf.random.experimental.stateless_fold_in(chunk_seed, 7), size)
    if extra_offsets is not None:
      spectral_offsets = (extra_offsets if spectral_offsets is None
                          else spectral_offsets + extra_offsets)
    options = dict(crop_frames=crop_frames, crop_offsets=offsets,
                   normalize=normalize, patch_gap=patch_gap,
                   gap_offsets=gap_offsets,
                   spectral_offsets=spectral_offsets)
    if specs is None:
      patches = patches_lib.frontend(
          audio, patching, num_patches, grid,
          frequency_scale=frequency_scale, **options)  # [C, N, H, W, 1]
    else:
      patches = patches_lib.frontend_from_spectrogram(
          specs, patching, num_patches, grid, **options)
    if gains is not None:
      patches = patches + gains
    if perm_table is None:
      perm = perm_lib.sample_permutations(size, num_patches, perm_seed)
      label = perm_lib.ranks_from_permutation(perm)
    else:
      label = tf.random.stateless_uniform(
          [size], perm_seed, minval=0, maxval=perm_table.shape[0],
          dtype=tf.int32)
      perm = tf.gather(perm_table, label)  # [C, N]
    return perm_lib.shuffle_patches(patches, perm), label

  if chunk == 1 and pitch_copies:
    # Each note becomes a group of K consecutive examples (its shifted
    # copies); groups are batched whole, then flattened to [B, ...].
    def parse_and_make_copies(record_path_index, example_seed):
      record, path, index = record_path_index
      audio = records_lib.parse_audio(record, path, num_samples,
                                      index)  # [S]
      copies, pitch_shifts = pitch_lib.shifted_copies(
          audio, tf.random.experimental.stateless_fold_in(example_seed, 11),
          pitch_copies, pitch_range, pitch_band)  # [K, S], [K]
      if pitch_envelope == "original":
        # One STFT for the note and its copies; the copies' are reused.
        specs = spectrogram_lib.to_frequency_scale(
            spectrogram_lib.log_magnitude_spectrogram(
                tf.concat([audio[tf.newaxis], copies], axis=0)),
            frequency_scale)  # [1 + K, T, F]
        patches, label = make_examples(
            copies, example_seed,
            pitch_lib.envelope_offsets(specs[0], specs[1:]), specs[1:])
      else:
        patches, label = make_examples(copies, example_seed)
      return patches, label, pitch_shifts, records_lib.is_finite(audio)

    def flatten_groups(patches, label, pitch_shifts, finite):
      del finite  # All true after the filter.
      flat = lambda x: tf.reshape(
          x, [per_replica_batch] + x.shape[2:].as_list())
      return flat(patches), flat(label), flat(pitch_shifts)

    ds = tf.data.Dataset.zip((ds, seeds))
    ds = ds.map(parse_and_make_copies, num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=deterministic)
    ds = ds.filter(lambda patches, label, shifts, finite: finite)
    if repeat:
      ds = ds.repeat()
    ds = ds.batch(per_replica_batch // pitch_copies, drop_remainder=True,
                  num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=deterministic)
    ds = ds.map(flatten_groups)
  elif chunk == 1:
    # One map does parse + frontend per example (fewer stages, measured
    # ~10% faster than separate maps); non-finite examples are computed and
    # then dropped, which only costs anything when they exist.
    def parse_and_make(record_path_index, example_seed):
      record, path, index = record_path_index
      audio = records_lib.parse_audio(record, path, num_samples,
                                      index)  # [S]
      patches, label = make_examples(audio[tf.newaxis], example_seed)
      return patches[0], label[0], records_lib.is_finite(audio)

    ds = tf.data.Dataset.zip((ds, seeds))
    ds = ds.map(parse_and_make, num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=deterministic)
    ds = ds.filter(lambda patches, label, finite: finite)
    # Repeat after the filter: an epoch with nothing left ends the dataset
    # instead of looping forever.
    if repeat:
      ds = ds.repeat()
    ds = ds.batch(per_replica_batch, drop_remainder=True,
                  num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=deterministic)
    # The (all true) finite flags go once per batch, not by a map per example.
    ds = ds.map(lambda patches, label, finite: (patches, label))
  else:
    ds = ds.map(lambda r, p, i: records_lib.parse_audio(r, p, num_samples, i),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=deterministic)
    ds = ds.filter(records_lib.is_finite)
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
  files = files_lib.list_files(data_dir, file_pattern, split)
  schema = records_lib.detect_schema(files, skip_corrupt)
  ds, _, _ = _records(
      files, shuffle=shuffle, deterministic=deterministic, seed=seed,
      input_context=input_context, skip_corrupt=skip_corrupt,
      shuffle_buffer_size=shuffle_buffer_size,
      num_parallel_reads=num_parallel_reads)
  ds = ds.map(lambda r, p, i: records_lib.parse_with_labels(
      r, p, schema, num_samples, i),
              num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=deterministic)
  ds = ds.filter(lambda ex: records_lib.is_finite(ex["audio"]))
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
