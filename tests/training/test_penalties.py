"""Tests of the anti-collapse terms (training.penalties) and their wiring."""

import numpy as np
import pytest
import tensorflow as tf

from audio_perm import export
from audio_perm import training
from audio_perm.training import penalties


def _brute_force(features):
  """Both terms with explicit loops over rows and feature pairs (float64)."""
  rows = np.asarray(features, np.float64).reshape(-1, features.shape[-1])
  count, d = rows.shape
  means = [sum(rows[r, j] for r in range(count)) / count for j in range(d)]

  def cov(i, j):
    return sum((rows[r, i] - means[i]) * (rows[r, j] - means[j])
               for r in range(count)) / (count - 1)

  variance = sum(max(0.0, 1.0 - np.sqrt(cov(j, j) + penalties.EPSILON))
                 for j in range(d)) / d
  covariance = sum(cov(i, j) ** 2 for i in range(d) for j in range(d)
                   if i != j) / d
  return variance, covariance


def test_two_replicas_give_the_terms_and_gradients_of_the_whole_batch(
    two_replicas):
  # Each replica holds half the rows (different means, so per-replica
  # statistics would differ); the all-reduced terms and each replica's
  # gradient are those of one replica holding every row.
  rng = np.random.default_rng(1)
  features = (0.5 * rng.normal(size=(4, 3, 5))).astype(np.float32)
  features[:2] += 1.0
  features[..., 1] += 0.8 * features[..., 0]
  whole = tf.constant(features)
  with tf.GradientTape() as tape:
    tape.watch(whole)
    total = 5.0 * penalties.variance_covariance(whole)[0] + (
        penalties.variance_covariance(whole)[1])
  want_terms = [float(t) for t in penalties.variance_covariance(whole)]
  want_grad = tape.gradient(total, whole).numpy()
  halves = two_replicas.experimental_distribute_values_from_function(
      lambda ctx: features[2 * ctx.replica_id_in_sync_group:
                           2 * ctx.replica_id_in_sync_group + 2])

  @tf.function
  def step(rows):
    def replica_fn(rows):
      with tf.GradientTape() as tape:
        tape.watch(rows)
        variance, covariance = penalties.variance_covariance(rows)
        # Each replica adds its 1/replicas share, as the trainer does
        # (tf.nn.scale_regularization_loss): the all-reduce's gradient sums
        # the replicas' shares back onto every replica's rows.
        term = (5.0 * variance + covariance) / 2.0
      return variance, covariance, tape.gradient(term, rows)
    return two_replicas.run(replica_fn, args=(rows,))

  variance, covariance, grads = step(halves)
  for replica in range(2):
    got = [float(two_replicas.experimental_local_results(t)[replica])
           for t in (variance, covariance)]
    np.testing.assert_allclose(got, want_terms, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        two_replicas.experimental_local_results(grads)[replica].numpy(),
        want_grad[2 * replica:2 * replica + 2], rtol=1e-4, atol=1e-6)
  # Per-replica statistics would have given other terms.
  local = [float(t) for t in penalties.variance_covariance(features[:2])]
  assert abs(local[1] - want_terms[1]) > 1e-3


@pytest.mark.parametrize("scale", [0.3, 3.0])
def test_terms_match_brute_force(scale):
  # scale 0.3: every std below 1 (the hinge is active); 3.0: above it.
  rng = np.random.default_rng(0)
  features = (scale * rng.normal(size=(3, 4, 5))
              + rng.normal(size=(1, 1, 5))).astype(np.float32)
  features[..., 1] += 0.8 * features[..., 0]  # a correlated pair
  variance, covariance = penalties.variance_covariance(features)
  want_variance, want_covariance = _brute_force(features)
  np.testing.assert_allclose(float(variance), want_variance, rtol=1e-4,
                             atol=1e-6)
  np.testing.assert_allclose(float(covariance), want_covariance, rtol=1e-4)
  if scale > 1:
    assert float(variance) == 0.0
  else:
    assert float(variance) > 0.5


def test_decorrelated_features_have_no_covariance_term():
  # Centred orthogonal columns: covariance exactly diagonal.
  q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(12, 4)))
  features = (q - q.mean(axis=0)).astype(np.float32)
  q, _ = np.linalg.qr(features)  # orthonormal and still centred
  _, covariance = penalties.variance_covariance(q.astype(np.float32))
  assert float(covariance) < 1e-10


def test_gradient_matches_finite_differences():
  rng = np.random.default_rng(2)
  features = tf.constant((0.5 * rng.normal(size=(6, 3))).astype(np.float64))

  def total(x):
    variance, covariance = penalties.variance_covariance(x)
    return variance + 0.7 * covariance

  # The terms cast to float32: compare float32 analytic gradients with
  # central differences of the float64 brute force.
  with tf.GradientTape() as tape:
    x = tf.cast(features, tf.float32)
    tape.watch(x)
    value = total(x)
  analytic = tape.gradient(value, x).numpy()
  base = features.numpy()
  numeric = np.zeros_like(base)
  step = 1e-5
  for index in np.ndindex(base.shape):
    up, down = base.copy(), base.copy()
    up[index] += step
    down[index] -= step
    f_up = sum(w * t for w, t in zip((1.0, 0.7), _brute_force(up)))
    f_down = sum(w * t for w, t in zip((1.0, 0.7), _brute_force(down)))
    numeric[index] = (f_up - f_down) / (2 * step)
  np.testing.assert_allclose(analytic, numeric, rtol=2e-3, atol=2e-5)


def test_negative_weight_is_refused(tiny_config, tmp_path):
  config = tiny_config(str(tmp_path), covariance_penalty=-1.0)
  with pytest.raises(ValueError, match="covariance_penalty"):
    config.validate()


def test_trainer_lowers_the_terms_and_keeps_the_encoder(fixed_batch_trainer,
                                                        tmp_path):
  trainer, iterator = fixed_batch_trainer(
      str(tmp_path), variance_penalty=25.0, covariance_penalty=1.0,
      learning_rate=1e-2)
  patches, _ = next(iter(tf.data.Dataset.from_tensors(
      iterator.__next__())))  # one batch of the fixed iterator
  outputs, features = trainer.model(patches, training=True)
  assert outputs.shape == (4, 4) and features.shape[:2] == (4, 4)

  def penalty():
    _, features = trainer.model(patches, training=True)
    return float(trainer.feature_penalty(features))

  before = penalty()
  loss, _ = trainer.train_function()(iterator, tf.constant(10))
  assert np.isfinite(float(loss))
  after = penalty()
  assert after < 0.5 * before, (before, after)
  # The head's scores alone, for the pretext's accuracy and images.
  assert trainer.scores(patches).shape == (4, 4)
  assert trainer.spectrogram_images(patches, _target_of(trainer)).shape[0] == 3
  # The encoder is the same network as without the terms.
  plain = trainer.config.encoder.build_keras_encoder()
  assert ([w.shape for w in plain.weights]
          == [w.shape for w in trainer.encoder.weights])


def _target_of(trainer):
  n = trainer.config.frontend.num_patches
  return tf.constant([np.arange(n)[::-1]], tf.int32)


@pytest.mark.slow
def test_a_run_with_the_terms_restores_and_exports(tiny_config,
                                                   rendered_dataset_dir,
                                                   tmp_path):
  config = tiny_config(rendered_dataset_dir, model_dir=str(tmp_path / "run"),
                       train_steps=2, variance_penalty=1.0,
                       covariance_penalty=0.04)
  result = training.train(config)
  assert result["trained"] and result["export_dir"]
  encoder, encoder_config = training.load_trained_encoder(str(tmp_path / "run"))
  assert encoder_config == config.encoder
  # Restored = what the run trained (not the initialisation of the seed).
  _, initial = training.Trainer.build_model(config)
  kernel = encoder.get_layer("fc1_embedding").kernel.numpy()
  assert not np.allclose(
      kernel, initial.get_layer("fc1_embedding").kernel.numpy())
  # The export holds the same encoder.
  waveform = tf.constant(np.random.default_rng(3).normal(
      scale=0.1, size=(2, 64000)).astype(np.float32))
  serve = tf.saved_model.load(result["export_dir"]).signatures[
      "serving_default"]
  np.testing.assert_allclose(
      serve(waveform=waveform)["embedding"].numpy(),
      export.build_waveform_model(encoder_config, encoder)(waveform).numpy(),
      rtol=1e-4, atol=1e-5)
