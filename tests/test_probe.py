"""Tests for audio_perm.probe: subsets, label remapping, standardisation, probes.

References are written independently here (dict lookups, floor/ceil bounds of
the proportional share, numpy statistics); the probes are checked on planted
embeddings where the label is linearly encoded, against chance.
"""

import collections

import numpy as np
import pytest

from audio_perm import probe


# ------------------------------------------------------------ subsets


@pytest.mark.parametrize("num_labeled", [1, 7, 40, 99, 150])
@pytest.mark.parametrize("seed", [0, 3])
def test_stratified_subset_is_proportional_and_distinct(num_labeled, seed):
  rng = np.random.default_rng(100 + seed)
  # Unbalanced sparse ids, as NSynth's instrument labels are.
  labels = rng.choice([5, 17, 400, 1005, 33], size=150,
                      p=[0.5, 0.2, 0.15, 0.1, 0.05])
  subset = probe.stratified_subset(labels, num_labeled, seed)
  assert subset.shape == (num_labeled,)
  assert len(set(subset.tolist())) == num_labeled
  assert subset.min() >= 0 and subset.max() < len(labels)
  pool = collections.Counter(labels.tolist())
  drawn = collections.Counter(labels[subset].tolist())
  for label, count in pool.items():
    share = num_labeled * count / len(labels)
    assert np.floor(share) <= drawn.get(label, 0) <= np.ceil(share), (
        label, share, drawn)


def test_stratified_subset_deterministic_and_seed_dependent():
  labels = np.repeat(np.arange(10), 20)
  a = probe.stratified_subset(labels, 50, seed=1)
  b = probe.stratified_subset(labels, 50, seed=1)
  c = probe.stratified_subset(labels, 50, seed=2)
  np.testing.assert_array_equal(a, b)
  assert set(a.tolist()) != set(c.tolist())
  # A sequence of ints is a seed too (the evaluation uses [seed, task, n]).
  np.testing.assert_array_equal(
      probe.stratified_subset(labels, 50, [1, 2, 50]),
      probe.stratified_subset(labels, 50, [1, 2, 50]))


def test_stratified_subset_whole_pool_and_uniform_within_class():
  labels = np.array([0] * 6 + [1] * 3)
  np.testing.assert_array_equal(
      np.sort(probe.stratified_subset(labels, 9, 0)), np.arange(9))
  # Within a class every member is equally likely; count picks over seeds.
  hits = np.zeros(9)
  trials = 3000
  for seed in range(trials):
    hits[probe.stratified_subset(labels, 3, seed)] += 1
  # Shares 2 and 1: exact quotas, so class 0 members are picked with
  # probability 2/6 and class 1 members with 1/3.
  np.testing.assert_allclose(hits / trials, np.full(9, 1 / 3), atol=0.04)


@pytest.mark.parametrize("num_labeled", [0, -1, 11])
def test_stratified_subset_rejects_bad_sizes(num_labeled):
  with pytest.raises(ValueError, match=f"num_labeled={num_labeled}"):
    probe.stratified_subset(np.arange(10), num_labeled, 0)


def test_holdout_split_disjoint_covering_stratified():
  labels = np.repeat([2, 9], [30, 10])
  fit, held = probe.holdout_split(labels, 0.2, seed=0)
  assert len(held) == 8 and len(fit) == 32
  np.testing.assert_array_equal(np.sort(np.concatenate([fit, held])),
                                np.arange(40))
  assert collections.Counter(labels[held].tolist()) == {2: 6, 9: 2}
  fit, held = probe.holdout_split(np.array([1, 2]), 0.2, 0)
  assert len(fit) == 1 and len(held) == 1
  with pytest.raises(ValueError, match="num_labeled >= 2"):
    probe.holdout_split(np.array([1]), 0.2, 0)


# ------------------------------------------------------- label remapping


def test_remap_labels_dense_and_unknown_to_minus_one():
  train = np.array([1005, 3, 3, 77, 1005, 500])
  test = np.array([77, 4, 1005, 0, 3, 1006])
  dense_train, (dense_test,), classes = probe.remap_labels(train, test)
  # Independent reference: a dict from sorted unique ids.
  table = {label: i for i, label in enumerate(sorted(set(train.tolist())))}
  np.testing.assert_array_equal(dense_train, [table[v] for v in train])
  np.testing.assert_array_equal(dense_test,
                                [table.get(v, -1) for v in test])
  np.testing.assert_array_equal(classes, sorted(table))
  np.testing.assert_array_equal(classes[dense_train], train)
  assert dense_train.max() == len(classes) - 1 == 3


# ------------------------------------------------------------- metrics


def test_metrics_and_summary():
  assert probe.accuracy(np.array([1, 2, 3, 4]), np.array([1, 0, 3, 0])) == 0.5
  assert probe.mean_squared_error(np.array([1.0, 2.0]),
                                  np.array([2.0, 4.0])) == 2.5
  with pytest.raises(ValueError):
    probe.accuracy(np.array([1, 2]), np.array([1]))
  mean, std = probe.summarize([1.0, 2.0, 4.0])
  assert mean == pytest.approx(7 / 3)
  assert std == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1))
  assert probe.summarize([0.5]) == (0.5, 0.0)


def test_standardization_with_variance_floor():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(50, 4)) * np.array([1.0, 10.0, 0.01, 0.0]) + 3.0
  mean, scale = probe.standardization(x, variance_floor=0.0)
  np.testing.assert_allclose(mean, x.mean(0), rtol=1e-5)
  np.testing.assert_allclose(scale[:3], x.std(0)[:3], rtol=1e-5)
  assert scale[3] == 1.0  # Constant feature, no floor: left unscaled.
  _, floored = probe.standardization(x, variance_floor=0.5)
  expected = np.sqrt(x.var(0) + 0.5 * x.var(0).mean())
  np.testing.assert_allclose(floored, expected, rtol=1e-5)


def test_probe_config_validation():
  for bad in (dict(probe="svm"), dict(hidden_units=0), dict(learning_rate=0),
              dict(holdout_fraction=1.0), dict(variance_floor=-1)):
    with pytest.raises(ValueError):
      probe.ProbeConfig(**bad).validate()


# --------------------------------------------------- heads and targets


def test_regression_targets_are_standardised_on_the_fitting_part():
  labels = np.array([60, 62, 64, 70, 72])
  fit = np.array([0, 1, 2, 3])
  targets = probe.make_targets(labels, "regression", fit)
  mean, std = labels[fit].mean(), labels[fit].std()
  assert (targets.mean, targets.scale) == (pytest.approx(mean),
                                           pytest.approx(std))
  assert targets.values.shape == (5, 1) and targets.values.dtype == np.float32
  np.testing.assert_allclose(targets.values[:, 0], (labels - mean) / std,
                             rtol=1e-6)
  assert targets.output_dim == 1 and targets.classes is None
  np.testing.assert_allclose(targets.decode(targets.values), labels,
                             rtol=1e-6)
  assert probe.make_targets(np.full(4, 60), "regression",
                            np.arange(3)).scale == 1.0
  with pytest.raises(ValueError, match="task_type"):
    probe.make_targets(labels, "ranking", fit)


def test_class_targets_are_dense_and_decode_to_original_ids():
  targets = probe.make_targets(np.array([7, 400, 7, 1005]), "classification",
                               np.arange(3))
  np.testing.assert_array_equal(targets.values, [0, 1, 0, 2])
  assert targets.values.dtype == np.int32 and targets.output_dim == 3
  logits = np.eye(3)[[2, 0, 1]]
  np.testing.assert_array_equal(targets.decode(logits), [1005, 7, 400])
  np.testing.assert_array_equal(
      probe.decode_outputs(logits, "classification", targets.classes),
      [1005, 7, 400])


def test_head_is_the_probes_dense_stack():
  import keras  # pylint: disable=g-import-not-at-top
  mlp = probe.build_head(6, 3, probe.ProbeConfig(hidden_units=5))
  assert [layer.units for layer in mlp.layers] == [5, 5, 3]
  assert [layer.activation.__name__ for layer in mlp.layers] == [
      "relu", "relu", "linear"]
  assert mlp(np.zeros((2, 6), np.float32)).shape == (2, 3)
  assert len(mlp.losses) == 3  # The L2 penalty on each kernel.
  linear = probe.build_head(6, 1, probe.ProbeConfig(probe="linear"),
                            weight_decay=0.0)
  assert [layer.units for layer in linear.layers] == [1]
  assert not linear.losses
  assert isinstance(probe.loss_function("classification"),
                    keras.losses.SparseCategoricalCrossentropy)
  assert isinstance(probe.loss_function("regression"),
                    keras.losses.MeanSquaredError)


# ------------------------------------------------- probes on planted data


def _planted_classes(num_examples, num_classes, dim, rng, sparse_ids):
  centers = rng.normal(size=(num_classes, dim)) * 3.0
  dense = rng.integers(0, num_classes, size=num_examples)
  features = centers[dense] + rng.normal(size=(num_examples, dim))
  return features.astype(np.float32), sparse_ids[dense]


SMALL = probe.ProbeConfig(hidden_units=64, max_epochs=100, patience=10)


@pytest.mark.parametrize("kind", ["mlp", "linear"])
def test_probe_learns_planted_classes_far_above_chance(kind):
  rng = np.random.default_rng(0)
  ids = np.array([0, 13, 99, 250, 251, 600, 777, 900, 1001, 1005])
  features, labels = _planted_classes(400, 10, 32, rng, ids)
  config = probe.ProbeConfig(**{**SMALL.__dict__, "probe": kind})
  scores = probe.fit_and_score(features[:150], labels[:150], features[150:],
                               labels[150:], "classification", seed=0,
                               config=config)
  assert scores["accuracy"] > 0.9  # Chance: 0.1.


@pytest.mark.parametrize("kind", ["mlp", "linear"])
def test_probe_learns_planted_regression(kind):
  rng = np.random.default_rng(1)
  features = rng.normal(size=(300, 16)).astype(np.float32)
  targets = 60.0 + 12.0 * features @ rng.normal(size=16) / 4.0
  config = probe.ProbeConfig(**{**SMALL.__dict__, "probe": kind,
                                "max_epochs": 200})
  scores = probe.fit_and_score(features[:200], targets[:200], features[200:],
                               targets[200:], "regression", seed=0,
                               config=config)
  # Predicting the mean scores the variance; a learnt probe far less.
  assert scores["mse"] < 0.1 * np.var(targets[200:])


def test_unseen_test_classes_count_as_errors():
  rng = np.random.default_rng(2)
  ids = np.array([10, 20, 30])
  features, labels = _planted_classes(300, 3, 8, rng, ids)
  train = labels != 30  # Class 30 never labelled.
  fitted = probe.fit_probe(features[train][:100], labels[train][:100],
                           "classification", seed=0, config=SMALL)
  np.testing.assert_array_equal(fitted.classes, [10, 20])
  predictions = fitted.predict(features)
  assert set(np.unique(predictions)) <= {10, 20}
  accuracy = probe.accuracy(labels, predictions)
  known_share = np.mean(labels != 30)
  assert accuracy <= known_share
  assert accuracy > 0.9 * known_share


def test_fit_is_deterministic_for_a_seed_and_stops_early():
  rng = np.random.default_rng(3)
  features, labels = _planted_classes(120, 4, 8, rng, np.arange(4))
  probe._TRAINERS.clear()  # pylint: disable=protected-access
  a = probe.fit_probe(features, labels, "classification", seed=5, config=SMALL)
  # The compiled trainer is reused and re-initialised for every fit: another
  # seed in between must not leak into the next fit with seed 5.
  other = probe.fit_probe(features, labels, "classification", seed=6,
                          config=SMALL)
  b = probe.fit_probe(features, labels, "classification", seed=5, config=SMALL)
  assert len(probe._TRAINERS) == 1  # pylint: disable=protected-access
  np.testing.assert_array_equal(a.outputs(features), b.outputs(features))
  assert not np.array_equal(a.outputs(features), other.outputs(features))
  assert a.epochs_trained == b.epochs_trained
  assert a.best_epoch <= a.epochs_trained <= SMALL.max_epochs
  # Early stopping: training ends `patience` epochs after the best one.
  if a.epochs_trained < SMALL.max_epochs:
    assert a.epochs_trained - a.best_epoch == SMALL.patience


def test_fit_probe_rejects_bad_input():
  with pytest.raises(ValueError, match="NaN"):
    probe.fit_probe(np.full((4, 2), np.nan), np.arange(4), "classification")
  with pytest.raises(ValueError, match="task_type"):
    probe.fit_probe(np.zeros((4, 2)), np.arange(4), "ranking")
  with pytest.raises(ValueError, match=r"\[n, dim\]"):
    probe.fit_probe(np.zeros((3, 2)), np.arange(4), "classification")
