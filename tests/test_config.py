"""Tests of audio_perm.config: one home for every setting."""

import dataclasses
import json
import os

from absl import flags
import pytest

from audio_perm import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _parse(cls, argv, **kwargs):
  flag_values = flags.FlagValues()
  config_lib.define_flags(cls, flag_values, **kwargs)
  flag_values(["prog"] + argv)
  return flag_values


def test_train_config_round_trips_through_its_flat_view():
  config = config_lib.TrainConfig().replace(
      patching="time_frequency", num_patches=6, grid=(2, 3), width=0.5,
      objective="classification", num_permutations=24, learning_rate=1e-4,
      seed=7)
  values = json.loads(json.dumps(config.to_dict()))
  assert config_lib.TrainConfig.from_dict(dict(values, unknown=1)) == config
  assert values["grid"] == [2, 3]
  assert config.encoder.frontend.grid == (2, 3)
  assert config.objective.name == "classification"


def test_flat_names_are_the_flag_names():
  values = config_lib.TrainConfig().to_dict()
  for name in ("patching", "num_patches", "width", "objective", "optimizer",
               "learning_rate", "perturbation_sigma", "seed"):
    assert name in values
  eval_values = config_lib.flatten(config_lib.EvalConfig())
  # The probe's and the supervised baseline's settings cannot clash with the
  # evaluation's own batch_size.
  assert {"batch_size", "probe_batch_size", "supervised_batch_size",
          "encoder", "hidden_units"} <= set(eval_values)


def test_replace_refuses_unknown_settings():
  with pytest.raises(ValueError, match="Unknown TrainConfig settings"):
    config_lib.TrainConfig().replace(widht=1.0)


def test_flags_come_from_the_config_with_its_defaults():
  flag_values = _parse(config_lib.TrainConfig, [])
  assert config_lib.from_flags(config_lib.TrainConfig,
                               flag_values) == config_lib.TrainConfig()
  flag_values = _parse(config_lib.TrainConfig,
                       ["--patching=time_frequency", "--num_patches=6",
                        "--grid=3,2", "--objective=mse", "--width=0.25"])
  config = config_lib.from_flags(config_lib.TrainConfig, flag_values)
  assert config.encoder.frontend.grid == (3, 2)
  assert config.encoder.width == 0.25
  assert config.objective.name == "mse"


@pytest.mark.parametrize("grid", ["3", "a,b", "1,2,3"])
def test_malformed_grid_flag_names_the_flag(grid):
  flag_values = _parse(config_lib.TrainConfig, [f"--grid={grid}"])
  with pytest.raises(ValueError, match="--grid must be two integers"):
    config_lib.from_flags(config_lib.TrainConfig, flag_values)


def test_eval_flags_and_optional_architecture_overrides():
  flag_values = flags.FlagValues()
  config_lib.define_flags(config_lib.EvalConfig, flag_values)
  config_lib.define_flags(config_lib.EncoderConfig, flag_values,
                          optional=True)
  flag_values(["prog", "--num_labeled=10,20", "--supervised_steps=5",
               "--hidden_units=32", "--width=0.5"])
  config = config_lib.from_flags(config_lib.EvalConfig, flag_values)
  assert config.num_labeled == (10, 20)
  assert config.supervised.steps == 5
  assert config.probe.hidden_units == 32
  assert config.probe.batch_size == config_lib.ProbeConfig().batch_size
  assert config_lib.flag_overrides(config_lib.EncoderConfig, flag_values,
                                   only_present=True) == {"width": 0.5}


def test_every_train_setting_is_a_train_py_flag():
  import train  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  names = set(config_lib.flatten(config_lib.TrainConfig())) - {"num_samples"}
  assert names == set(train._CONFIG_FLAGS)  # pylint: disable=protected-access


def test_paper_flagfile_is_generated_from_the_paper_config():
  with open(os.path.join(ROOT, "configs", "paper.flags")) as f:
    assert f.read() == config_lib.paper_flagfile()
  flag_values = flags.FlagValues()
  config_lib.define_flags(config_lib.TrainConfig, flag_values)
  flag_values(["prog", "--flagfile=" + os.path.join(ROOT, "configs",
                                                    "paper.flags")])
  assert config_lib.from_flags(config_lib.TrainConfig, flag_values) == (
      config_lib.paper_train_config())


def test_runtime_fields_are_how_long_and_where_not_what():
  names = config_lib.runtime_names(config_lib.TrainConfig)
  assert "train_steps" in names and "skip_corrupt" in names
  assert not {"learning_rate", "width", "seed", "objective"} & set(names)


@pytest.mark.parametrize("settings,message", [
    (dict(batch_size=0), "batch_size must be positive, got 0"),
    (dict(learning_rate=float("nan")), "learning_rate must be a finite"),
    (dict(width=-1.0), "width must be positive"),
    (dict(optimizer="adagrad"), "optimizer must be one of"),
    (dict(objective="classification", num_patches=3, num_permutations=7),
     r"num_permutations=7 exceeds the 3! = 6"),
    (dict(patching="frequency", grid=(2, 5)),
     "grid=\\[2, 5\\] only applies to"),
    (dict(patching="frequency", num_patches=600), "num_patches"),
    (dict(data_dir="a", train_pattern="b"), "not both"),
    (dict(normalization="layer"), "normalization must be one of"),
    (dict(deterministic=True, jit_compile=True), "XLA has no deterministic"),
])
def test_validation_names_the_bad_value(settings, message):
  with pytest.raises(ValueError, match=message):
    config_lib.TrainConfig().replace(**settings).validate(check_data=False)


def test_objective_validation_is_shared_with_make_objective():
  from audio_perm import objectives  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match="exceeds the 3! = 6"):
    objectives.make_objective("classification", 3, num_permutations=7)
  with pytest.raises(ValueError, match="exceeds the 3! = 6"):
    config_lib.ObjectiveConfig(name="classification",
                               num_permutations=7).validate(3)


@pytest.mark.parametrize("settings,message", [
    (dict(encoders=()), "--encoder is empty"),
    (dict(tasks=("timbre",)), "Unknown task 'timbre'"),
    (dict(num_labeled=(1,)), "at least 2"),
    (dict(probe=config_lib.ProbeConfig(probe="svm")), "probe must be one of"),
    (dict(probe=config_lib.ProbeConfig(holdout_fraction=1.0)),
     "holdout_fraction must be in"),
    (dict(supervised=config_lib.SupervisedConfig(steps=0)),
     "supervised_steps must be positive"),
])
def test_eval_validation_names_the_bad_value(settings, message):
  with pytest.raises(ValueError, match=message):
    dataclasses.replace(config_lib.EvalConfig(), **settings).validate()


def test_encoder_config_reads_its_json_and_the_frontend_is_nested():
  config = config_lib.EncoderConfig().replace(patching="time", num_patches=6,
                                              crop_frames=100)
  assert config.frontend.patching == "time"
  assert config_lib.EncoderConfig.from_dict(config.to_dict()) == config
  assert config.patch_shape() == config.frontend.patch_shape()


def test_defaults_are_the_recipe_and_the_paper_turns_its_extras_off():
  # The recipe of docs/recipe_sweep.md (rounds 33-35) is train.py's default;
  # the study pins the same values (study.scales.RECIPE).
  from audio_perm.study import scales  # pylint: disable=g-import-not-at-top
  flat = config_lib.TrainConfig().to_dict()
  assert (flat["patching"], flat["num_patches"], flat["width"],
          flat["learning_rate"], flat["batch_size"],
          flat["train_steps"]) == ("time_frequency", 10, 0.25, 1e-3, 16, 300)
  assert {k: flat[k] for k in config_lib.RECIPE_EXTRAS} == scales.RECIPE
  paper = config_lib.paper_train_config().to_dict()
  assert {k: paper[k] for k in config_lib.RECIPE_EXTRAS} == {
      k: 0.0 for k in config_lib.RECIPE_EXTRAS}
  # Every other setting outside the paper stays off by default.
  assert (flat["patch_gap"], flat["pitch_copies"], flat["frozen_blocks"],
          flat["random_kernels"], flat["input_standardization"],
          flat["pooling"]) == (0, 0, 0, 0, "example", "global")
