"""Tests of the pitch-ranking term (--pitch_copies) in training."""

import numpy as np
import pytest
import tensorflow as tf

from audio_perm import training


def _pitch_batch(copies=2, notes=2, shape=(24, 32)):
  """(patches, target, pitch ranks) where a copy's rank sets how much of a
  fixed pattern it holds, a cue the standardised input keeps."""
  rng = np.random.default_rng(0)
  pattern = rng.normal(size=(1, *shape, 1))
  ranks = np.concatenate([rng.permutation(copies) for _ in range(notes)])
  base = rng.normal(size=(notes * copies, 4, *shape, 1))
  patches = (base + 1.5 * ranks[:, None, None, None, None] * pattern
             ).astype(np.float32)
  target = np.stack([rng.permutation(4) for _ in range(notes * copies)])
  return patches, target.astype(np.int32), ranks.astype(np.int32)


@pytest.mark.parametrize("features,loss", [("backbone", "rank"),
                                           ("embedding", "rank"),
                                           ("backbone", "shift")])
def test_the_term_learns_to_rank_the_copies(tiny_config, tmp_path, features,
                                           loss):
  config = tiny_config(str(tmp_path), objective="soft_rank", seed=1,
                       pitch_copies=2, learning_rate=1e-2,
                       pitch_features=features, pitch_loss=loss)
  config.check_pitch_copies()
  trainer = training.Trainer(config, patch_shape=(24, 32))
  batch = _pitch_batch()
  iterator = trainer.distributed_iterator(
      lambda ctx: tf.data.Dataset.from_tensors(batch).repeat())
  head, pitch_scores = trainer.model(batch[0], training=True)
  assert head.shape == (4, 4) and pitch_scores.shape == (4, 1)
  # The score reads the pooled per-patch features or fc1 (8 wide here).
  kernel = trainer.model.get_layer("pitch_head").kernel
  features_width = trainer.encoder.get_layer("backbone").output.shape[-1]
  assert kernel.shape == ((8, 1) if features == "embedding"
                          else (features_width, 1))
  assert features_width != 8

  def pitch_term():
    _, _, scores = trainer.split_outputs(trainer.model(batch[0],
                                                       training=True))
    return float(trainer.pitch_loss(scores, batch[2], None)[0])

  before = pitch_term()
  train = trainer.train_function()
  for _ in range(3):
    loss, _ = train(iterator, tf.constant(10))
  assert np.isfinite(float(loss))
  assert pitch_term() < 0.2 * before, (before, pitch_term())
  assert float(trainer.pitch_accuracy.numpy()) == 1.0
  assert trainer.scores(batch[0]).shape == (4, 4)
  # The encoder is the same network as without the term.
  plain = config.encoder.build_keras_encoder(patch_shape=(24, 32))
  assert ([w.shape for w in plain.weights]
          == [w.shape for w in trainer.encoder.weights])


def test_the_term_weighs_in_and_zero_weight_leaves_the_pretext(tiny_config,
                                                              tmp_path):
  batch = _pitch_batch()
  grads = {}
  for weight in (0.0, 1.0):
    config = tiny_config(str(tmp_path), objective="soft_rank", seed=1,
                         pitch_copies=2, pitch_weight=weight)
    trainer = training.Trainer(config, patch_shape=(24, 32))
    _, grad, _, _ = trainer._compute(tf.constant(batch[0]),  # pylint: disable=protected-access
                                     tf.constant(batch[1]),
                                     tf.constant([1, 2], tf.int64),
                                     tf.constant(batch[2]))
    grads[weight] = {v.path: g for v, g in
                     zip(trainer.model.trainable_variables, grad)}
  # Weight 0: the pitch head gets no gradient; weight 1: its kernel does
  # (a ranking does not change when every score moves by the same amount,
  # so its bias gets none either way).
  kernel, bias = "pitch_head/kernel", "pitch_head/bias"
  assert {kernel, bias} <= set(grads[1.0])
  magnitude = {w: {p: float(tf.reduce_max(tf.abs(grads[w][p])))
                   for p in (kernel, bias)} for w in grads}
  assert magnitude[0.0] == {kernel: 0.0, bias: 0.0}
  assert magnitude[1.0][kernel] > 0.0 and magnitude[1.0][bias] < 1e-6
  # The rest of the network gets the pitch term's gradient too.
  conv = [p for p in grads[1.0] if "block5" in p and "kernel" in p]
  assert conv and not np.allclose(grads[0.0][conv[0]], grads[1.0][conv[0]])


@pytest.mark.parametrize("settings,match", [
    (dict(pitch_copies=1), "pitch_copies=1"),
    (dict(pitch_copies=3), r"pitch_copies=3 must divide .* --batch_size=3"),
    (dict(pitch_copies=2, pitch_range=13.0), "pitch_range=13"),
    (dict(pitch_copies=2, pitch_band="half"), "pitch_band"),
    (dict(pitch_copies=2, pitch_features="fc2"), "pitch_features"),
    (dict(pitch_copies=2, pitch_loss="l2"), "pitch_loss"),
    (dict(pitch_copies=-2), "pitch_copies"),
    (dict(pitch_copies=2, pitch_weight=-1.0), "pitch_weight"),
])
def test_bad_pitch_settings_are_refused(tiny_config, rendered_dataset_dir,
                                        settings, match):
  config = tiny_config(rendered_dataset_dir, **settings)
  with pytest.raises(ValueError, match=match):
    config.validate()


def test_copies_must_divide_each_replicas_batch(tiny_config, tmp_path):
  config = tiny_config(str(tmp_path), pitch_copies=4, batch_size=4)
  config.check_pitch_copies(1)
  with pytest.raises(ValueError, match="over 2 replica.* --batch_size=8"):
    config.check_pitch_copies(2)


@pytest.mark.slow
def test_a_run_with_pitch_copies_logs_restores_and_exports(
    tiny_config, rendered_dataset_dir, tmp_path):
  config = tiny_config(rendered_dataset_dir, model_dir=str(tmp_path / "run"),
                       train_steps=2, log_every=1, pitch_copies=2,
                       pitch_range=12.0)
  lines = []
  result = training.train(config, log=lines.append)
  # The common band (the default) limits every input at +-12 semitones.
  assert any("low-passed at 4.0 kHz" in line for line in lines), lines
  assert result["trained"] and result["export_dir"]
  history = result["history"]
  assert [h["step"] for h in history] == [1, 2]
  assert all(0.0 <= h["pitch_ranks_accuracy"] <= 1.0 for h in history)
  encoder, encoder_config = training.load_trained_encoder(
      str(tmp_path / "run"))
  assert encoder_config == config.encoder
  _, initial = training.Trainer.build_model(config)
  kernel = encoder.get_layer("fc1_embedding").kernel.numpy()
  assert not np.allclose(
      kernel, initial.get_layer("fc1_embedding").kernel.numpy())


@pytest.mark.parametrize("pretext", ["note", "note_batch"])
def test_with_the_note_as_pretext_the_copies_feed_only_the_pitch_term(
    tiny_config, tmp_path, pretext):
  """--pitch_pretext=note/note_batch: the pretext's batch and the copies'
  batch are separate; the copies move the weights through the pitch term
  only and leave BatchNorm's moving statistics to the pretext's batch."""
  notes, target, _ = _pitch_batch()
  copies, _, shifts = _pitch_batch()
  copies = copies[::-1].copy()  # Other patches than the pretext's.
  noise = np.random.default_rng(5).normal(size=copies.shape)
  results = {}
  for name, copy_patches in (("a", copies),
                             ("b", (copies + noise).astype(np.float32)),
                             ("none", None)):
    config = tiny_config(
        str(tmp_path), objective="soft_rank", seed=1, pitch_copies=2,
        pitch_pretext=pretext if copy_patches is not None else "copies")
    trainer = training.Trainer(config, patch_shape=(24, 32))
    batch = ((notes, target, shifts) if copy_patches is None
             else (notes, target, copy_patches, shifts))
    iterator = trainer.distributed_iterator(
        lambda ctx, batch=batch: tf.data.Dataset.from_tensors(batch).repeat())
    trainer.train_function()(iterator, tf.constant(1))
    results[name] = {w.path: w.numpy() for w in trainer.model.weights}
  moving = [p for p in results["a"] if "moving_mean" in p]
  conv = [p for p in results["a"] if "block5" in p and "kernel" in p]
  assert moving and conv
  # The statistics come from the pretext's batch alone, whatever the copies.
  for path in moving:
    np.testing.assert_array_equal(results["a"][path], results["b"][path])
  # The copies reach the weights (through the pitch term) ...
  assert not np.allclose(results["a"][conv[0]], results["b"][conv[0]])
  # ... and with the copies as the pretext (no second batch) the scores
  # are the pretext batch's own.
  assert not np.allclose(results["a"][conv[0]], results["none"][conv[0]])


def test_the_note_as_pretext_needs_the_copies_batch(tiny_config, tmp_path):
  config = tiny_config(str(tmp_path), objective="soft_rank", seed=1,
                       pitch_copies=2, pitch_pretext="note")
  trainer = training.Trainer(config, patch_shape=(24, 32))
  iterator = trainer.distributed_iterator(
      lambda ctx: tf.data.Dataset.from_tensors(_pitch_batch()).repeat())
  with pytest.raises(ValueError, match="pitch_pretext=note needs batches"):
    trainer.train_function()(iterator, tf.constant(1))


@pytest.mark.parametrize("pretext,training_mode", [("note", False),
                                                   ("note_batch", True)])
def test_the_copies_are_normalised_by_moving_or_their_own_statistics(
    tiny_config, tmp_path, pretext, training_mode):
  """note: the copies' outputs are the inference-mode ones; note_batch: the
  training-mode ones (their own batch's statistics); neither moves
  BatchNorm's moving statistics."""
  copies, _, _ = _pitch_batch()
  # Far from the initial moving statistics (mean 0, variance 1).
  copies = (copies * 2.0 + 3.0).astype(np.float32)
  config = tiny_config(str(tmp_path), objective="soft_rank", seed=1,
                       pitch_copies=2, pitch_pretext=pretext)
  trainer = training.Trainer(config, patch_shape=(24, 32))
  model = trainer.model
  moving = [w for w in model.weights if "moving" in w.path]
  assert moving
  before = [w.numpy() for w in moving]
  outputs = [o.numpy() for o in tf.function(trainer.copy_outputs)(copies)]
  for w, value in zip(moving, before):
    np.testing.assert_array_equal(w.numpy(), value, err_msg=w.path)
  inference = [o.numpy() for o in model(copies, training=False)]
  training_mode_outputs = [o.numpy() for o in model(copies, training=True)]
  expected, other = ((training_mode_outputs, inference) if training_mode
                     else (inference, training_mode_outputs))
  for got, want, not_want in zip(outputs, expected, other):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert not np.allclose(got, not_want, rtol=1e-3, atol=1e-3)
  # Outside copy_outputs, training updates the moving statistics again.
  assert not np.allclose(moving[0].numpy(), before[0])


def test_the_dataset_with_the_note_as_pretext(tiny_config,
                                              rendered_dataset_dir):
  config = tiny_config(rendered_dataset_dir, pitch_copies=2,
                       pitch_pretext="note", crop_frames=100,
                       deterministic=True)
  config.validate()
  dataset_fn = training.make_dataset_fn(config)
  patches, target, copies, shifts = next(iter(
      dataset_fn(tf.distribute.InputContext())))
  assert patches.shape == copies.shape == (4, 4, 100, 128, 1)
  assert target.shape == (4, 4) and shifts.shape == (4,)
  assert shifts.dtype == tf.float32
  assert np.all(np.abs(shifts.numpy()) <= config.augment.pitch_range)
  # The pretext's batch is exactly the batch of a run without copies.
  alone = training.make_dataset_fn(config.replace(pitch_copies=0))
  alone_patches, alone_target = next(iter(alone(tf.distribute.InputContext())))
  np.testing.assert_array_equal(patches.numpy(), alone_patches.numpy())
  np.testing.assert_array_equal(target.numpy(), alone_target.numpy())
  assert not np.allclose(patches.numpy(), copies.numpy())
  # The same folds without the option give the copies as the pretext.
  plain = training.make_dataset_fn(config.replace(pitch_pretext="copies"))
  assert len(next(iter(plain(tf.distribute.InputContext())))) == 3
