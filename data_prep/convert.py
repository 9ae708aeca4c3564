r"""Converts Magenta's released NSynth files into an NSynth folder dataset.

Usage:

  python -m data_prep.convert --input=GLOB_OR_DIR --output_dir=DIR \
      [--split=train] [--examples_per_shard=256] [--skip_invalid] \
      [--overwrite]

Run it once per split (train, valid, test) into the same DIR; each run adds
its split and rewrites the TFDS metadata for all of them. The result is the
folder-dataset format of `data_prep.nsynth`, the same as `data_prep.render`
writes, so the real NSynth can be used without Apache Beam.

Inputs (Magenta's downloads, https://magenta.tensorflow.org/datasets/nsynth):

  TFRecord files (nsynth-train.tfrecord, ...): one tf.Example per note with
    note_str (bytes), pitch, velocity, instrument, instrument_family,
    instrument_source (int64), audio (float list, 64000 values), qualities
    (int64 list of 10, optional: all false when absent), and optionally
    sample_rate (must be 16000), instrument_family_str and
    instrument_source_str (checked against the integer classes).
    --input is a file, a glob, or a folder holding *.tfrecord* files.
  json+wav archives (nsynth-train.jsonwav.tar.gz, extracted): a folder with
    examples.json ({note_str: {pitch, velocity, instrument,
    instrument_family, instrument_source, qualities, ...}}) and
    audio/<note_str>.wav (mono PCM, 16 kHz, 16- or 32-bit).
    --input is that folder or its examples.json.

Mapping: id = note_str, instrument.label = instrument (0..1005, the line of
instrument_labels.txt, as in TFDS), family = instrument_family, source =
instrument_source, qualities in NSynth's order (bright, dark, distortion,
fast_decay, long_release, multiphonic, nonlinear_env, percussive, reverb,
tempo-synced).

Audio of the wrong length is zero-padded at the end or cropped to its first
64000 samples (counted in the summary). Records that break the schema, with
out-of-range classes or with non-finite audio stop the conversion with an
error naming the file and the record, or, with --skip_invalid, are skipped
and counted. A corrupt or truncated TFRecord file always stops it (the rest
of such a file cannot be trusted).

The order of the records is kept (json+wav: notes in a seeded random order,
since examples.json is sorted by instrument). Crash safety: shards are written
in DIR/.convert_staging/ and moved into DIR only when the split is complete;
an interrupted run leaves nothing a reader takes as data, and a rerun
converts the split again.
"""

import glob
import json
import os
import re
import shutil
import wave

import numpy as np

from data_prep import cli
from data_prep import nsynth

STAGING_DIRNAME = ".convert_staging"
SUMMARY_FILENAME = "convert_summary.json"
EXAMPLES_PER_SHARD = 256
_REQUIRED_INT_FEATURES = ("pitch", "velocity", "instrument",
                          "instrument_family", "instrument_source")


class _InvalidRecord(ValueError):
  """A record that breaks the schema (may be skipped with skip_invalid)."""


# ---------------------------------------------------------------------------
# Finding the inputs.
# ---------------------------------------------------------------------------


def find_inputs(input_pattern):
  """Resolves --input to ("tfrecord", [files]) or ("json_wav", folder).

  Raises:
    ValueError: if nothing matches, or a folder holds neither format.
  """
  if not input_pattern:
    raise ValueError("--input is required: a TFRecord file or glob, or a "
                     "json+wav folder.")
  if os.path.isdir(input_pattern):
    if os.path.isfile(os.path.join(input_pattern, "examples.json")):
      return "json_wav", input_pattern
    files = sorted(
        p for p in glob.glob(os.path.join(input_pattern, "*.tfrecord*"))
        if os.path.isfile(p))
    if not files:
      raise ValueError(
          f"--input={input_pattern!r} is a folder with neither examples.json "
          "(json+wav archive) nor *.tfrecord* files.")
    return "tfrecord", files
  if os.path.basename(input_pattern) == "examples.json" and os.path.isfile(
      input_pattern):
    return "json_wav", os.path.dirname(input_pattern) or "."
  files = sorted(p for p in glob.glob(input_pattern) if os.path.isfile(p))
  if not files:
    raise ValueError(f"--input={input_pattern!r} matches no file.")
  return "tfrecord", files


# ---------------------------------------------------------------------------
# Readers: each yields (serialized NSynth example or None, padded or cropped,
# error message or None) and raises ValueError for an unreadable input.
# ---------------------------------------------------------------------------


def _example_from_values(values, where):
  """Builds the NSynth example dict from Magenta's fields; checks them."""
  audio, padded = nsynth.pad_or_crop(values["audio"])
  if not np.all(np.isfinite(audio)):
    raise _InvalidRecord(f"{where}: audio has NaN or inf values.")
  qualities = values.get("qualities")
  if qualities is None:
    qualities = [0] * len(nsynth.QUALITIES)
  if len(qualities) != len(nsynth.QUALITIES):
    raise _InvalidRecord(
        f"{where}: 'qualities' must hold {len(nsynth.QUALITIES)} values, got "
        f"{len(qualities)}.")
  for key, names in (("instrument_family", nsynth.FAMILIES),
                     ("instrument_source", nsynth.SOURCES)):
    name = values.get(key + "_str")
    index = values[key]
    if name is not None and (not 0 <= index < len(names) or
                             names[index] != name):
      raise _InvalidRecord(
          f"{where}: {key}={index} does not match {key}_str={name!r} "
          f"(classes {names}).")
  sample_rate = values.get("sample_rate")
  if sample_rate is not None and sample_rate != nsynth.SAMPLE_RATE_HZ:
    raise _InvalidRecord(f"{where}: sample_rate is {sample_rate}, expected "
                         f"{nsynth.SAMPLE_RATE_HZ}.")
  example = {
      "id": values["note_str"],
      "audio": audio,
      "pitch": values["pitch"],
      "velocity": values["velocity"],
      "instrument": {"label": values["instrument"],
                     "family": values["instrument_family"],
                     "source": values["instrument_source"]},
      "qualities": {q: bool(v) for q, v in zip(nsynth.QUALITIES, qualities)},
  }
  try:
    record = nsynth.serialize_example(example)
  except ValueError as e:
    raise _InvalidRecord(f"{where}: {e}") from None
  return record, padded


def _record_values(serialized, where):
  """Magenta's fields of one serialized tf.Example."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from google.protobuf import message  # pylint: disable=g-import-not-at-top
  try:
    feature = tf.train.Example.FromString(serialized).features.feature
  except message.DecodeError:
    raise _InvalidRecord(f"{where}: not a tf.train.Example.") from None

  def get(key, kind, required=True):
    if key not in feature:
      if required:
        raise _InvalidRecord(
            f"{where}: missing feature {key!r}; not Magenta's NSynth schema "
            f"(features present: {sorted(feature)}).")
      return None
    value = feature[key]
    if value.WhichOneof("kind") != kind:
      raise _InvalidRecord(f"{where}: feature {key!r} must be a {kind}, got "
                           f"{value.WhichOneof('kind')}.")
    return getattr(value, kind).value

  values = {}
  note_str = get("note_str", "bytes_list")
  if len(note_str) != 1:
    raise _InvalidRecord(f"{where}: 'note_str' must hold one value.")
  values["note_str"] = note_str[0].decode("utf-8", "replace")
  where = f"{where} ({values['note_str']})"
  for key in _REQUIRED_INT_FEATURES:
    v = get(key, "int64_list")
    if len(v) != 1:
      raise _InvalidRecord(f"{where}: {key!r} must hold one value, got "
                           f"{len(v)}.")
    values[key] = int(v[0])
  values["audio"] = np.array(get("audio", "float_list"), np.float32)
  qualities = get("qualities", "int64_list", required=False)
  values["qualities"] = None if qualities is None else list(qualities)
  sample_rate = get("sample_rate", "int64_list", required=False)
  values["sample_rate"] = int(sample_rate[0]) if sample_rate else None
  for key in ("instrument_family_str", "instrument_source_str"):
    v = get(key, "bytes_list", required=False)
    values[key] = v[0].decode("utf-8") if v else None
  return values, where


def _reader_error(error):
  """The first line of a tf.data error, without TensorFlow's node names."""
  line = (error.message.strip().splitlines() or [type(error).__name__])[0]
  line = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", line)
  return re.sub(r"\s*\[Op:[^\]]*\].*$", "", line)


def _read_tfrecords(files):
  """Yields (record or None, padded, error or None) for every record."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  for path in files:
    records = tf.data.TFRecordDataset(path).as_numpy_iterator()
    index = 0
    while True:
      try:
        serialized = next(records)
      except StopIteration:
        break
      except tf.errors.OpError as e:  # DataLossError and friends.
        raise ValueError(
            f"{path}: corrupt or truncated TFRecord file at record index "
            f"{index} (after {index} readable records): "
            f"{_reader_error(e)}") from None
      try:
        values, where = _record_values(serialized, f"{path}: record {index}")
        yield _example_from_values(values, where) + (None,)
      except _InvalidRecord as e:
        yield None, False, str(e)
      index += 1


def read_wav(path):
  """Reads a mono PCM wav file; float32 [samples] in [-1, 1].

  Raises:
    ValueError: naming the file if it is unreadable, not mono, not 16 kHz,
      or not 16/32-bit PCM.
  """
  try:
    with wave.open(path, "rb") as w:
      channels, width, rate = (w.getnchannels(), w.getsampwidth(),
                               w.getframerate())
      frames = w.readframes(w.getnframes())
  except (OSError, EOFError, wave.Error) as e:
    raise ValueError(f"{path}: cannot read the wav file ({e}).") from None
  if channels != 1:
    raise ValueError(f"{path}: {channels} channels, expected mono.")
  if rate != nsynth.SAMPLE_RATE_HZ:
    raise ValueError(f"{path}: sample rate {rate} Hz, expected "
                     f"{nsynth.SAMPLE_RATE_HZ}.")
  if width == 2:
    return np.frombuffer(frames, "<i2").astype(np.float32) / 32768.0
  if width == 4:
    return (np.frombuffer(frames, "<i4").astype(np.float64) /
            2147483648.0).astype(np.float32)
  raise ValueError(f"{path}: {8 * width}-bit samples; expected 16- or "
                   "32-bit PCM.")


def _read_json_wav(folder, seed):
  """Yields (record or None, padded, error or None) for every note."""
  json_path = os.path.join(folder, "examples.json")
  try:
    with open(json_path) as f:
      notes = json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f"{json_path}: cannot read ({e}).") from None
  if not isinstance(notes, dict):
    raise ValueError(f"{json_path}: expected an object note_str -> "
                     "attributes.")
  names = sorted(notes)
  np.random.default_rng(seed).shuffle(names)
  for note_str in names:
    try:
      yield _json_wav_example(folder, json_path, note_str,
                              notes[note_str]) + (None,)
    except _InvalidRecord as e:
      yield None, False, str(e)


def _json_wav_example(folder, json_path, note_str, attrs):
  where = f"{json_path}: note {note_str!r}"
  if not isinstance(attrs, dict):
    raise _InvalidRecord(f"{where}: expected an object of attributes.")
  values = {"note_str": note_str}
  for key in _REQUIRED_INT_FEATURES:
    v = attrs.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
      raise _InvalidRecord(f"{where}: {key!r} must be an integer, got "
                           f"{v!r}; not Magenta's NSynth schema.")
    values[key] = v
  for key in ("qualities", "sample_rate", "instrument_family_str",
              "instrument_source_str"):
    values[key] = attrs.get(key)
  try:
    values["audio"] = read_wav(os.path.join(folder, "audio",
                                            note_str + ".wav"))
  except ValueError as e:
    raise _InvalidRecord(f"{where}: {e}") from None
  return _example_from_values(values, where)


# ---------------------------------------------------------------------------
# Writing.
# ---------------------------------------------------------------------------


def _read_json(path):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _split_files(output_dir, split):
  return sorted(glob.glob(os.path.join(
      glob.escape(output_dir), f"{nsynth.DATASET_NAME}-{split}.tfrecord-*")))


def convert(input_pattern, output_dir, split="train", *,
            examples_per_shard=EXAMPLES_PER_SHARD, skip_invalid=False,
            overwrite=False, seed=0, progress=True, verbose=True):
  """Converts Magenta's NSynth files into one split of a folder dataset.

  Args:
    input_pattern: TFRecord file, glob or folder; or a json+wav folder (or
      its examples.json). See the module docstring.
    output_dir: dataset folder; other splits converted there before are kept.
    split: split name (letters, digits, underscores), e.g. train/valid/test.
    examples_per_shard: records per shard (>= 1).
    skip_invalid: skip and count records with a bad schema, classes out of
      range or non-finite audio, instead of stopping.
    overwrite: replace the split if output_dir already holds it.
    seed: order of the json+wav notes.
    progress: show a progress bar.
    verbose: print the summary.

  Returns:
    dict: "split", "num_examples", "padded_or_cropped", "skipped",
    "shard_lengths", "input", "output_dir".

  Raises:
    ValueError: bad arguments, no input, a corrupt file or (without
      skip_invalid) an invalid record; the message names the file.
  """
  if not isinstance(split, str) or not re.fullmatch(r"[A-Za-z0-9_]+", split):
    raise ValueError(f"--split must be a name like train, valid or test, got "
                     f"{split!r}.")
  if isinstance(examples_per_shard, bool) or not isinstance(
      examples_per_shard, int) or examples_per_shard < 1:
    raise ValueError("examples_per_shard must be an integer >= 1, got "
                     f"{examples_per_shard!r}.")
  if not output_dir:
    raise ValueError(f"--output_dir must be a folder, got {output_dir!r}.")
  kind, inputs = find_inputs(input_pattern)
  output_dir = os.path.abspath(output_dir)
  os.makedirs(output_dir, exist_ok=True)
  if os.path.exists(os.path.join(output_dir, "render_summary.json")):
    raise ValueError(f"{output_dir!r} holds a rendered dataset; convert into "
                     "another --output_dir.")
  state = _read_json(os.path.join(output_dir, SUMMARY_FILENAME)) or {
      "splits": {}}
  if (split in state["splits"] or _split_files(output_dir, split)) and (
      not overwrite):
    raise ValueError(f"{output_dir!r} already holds split {split!r}; pass "
                     "--overwrite to replace it.")

  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  staging = os.path.join(output_dir, STAGING_DIRNAME, split)
  shutil.rmtree(staging, ignore_errors=True)
  os.makedirs(staging)
  reader = (_read_tfrecords(inputs) if kind == "tfrecord" else
            _read_json_wav(inputs, seed))
  shard_lengths, padded_count, skipped = [], 0, []
  writer, tmp_path = None, None

  def close_shard():
    nonlocal writer
    writer.close()
    writer = None
    os.replace(tmp_path, tmp_path[:-len(".incomplete")])

  bar = tqdm(unit="note", desc=f"convert {split}", disable=not progress)
  try:
    for record, padded, error in reader:
      if error is not None:
        if not skip_invalid:
          raise ValueError(error)
        skipped.append(error)
        continue
      if writer is not None and shard_lengths[-1] == examples_per_shard:
        close_shard()
      if writer is None:
        tmp_path = os.path.join(
            staging, f"part-{len(shard_lengths):05d}.incomplete")
        writer = tf.io.TFRecordWriter(tmp_path)
        shard_lengths.append(0)
      writer.write(record)
      shard_lengths[-1] += 1
      padded_count += int(padded)
      bar.update(1)
    if writer is not None:
      close_shard()
  finally:
    bar.close()
    if writer is not None:  # Interrupted: the partial shard stays staged.
      writer.close()
  if not shard_lengths:
    raise ValueError(f"--input={input_pattern!r}: no valid record to convert"
                     f" ({len(skipped)} skipped).")

  # The split is complete: replace any old one, move the shards in place.
  for path in _split_files(output_dir, split):
    os.remove(path)
  num_shards = len(shard_lengths)
  for i in range(num_shards):
    os.replace(os.path.join(staging, f"part-{i:05d}"),
               os.path.join(output_dir,
                            nsynth.shard_filename(split, i, num_shards)))
  shutil.rmtree(staging, ignore_errors=True)
  try:
    os.rmdir(os.path.join(output_dir, STAGING_DIRNAME))
  except OSError:
    pass  # Another split is being converted.
  summary = {
      "split": split,
      "input": os.path.abspath(inputs) if kind == "json_wav" else [
          os.path.abspath(p) for p in inputs],
      "input_format": kind,
      "output_dir": output_dir,
      "num_examples": sum(shard_lengths),
      "shard_lengths": shard_lengths,
      "padded_or_cropped": padded_count,
      "skipped": len(skipped),
      "skipped_examples": skipped[:20],
  }
  state["splits"][split] = summary
  nsynth.write_folder_metadata(
      output_dir,
      {name: info["shard_lengths"] for name, info in state["splits"].items()},
      description="Magenta's NSynth converted by audio_perm's "
      "data_prep.convert.")
  nsynth.write_json_atomically(os.path.join(output_dir, SUMMARY_FILENAME),
                               state)
  if verbose:
    print(f"Converted {summary['num_examples']} notes into split {split!r} "
          f"of {output_dir} ({num_shards} shards); padded or cropped: "
          f"{padded_count}; skipped: {len(skipped)}.")
    for message in skipped[:5]:
      print(f"  skipped: {message}")
  return summary


# ---------------------------------------------------------------------------
# Command line.
# ---------------------------------------------------------------------------


def _define_flags():
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("input", None,
                      "Magenta NSynth TFRecord file/glob/folder, or json+wav "
                      "folder.")
  flags.DEFINE_string("output_dir", None, "Dataset folder to write.")
  flags.DEFINE_string("split", "train", "Split name of this input.")
  flags.DEFINE_integer("examples_per_shard", EXAMPLES_PER_SHARD,
                       "Records per TFRecord shard.")
  flags.DEFINE_boolean("skip_invalid", False,
                       "Skip and count invalid records instead of stopping.")
  flags.DEFINE_boolean("overwrite", False,
                       "Replace the split if --output_dir holds it.")
  flags.DEFINE_integer("seed", 0, "Order of the json+wav notes.")
  flags.DEFINE_boolean("progress", True, "Show a progress bar.")


def main(argv):
  del argv  # Stray arguments are refused by cli.run.
  from absl import flags  # pylint: disable=g-import-not-at-top
  flag_values = flags.FLAGS
  cli.check_output_dir(flag_values.output_dir)
  try:
    convert(flag_values.input, flag_values.output_dir, flag_values.split,
            examples_per_shard=flag_values.examples_per_shard,
            skip_invalid=flag_values.skip_invalid,
            overwrite=flag_values.overwrite, seed=flag_values.seed,
            progress=flag_values.progress)
  except ValueError as e:  # The first line names the file and the record.
    raise ValueError(str(e).splitlines()[0]) from e


def run():
  """Console entry point (audio-perm-convert)."""
  _define_flags()
  cli.run(main, "data_prep.convert")


if __name__ == "__main__":
  run()
