"""Tests for audio_perm.export: the waveform encoder and its SavedModel."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from audio_perm import export
from audio_perm import patches as patches_lib

TINY = dict(width=1 / 16, embedding_dim=8)


def _waveforms(batch, samples, seed=0):
  rng = np.random.default_rng(seed)
  t = np.arange(samples) / 16000.0
  f0 = rng.uniform(100, 2000, size=(batch, 1))
  return (np.sin(2 * np.pi * f0 * t) * np.exp(-t)
          + 0.01 * rng.normal(size=(batch, samples))).astype(np.float32)


@pytest.mark.parametrize("samples", [64000, 1000, 70001])
def test_fit_length_crops_or_pads_at_the_end(samples):
  w = _waveforms(2, samples)
  got = export.fit_length(tf.constant(w), 64000).numpy()
  want = np.zeros((2, 64000), np.float32)
  keep = min(samples, 64000)
  want[:, :keep] = w[:, :keep]
  np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("patching", ["frequency", "time_frequency"])
def test_encoder_is_frontend_then_keras_encoder(patching):
  module = export.random_encoder(seed=0, patching=patching, **TINY)
  w = _waveforms(3, 64000)
  patches = patches_lib.frontend(tf.constant(w), patching, 10)
  want = module.encoder(patches).numpy()
  np.testing.assert_allclose(module(w).numpy(), want, rtol=1e-5, atol=1e-6)
  model = export.build_waveform_model(module.config, module.encoder)
  np.testing.assert_allclose(model(w).numpy(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("samples", [64000, 20000])
def test_scene_embedding_of_one_window_is_bit_identical_to_the_old_path(
    tiny, samples):
  # Clips up to 4 s take the path every earlier export took: fit_length,
  # the frontend, the encoder on the batch.
  module = tiny
  w = _waveforms(3, samples)
  # Traced, as every export runs it (graph rewrites such as oneDNN's
  # convolution + BatchNorm fusion apply to graphs, not to eager calls).
  old_path = tf.function(lambda w: module.encoder(
      export.waveform_to_patches(w, module.config.frontend), training=False))
  np.testing.assert_array_equal(module(w).numpy(), old_path(w).numpy())


@pytest.fixture(scope="module")
def tiny():
  """One module for the tests below: its functions are traced once."""
  return export.random_encoder(seed=0, **TINY)


@pytest.fixture(scope="module")
def coarse(tiny):
  """The same weights with a 500 ms timestamp hop (fewer windows to run)."""
  return export.WaveformEncoder(tiny.encoder, tiny.config,
                                timestamp_hop_ms=500)


def _window_embeddings(module, waveform, starts):
  """Reference: each window's waveform embedded on its own (zero-padded)."""
  window = module.config.frontend.num_samples
  padded = np.pad(waveform, [[0, 0], [window, window + max(starts)]])
  return np.stack([
      module.encoder(export.waveform_to_patches(
          padded[:, window + s:window + s + window], module.config.frontend),
                     training=False).numpy() for s in starts], axis=1)


@pytest.mark.parametrize("samples,num_windows", [(64001, 2), (100000, 3),
                                                 (160000, 4)])
def test_scene_embedding_of_a_long_clip_is_the_mean_over_windows(
    tiny, samples, num_windows):
  module = tiny
  w = _waveforms(2, samples, seed=5)
  starts = [k * 32000 for k in range(num_windows)]  # 2 s hop.
  want = _window_embeddings(module, w, starts).mean(axis=1)
  np.testing.assert_allclose(module(w).numpy(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("samples", [32000, 59840, 70000])
def test_timestamp_embeddings_are_windows_centred_on_their_timestamps(
    coarse, samples):
  module = coarse
  w = _waveforms(2, samples, seed=6)
  out = module.timestamp_embeddings(w)
  frames = 1 + samples // 8000
  assert out["embedding"].shape == (2, frames, 8)
  assert out["embedding"].dtype == tf.float32
  np.testing.assert_array_equal(
      out["timestamps_ms"].numpy(),
      np.tile(np.arange(frames, dtype=np.float32) * 500, [2, 1]))
  # Centred: window k covers [k * hop - 2 s, k * hop + 2 s).
  starts = [k * 8000 - 32000 for k in range(frames)]
  want = _window_embeddings(module, w, starts)
  np.testing.assert_allclose(out["embedding"].numpy(), want, rtol=1e-5,
                             atol=1e-6)


def test_embeddings_of_a_clip_do_not_depend_on_its_batch(coarse):
  module = coarse
  w = _waveforms(3, 80000, seed=7)
  scene = module(w).numpy()
  stamps = module.timestamp_embeddings(w)["embedding"].numpy()
  for i in range(3):
    np.testing.assert_allclose(module(w[i:i + 1]).numpy()[0], scene[i],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        module.timestamp_embeddings(w[i:i + 1])["embedding"].numpy()[0],
        stamps[i], rtol=1e-5, atol=1e-6)


def test_empty_batches_and_empty_clips(tiny):
  module = tiny
  assert module(np.zeros([0, 100000], np.float32)).shape == (0, 8)
  out = module.timestamp_embeddings(np.zeros([2, 0], np.float32))
  assert out["embedding"].shape == (2, 1, 8)
  np.testing.assert_array_equal(out["timestamps_ms"].numpy(), [[0.], [0.]])


@pytest.mark.parametrize("setting", ["scene_hop_ms", "timestamp_hop_ms"])
def test_hops_off_the_stft_grid_are_refused(tiny, setting):
  module = tiny
  with pytest.raises(ValueError, match=f"{setting}=55 must be a positive "
                     "multiple of 10 ms"):
    export.WaveformEncoder(module.encoder, module.config, **{setting: 55})


def test_export_frontend_is_raw_log_spectrogram_bands_with_centred_crop():
  # The docstring's promise: no standardisation in the frontend (the encoder
  # does it), and the centred crop_frames window, cut into frequency bands.
  from audio_perm import spectrogram  # pylint: disable=g-import-not-at-top
  w = _waveforms(2, 64000)
  config = export.EncoderConfig().replace(
      patching="frequency", num_patches=10, crop_frames=100, **TINY)
  got = export.waveform_to_patches(tf.constant(w), config.frontend).numpy()
  spec = spectrogram.log_magnitude_spectrogram(w).numpy()  # [2, 398, 513]
  start = (398 - 100) // 2
  window = spec[:, start:start + 100, :510]  # 10 bands of 51 bins.
  want = np.stack([window[:, :, 51 * k:51 * (k + 1)] for k in range(10)],
                  axis=1)[..., np.newaxis]  # [2, 10, 100, 51, 1]
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  assert abs(float(got.mean())) > 1.0  # Raw log magnitudes, not z-scores.


def test_random_encoder_is_seeded():
  w = _waveforms(2, 64000)
  a = export.random_encoder(seed=3, **TINY)(w).numpy()
  b = export.random_encoder(seed=3, **TINY)(w).numpy()
  c = export.random_encoder(seed=4, **TINY)(w).numpy()
  np.testing.assert_array_equal(a, b)
  assert np.abs(a - c).max() > 1e-6


@pytest.mark.parametrize("config", [
    export.EncoderConfig().replace(patching="time", num_patches=6, **TINY),
    export.EncoderConfig().replace(patching="time_frequency", num_patches=6,
                                   grid=(3, 2), **TINY),
    export.EncoderConfig().replace(pooling="time", num_patches=6, **TINY),
    export.EncoderConfig().replace(frequency_scale="log", num_patches=6,
                                   **TINY),
])
def test_other_schemes_build_and_embed(config):
  module = export.random_encoder(config, seed=0)
  assert module(_waveforms(2, 64000)).shape == (2, 8)


def test_mismatched_frontend_is_refused():
  encoder = export.EncoderConfig().replace(num_patches=8,
                                           **TINY).build_keras_encoder()
  with pytest.raises(ValueError, match="patches of shape"):
    export.WaveformEncoder(encoder,
                           export.EncoderConfig().replace(**TINY))


def test_config_round_trips_through_dict():
  config = export.EncoderConfig().replace(
      patching="time_frequency", num_patches=6, grid=(2, 3), width=0.5,
      embedding_dim=12, pooling="time", frequency_scale="log")
  values = json.loads(json.dumps(config.to_dict()))
  assert export.EncoderConfig.from_dict(dict(values, unrelated=1)) == config


_FRESH_PROCESS = r"""
import json, sys
import numpy as np
import tensorflow as tf
export_dir, inputs, outputs = sys.argv[1:]
loaded = tf.saved_model.load(export_dir)
result = {}
for name in ("serving_default", "timestamp_embeddings"):
  signature = loaded.signatures[name]
  result[name] = {
      "inputs": {k: [str(v.dtype.name), v.shape.as_list()]
                 for k, v in signature.structured_input_signature[1].items()},
      "outputs": {k: v.shape.as_list()
                  for k, v in signature.structured_outputs.items()}}
result["framing"] = {k: int(v) for k, v in loaded.framing().items()}
data = np.load(inputs)
arrays = {}
for k in data.files:
  w = tf.constant(data[k])
  arrays[k] = loaded.signatures["serving_default"](waveform=w)["embedding"]
  out = loaded.signatures["timestamp_embeddings"](waveform=w)
  arrays[k + "/timestamps"] = out["embedding"]
  arrays[k + "/timestamps_ms"] = out["timestamps_ms"]
np.savez(outputs, **{k: v.numpy() for k, v in arrays.items()})
result["imported"] = sorted(m for m in sys.modules if m.startswith("audio_perm"))
print(json.dumps(result))
"""


@pytest.mark.slow
def test_saved_model_round_trip_in_a_fresh_process(tmp_path):
  module = export.random_encoder(seed=1, **TINY)
  export_dir = export.export_encoder(module.encoder, str(tmp_path / "enc"),
                                     module.config, timestamp_hop_ms=250)
  inputs = {"full": _waveforms(3, 64000, seed=1),
            "one": _waveforms(1, 64000, seed=2),
            "short": _waveforms(2, 20000, seed=3),
            "long": _waveforms(2, 80000, seed=4)}
  np.savez(tmp_path / "in.npz", **inputs)
  script = tmp_path / "load.py"
  script.write_text(_FRESH_PROCESS)
  proc = subprocess.run(
      [sys.executable, str(script), export_dir, str(tmp_path / "in.npz"),
       str(tmp_path / "out.npz")],
      capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  info = json.loads(proc.stdout.strip().splitlines()[-1])
  assert info["imported"] == []
  for name in ("serving_default", "timestamp_embeddings"):
    assert info[name]["inputs"] == {"waveform": ["float32", [None, None]]}
  assert info["serving_default"]["outputs"] == {"embedding": [None, 8]}
  assert info["timestamp_embeddings"]["outputs"] == {
      "embedding": [None, None, 8], "timestamps_ms": [None, None]}
  assert info["framing"] == {"sample_rate_hz": 16000, "window_samples": 64000,
                             "scene_hop_samples": 32000,
                             "timestamp_hop_samples": 4000}
  outputs = np.load(tmp_path / "out.npz")
  for name, w in inputs.items():
    np.testing.assert_allclose(outputs[name], module(w).numpy(), rtol=1e-5,
                               atol=1e-6, err_msg=name)
    frames = 1 + w.shape[1] // 4000
    assert outputs[name + "/timestamps"].shape == (len(w), frames, 8)
    np.testing.assert_array_equal(
        outputs[name + "/timestamps_ms"],
        np.tile(np.arange(frames, dtype=np.float32) * 250, [len(w), 1]))
  # 4 s notes: what every earlier export gave, the encoder on the frontend's
  # patches of the same weights.
  # Traced, as the SavedModel runs it (graph rewrites such as oneDNN's
  # convolution + BatchNorm fusion apply to graphs, not to eager calls).
  old_path = tf.function(lambda w: module.encoder(
      export.waveform_to_patches(w, module.config.frontend), training=False))
  for name in ("full", "one"):
    want = old_path(inputs[name]).numpy()
    np.testing.assert_array_equal(outputs[name], want, err_msg=name)
  assert outputs["one"].shape == (1, 8)
  assert export.read_config(export_dir) == module.config
  # Keras 3 route.
  layer = keras.layers.TFSMLayer(export_dir, call_endpoint="serving_default")
  np.testing.assert_allclose(layer(inputs["full"])["embedding"],
                             outputs["full"], rtol=1e-5, atol=1e-6)
  embed = export.load_encoder(export_dir)
  np.testing.assert_allclose(embed(inputs["short"]).numpy(), outputs["short"],
                             rtol=1e-5, atol=1e-6)


README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "README.md")


def _readme_python_block(heading):
  """The first ```python block after `heading` in the README."""
  with open(README) as f:
    text = f.read()
  section = text[text.index(heading):]
  start = section.index("```python\n") + len("```python\n")
  return section[start:section.index("```", start)]


@pytest.mark.slow
def test_readme_use_an_encoder_snippets_run(tmp_path):
  module = export.random_encoder(seed=1, **TINY)
  export_dir = export.export_encoder(module.encoder, str(tmp_path / "enc"),
                                     module.config)
  for heading in ("### The SavedModel's signatures",
                  "### In Keras: `keras.layers.TFSMLayer`"):
    code = _readme_python_block(heading).replace('"runs/default/encoder"',
                                                 repr(export_dir))
    assert repr(export_dir) in code, heading
    namespace = {}
    exec(compile(code, heading, "exec"), namespace)  # pylint: disable=exec-used
    if "scene" in namespace and "out" in namespace:
      assert namespace["scene"].shape == (2, 8)
      assert namespace["out"]["embedding"].shape == (2, 61, 8)
    else:
      assert namespace["probabilities"].shape == (2, 11)
      assert namespace["frames"]["embedding"].shape == (1, 61, 8)
      assert float(namespace["frames"]["timestamps_ms"][0, -1]) == 3000.0
      assert not namespace["scene"].trainable_weights
