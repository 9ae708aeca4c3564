"""Tests of audio_perm.training.trainer: the step, objectives, precision, XLA."""

from audio_perm import objectives
import numpy as np
import pytest
import tensorflow as tf

from audio_perm import training


# The default objective in the fast tier, the others with the slow tests.
@pytest.mark.parametrize("objective", [
    o if o == "perturbed_fy" else pytest.param(o, marks=pytest.mark.slow)
    for o in objectives.OBJECTIVES])
def test_each_objective_lowers_its_loss_on_rendered_data(tiny_config, objective,
                                                         rendered_dataset_dir):
  config = tiny_config(rendered_dataset_dir, objective=objective)
  config.validate()
  trainer = training.Trainer(config)
  dataset_fn = training.make_dataset_fn(config,
                                        trainer.objective.permutation_set)
  patches, target = next(iter(dataset_fn(tf.distribute.InputContext())))
  assert patches.shape == (4, 4, 398, 128, 1)
  seed = tf.constant([5, 6], tf.int64)

  def loss_now():
    # Training mode: BatchNorm (the default) normalises with this batch's
    # statistics, as in the steps; its moving averages barely move in 8.
    outputs = trainer.model(patches, training=True)
    return float(tf.reduce_mean(trainer.objective.loss(outputs, target,
                                                       seed=seed)))

  before = loss_now()
  iterator = trainer.distributed_iterator(
      lambda ctx: tf.data.Dataset.from_tensors((patches, target)).repeat())
  trainer.train_function()(iterator, tf.constant(8))
  after = loss_now()
  assert np.isfinite(after)
  assert after < 0.9 * before, (before, after)


def test_default_run_and_eval_baselines_share_one_architecture():
  # eval.py --encoder=random (no SavedModel listed) must build the network
  # `python train.py` trains by default, weight for weight.
  from audio_perm import evaluation  # pylint: disable=g-import-not-at-top
  from audio_perm import export  # pylint: disable=g-import-not-at-top
  default_run = training.TrainConfig()
  assert default_run.encoder == export.EncoderConfig()
  baseline = evaluation.default_architecture(("random", "handcrafted"))
  assert baseline == default_run.encoder
  random = evaluation.random_encoder(baseline)
  trained = training.Trainer(default_run).encoder
  # random.embed is the export.WaveformEncoder module.
  assert [tuple(w.shape) for w in random.embed.encoder.weights] == [
      tuple(w.shape) for w in trained.weights]


@pytest.mark.slow
def test_steps_per_execution_and_jit_compile_give_the_same_training(fixed_batch_trainer, tmp_path):
  """3 steps in one call == 3 calls of 1 step; XLA == no XLA (rounding)."""
  runs = {}
  # XLA first: it has no deterministic max-pool gradient, and the others'
  # (default) --deterministic turns op determinism on for the process.
  for name, kwargs, chunks in [("xla", dict(jit_compile=True,
                                            deterministic=False), [1, 2]),
                               ("plain", {}, [1, 1, 1]),
                               ("inner_loop", {}, [3])]:
    # SGD: Adam's first steps (~lr * sign(g)) would amplify rounding in tiny
    # gradients.
    trainer, iterator = fixed_batch_trainer(str(tmp_path), optimizer="sgd",
                                             **kwargs)
    train_fn = trainer.train_function()
    losses = [float(train_fn(iterator, tf.constant(c))[0]) for c in chunks]
    assert int(trainer.step.numpy()) == 3
    runs[name] = (trainer.model.get_weights(), losses)
  for name in ("inner_loop", "xla"):
    tol = 1e-6 if name == "inner_loop" else 1e-3
    for a, b in zip(runs["plain"][0], runs[name][0]):
      np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=name)
  np.testing.assert_allclose(runs["plain"][1][0], runs["xla"][1][0],
                             rtol=1e-4)


@pytest.mark.slow
def test_mixed_precision_trains_in_bfloat16_and_exports_float32(fixed_batch_trainer, tmp_path):
  trainer, iterator = fixed_batch_trainer(str(tmp_path), mixed_precision=True)
  conv = trainer.encoder.get_layer("backbone").blocks[0].conv
  assert conv.compute_dtype == "bfloat16" and conv.variable_dtype == "float32"
  loss, _ = trainer.train_function()(iterator, tf.constant(2))
  assert np.isfinite(float(loss))
  export_dir = trainer.export(str(tmp_path / "enc"))
  serve = tf.saved_model.load(export_dir).signatures["serving_default"]
  out = serve(waveform=tf.zeros([1, 64000]))["embedding"]
  assert out.dtype == tf.float32 and out.shape == (1, 8)


@pytest.mark.parametrize("kwargs,match", [
    (dict(patching="time_frequency", num_patches=10, grid=(3, 4)), "grid"),
    (dict(patching="frequency", grid=(2, 2)), "grid"),
    (dict(objective="classification", num_patches=4, num_permutations=30),
     "4!"),
    (dict(batch_size=0), "batch_size"),
    (dict(train_steps=-5), "train_steps"),
    (dict(learning_rate=0.0), "learning_rate"),
    (dict(width=-1.0), "width"),
    (dict(num_patches=600), "num_patches=600"),
    (dict(optimizer="adagrad"), "optimizer"),
])
def test_bad_configs_raise_value_error(tiny_config, kwargs, match, tmp_path):
  config = tiny_config(str(tmp_path), **kwargs)
  with pytest.raises(ValueError, match=match):
    config.validate(check_data=False)


def test_missing_data_dir_says_how_to_make_one(tiny_config, tmp_path):
  config = tiny_config(str(tmp_path / "nowhere"))
  with pytest.raises(ValueError, match="python -m data_prep.render"):
    config.validate()


def test_settings_of_another_objective_are_reported_as_ignored():
  config = training.TrainConfig().replace(objective="mse")
  messages = config.ignored_settings({"perturbation_sigma", "batch_size",
                                      "num_permutations"})
  assert len(messages) == 2
  assert any("--perturbation_sigma is ignored" in m for m in messages)
  assert any("--num_permutations is ignored" in m for m in messages)
  assert not training.TrainConfig().replace(
      objective="perturbed_fy").ignored_settings(
      {"perturbation_sigma"})


def _perturbed_gradients(fixed_batch_trainer, data_dir, init_decay, delta):
  """(loss, gradients) at the initial weights + delta on the fixed batch."""
  trainer, iterator = fixed_batch_trainer(data_dir, init_decay=init_decay)
  for v, d in zip(trainer.model.trainable_variables, delta):
    v.assign(v.numpy() + d)
  patches, target = next(iterator)
  loss, grads, _, _ = trainer._compute(patches, target,
                                    tf.constant([1, 2], tf.int64))
  return trainer, float(loss), [g.numpy() for g in grads]


def test_init_decay_adds_its_pull_towards_the_initial_weights(fixed_batch_trainer, tmp_path):
  """Gradient with init_decay = gradient without + init_decay * (w - w0)."""
  shapes = [tuple(v.shape) for v in
            fixed_batch_trainer(str(tmp_path))[0].model.trainable_variables]
  rng = np.random.default_rng(3)
  delta = [0.01 * rng.normal(size=s).astype(np.float32) for s in shapes]
  decay = 2.5
  anchored, loss, grads = _perturbed_gradients(
      fixed_batch_trainer, str(tmp_path), decay, delta)
  _, plain_loss, plain_grads = _perturbed_gradients(
      fixed_batch_trainer, str(tmp_path), 0.0, delta)
  # The reported loss is the pretext loss alone.
  assert loss == pytest.approx(plain_loss, rel=1e-6)
  for g, p, d in zip(grads, plain_grads, delta):
    np.testing.assert_allclose(g - p, decay * d, rtol=1e-3, atol=1e-6)
  penalty = 0.5 * decay * sum(float(np.sum(d.astype(np.float64)**2))
                              for d in delta)
  assert float(anchored.init_penalty()) == pytest.approx(penalty, rel=1e-4)


def test_init_decay_anchors_are_the_first_initialisation_after_a_resume(fixed_batch_trainer, tmp_path):
  trainer, iterator = fixed_batch_trainer(str(tmp_path), init_decay=1.0,
                                          learning_rate=0.05)
  initial = [v.numpy() for v in trainer.model.trainable_variables]
  trainer.train_function()(iterator, tf.constant(2))
  path = trainer.checkpoint.save(str(tmp_path / "ckpt" / "ckpt"))
  trained = [v.numpy() for v in trainer.model.trainable_variables]
  assert max(np.max(np.abs(a - b)) for a, b in zip(initial, trained)) > 1e-3
  # A trainer of another seed (other initial weights) restoring that run.
  other, _ = fixed_batch_trainer(str(tmp_path), init_decay=1.0,
                                 learning_rate=0.05, seed=7)
  other.checkpoint.restore(path).assert_existing_objects_matched()
  for anchor, first in zip(other.anchors.values, initial):
    np.testing.assert_array_equal(anchor.numpy(), first)
  for v, w in zip(other.model.trainable_variables, trained):
    np.testing.assert_array_equal(v.numpy(), w)


def test_init_decay_keeps_the_weights_nearer_their_initialisation(fixed_batch_trainer, tmp_path):
  drift = {}
  for decay in (0.0, 200.0):
    trainer, iterator = fixed_batch_trainer(str(tmp_path), init_decay=decay,
                                            learning_rate=0.01)
    initial = [v.numpy() for v in trainer.model.trainable_variables]
    trainer.train_function()(iterator, tf.constant(6))
    drift[decay] = np.sqrt(sum(
        np.sum((v.numpy() - w)**2)
        for v, w in zip(trainer.model.trainable_variables, initial)))
  assert drift[200.0] < 0.7 * drift[0.0], drift


def test_weights_are_finite_sees_a_nan_the_loss_may_hide(fixed_batch_trainer,
                                                        tmp_path):
  # The loop's second divergence check: one bad BatchNorm statistic (not a
  # trainable weight) is enough.
  trainer, iterator = fixed_batch_trainer(str(tmp_path))
  trainer.train_function()(iterator, tf.constant(1))
  assert trainer.weights_are_finite()
  statistic = next(v for v in trainer.model.variables
                   if "moving_variance" in v.path)
  values = np.array(statistic.numpy())
  values[0] = np.nan
  statistic.assign(values)
  assert not trainer.weights_are_finite()


def test_frozen_blocks_stay_the_random_twins_and_the_rest_trains(fixed_batch_trainer, tmp_path):
  trainer, iterator = fixed_batch_trainer(str(tmp_path), frozen_blocks=2,
                                          learning_rate=0.01)
  twin, _ = fixed_batch_trainer(str(tmp_path))  # Same seed, nothing frozen.
  backbone = trainer.encoder.get_layer("backbone")
  frozen = [v.path for b in backbone.blocks[:2] for v in b.variables]
  assert frozen and not {v.path for v in trainer.model.trainable_variables
                         } & set(frozen)
  assert (len(trainer.model.trainable_variables)
          == len(twin.model.trainable_variables) - 6)  # 2 x kernel, gamma, beta
  initial = {v.path: v.numpy() for v in trainer.model.variables}
  trainer.train_function()(iterator, tf.constant(4))
  for v in trainer.model.variables:
    if v.path in frozen:
      np.testing.assert_array_equal(v.numpy(), initial[v.path])
    elif "block3/conv" in v.path:
      assert not np.array_equal(v.numpy(), initial[v.path])
  # What the frozen blocks compute, in training mode too, is the twin's
  # output in inference mode (initial moving statistics).
  patches = np.random.default_rng(1).normal(size=(2, 4, 398, 128, 1))
  x = trainer.encoder.get_layer("standardize")(patches.astype(np.float32))
  ours = theirs = tf.reshape(x, [-1] + list(x.shape[2:]))
  twin_blocks = twin.encoder.get_layer("backbone").blocks
  for block, twin_block in zip(backbone.blocks[:2], twin_blocks[:2]):
    ours = block(ours, training=True)
    theirs = twin_block(theirs, training=False)
  np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5,
                             atol=1e-5)


def test_frozen_blocks_beyond_the_backbone_is_refused(tiny_config, tmp_path):
  with pytest.raises(ValueError, match="frozen_blocks=6: the backbone has 5"):
    tiny_config(str(tmp_path), frozen_blocks=6).validate(check_data=False)


def test_random_kernels_stay_drawn_and_their_batchnorm_still_trains(
    fixed_batch_trainer, tmp_path):
  trainer, iterator = fixed_batch_trainer(str(tmp_path), random_kernels=1,
                                          learning_rate=0.01)
  twin, _ = fixed_batch_trainer(str(tmp_path))  # Same seed, all trains.
  backbone = trainer.encoder.get_layer("backbone")
  last = backbone.blocks[-1]
  kernel = last.conv.kernel
  trainable = {v.path for v in trainer.model.trainable_variables}
  assert kernel.path not in trainable
  assert {v.path for v in last.norm.trainable_variables} <= trainable
  assert (len(trainer.model.trainable_variables)
          == len(twin.model.trainable_variables) - 1)  # conv5's kernel
  np.testing.assert_array_equal(kernel.numpy(),
                                twin.encoder.get_layer("backbone")
                                .blocks[-1].conv.kernel.numpy())
  initial = {v.path: v.numpy() for v in trainer.model.variables}
  trainer.train_function()(iterator, tf.constant(4))
  changed = {v.path for v in trainer.model.variables
             if not np.array_equal(v.numpy(), initial[v.path])}
  assert kernel.path not in changed
  # The blocks below learn; conv5's BatchNorm learns its scale and offset
  # and tracks the statistics of its changing inputs.
  assert backbone.blocks[0].conv.kernel.path in changed
  for name in ("gamma", "beta", "moving_mean", "moving_variance"):
    assert getattr(last.norm, name).path in changed, name


@pytest.mark.parametrize("settings,match", [
    (dict(random_kernels=6), "random_kernels=6 cover more than"),
    (dict(random_kernels=3, frozen_blocks=3), "keep their sum at most 5"),
    (dict(random_kernels=-1), "random_kernels"),
])
def test_random_kernels_beyond_the_backbone_are_refused(tiny_config,
                                                        tmp_path, settings,
                                                        match):
  with pytest.raises(ValueError, match=match):
    tiny_config(str(tmp_path), **settings).validate(check_data=False)
