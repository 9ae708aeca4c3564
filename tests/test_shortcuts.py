"""Tests for audio_perm.shortcuts: rules with nothing learned on pretext batches.

Synthetic cases where a rule recovers the order exactly (accuracy 1.0), and
shuffled noise where it cannot (chance, within 4 standard errors of the
1 / (n sqrt(N)) the module reports); then the rules on real notes of the
tiny rendered dataset through the pipelines the settings train on.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from audio_perm import models
from audio_perm import objectives
from audio_perm import shortcuts
from audio_perm import training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 10


def _shuffled(natural, seed=0):
  """(natural patches [B, n, ...] shuffled per example, target ranks)."""
  rng = np.random.default_rng(seed)
  perm = np.stack([rng.permutation(natural.shape[1])
                   for _ in range(natural.shape[0])])
  index = perm.reshape(perm.shape + (1,) * (natural.ndim - 2))
  return np.take_along_axis(natural, index, axis=1), perm


def _near_chance(result, rule, sigmas=4.0):
  """Both directions of `rule` within `sigmas` standard errors of chance."""
  values = result["rules"][rule]
  return all(abs(values[d] - result["chance"]) < sigmas * result["chance_std"]
             for d in values if d not in ("best", "best_direction"))


def _smooth_field(rng, batch, frames, bins):
  """A random walk along the last axis: neighbours differ by one step."""
  return np.cumsum(rng.standard_normal((batch, frames, bins)), axis=-1)


def _levels(rng, batch):
  """[batch, N, 20, 20] patches, each 1 quieter than the one below it."""
  index = np.arange(N)[None, :, None, None]
  return -1.0 * index + 0.1 * rng.standard_normal((batch, N, 20, 20))


def _spreads(rng, batch):
  """[batch, N, 20, 20] zero-mean patches, each 1.5 times wider than the one
  below it (3.5% noise on a spread of 400 values)."""
  index = np.arange(N)[None, :, None, None]
  return 1.5 ** index * rng.standard_normal((batch, N, 20, 20))


def test_scalar_ranks_are_the_objectives_hard_ranks():
  scores = np.random.default_rng(0).standard_normal((6, N))
  np.testing.assert_array_equal(
      shortcuts.scalar_ranks(scores, "ascending"),
      objectives.predicted_ranks(scores).numpy())
  np.testing.assert_array_equal(
      shortcuts.scalar_ranks(scores, "descending"),
      objectives.predicted_ranks(-scores).numpy())
  # Closer than the resolution: ties, broken by position.
  np.testing.assert_array_equal(
      shortcuts.scalar_ranks([[1.0, 1.001, 0.999, 2.0]], "descending", 0.01),
      [[1, 2, 3, 0]])
  with pytest.raises(ValueError, match="direction"):
    shortcuts.scalar_ranks(scores, "up")


def test_energy_and_spread_recover_ordered_levels_and_spreads():
  rng = np.random.default_rng(1)
  # Lower patches louder: energy, descending; higher ones wider: spread,
  # ascending.
  for rule, natural, direction in (("energy", _levels(rng, 32), "descending"),
                                   ("spread", _spreads(rng, 32),
                                    "ascending")):
    result = shortcuts.score_rules([_shuffled(natural)], "frequency")
    assert result["examples"] == 32 and result["chance"] == 1 / N
    values = result["rules"][rule]
    assert values[direction] == 1.0 and values["best_direction"] == direction
    assert min(values["ascending"], values["descending"]) == 0.0  # n even.


def test_edge_rules_chain_continuous_bands_and_slices():
  rng = np.random.default_rng(2)
  edge, cell = 32, 6  # Edge vectors of 32 values (8 chain less surely).
  # Frequency bands of one field continuous across bins: [B, frames, N*bins].
  field = _smooth_field(rng, 24, edge, N * cell)
  bands = field.reshape(24, edge, N, cell).transpose(0, 2, 1, 3)
  result = shortcuts.score_rules([_shuffled(bands, 1)], "frequency")
  for rule in ("edge_l2", "edge_cosine"):
    assert result["rules"][rule]["forward"] == 1.0, rule
    assert result["rules"][rule]["reversed"] == 0.0, rule  # n even.
    assert result["rules"][rule]["best_direction"] == "forward"
  # Time slices of a field continuous across frames.
  field = _smooth_field(rng, 24, edge, N * cell)  # [B, bins, N*frames]
  slices = field.reshape(24, edge, N, cell).transpose(0, 2, 3, 1)
  result = shortcuts.score_rules([_shuffled(slices, 2)], "time")
  assert result["rules"]["edge_l2"]["forward"] == 1.0
  assert result["rules"]["edge_cosine"]["forward"] == 1.0
  # The same slices read as frequency bands: their bin edges do not chain.
  crossed = shortcuts.score_rules([_shuffled(slices, 2)], "frequency")
  assert crossed["rules"]["edge_l2"]["best"] < 0.4


def test_every_rule_is_near_chance_on_shuffled_noise():
  rng = np.random.default_rng(3)
  batches = [_shuffled(rng.standard_normal((100, N, 6, 5)), seed)
             for seed in range(4)]
  result = shortcuts.score_rules(batches, "frequency")
  assert result["examples"] == 400
  assert result["chance_std"] == pytest.approx(1 / (N * 20))
  for rule in shortcuts.RULES:
    assert _near_chance(result, rule), (rule, result["rules"][rule])


def test_per_patch_standardisation_leaves_level_and_spread_at_chance():
  rng = np.random.default_rng(4)
  for rule, natural in (("energy", _levels(rng, 400)),
                        ("spread", _spreads(rng, 400))):
    shuffled, target = _shuffled(natural)
    for scope in ("example", "patch"):
      seen = models.ExampleStandardization(scope=scope)(
          shuffled[..., None].astype(np.float32)).numpy()[..., 0]
      result = shortcuts.score_rules([(seen, target)], "frequency")
      if scope == "example":
        assert result["rules"][rule]["best"] == 1.0, result["rules"][rule]
      else:
        assert _near_chance(result, rule), result["rules"][rule]


def test_greedy_chain_follows_the_cheapest_successors():
  # Patch 2 -> 0 -> 3 -> 1 costs 1 per step, everything else 10.
  costs = np.full((1, 4, 4), 10.0)
  for a, b in ((2, 0), (0, 3), (3, 1)):
    costs[0, a, b] = 1.0
  order = shortcuts.greedy_chain(costs)
  np.testing.assert_array_equal(order, [[2, 0, 3, 1]])
  np.testing.assert_array_equal(shortcuts.chain_ranks(order), [[1, 3, 0, 2]])
  np.testing.assert_array_equal(shortcuts.chain_ranks(order, "reversed"),
                                [[2, 0, 3, 1]])


def test_edge_costs_compare_last_and_first_rows():
  patches = np.zeros((1, 2, 3, 2))
  patches[0, 0, :, -1] = [1.0, 2.0, 3.0]  # Band 0's top bin.
  patches[0, 1, :, 0] = [2.0, 4.0, 6.0]  # Band 1's bottom bin.
  l2 = shortcuts.edge_costs(patches, "frequency", "l2")
  assert l2[0, 0, 1] == pytest.approx(np.sqrt(14.0 / 3))
  assert np.isinf(l2[0, 0, 0]) and np.isinf(l2[0, 1, 1])
  cosine = shortcuts.edge_costs(patches, "frequency", "cosine")
  assert cosine[0, 0, 1] == pytest.approx(0.0)
  assert cosine[0, 1, 0] == pytest.approx(1.0)  # Zero edge vectors.
  with pytest.raises(ValueError, match="frequency' or 'time"):
    shortcuts.edge_costs(patches, "time_frequency")
  with pytest.raises(ValueError, match="metric"):
    shortcuts.edge_costs(patches, "time", "manhattan")
  grid = shortcuts.score_rules([_shuffled(np.zeros((2, 4, 3, 2)))],
                               "time_frequency")
  assert set(grid["rules"]) == {"energy", "spread"}
  with pytest.raises(ValueError, match="No batches"):
    shortcuts.score_rules([], "frequency")


def test_settings_are_train_flags_in_one_string():
  config = shortcuts.parse_setting(
      "--input_standardization=patch --patch_gap=11 --gain_jitter=3")
  assert config.encoder.input_standardization == "patch"
  assert config.frontend.patch_gap == 11
  assert config.augment.gain_jitter == 3.0
  assert shortcuts.parse_setting("default") == training.TrainConfig()
  for bad, match in (("--no_such_flag=1", "no_such_flag"),
                     ("--patch_gap=11 stray", "stray"),
                     ("--patch_gap=-1", "patch_gap"),
                     ("--patching=frequency --patch_gap=51", "patch_gap"),
                     ("--patch_gap=79", "patch_gap")):
    with pytest.raises(ValueError, match=match):
      shortcuts.parse_setting(bad)


@pytest.mark.slow  # Four pipelines over real notes (~25 s on 2 busy cores).
def test_each_option_removes_its_shortcut_on_real_notes(rendered_dataset_dir):
  def report(setting):
    # On the paper's frequency bands without the default recipe's jitter:
    # each option alone against the plain bands.
    plain = ("--patching=frequency --gain_jitter=0 --tilt_jitter=0 "
             "--eq_jitter=0")
    config = shortcuts.parse_setting(
        plain if setting == "default" else f"{plain} {setting}").replace(
            data_dir=rendered_dataset_dir)
    return shortcuts.shortcut_report(config, num_batches=4, name=setting)

  default = report("default")
  patch = report("--input_standardization=patch")
  gap = report("--patch_gap=11")
  gain = report("--gain_jitter=3")
  assert default["examples"] == 64 and default["num_patches"] == N

  def best(result, rule):
    return result["rules"][rule]["best"]

  # Example standardisation keeps the bands' levels and spreads: low bands
  # of real notes are louder and vary more (measured: 0.63 and 0.53).
  for rule in ("energy", "spread"):
    assert best(default, rule) > 0.3, default["rules"][rule]
    assert default["rules"][rule]["best_direction"] == "descending"
    assert _near_chance(patch, rule), patch["rules"][rule]
  # Whole cells chain by their edges (0.71 L2, 0.64 cosine); gaps of 11 of
  # 51 bins break most of that (0.23, 0.25).
  for rule in ("edge_l2", "edge_cosine"):
    assert best(default, rule) > 0.4, default["rules"][rule]
    assert best(gap, rule) < best(default, rule) - 0.2, (
        gap["rules"][rule], default["rules"][rule])
  # A random level per patch hides the level order (0.63 -> 0.23), not the
  # spread order (the level moves every value of a patch alike).
  assert best(gain, "energy") < best(default, "energy") - 0.2
  assert best(gain, "spread") > 0.3


@pytest.mark.slow  # Subprocesses.
def test_command_line_reads_runs_and_settings(rendered_dataset_dir,
                                              tmp_path):
  from audio_perm.training import checkpoints  # pylint: disable=g-import-not-at-top
  model_dir = tmp_path / "run"
  model_dir.mkdir()
  config = training.TrainConfig().replace(
      data_dir=rendered_dataset_dir, model_dir=str(model_dir),
      num_patches=4, batch_size=4, patching="time")
  checkpoints.write_json(str(model_dir / training.FLAGS_FILENAME),
                         config.to_dict())
  path = tmp_path / "shortcuts.json"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  proc = subprocess.run(
      [sys.executable, "-m", "audio_perm.shortcuts",
       f"--model_dir={model_dir}",
       f"--setting=--data_dir={rendered_dataset_dir} --num_patches=4 "
       "--batch_size=4 --patching=time_frequency",
       "--num_batches=2", f"--json={path}"],
      cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "| edge L2 fwd / rev |" in proc.stdout
  run, grid = json.load(open(path))
  assert run["name"] == str(model_dir)
  assert run["setting"]["patching"] == "time" and run["examples"] == 8
  assert set(run["rules"]) == set(shortcuts.RULES)
  assert set(grid["rules"]) == {"energy", "spread"}
  for argv, message in (([], "Nothing to do"),
                        (["--setting=--patch_gap=-1"], "patch_gap")):
    bad = subprocess.run(
        [sys.executable, "-m", "audio_perm.shortcuts"] + argv, cwd=ROOT,
        capture_output=True, text=True, timeout=120, env=env)
    last = bad.stderr.strip().splitlines()[-1]
    assert bad.returncode == 2, bad.stderr[-2000:]
    assert last.startswith("audio_perm.shortcuts: error: ") and (
        message in last), last
