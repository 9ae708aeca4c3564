r"""What each pretext shortcut still solves on what the network actually sees.

  python -m audio_perm.shortcuts --model_dir=runs/a [--model_dir=runs/b ...] \
      [--setting="--input_standardization=patch --patch_gap=11" ...] \
      [--num_batches=20] [--json=PATH]

For each pretraining setting (a train.py run's flags.json, or a --setting:
train.py flags in one string, parsed into a TrainConfig; "default" is the
default run) it draws `num_batches` batches from the run's own pretext
pipeline (training.make_dataset_fn: shuffled patches, random crops, gaps and
augmentations on, as pretraining sees them), applies the encoder's first
layer (models.ExampleStandardization with the setting's scope) and scores
rules with nothing learned that put the shuffled patches back in order, by
partial-ranks accuracy against the true ranks:

  * energy: rank the patches by their mean value;
  * spread: rank them by their standard deviation;
  * edge_l2, edge_cosine: chain the patches so that each one's last row
    along the cutting axis continues into the next one's first (frequency
    bands: a band's top bin vs the next band's bottom bin, over frames; time
    slices: the last frame vs the next slice's first, over bins), by the L2
    distance or the cosine between those edge vectors. The chain is greedy
    nearest-neighbour, started from every patch, the cheapest kept. Not
    defined for time_frequency grids.

Each rule is scored both ways round: scalar rules "descending" (the largest
value gets rank 0: louder = lower band / earlier slice) and "ascending";
chains "forward" (as matched: a's top edge meets b's bottom edge means a
comes before b) and "reversed". "best" is the larger of the two on the same
data, so it is biased upwards by about half a standard error at chance.

The scalar rules compare scores at a `resolution` (default 0.01, in the
standardised units the encoder sees): differences below it are ties.
Without it, per-patch standardisation still orders bands through float32
residues: its means are ~1e-6 off zero in proportion to the raw level, and
its standard deviations are sqrt(var / (var + 1e-3)), 1 - ~1e-4 in
proportion to 1 / raw variance (docs/shortcuts.md has both figures).

Chance is 1/n. A rule that knows nothing ranks the patches by a uniformly
random permutation of the truth; its fixed points have mean 1 and variance 1
(n >= 2), so over N examples the accuracy's standard error at chance is
1 / (n sqrt(N)) ("chance_std"). Ties (e.g. means that per-patch
standardisation makes equal) fall to the shuffled position: chance.
"""

import os

if __name__ == "__main__":
  # Before TensorFlow is imported: its C++ start-up lines are noise here.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# pylint: disable=g-import-not-at-top,wrong-import-position
import json
import math
import shlex

import numpy as np

RULES = ("energy", "spread", "edge_l2", "edge_cosine")
SCALAR_DIRECTIONS = ("descending", "ascending")
CHAIN_DIRECTIONS = ("forward", "reversed")
EDGE_METRICS = {"edge_l2": "l2", "edge_cosine": "cosine"}
DEFAULT_RESOLUTION = 0.01


def scalar_ranks(scores, direction="descending", resolution=0.0):
  """0-based ranks of scores [batch, n]; ties go to the earlier position.

  "descending": the largest score gets rank 0; "ascending": the smallest.
  resolution > 0: scores are rounded to multiples of it first, so that
  smaller differences are ties.
  """
  scores = np.asarray(scores, np.float64)
  if resolution > 0:
    scores = np.round(scores / resolution)
  if direction not in SCALAR_DIRECTIONS:
    raise ValueError(f"direction={direction!r} must be one of "
                     f"{SCALAR_DIRECTIONS}.")
  keys = -scores if direction == "descending" else scores
  order = np.argsort(keys, axis=-1, kind="stable")  # [B, n] patch indices
  return np.argsort(order, axis=-1, kind="stable")


def energy_scores(patches):
  """Mean of each patch: [batch, n, H, W] -> [batch, n]."""
  patches = np.asarray(patches, np.float64)
  return patches.reshape(patches.shape[0], patches.shape[1], -1).mean(-1)


def spread_scores(patches):
  """Standard deviation of each patch: [batch, n, H, W] -> [batch, n]."""
  patches = np.asarray(patches, np.float64)
  return patches.reshape(patches.shape[0], patches.shape[1], -1).std(-1)


def edge_costs(patches, patching, metric="l2"):
  """cost[b, i, j]: how badly patch i's last edge continues into j's first.

  Args:
    patches: [batch, n, frames, bins].
    patching: "frequency" (edges are bin columns over frames: i's top bin
      against j's bottom bin) or "time" (edges are frames over bins: i's last
      frame against j's first).
    metric: "l2" (root mean squared difference) or "cosine" (1 - cosine).

  Returns:
    float64 [batch, n, n], the diagonal +inf.
  """
  patches = np.asarray(patches, np.float64)
  if patching == "frequency":
    last, first = patches[..., -1], patches[..., 0]  # [B, n, frames]
  elif patching == "time":
    last, first = patches[:, :, -1, :], patches[:, :, 0, :]  # [B, n, bins]
  else:
    raise ValueError(f"Edge rules need patching 'frequency' or 'time', got "
                     f"{patching!r}.")
  dot = np.einsum("bik,bjk->bij", last, first)  # [B, n, n]
  last_sq = np.sum(last ** 2, -1)[:, :, None]  # [B, n, 1]
  first_sq = np.sum(first ** 2, -1)[:, None, :]  # [B, 1, n]
  if metric == "l2":
    cost = np.sqrt(np.maximum(last_sq + first_sq - 2 * dot, 0.0)
                   / last.shape[-1])
  elif metric == "cosine":
    cost = 1.0 - dot / np.sqrt(np.maximum(last_sq * first_sq, 1e-24))
  else:
    raise ValueError(f"metric={metric!r} must be 'l2' or 'cosine'.")
  n = cost.shape[1]
  cost[:, np.arange(n), np.arange(n)] = np.inf
  return cost


def greedy_chain(costs):
  """The cheapest greedy chain through every patch, from every start.

  From each start, step to the cheapest unvisited patch; keep the start
  whose chain costs least in total. Vectorised over batch and starts
  (n^2 work per step, n steps).

  Args:
    costs: [batch, n, n], cost[b, i, j] of putting j right after i.

  Returns:
    int [batch, n]: the patch indices in chain order.
  """
  costs = np.asarray(costs, np.float64)
  batch, n, _ = costs.shape
  b = np.arange(batch)[:, None]  # [B, 1]
  s = np.arange(n)[None, :]  # [1, S]
  current = np.broadcast_to(s, (batch, n)).copy()  # [B, S]
  visited = np.zeros((batch, n, n), bool)  # [B, S, n]
  visited[:, s[0], s[0]] = True
  order = np.zeros((batch, n, n), np.int64)  # [B, S, step]
  order[:, :, 0] = current
  total = np.zeros((batch, n))
  for step in range(1, n):
    row = np.where(visited, np.inf, costs[b, current])  # [B, S, n]
    nxt = np.argmin(row, axis=-1)  # Ties: the earlier shuffled position.
    total += row[b, s, nxt]
    visited[b, s, nxt] = True
    order[:, :, step] = nxt
    current = nxt
  return order[np.arange(batch), np.argmin(total, axis=-1)]


def chain_ranks(order, direction="forward"):
  """0-based ranks [batch, n] of patches from their chain order [batch, n]."""
  if direction not in CHAIN_DIRECTIONS:
    raise ValueError(f"direction={direction!r} must be one of "
                     f"{CHAIN_DIRECTIONS}.")
  ranks = np.argsort(order, axis=-1, kind="stable")
  return ranks if direction == "forward" else order.shape[-1] - 1 - ranks


def rule_ranks(patches, patching, resolution=DEFAULT_RESOLUTION):
  """{rule: {direction: predicted ranks [batch, n]}} for [batch, n, H, W].

  resolution: of the scalar rules' scores (scalar_ranks).
  """
  result = {}
  for rule, scores in (("energy", energy_scores(patches)),
                       ("spread", spread_scores(patches))):
    result[rule] = {d: scalar_ranks(scores, d, resolution)
                    for d in SCALAR_DIRECTIONS}
  if patching in ("frequency", "time"):
    for rule, metric in EDGE_METRICS.items():
      order = greedy_chain(edge_costs(patches, patching, metric))
      result[rule] = {d: chain_ranks(order, d) for d in CHAIN_DIRECTIONS}
  return result


def score_rules(batches, patching, resolution=DEFAULT_RESOLUTION):
  """Partial-ranks accuracy of every rule over (patches, target ranks) batches.

  Args:
    batches: iterable of (patches [batch, n, H, W], target ranks int
      [batch, n]) as the network sees them.
    patching: the scheme ("time_frequency" has no edge rules).
    resolution: of the scalar rules' scores (scalar_ranks).

  Returns:
    {"resolution", "examples", "num_patches", "chance", "chance_std",
    "rules": {rule: {direction: accuracy, ..., "best": accuracy,
    "best_direction": name}}}.
  """
  hits, examples, num_patches = {}, 0, None
  for patches, target in batches:
    target = np.asarray(target)
    num_patches = target.shape[1]
    examples += target.shape[0]
    for rule, ranks in rule_ranks(patches, patching, resolution).items():
      for direction, predicted in ranks.items():
        key = (rule, direction)
        hits[key] = hits.get(key, 0) + int(np.sum(predicted == target))
  if not examples:
    raise ValueError("No batches to score.")
  rules = {}
  for (rule, direction), count in hits.items():
    rules.setdefault(rule, {})[direction] = count / (examples * num_patches)
  for values in rules.values():
    best = max(values, key=values.get)
    values.update(best=values[best], best_direction=best)
  return {"resolution": resolution, "examples": examples,
          "num_patches": num_patches,
          "chance": 1.0 / num_patches,
          "chance_std": 1.0 / (num_patches * math.sqrt(examples)),
          "rules": rules}


def network_view(config, num_batches):
  """Batches (patches [B, n, H, W], target ranks [B, n]) as the encoder sees
  them: the run's pretext pipeline, then its input standardisation.

  The pipeline is made deterministic (same batches on every call); the data
  is the config's (the embedded default dataset when it names none).
  """
  from audio_perm import models  # pylint: disable=g-import-not-at-top
  from audio_perm import objectives  # pylint: disable=g-import-not-at-top
  from audio_perm import training  # pylint: disable=g-import-not-at-top
  if not config.data_dir and not config.train_pattern:
    from data_prep import render  # pylint: disable=g-import-not-at-top
    config = config.replace(data_dir=render.ensure_default_dataset())
  config = config.replace(deterministic=True)
  objective = objectives.from_config(config.objective,
                                     config.frontend.num_patches)
  dataset = training.make_dataset_fn(config, objective.permutation_set)(None)
  standardize = models.ExampleStandardization(
      scope=config.encoder.input_standardization)
  for patches, target in dataset.take(num_batches):
    seen = standardize(patches)[..., 0]  # [B, n, H, W]
    yield seen.numpy(), objective.target_ranks(target).numpy()


def setting_summary(config):
  """The settings the shortcuts depend on, flat."""
  return {"patching": config.frontend.patching,
          "num_patches": config.frontend.num_patches,
          "crop_frames": config.frontend.crop_frames,
          "input_standardization": config.encoder.input_standardization,
          "patch_gap": config.frontend.patch_gap,
          "frequency_scale": config.frontend.frequency_scale,
          "gain_jitter": config.augment.gain_jitter,
          "tilt_jitter": config.augment.tilt_jitter,
          "eq_jitter": config.augment.eq_jitter,
          "batch_size": config.batch_size, "seed": config.seed}


def shortcut_report(config, num_batches=20, name="",
                    resolution=DEFAULT_RESOLUTION):
  """score_rules on `num_batches` of a TrainConfig's pretext batches."""
  if int(num_batches) < 1:
    raise ValueError(f"num_batches={num_batches} must be >= 1.")
  result = {"name": name, "setting": setting_summary(config)}
  result.update(score_rules(network_view(config, int(num_batches)),
                            config.frontend.patching, resolution))
  return result


def parse_setting(text):
  """train.py flags in one string ("default" or "": none) -> TrainConfig.

  Raises:
    ValueError: an unknown flag, a bad value or stray words, naming the text.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  from audio_perm import config as config_lib  # pylint: disable=g-import-not-at-top
  words = [] if text.strip() in ("", "default") else shlex.split(text)
  values = flags.FlagValues()
  config_lib.define_flags(config_lib.TrainConfig, values)
  try:
    rest = values(["setting"] + words)
  except flags.Error as error:
    raise ValueError(f"--setting={text!r}: {error}") from None
  if len(rest) > 1:
    raise ValueError(f"--setting={text!r}: unexpected words {rest[1:]}; "
                     "give train.py flags, e.g. --patch_gap=11.")
  config = config_lib.from_flags(config_lib.TrainConfig, values)
  config.validate(check_data=False)
  return config


def markdown_table(results):
  """One row per setting: each rule's accuracy both ways round."""
  header = ["setting", "notes", "chance (1 s.e.)",
            "energy desc / asc", "spread desc / asc",
            "edge L2 fwd / rev", "edge cosine fwd / rev"]
  lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * 6]
  for result in results:
    cells = [result["name"], str(result["examples"]),
             f"{result['chance']:.3f} ({result['chance_std']:.3f})"]
    for rule in RULES:
      values = result["rules"].get(rule)
      if values is None:
        cells.append("-")
        continue
      a, b = (values[d] for d in (
          SCALAR_DIRECTIONS if rule in ("energy", "spread")
          else CHAIN_DIRECTIONS))
      cells.append(f"{a:.3f} / {b:.3f}")
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv=None):
  """Command line: python -m audio_perm.shortcuts --model_dir=RUN ..."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  from audio_perm import cli  # pylint: disable=g-import-not-at-top

  flags.DEFINE_multi_string("model_dir", None,
                            "A train.py model_dir; its flags.json gives the "
                            "setting (repeat for several).")
  flags.DEFINE_multi_string(
      "setting", None, "train.py flags in one string for a run that need not "
      "exist, e.g. \"--input_standardization=patch --patch_gap=11\"; "
      "\"default\" for the defaults (repeat for several).")
  flags.DEFINE_integer("num_batches", 20, "Pretext batches scored per "
                       "setting (of the setting's batch_size).")
  flags.DEFINE_float("resolution", DEFAULT_RESOLUTION,
                     "Energy and spread scores closer than this (in the "
                     "encoder's standardised units) are ties; 0: exact "
                     "float comparison.")
  flags.DEFINE_string("json", None, "Also write the results as JSON here.")
  flags_ = flags.FLAGS

  def _main(args):
    del args  # Stray arguments are refused by cli.run.
    if not flags_["verbosity"].present:
      logging.set_verbosity(logging.ERROR)
    if not flags_.model_dir and not flags_.setting:
      raise ValueError("Nothing to do: give --model_dir (a train.py run) "
                       "and/or --setting (train.py flags), repeatable.")
    if flags_.num_batches < 1:
      raise ValueError(f"--num_batches={flags_.num_batches} must be >= 1.")
    if not flags_.resolution >= 0:
      raise ValueError(f"--resolution={flags_.resolution} must be >= 0.")
    from audio_perm.training import checkpoints  # pylint: disable=g-import-not-at-top
    named = [(d, checkpoints.read_flags(d)) for d in flags_.model_dir or []]
    named += [(s, parse_setting(s)) for s in flags_.setting or []]
    results = [shortcut_report(config, flags_.num_batches, name,
                               flags_.resolution)
               for name, config in named]
    print(markdown_table(results), flush=True)
    if flags_.json:
      with open(flags_.json, "w") as f:
        json.dump(results, f, indent=2)

  cli.run(_main, "audio_perm.shortcuts", argv)


if __name__ == "__main__":
  main()
