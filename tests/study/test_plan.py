"""The study's grid, its de-duplication and the time estimate."""

import math

import pytest

from audio_perm.study import plan as plan_lib
from audio_perm.study import scales


def test_paper_grid_shares_runs_between_tables(tmp_path):
  plan = plan_lib.make_plan(scales.SCALES["paper"], str(tmp_path), "/data")
  # Table I: 4 objectives x 3 seeds; Table II adds time and time_frequency
  # (x 3 seeds); Fig. 3 adds n = 4, 8, 12 for 2 objectives (x 3 seeds): its
  # n = 10 points are Table I's runs.
  assert len(plan.runs) == 12 + 6 + 18
  assert plan.table2["frequency"] == plan.table1["perturbed_fy"]
  assert plan.fig3[("perturbed_fy", 10)] == plan.table1["perturbed_fy"]
  assert plan.fig3[("classification", 10)] == plan.table1["classification"]
  assert plan.fig2_pretrained == plan.table1["perturbed_fy"]
  for names in plan.table1.values():
    assert [plan.runs[n].seed for n in names] == [0, 1, 2]
  # Every cell's runs are distinct settings or seeds.
  cells = (list(plan.table1.values()) + list(plan.table2.values())
           + list(plan.fig3.values()))
  assert {n for names in cells for n in names} == set(plan.runs)
  # The fixed set holds min(K, n!) permutations: 4! = 24 < 100.
  config = plan.runs["frequency_n4_classification_s0"].config
  assert config.objective.num_permutations == math.factorial(4) == 24
  assert plan.runs["frequency_n8_classification_s0"].config \
      .objective.num_permutations == 100
  config.validate(check_data=False)
  # Every run has the paper's optimisation.
  for run in plan.runs.values():
    assert (run.config.optimizer.learning_rate, run.config.batch_size,
            run.config.encoder.width, run.config.optimizer.name) == (
                1e-6, 32, 1.0, "adam")
  # Fig. 2's encoder is evaluated once, at Table I's and Fig. 2's counts.
  assert plan.evals["frequency_n10_perturbed_fy_s0"].num_labeled == (
      100, 300, 1000, 3000)
  assert plan.evals["frequency_n10_soft_rank_s0"].num_labeled == (1000,)
  assert plan.evals["supervised_fig2"].num_labeled == (100, 300, 3000)
  # Table II's random encoders: each patch shape's CFN untrained, per seed,
  # built like that shape's run (frequency's is Table I's random encoder).
  assert plan.table2_random["frequency"] == plan.table1_random
  for patching in ("time", "time_frequency"):
    names = plan.table2_random[patching]
    assert names == [f"random_{patching}_s{seed}" for seed in range(3)]
    for seed, name in enumerate(names):
      spec = plan.evals[name]
      assert (spec.encoder, spec.run, spec.encoder_seed) == (
          "random", plan.table2[patching][seed], seed)
      assert plan.runs[spec.run].config.frontend.patching == patching


def test_table2_objective_moves_the_shared_runs(tmp_path):
  plan = plan_lib.make_plan(scales.SCALES["paper"], str(tmp_path), "/data",
                            table2_objective="soft_rank")
  assert plan.table2["frequency"] == plan.table1["soft_rank"]
  assert plan.table2["time"] == [f"time_n10_soft_rank_s{s}" for s in range(3)]
  # Fig. 3 still compares perturbed_fy with classification.
  assert plan.fig3[("perturbed_fy", 10)] == plan.table1["perturbed_fy"]
  with pytest.raises(ValueError, match="'ranknet'"):
    plan_lib.make_plan(scales.SCALES["paper"], str(tmp_path), "/data",
                       table2_objective="ranknet")


@pytest.mark.parametrize("name", scales.SCALE_NAMES)
def test_every_run_is_a_valid_config_in_its_own_folder(tmp_path, name):
  plan = plan_lib.make_plan(scales.SCALES[name], str(tmp_path), "/data")
  for run_name, run in plan.runs.items():
    run.config.validate(check_data=False)
    assert run.config.model_dir == plan.run_dir(run_name)
    assert (run.config.data_dir, run.config.seed, run.config.verbose) == (
        "/data", run.seed, False)
    assert run.config.frontend.num_patches == run.num_patches


def test_cpu_scale_is_budgeted_under_150_minutes(tmp_path):
  # Width 1/4 with the recipe (2026-12-06): ~2 h 12 min measured on 2 cores
  # shared with other jobs; width 1/8 without it took 41 min.
  plan = plan_lib.make_plan(scales.SCALES["cpu"], str(tmp_path), "/data")
  seconds, counts = plan_lib.estimate_seconds(plan)
  assert counts["runs"] == len(plan.runs) == 4 + 2 + 6
  assert counts["steps"] == len(plan.runs) * 200
  assert seconds <= 150 * 60, plan_lib.fmt_duration(seconds)


def test_eval_spec_keeps_its_stored_keys():
  # evals/<name>.json are reused when their spec matches: the keys and
  # values must not move with the refactoring of Scale.
  scale = scales.SCALES["cpu"]
  spec = plan_lib.EvalSpec("supervised", "supervised", None, (1000,), 3)
  assert spec.spec(scale) == {
      "encoder": "supervised", "run": None, "num_labeled": [1000],
      "seeds": 3, "encoder_seed": 0,
      "tasks": ["instrument_family", "instrument", "pitch"],
      "hidden_units": 512, "max_epochs": 300, "patience": 20,
      "supervised_steps": 80, "supervised_batch_size": 16}
  run_spec = plan_lib.EvalSpec("random_s0", "random", None, (1000,), 3)
  assert run_spec.spec(scale)["supervised_steps"] is None


def test_another_scale_in_the_same_folder_is_refused(tmp_path):
  smoke = plan_lib.make_plan(scales.SCALES["smoke"], str(tmp_path), "/data")
  plan_lib.check_same_study(smoke, str(tmp_path), read_only=False)
  plan_lib.check_same_study(smoke, str(tmp_path), read_only=True)
  cpu = plan_lib.make_plan(scales.SCALES["cpu"], str(tmp_path), "/data")
  with pytest.raises(ValueError, match="holds a 'smoke' study"):
    plan_lib.check_same_study(cpu, str(tmp_path), read_only=True)


def test_durations_read_at_a_glance():
  assert plan_lib.fmt_duration(None) == "unknown"
  assert plan_lib.fmt_duration(42.4) == "42 s"
  assert plan_lib.fmt_duration(187) == "3 min 07 s"
  assert plan_lib.fmt_duration(3900) == "1 h 05 min"
