"""Embeddings of a split's notes by frozen encoders, in one batched pass."""

import time

import numpy as np
import tensorflow as tf
import tqdm

from audio_perm.evaluation import datasets


def compute_embeddings(builder, split, encoders, indices=None, batch_size=64,
                       expected_labels=None, keep_audio=False, progress=True,
                       num_samples=None, skip_corrupt=False):
  """Embeds notes of a split with every encoder in one batched pass.

  Each encoder is called once per batch (a `tf.function` or a SavedModel
  signature); only the notes at `indices` are embedded, which is what makes
  the full NSynth train split affordable (the probes see a few thousand
  labelled notes of it).

  Args:
    builder: the TFDS builder.
    split: split name.
    encoders: list of FrozenEncoder (may be empty when only audio is kept).
    indices: sorted int64 positions (in reading order, see
      `datasets.read_split`) of the notes to embed, or None for all.
    batch_size: notes per batch.
    expected_labels: optional {task: int64 [split size]} from `read_labels`;
      the labels seen in this pass must agree (guards the stored order).
    keep_audio: also return the waveforms (float32 [len(indices), samples]).
    progress: show a progress bar.
    num_samples: samples per note (default: the dataset's audio length).
    skip_corrupt: as `datasets.read_split`.

  Returns:
    (embeddings {encoder name: float32 [num, dim]}, audio or None, stats
    {"num_examples", "seconds", "examples_per_second"}, and
    "steady_num_examples"/"steady_seconds": the same without the first
    batch, which carries the encoders' tracing; absent with one batch).
  """
  size = datasets.split_size(builder, split)
  if expected_labels:
    size = len(next(iter(expected_labels.values())))
  dataset = datasets.read_split(builder, split, num_samples,
                                skip_corrupt).enumerate()
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
      lambda i, example: (i, example["audio"],
                          datasets.labels_of(example, tasks)),
      num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)

  outputs = {encoder.name: [] for encoder in encoders}
  seen, audio_chunks = [], []
  first_batch = None  # (notes, seconds) of the first batch.
  start = time.perf_counter()
  with tqdm.tqdm(total=total_notes, disable=not progress, unit="note",
                 desc=f"embedding {split}") as bar:
    for index, audio, labels in dataset:
      audio = tf.cast(audio, tf.float32)  # [B, samples]
      for encoder in encoders:
        outputs[encoder.name].append(encoder(audio).numpy())  # [B, dim]
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
      if first_batch is None:  # Tracing and the pipeline's fill end here.
        first_batch = (int(index.shape[0]), time.perf_counter() - start)
  seconds = time.perf_counter() - start
  seen = np.concatenate(seen) if seen else np.zeros(0, np.int64)
  if indices is not None and not np.array_equal(seen, indices):
    raise RuntimeError(
        f"Expected {len(indices)} notes of split {split!r}, read {len(seen)}.")
  embeddings = {}
  for encoder in encoders:
    values = np.concatenate(outputs[encoder.name], axis=0).astype(np.float32)
    if values.ndim != 2:
      raise datasets.EvaluationError(
          f"Encoder {encoder.name!r} returned embeddings of shape "
          f"{values.shape[1:]} per batch; expected [batch, dim].")
    bad = int(np.sum(~np.all(np.isfinite(values), axis=1)))
    if bad:
      raise datasets.EvaluationError(
          f"Encoder {encoder.name!r} returned NaN or infinite embeddings for "
          f"{bad} of {len(values)} notes of split {split!r}.")
    embeddings[encoder.name] = values
  audio = np.concatenate(audio_chunks) if keep_audio and audio_chunks else None
  stats = {"num_examples": int(len(seen)), "seconds": seconds,
           "examples_per_second": len(seen) / seconds if seconds else 0.0}
  if first_batch is not None and len(seen) > first_batch[0]:
    stats["steady_num_examples"] = int(len(seen)) - first_batch[0]
    stats["steady_seconds"] = seconds - first_batch[1]
  return embeddings, audio, stats
