"""The study's scales: settings from audio_perm.config, reductions declared."""

import pytest

from audio_perm import config as config_lib
from audio_perm.study import plan as plan_lib
from audio_perm.study import scales

# What make_plan sets per run; everything else comes from the scale's train.
RUN_SPECIFIC = {"data_dir", "model_dir", "patching", "num_patches",
                "objective", "seed", "num_permutations", "image_every",
                "verbose"}


def test_paper_scale_trains_the_papers_config(tmp_path):
  paper = scales.SCALES["paper"]
  assert paper.train == config_lib.paper_train_config()
  expected = config_lib.flatten(config_lib.paper_train_config())
  plan = plan_lib.make_plan(paper, str(tmp_path), "/data")
  for run in plan.runs.values():
    values = run.config.to_dict()
    assert values.keys() == expected.keys()
    differing = {k for k in values if values[k] != expected[k]}
    assert differing <= RUN_SPECIFIC, differing
    assert values["image_every"] == expected["train_steps"]


def test_smoke_and_cpu_pin_the_study_settings():
  # Pinned at every scale so that the study does not move with the defaults.
  for name in ("smoke", "cpu"):
    train = scales.SCALES[name].train
    assert train.encoder.normalization == "batch"
    assert train.optimizer.name == "adam"
    assert train.objective.num_permutations == 100
    assert scales.SCALES[name].num_patches == 10
  cpu = scales.SCALES["cpu"]
  assert (cpu.train.encoder.width, cpu.train.optimizer.learning_rate,
          cpu.train.batch_size, cpu.train.train_steps) == (0.25, 1e-3, 16,
                                                           200)
  # The default recipe's extras, pinned at the smoke and cpu scales, off at
  # the paper's.
  for name in ("smoke", "cpu"):
    flat = config_lib.flatten(scales.SCALES[name].train)
    assert {k: flat[k] for k in config_lib.RECIPE_EXTRAS} == scales.RECIPE
  paper = config_lib.flatten(scales.SCALES["paper"].train)
  assert not any(paper[k] for k in config_lib.RECIPE_EXTRAS)
  assert (cpu.probe.hidden_units, cpu.supervised.steps) == (512, 80)


@pytest.mark.parametrize("name", scales.SCALE_NAMES)
def test_every_scale_holds_valid_configs(name):
  scale = scales.SCALES[name]
  scale.train.validate(check_data=False)
  scale.probe.validate()
  config_lib.check_fields(scale.supervised)
  assert set(scale.tasks) <= set(config_lib.TASK_NAMES)


def test_reductions_compare_with_the_paper_scale():
  # Every paper-scale difference is declared.
  reduced = " ".join(scales.reductions(scales.SCALES["cpu"]))
  for word in ("width", "pretraining steps", "learning rate",
               "Table I pretraining seeds", "Fig. 2 label counts"):
    assert word in reduced
  assert "backbone width multiplier: 0.25 (paper scale: 1)" in reduced
  assert "no-pretraining steps per model: 80 (paper scale: 3,000)" in reduced
  assert "probe hidden units" not in reduced  # 512 at both scales.
  assert scales.reductions(scales.SCALES["paper"]) == []
