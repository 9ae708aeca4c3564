"""The protocol: labelled subsets, one embed-and-probe flow, `evaluate`.

The paper's protocol (Section III): a frozen encoder embeds NSynth notes, a
small probe (3-layer MLP) is trained on a few labelled notes of the train
split and scored on the test split; instrument family and instrument by
accuracy, pitch as regression by MSE (and here also as classification by
accuracy).

`embed_and_probe` is that flow, for evaluate (eval.py) and for
audio_perm.diagnostics alike:

1. One pass over each split reads the labels only (`read_labels`).
2. The labelled subsets are drawn from the labels alone, per task, regime and
   seed (`draw_subsets`; the same subsets for every encoder).
3. One pass over the train split restricted to the union of the subsets, and
   one over the whole test split, embed the notes with every frozen encoder
   at once (`compute_embeddings`): 3 tasks x 3 seeds x 1000 labels embed at
   most 9,000 of NSynth's 289,205 train notes.
4. Probes (audio_perm.probe) are fitted per encoder, task, head, regime and
   seed on the cached embeddings; the `supervised` baseline trains the CFN
   end to end on the same subset instead (`fit_supervised`).

`evaluate` adds the checks of its config, builds the encoders and summarises
the scores as rows {"encoder", "task", "metric", "num_labeled", "mean",
"std", "values"} beside the resolved config. Test notes whose class never
occurs in the labelled subset are kept and count as errors.
"""

import dataclasses
import json
import platform
import time
from typing import Dict, List, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
import tqdm

from audio_perm import config as config_lib
from audio_perm import probe as probe_lib
from audio_perm.evaluation import datasets
from audio_perm.evaluation import embedding
from audio_perm.evaluation import encoders as encoders_lib
from audio_perm.evaluation import supervised as supervised_lib

EvaluationError = datasets.EvaluationError
TASKS = datasets.TASKS


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


@dataclasses.dataclass
class ProbeRun:
  """What `embed_and_probe` computed.

  Attributes:
    names: the scored encoders' names, in order: the frozen encoders, then
      "supervised" when it was trained.
    seeds: number of seeds (0..seeds-1).
    scores: {(encoder, task, metric, num_labeled, seed): score}.
    train_labels, test_labels: {task: int64 [notes]} of the usable notes.
    subsets: {(task, num_labeled, seed): int64 [num_labeled]} indices into
      the train labels.
    train_indices: int64 [u], the sorted union of the subsets: the train
      notes embedded.
    train_embeddings: {encoder: float32 [u, dim]}, rows as train_indices.
    test_embeddings: {encoder: float32 [test notes, dim]}.
    dropped: {split: notes dropped for non-finite audio}.
    dropped_corrupt: {split: records lost in shards cut short, which
      skip_corrupt skips (None where the metadata cannot say; 0 without
      skip_corrupt, where a corrupt shard is an error)}.
    corrupt_shards: {path: {"split", "records_read", "records_lost",
      "error"}} of the shards skip_corrupt cut short.
    timing: {"train_embedding", "test_embedding" (compute_embeddings' stats),
      "probe_seconds" (all fits, supervised included),
      "supervised_seconds"}.
  """
  names: List[str]
  seeds: int
  scores: Dict[Tuple[str, str, str, int, int], float]
  train_labels: Dict[str, np.ndarray]
  test_labels: Dict[str, np.ndarray]
  subsets: Dict[Tuple[str, int, int], np.ndarray]
  train_indices: np.ndarray
  train_embeddings: Dict[str, np.ndarray]
  test_embeddings: Dict[str, np.ndarray]
  dropped: Dict[str, int]
  timing: Dict[str, object]
  dropped_corrupt: Dict[str, Optional[int]] = dataclasses.field(
      default_factory=dict)
  corrupt_shards: Dict[str, Dict[str, object]] = dataclasses.field(
      default_factory=dict)

  @property
  def train_size(self):
    return len(next(iter(self.train_labels.values())))

  @property
  def test_size(self):
    return len(next(iter(self.test_labels.values())))

  def values(self, encoder, task, metric, num_labeled):
    """The scores of seeds 0..seeds-1: [float] * seeds."""
    return [self.scores[(encoder, task, metric, int(num_labeled), seed)]
            for seed in range(self.seeds)]

  def subset_features(self, encoder, task, num_labeled, seed):
    """Train embeddings of a labelled subset: float32 [num_labeled, dim]."""
    rows = np.searchsorted(self.train_indices,
                           self.subsets[(task, int(num_labeled), seed)])
    return self.train_embeddings[encoder][rows]


def embed_and_probe(builder, encoders, tasks, num_labeled, seeds, *,
                    train_split="train", test_split="test",
                    probe_config: Optional[probe_lib.ProbeConfig] = None,
                    supervised: Optional[config_lib.SupervisedConfig] = None,
                    architecture: Optional[config_lib.EncoderConfig] = None,
                    batch_size=64, num_samples=None, skip_corrupt=False,
                    progress=True) -> ProbeRun:
  """Labels -> subsets -> embeddings -> probes, for every encoder at once.

  Args:
    builder: the TFDS builder (datasets.open_dataset).
    encoders: list of FrozenEncoder (distinct names).
    tasks: names from TASKS.
    num_labeled: label regimes (ints).
    seeds: number of seeds: subsets, probe initialisation and order.
    train_split, test_split: split names.
    probe_config: ProbeConfig of the probes (None: ProbeConfig()); its head
      and held-out share also serve the supervised baseline.
    supervised: a SupervisedConfig to also train the `supervised` baseline
      on every subset, or None.
    architecture: EncoderConfig of the supervised baseline's CFN.
    batch_size: notes per embedding batch.
    num_samples: samples per note (None: the dataset's audio length).
    skip_corrupt: as datasets.read_split.
    progress: show progress bars.

  Returns:
    A ProbeRun.

  Raises:
    EvaluationError: a split missing, empty or too small for num_labeled, a
      corrupt shard or a malformed record (file and record index named), an
      encoder returning NaN.
  """
  if num_samples is None:
    num_samples = datasets.check_features(builder, tasks)
  train_size, _ = datasets.check_splits(builder, train_split, test_split)
  datasets.check_num_labeled(num_labeled, train_split, train_size)
  if supervised is not None and architecture is None:
    raise ValueError("The supervised baseline needs an architecture.")
  try:
    return _embed_and_probe(
        builder, encoders, list(tasks), [int(n) for n in num_labeled],
        seeds, train_split, test_split, probe_config, supervised,
        architecture, batch_size, num_samples, skip_corrupt, progress)
  except tf.errors.DataLossError as error:
    raise EvaluationError(datasets.corrupt_shards_message(
        builder, (train_split, test_split), error)) from None
  except tf.errors.InvalidArgumentError as error:
    message = datasets.bad_record_message(builder, (train_split, test_split),
                                          error)
    if message is None:
      raise
    raise EvaluationError(message) from None


def _embed_and_probe(builder, encoders, tasks, num_labeled, seeds,
                     train_split, test_split, probe_config, supervised,
                     architecture, batch_size, num_samples, skip_corrupt,
                     progress):
  read = dict(num_samples=num_samples, skip_corrupt=skip_corrupt)
  # What skip_corrupt skips is counted once, before reading (one unparsed
  # read of the shards), and kept apart from the non-finite drops.
  corrupt_shards, dropped_corrupt = {}, {}
  for split in (train_split, test_split):
    skipped = datasets.report_skipped(builder, split) if skip_corrupt else {}
    lost = [entry["records_lost"] for entry in skipped.values()]
    dropped_corrupt[split] = None if None in lost else sum(lost)
    for path, entry in skipped.items():
      corrupt_shards[path] = dict(split=split, **entry)
  train_labels = datasets.read_labels(builder, train_split, tasks,
                                      progress=progress, **read)
  test_labels = datasets.read_labels(builder, test_split, tasks,
                                     progress=progress, **read)
  # Notes with non-finite audio are dropped by the reader (data's rule).
  train_size = len(train_labels[tasks[0]])
  test_size = len(test_labels[tasks[0]])
  dropped = {train_split: datasets.split_size(builder, train_split),
             test_split: datasets.split_size(builder, test_split)}
  dropped[train_split] -= train_size + (dropped_corrupt[train_split] or 0)
  dropped[test_split] -= test_size + (dropped_corrupt[test_split] or 0)
  largest = max(num_labeled)
  if largest > train_size or test_size < 1:
    raise EvaluationError(
        f"After dropping the notes with non-finite audio ({dropped}) and "
        f"those of shards cut short ({dropped_corrupt}), split "
        f"{train_split!r} has {train_size} notes and {test_split!r} "
        f"{test_size}; --num_labeled={largest} needs at least that many train "
        "notes and the test split at least one.")
  subsets = draw_subsets(train_labels, tasks, num_labeled, seeds)
  union = np.unique(np.concatenate(list(subsets.values())))
  train_embeddings, train_audio, train_stats = embedding.compute_embeddings(
      builder, train_split, encoders, union, batch_size,
      expected_labels=train_labels, keep_audio=supervised is not None,
      progress=progress, **read)
  test_embeddings, _, test_stats = embedding.compute_embeddings(
      builder, test_split, encoders, None, batch_size,
      expected_labels=test_labels, progress=progress, **read)
  row_of = {index: row for row, index in enumerate(union)}

  scores = {}
  jobs = [(task, head, num, seed) for task in tasks
          for head in TASKS[task].heads for num in num_labeled
          for seed in range(seeds)]
  names = [encoder.name for encoder in encoders] + (
      ["supervised"] if supervised is not None else [])
  probe_start = time.perf_counter()
  supervised_seconds = 0.0
  with tqdm.tqdm(total=len(jobs) * len(names), disable=not progress,
                 desc="probes", unit="probe") as bar:
    for task, head, num, seed in jobs:
      subset = subsets[(task, num, seed)]
      rows = np.array([row_of[i] for i in subset])
      y_train = train_labels[task][subset]
      y_test = test_labels[task]
      for encoder in encoders:
        result = probe_lib.fit_and_score(
            train_embeddings[encoder.name][rows], y_train,
            test_embeddings[encoder.name], y_test, head.task_type, seed,
            probe_config)
        scores[(encoder.name, task, head.metric, num, seed)] = (
            result[head.metric])
        bar.update(1)
      if supervised is not None:
        tick = time.perf_counter()
        model = supervised_lib.fit_supervised(
            train_audio[rows], y_train, head.task_type, seed, architecture,
            probe_config, supervised)
        predictions = np.concatenate(
            [model(batch.numpy()) for batch in datasets.audio_batches(
                builder, test_split, batch_size, num_samples, skip_corrupt)])
        result = probe_lib.score(head.task_type, y_test, predictions)
        scores[("supervised", task, head.metric, num, seed)] = (
            result[head.metric])
        supervised_seconds += time.perf_counter() - tick
        bar.update(1)
  timing = {"train_embedding": train_stats, "test_embedding": test_stats,
            "probe_seconds": time.perf_counter() - probe_start,
            "supervised_seconds": supervised_seconds}
  return ProbeRun(names=names, seeds=seeds, scores=scores,
                  train_labels=train_labels, test_labels=test_labels,
                  subsets=subsets, train_indices=union,
                  train_embeddings=train_embeddings,
                  test_embeddings=test_embeddings, dropped=dropped,
                  timing=timing, dropped_corrupt=dropped_corrupt,
                  corrupt_shards=corrupt_shards)


def config_to_dict(config):
  """A JSON-ready dict of an EvalConfig (nested dataclasses as dicts)."""
  return json.loads(json.dumps(dataclasses.asdict(config)))


def evaluate(config: config_lib.EvalConfig):
  """Runs the whole evaluation; returns {"results": [...], "config": {...}}.

  Raises:
    EvaluationError: bad input (one clear message each), a corrupt TFRecord
      shard included (named; see `datasets.corrupt_shards_message`).
  """
  try:
    config.validate()
  except ValueError as error:
    raise EvaluationError(str(error)) from None
  start = time.perf_counter()
  builder = datasets.open_dataset(config.dataset, config.data_dir,
                                  config.dataset_dir)
  num_samples = datasets.check_features(builder, config.tasks)
  datasets.check_splits(builder, config.train_split, config.test_split)
  # The encoders are loaded and checked before the size checks (in
  # embed_and_probe), so that a wrong --encoder path is reported first.
  architecture = encoders_lib.checked_architecture(
      config.architecture
      or encoders_lib.default_architecture(config.encoders), num_samples)
  encoders = [encoders_lib.make_encoder(spec, architecture, num_samples,
                                        config.encoder_seed)
              for spec in config.encoders if spec != "supervised"]
  run = embed_and_probe(
      builder, encoders, config.tasks, config.num_labeled, config.seeds,
      train_split=config.train_split, test_split=config.test_split,
      probe_config=config.probe,
      supervised=(config.supervised if "supervised" in config.encoders
                  else None),
      architecture=architecture, batch_size=config.batch_size,
      num_samples=num_samples, skip_corrupt=config.skip_corrupt,
      progress=config.progress)
  return {"results": summarize(run, config.tasks, config.num_labeled),
          "config": _resolved_config(config, builder, architecture,
                                     num_samples, encoders, run, start)}


def summarize(run: ProbeRun, tasks: Sequence[str], num_labeled):
  """Rows {"encoder", "task", "metric", "num_labeled", "mean", "std",
  "values"}: mean and sample std over seeds, per encoder, task, metric and
  regime."""
  results = []
  for name in run.names:
    for task in tasks:
      for head in TASKS[task].heads:
        for num in num_labeled:
          per_seed = run.values(name, task, head.metric, num)
          mean, std = probe_lib.summarize(per_seed)
          results.append({"encoder": name, "task": task,
                          "metric": head.metric, "num_labeled": int(num),
                          "mean": mean, "std": std, "values": per_seed})
  return results


def _resolved_config(config, builder, architecture, num_samples, encoders,
                     run, start):
  resolved = config_to_dict(config)
  resolved.update({
      "architecture": architecture.to_dict(),
      "dataset_resolved": datasets.dataset_description(builder),
      "num_samples": num_samples,
      "train_size": run.train_size,
      "test_size": run.test_size,
      "dropped_nonfinite": run.dropped,
      "dropped_corrupt": run.dropped_corrupt,
      "corrupt_shards": run.corrupt_shards,
      "num_train_embedded": int(len(run.train_indices)),
      "encoders_resolved": [e.description for e in encoders],
      "num_classes_train": {task: int(len(np.unique(run.train_labels[task])))
                            for task in config.tasks},
      "timing": dict(run.timing,
                     total_seconds=time.perf_counter() - start),
      "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                   "tensorflow_datasets": tfds.__version__,
                   "python": platform.python_version()},
  })
  return resolved
