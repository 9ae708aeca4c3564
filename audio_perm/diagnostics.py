r"""What pretraining did to an encoder: collapse statistics and layer probes.

  python -m audio_perm.diagnostics --model_dir=runs/default \
      [--model_dir=runs/other ...] [--dataset_dir=DIR] [--num_labeled=1000] \
      [--seeds=1] [--energy_rule=frequency:10,time:10] [--json=PATH]

For each train.py run it compares the trained CFN with the SAME architecture
at its initialisation seed (the "random twin": what the run started from;
runs sharing architecture and seed share one twin, named after the first),
at two layers:

  * conv: the per-patch backbone features concatenated in patch order, the
    input of fc1;
  * fc1: the embedding (what eval.py and the exported encoder give).

For each (encoder, layer) it reports, on `num_labeled` notes of the train
split:
  * alive: the fraction of units that are positive on at least one note
    (fc1 is a ReLU; a dead unit carries nothing);
  * effective rank: exp(entropy of the normalised squared singular values of
    the centred features) (Roy & Vetterli 2007): about how many directions
    the notes spread along; a collapsed embedding has few;
and the MLP probes of audio_perm.evaluation (the same subsets, the same probe)
fitted on them and scored on the test split: instrument family and
instrument accuracy, pitch MSE and pitch accuracy.

With --energy_rule it also reports how much of the ordering pretext a rule
with nothing learned solves: rank the patches by their mean log magnitude
(energy_rule_accuracy). This is how the study (docs/results.md) found where
pretraining loses downstream information.

With --pitch_score (instead of the probes) it reads the pitch score that a
run trained with --pitch_copies learned to order shifted copies of one note
by, on every note of the valid split, and reports its Spearman correlation
with the MIDI pitch across notes (pitch_score_agreement).
"""

import os

if __name__ == "__main__":
  # Before TensorFlow is imported: its C++ start-up lines are noise here.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# pylint: disable=g-import-not-at-top,wrong-import-position
import dataclasses
import json
import re
from typing import Dict, List, Optional, Sequence

import numpy as np

LAYERS = ("conv", "fc1")
CONCAT_LAYER = "concat"  # models.build_encoder's name for the fc1 input.
DEFAULT_TASKS = ("instrument_family", "instrument", "pitch")


def embedding_statistics(features):
  """{"dim", "alive", "effective_rank"} of features [notes, dim].

  alive: fraction of units positive on at least one note.
  effective_rank: exp(H(p)), p_i = s_i^2 / sum s^2 over the singular values
  s of the centred features; 0 when every note has the same features.
  """
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or features.shape[0] < 2:
    raise ValueError(f"features must be [notes >= 2, dim], got shape "
                     f"{features.shape}.")
  alive = float(np.mean(np.max(features, axis=0) > 0))
  centred = features - features.mean(axis=0, keepdims=True)
  singular = np.linalg.svd(centred, compute_uv=False)
  energy = singular ** 2
  total = energy.sum()
  if total <= 0:
    rank = 0.0
  else:
    p = energy[energy > 0] / total
    rank = float(np.exp(-np.sum(p * np.log(p))))
  return {"dim": int(features.shape[1]), "alive": alive,
          "effective_rank": rank}


def layer_encoders(keras_encoder, config, prefix, twin=None):
  """FrozenEncoders "<prefix>/conv" and "<prefix>/fc1" of a CFN encoder.

  Args:
    keras_encoder: a models.build_encoder model.
    config: its export.EncoderConfig (the waveform frontend).
    prefix: name prefix.
    twin: optional name prefix of its random twin (kept in the description).
  """
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from audio_perm import evaluation  # pylint: disable=g-import-not-at-top
  from audio_perm import export  # pylint: disable=g-import-not-at-top

  both = keras.Model(keras_encoder.input,
                     [keras_encoder.get_layer(CONCAT_LAYER).output,
                      keras_encoder.output])

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
  def layers(waveforms):
    return both(export.waveform_to_patches(waveforms, config.frontend),
                training=False)

  encoders = []
  for index, layer in enumerate(LAYERS):
    def embed(waveforms, index=index):
      return layers(waveforms)[index]
    description = {"kind": "layer", "layer": layer}
    if twin is not None:
      description["twin"] = twin
    encoders.append(evaluation.FrozenEncoder(
        f"{prefix}/{layer}", embed, description))
  return encoders


def run_encoders(model_dir, compare_random=True, twins=None):
  """The layer encoders of a run (and of its random twin).

  Args:
    model_dir: a train.py model_dir.
    compare_random: also return the random twin's layers (first).
    twins: optional dict shared between calls; runs whose twin (same
      architecture and seed) was already returned get no second copy.

  Raises:
    ValueError: model_dir is not a train.py run with a checkpoint.
  """
  from audio_perm import export  # pylint: disable=g-import-not-at-top
  from audio_perm import training  # pylint: disable=g-import-not-at-top
  from audio_perm.training import checkpoints  # pylint: disable=g-import-not-at-top
  trained, config = training.load_trained_encoder(model_dir)
  if not compare_random:
    return layer_encoders(trained, config, f"{model_dir} trained")
  seed = checkpoints.read_flags(model_dir).seed
  key = json.dumps([config.to_dict(), seed], sort_keys=True)
  if twins is not None and key in twins:  # Named after an earlier run.
    return layer_encoders(trained, config, f"{model_dir} trained",
                          twin=f"{twins[key]} random")
  twin = export.random_encoder(config, seed=seed).encoder
  if twins is not None:
    twins[key] = model_dir
  return (layer_encoders(twin, config, f"{model_dir} random") +
          layer_encoders(trained, config, f"{model_dir} trained",
                         twin=f"{model_dir} random"))


def energy_rule_accuracy(dataset_dir, patching="frequency", num_patches=10,
                         grid=None, split="valid", batch_size=64):
  """Partial-ranks accuracy of ranking patches by their mean log magnitude.

  A rule with nothing learned: the loudest patch is put first, the quietest
  last (low bands and early slices of a note are louder). What it reaches is
  the share of the ordering pretext that one energy number per patch solves,
  with no information about the note's timbre or pitch.

  Args:
    dataset_dir: a folder dataset.
    patching, num_patches, grid: the patches (patches.frontend).
    split: split read in full.
    batch_size: notes per batch.

  Returns:
    {"patching", "num_patches", "split", "notes", "accuracy", "chance"}.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from audio_perm import data  # pylint: disable=g-import-not-at-top
  from audio_perm import objectives  # pylint: disable=g-import-not-at-top
  from audio_perm import patches as patches_lib  # pylint: disable=g-import-not-at-top

  dataset = data.waveform_dataset(data_dir=dataset_dir, split=split,
                                  batch_size=batch_size, shuffle=False)

  @tf.function
  def correct(audio):
    patches = patches_lib.frontend(tf.cast(audio, tf.float32), patching,
                                   num_patches, grid)
    energy = tf.reduce_mean(tf.reshape(
        patches, [tf.shape(patches)[0], num_patches, -1]), axis=-1)
    predicted = objectives.predicted_ranks(-energy)
    target = tf.broadcast_to(tf.range(num_patches), tf.shape(predicted))
    return tf.reduce_sum(objectives.partial_ranks_accuracy(predicted, target))

  total, notes = 0.0, 0
  try:
    for batch in dataset:
      total += float(correct(batch["audio"]))
      notes += int(batch["audio"].shape[0])
  except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
    message = _data_error_message(dataset_dir, split, error)
    if message is None:
      raise
    raise ValueError(message) from None
  if not notes:
    raise ValueError(f"Split {split!r} of {dataset_dir!r} has no notes.")
  return {"patching": patching, "num_patches": int(num_patches),
          "split": split, "notes": notes, "accuracy": total / notes,
          "chance": 1.0 / num_patches}


def average_ranks(values):
  """Ranks 0..n-1 of a 1-D array, ties sharing their mean rank."""
  values = np.asarray(values, np.float64)
  order = np.argsort(values, kind="mergesort")
  ranks = np.empty(len(values), np.float64)
  ranks[order] = np.arange(len(values), dtype=np.float64)
  _, inverse, counts = np.unique(values, return_inverse=True,
                                 return_counts=True)
  sums = np.bincount(inverse, weights=ranks)
  return (sums / counts)[inverse]


def spearman(x, y):
  """Spearman's rank correlation of two 1-D arrays (nan if one is constant)."""
  x, y = average_ranks(x), average_ranks(y)
  x, y = x - x.mean(), y - y.mean()
  norm = np.sqrt(np.sum(x * x) * np.sum(y * y))
  return float(np.sum(x * y) / norm) if norm > 0 else float("nan")


def within_group_spearman(x, y, groups, min_distinct=3):
  """Note-weighted mean of Spearman(x, y) inside each group.

  Groups with fewer than `min_distinct` distinct y values are left out.
  Returns (mean, notes counted).
  """
  total, notes = 0.0, 0
  for group in np.unique(groups):
    members = groups == group
    if len(np.unique(y[members])) < min_distinct:
      continue
    rho = spearman(x[members], y[members])
    if np.isfinite(rho):
      total += rho * members.sum()
      notes += int(members.sum())
  return (total / notes if notes else float("nan")), notes


def spectral_centroid(waveforms, sample_rate_hz=16000):
  """Magnitude-weighted mean frequency (Hz) of each note's whole STFT."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  magnitude = tf.abs(tf.signal.stft(tf.cast(waveforms, tf.float32), 1024,
                                    256, pad_end=True))  # [B, T, F]
  spectrum = tf.reduce_sum(magnitude, axis=1)  # [B, F]
  hz = tf.linspace(0.0, sample_rate_hz / 2, tf.shape(spectrum)[-1])
  return (tf.reduce_sum(spectrum * hz, -1) /
          tf.maximum(tf.reduce_sum(spectrum, -1), 1e-12)).numpy()


def pitch_score_agreement(model_dir, dataset_dir, split="valid",
                          batch_size=64):
  """Does a run's learned pitch score order notes by their MIDI pitch?

  The pitch term (audio_perm.pitch) trains a scalar score ("pitch_head") to
  order shifted copies of one note; nothing in training compares different
  notes. This reads the score of every note of `split` as it is (the
  deterministic natural patches, inference mode) and reports its Spearman
  correlation with the MIDI pitch over all notes and inside each instrument
  (note-weighted mean over instruments with at least 3 distinct pitches).
  The same figures for the spectral centroid (brightness, a cue with no
  harmonic spacing) say how much of that a crude cue gives.

  Raises:
    ValueError: the run has no pitch term (--pitch_copies=0), or bad data.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from audio_perm import data  # pylint: disable=g-import-not-at-top
  from audio_perm import export  # pylint: disable=g-import-not-at-top
  from audio_perm.training import checkpoints  # pylint: disable=g-import-not-at-top
  from audio_perm.training import trainer as trainer_lib  # pylint: disable=g-import-not-at-top

  config = checkpoints.read_flags(model_dir)
  if not config.augment.pitch_copies:
    raise ValueError(f"--pitch_score: {model_dir} was trained without "
                     "--pitch_copies, so it has no pitch score; leave it out "
                     "or drop --pitch_score.")
  model, _ = trainer_lib.Trainer.build_model(config)
  checkpoints.restore_model(model, model_dir)
  frontend = config.encoder.frontend

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
  def score(waveforms):
    outputs = model(export.waveform_to_patches(waveforms, frontend),
                    training=False)
    return outputs[-1][:, 0]

  dataset = data.waveform_dataset(data_dir=dataset_dir, split=split,
                                  batch_size=batch_size, shuffle=False)
  scores, centroids, pitches, instruments = [], [], [], []
  try:
    for batch in dataset:
      audio = tf.cast(batch["audio"], tf.float32)
      scores.append(score(audio).numpy())
      centroids.append(spectral_centroid(audio))
      pitches.append(batch["pitch"].numpy())
      instruments.append(batch["instrument"].numpy())
  except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
    message = _data_error_message(dataset_dir, split, error)
    if message is None:
      raise
    raise ValueError(message) from None
  if not scores:
    raise ValueError(f"Split {split!r} of {dataset_dir!r} has no notes.")
  scores, centroids = np.concatenate(scores), np.concatenate(centroids)
  pitches = np.concatenate(pitches).astype(np.float64)
  instruments = np.concatenate(instruments)
  result = {"model_dir": model_dir, "split": split, "notes": len(scores)}
  for name, values in (("score", scores), ("centroid", centroids)):
    within, counted = within_group_spearman(values, pitches, instruments)
    result[f"{name}_spearman"] = spearman(values, pitches)
    result[f"{name}_within_instrument"] = within
  result["notes_within"] = counted
  return result


def _data_error_message(dataset_dir, split, error):
  """One line naming the file (and record index) behind a reading error.

  Returns None when a tf.errors.InvalidArgumentError came from no record.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from audio_perm import data  # pylint: disable=g-import-not-at-top
  files = data.list_files(data_dir=dataset_dir, split=split)
  if isinstance(error, tf.errors.DataLossError):
    return data.corrupt_files_message(
        data.find_corrupt_files(file_pattern=files), error, what="shard",
        fix="Re-create the dataset.")
  return data.bad_record_message(files, error,
                                 data.detect_schema(files, skip_corrupt=True))


def parse_scheme(text):
  """"frequency:10" -> ("frequency", 10); ValueError naming the text."""
  from audio_perm import patches as patches_lib  # pylint: disable=g-import-not-at-top
  patching, _, number = text.partition(":")
  if patching not in patches_lib.SCHEMES or not number.isdigit() or (
      int(number) < 2):
    raise ValueError(f"--energy_rule entry {text!r} is not PATCHING:N with "
                     f"PATCHING in {patches_lib.SCHEMES} and N >= 2, e.g. "
                     "frequency:10.")
  return patching, int(number)


@dataclasses.dataclass
class DiagnosticsConfig:
  model_dirs: Sequence[str]
  dataset_dir: Optional[str] = None
  num_labeled: int = 1000
  seeds: int = 1
  tasks: Sequence[str] = DEFAULT_TASKS
  compare_random: bool = True
  progress: bool = True


def diagnose(config: DiagnosticsConfig) -> List[Dict]:
  """One row per (encoder, layer): statistics and probe scores (seed means).

  The probes are evaluation's (`evaluation.embed_and_probe`: the same
  subsets, the same probe); the statistics are of the train embeddings of
  the first task's subset of seed 0.

  Raises:
    ValueError (evaluation.EvaluationError included) for a bad run or data.
  """
  from audio_perm import evaluation  # pylint: disable=g-import-not-at-top
  from data_prep import render  # pylint: disable=g-import-not-at-top

  if not config.model_dirs:
    raise ValueError("Give at least one --model_dir (a train.py run).")
  if config.num_labeled < 2 or config.seeds < 1:
    raise ValueError(f"num_labeled must be >= 2 and seeds >= 1, got "
                     f"{config.num_labeled} and {config.seeds}.")
  encoders, twins = [], {}  # Runs are checked before data is read.
  for model_dir in config.model_dirs:
    encoders += run_encoders(model_dir, config.compare_random, twins)
  dataset_dir = config.dataset_dir or render.ensure_default_dataset()
  builder = evaluation.open_dataset(dataset_dir=dataset_dir)
  tasks = list(config.tasks)
  run = evaluation.embed_and_probe(builder, encoders, tasks,
                                   [config.num_labeled], config.seeds,
                                   progress=config.progress)
  rows = []
  for encoder in encoders:
    prefix, layer = encoder.name.rsplit("/", 1)
    row = {"encoder": prefix, "layer": layer}
    if "twin" in encoder.description:
      row["twin"] = encoder.description["twin"]
    row.update(embedding_statistics(run.subset_features(
        encoder.name, tasks[0], config.num_labeled, 0)))
    for task in tasks:
      for head in evaluation.TASKS[task].heads:
        values = run.values(encoder.name, task, head.metric,
                            config.num_labeled)
        row[f"{task}/{head.metric}"] = float(np.mean(values))
        row.setdefault("seed_values", {})[f"{task}/{head.metric}"] = [
            float(v) for v in values]
    rows.append(row)
  return rows


_SEED_SUFFIX = re.compile(r"_s\d+$")


def _metrics(row):
  """A row's "task/metric" keys, in order (not their std or seed values)."""
  return [k for k in row if "/" in k and not k.endswith("std")]


def _format(metric, value, sign=""):
  """MSE with one decimal, accuracies with three."""
  return f"{value:{sign}.{1 if metric.endswith('mse') else 3}f}"


def settings_summary(rows):
  """Rows of several runs grouped by setting, each against its twins.

  A run's setting is its folder's name without a trailing `_s<seed>` (the
  sweep's naming: `patchstd_lr1e-5_s0`, `patchstd_lr1e-5_s1`); each trained
  run is paired with its own random twin (the row named after it, or after
  the first run of the same architecture and seed).

  Returns:
    One dict per (setting, layer, kind) with kind "random", "trained" or
    "trained - random": "runs", and per metric its mean over runs, "std"
    over the runs' seed means and, for "random"/"trained", "pooled_std" over
    every (run, probe seed) value.
  """
  by_name = {(row["encoder"], row["layer"]): row for row in rows}
  groups = {}
  for row in rows:
    run, kind = row["encoder"].rsplit(" ", 1)
    if kind != "trained":
      continue
    layer = row["layer"]
    twin = by_name.get((row.get("twin", f"{run} random"), layer))
    setting = _SEED_SUFFIX.sub("", os.path.basename(run.rstrip("/")))
    groups.setdefault((setting, layer), []).append((row, twin))
  metrics = _metrics(rows[0])
  summary = []
  for (setting, layer), pairs in groups.items():
    for kind in ("random", "trained", "trained - random"):
      out = {"setting": setting, "layer": layer, "kind": kind,
             "runs": len(pairs)}
      for metric in metrics:
        if kind == "trained - random":
          if any(twin is None for _, twin in pairs):
            continue
          values = [row[metric] - twin[metric] for row, twin in pairs]
          pooled = None
        else:
          chosen = [row if kind == "trained" else twin for row, twin in pairs]
          if any(r is None for r in chosen):
            continue
          values = [r[metric] for r in chosen]
          every = [v for r in chosen
                   for v in r.get("seed_values", {}).get(metric, [])]
          pooled = float(np.std(every, ddof=1)) if len(every) > 1 else None
        out[metric] = float(np.mean(values))
        out[f"{metric} std"] = (float(np.std(values, ddof=1))
                                if len(values) > 1 else None)
        if pooled is not None:
          out[f"{metric} pooled_std"] = pooled
      summary.append(out)
  return summary


def summary_table(summary):
  """settings_summary's rows as markdown: mean +- std over runs."""
  metrics = _metrics(summary[0])
  header = ["setting", "layer", "encoder", "runs"] + metrics
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for row in summary:
    cells = [row["setting"], row["layer"], row["kind"], str(row["runs"])]
    for metric in metrics:
      if metric not in row:
        cells.append("-")
        continue
      sign = "+" if row["kind"] == "trained - random" else ""
      text = _format(metric, row[metric], sign)
      if row.get(f"{metric} std") is not None:
        text += " +- " + _format(metric, row[f"{metric} std"])
      cells.append(text)
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def markdown_table(rows):
  """The rows as a markdown table."""
  metrics = _metrics(rows[0])
  header = ["encoder", "layer", "dim", "alive", "eff. rank"] + metrics
  lines = ["| " + " | ".join(header) + " |",
           "|" + "---|" * len(header)]
  for row in rows:
    cells = [row["encoder"], row["layer"], str(row["dim"]),
             f"{row['alive']:.2f}", f"{row['effective_rank']:.1f}"]
    cells += [_format(m, row[m]) for m in metrics]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv=None):
  """Command line: python -m audio_perm.diagnostics --model_dir=RUN ..."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  from audio_perm import cli  # pylint: disable=g-import-not-at-top

  flags.DEFINE_multi_string("model_dir", None,
                            "A train.py model_dir (repeat for several).")
  flags.DEFINE_string("dataset_dir", None,
                      "Folder dataset (default: the embedded default data).")
  flags.DEFINE_integer("num_labeled", 1000, "Labelled notes per probe.")
  flags.DEFINE_integer("seeds", 1, "Subset/probe seeds averaged.")
  flags.DEFINE_list("tasks", list(DEFAULT_TASKS), "Downstream tasks.")
  flags.DEFINE_bool("compare_random", True,
                    "Also diagnose each run's architecture at its "
                    "initialisation (the random twin).")
  flags.DEFINE_list("energy_rule", [],
                    "PATCHING:N schemes (e.g. frequency:10,time:10) for which "
                    "to report the partial-ranks accuracy, on the valid "
                    "split, of ranking patches by mean log magnitude.")
  flags.DEFINE_bool("pitch_score", False,
                    "Instead of the probes, for runs trained with "
                    "--pitch_copies: the Spearman correlation of the learned "
                    "pitch score with the MIDI pitch on the valid split, "
                    "over all notes and inside each instrument, beside the "
                    "spectral centroid's.")
  flags.DEFINE_string("json", None, "Also write the rows as JSON here.")
  flags.DEFINE_list("summarize", [],
                    "Instead of diagnosing: --json files of earlier calls, "
                    "whose runs are grouped by setting (folder name without "
                    "_s<seed>) and printed as mean +- std over runs, trained, "
                    "random twin and their paired difference.")
  flags.DEFINE_bool("progress", True, "Show progress bars.")
  flags_ = flags.FLAGS

  def _main(args):
    del args  # Stray arguments are refused by cli.run.
    if not flags_["verbosity"].present:
      logging.set_verbosity(logging.ERROR)
    from audio_perm import evaluation  # pylint: disable=g-import-not-at-top
    unknown = [t for t in flags_.tasks if t not in evaluation.TASKS]
    result = {}
    if unknown:
      raise ValueError(f"--tasks: unknown task(s) {unknown}; choose from "
                       f"{sorted(evaluation.TASKS)}.")
    if flags_.summarize:
      rows = []
      for path in flags_.summarize:
        try:
          with open(path) as f:
            rows += json.load(f)["rows"]
        except (OSError, ValueError, KeyError, TypeError) as error:
          raise ValueError(f"--summarize: {path} is not a diagnostics --json "
                           f"file with rows ({type(error).__name__}: "
                           f"{error}).") from None
      print(summary_table(settings_summary(rows)), flush=True)
      return
    schemes = [parse_scheme(text) for text in flags_.energy_rule]
    if not flags_.model_dir and not schemes:
      raise ValueError("Nothing to do: give --model_dir (a train.py run, "
                       "repeatable) and/or --energy_rule=frequency:10.")
    if schemes:
      from data_prep import render  # pylint: disable=g-import-not-at-top
      dataset_dir = flags_.dataset_dir or render.ensure_default_dataset()
      result["energy_rule"] = [
          energy_rule_accuracy(dataset_dir, patching, n)
          for patching, n in schemes]
    if flags_.pitch_score:
      if not flags_.model_dir:
        raise ValueError("--pitch_score needs --model_dir (a train.py run "
                         "with --pitch_copies).")
      from data_prep import render  # pylint: disable=g-import-not-at-top
      dataset_dir = flags_.dataset_dir or render.ensure_default_dataset()
      result["pitch_score"] = [pitch_score_agreement(d, dataset_dir)
                               for d in flags_.model_dir]
      for entry in result["pitch_score"]:
        print(f"pitch score of {entry['model_dir']}: Spearman with MIDI "
              f"pitch {entry['score_spearman']:+.3f} over "
              f"{entry['notes']} {entry['split']} notes, "
              f"{entry['score_within_instrument']:+.3f} inside instruments "
              f"({entry['notes_within']} notes); spectral centroid "
              f"{entry['centroid_spearman']:+.3f} / "
              f"{entry['centroid_within_instrument']:+.3f}", flush=True)
    if flags_.model_dir and not flags_.pitch_score:
      result["rows"] = diagnose(DiagnosticsConfig(
          model_dirs=flags_.model_dir, dataset_dir=flags_.dataset_dir,
          num_labeled=flags_.num_labeled, seeds=flags_.seeds,
          tasks=tuple(flags_.tasks), compare_random=flags_.compare_random,
          progress=flags_.progress))
    for rule in result.get("energy_rule", []):
      print(f"energy rule, {rule['patching']} x {rule['num_patches']}: "
            f"partial-ranks accuracy {rule['accuracy']:.3f} on "
            f"{rule['notes']} {rule['split']} notes (chance "
            f"{rule['chance']:.3f})", flush=True)
    if "rows" in result:
      print(markdown_table(result["rows"]), flush=True)
    if flags_.json:
      with open(flags_.json, "w") as f:
        json.dump(result, f, indent=2)

  cli.run(_main, "audio_perm.diagnostics", argv)


if __name__ == "__main__":
  main()
