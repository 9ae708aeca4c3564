"""The encoder on waveforms: a tf.Module, a Keras model, and a SavedModel.

Stable names (other modules and eval.py build on these):

  EncoderConfig (audio_perm.config): everything that fixes the encoder's
      architecture and its frontend; `.build_keras_encoder()` builds the
      patches -> embedding keras.Model with fresh weights.
  WaveformEncoder(encoder, config, scene_hop_ms=2000, timestamp_hop_ms=50)
      tf.Module; `__call__(waveform)`: float32 [batch, samples] at 16 kHz ->
      float32 [batch, embedding_dim] (the scene embedding);
      `timestamp_embeddings(waveform)`. This is what the SavedModel holds.
  random_encoder(config=None, seed=0, **overrides) -> WaveformEncoder
      The untrained ("random embedding") baseline: same architecture, fresh
      seeded weights.
  build_waveform_model(config, encoder=None) -> keras.Model
      waveform [batch, samples] -> embedding [batch, embedding_dim] as a Keras
      model (frontend inside a `WaveformFrontend` layer; 4 s notes), trainable
      end to end: the "supervised" baseline trains this with a classifier.
  export_encoder(encoder, export_dir, config, **hops)
      Writes the SavedModel (and encoder_config.json beside it).
  load_encoder(export_dir) -> callable waveform -> embedding, through the
      SavedModel's serving_default signature.

The SavedModel (it needs only TensorFlow to load) has two signatures, both
taking `waveform`: float32 [batch, samples] at 16 kHz, any batch, ANY length:
  * serving_default -> {"embedding": float32 [batch, embedding_dim]}, the
    scene embedding: a clip of at most the training length (num_samples,
    64,000 = 4 s) is zero-padded at the end to it and embedded once, exactly
    as before clips of other lengths were accepted; a longer clip is cut into
    windows of the training length at 0, scene_hop, 2 scene_hop, ... until
    one reaches its end (the last zero-padded), and the embeddings of the
    windows are averaged.
  * timestamp_embeddings -> {"embedding": float32 [batch, frames,
    embedding_dim], "timestamps_ms": float32 [batch, frames]}: timestamps
    0, hop, 2 hop, ... up to the clip's end (frames = 1 + samples // hop,
    hop = timestamp_hop_ms), each embedding that of the training-length
    window CENTRED on its timestamp, zero-padded past the clip's edges.
Both hops are multiples of 10 ms (the STFT hop), chosen at export; the
spectrogram of a clip is computed once and every window's frames are sliced
from it (audio_perm.windows). `framing()`, a saved function, returns the
layout as int32 scalars {sample_rate_hz, window_samples, scene_hop_samples,
timestamp_hop_samples}. Usage:
  loaded = tf.saved_model.load(export_dir)
  emb = loaded.signatures["serving_default"](waveform=w)["embedding"]
  out = loaded.signatures["timestamp_embeddings"](waveform=w)
or, in Keras, keras.layers.TFSMLayer(export_dir,
call_endpoint="serving_default").

Window rule: the encoder was trained on 4 s notes (64,000 samples); a window
is fitted to `num_samples` (spectrogram.fit_length: zero-padded at the end).
The frontend is then audio_perm.patches.frontend with the settings the
training pipeline uses: log-magnitude spectrogram (raw log(|X| + 1e-6), NOT
standardised here), a CENTRED crop of `crop_frames` frames if the model was
trained on random crops of that length (crop_frames is a training
augmentation; the encoder's patch shape depends on it, so the export must crop
to the same length), identity-order patches. Standardisation happens inside
the encoder: its first layer (models.ExampleStandardization) standardises
each example over all of its patches, in training and after export alike.
"""

import dataclasses
import json
import os

import keras
import tensorflow as tf

from audio_perm import config as config_lib
from audio_perm import patches as patches_lib
from audio_perm import spectrogram
from audio_perm import windows as windows_lib

CONFIG_FILENAME = "encoder_config.json"
SCENE_SIGNATURE = "serving_default"
TIMESTAMP_SIGNATURE = "timestamp_embeddings"
# Scene windows overlap by half: a 10 s clip is embedded as 4 windows.
DEFAULT_SCENE_HOP_MS = 2000
# HEAR's suggestion (<= 50 ms for a 50 ms onset tolerance). Every timestamp
# costs one encoder pass over a 4 s window: 20 passes per second of audio
# (measured in benchmarks/embed.py and the README's "Use an encoder").
DEFAULT_TIMESTAMP_HOP_MS = 50
# Windows embedded per encoder call inside the SavedModel (bounds memory).
# On 2 loaded CPU cores, timestamps of a 10 s clip with the default encoder
# took 40 / 46 / 50 / 54 ms a window with 8 / 16 / 32 / 64 per call.
DEFAULT_WINDOWS_PER_CALL = 16
EncoderConfig = config_lib.EncoderConfig
FrontendConfig = config_lib.FrontendConfig


# The one pad/crop rule (first num_samples samples, zero-padded at the end).
fit_length = spectrogram.fit_length


def waveform_to_patches(waveform, frontend):
  """The export frontend: waveforms -> identity-order patches.

  fit_length, then patches.frontend (log spectrogram, centred crop when
  frontend.crop_frames is set, patches) without standardisation, exactly as
  the training pipeline computes its features (the encoder standardises).

  Args:
    waveform: float [batch, samples] at 16 kHz, any length (see fit_length).
    frontend: FrontendConfig.

  Returns:
    float32 [batch, num_patches, patch_frames, patch_bins, 1].
  """
  waveform = fit_length(waveform, frontend.num_samples)
  return patches_lib.frontend(waveform, frontend.patching,
                              frontend.num_patches, frontend.grid,
                              crop_frames=frontend.crop_frames,
                              crop_offsets=None,
                              patch_gap=frontend.patch_gap,
                              frequency_scale=frontend.frequency_scale)


class WaveformEncoder(tf.Module):
  """Waveform -> embedding: the frontend followed by a CFN encoder.

  Args:
    encoder: a keras.Model from models.build_encoder (patches -> embedding).
    config: the EncoderConfig the encoder was built with (its frontend is
      the one the encoder was trained with).
    scene_hop_ms: hop between the windows averaged into the scene
      embedding of a clip longer than the training length; a multiple of
      10 ms.
    timestamp_hop_ms: hop between timestamp embeddings; a multiple of 10 ms.
    windows_per_call: windows of a long clip embedded per encoder call.
  """

  def __init__(self, encoder, config, name=None,
               scene_hop_ms=DEFAULT_SCENE_HOP_MS,
               timestamp_hop_ms=DEFAULT_TIMESTAMP_HOP_MS,
               windows_per_call=DEFAULT_WINDOWS_PER_CALL):
    super().__init__(name=name)
    expected = tuple(encoder.input.shape[1:])
    frontend = config.frontend
    got = (frontend.num_patches,) + tuple(config.patch_shape()) + (1,)
    if expected != got:
      raise ValueError(
          f"The encoder takes patches of shape {expected} but the frontend "
          f"(patching={frontend.patching!r}, num_patches="
          f"{frontend.num_patches}, grid={frontend.grid}, crop_frames="
          f"{frontend.crop_frames}) makes {got}; build the encoder with the "
          "same settings.")
    if int(windows_per_call) < 1:
      raise ValueError(f"windows_per_call={windows_per_call!r} must be >= 1.")
    self.config = dataclasses.replace(config)
    self.encoder = encoder
    self.embedding_dim = int(encoder.output.shape[-1])
    self.scene_hop_samples = windows_lib.hop_samples_of(
        scene_hop_ms, "scene_hop_ms")
    self.timestamp_hop_samples = windows_lib.hop_samples_of(
        timestamp_hop_ms, "timestamp_hop_ms")
    self.windows_per_call = int(windows_per_call)

  @classmethod
  def from_config(cls, config, encoder=None, **kwargs):
    """From an EncoderConfig; a fresh random encoder if `encoder` is None."""
    if encoder is None:
      encoder = config.build_keras_encoder()
    return cls(encoder, config, **kwargs)

  def _embed_patches(self, patches):
    return tf.cast(self.encoder(patches, training=False), tf.float32)

  def _embed_windows(self, waveform, left_pad_samples, hop_samples,
                     num_windows):
    """float32 [batch, num_windows, embedding_dim] (audio_perm.windows)."""
    return windows_lib.embed_windows(
        self._embed_patches, waveform, self.config.frontend,
        left_pad_samples, hop_samples, num_windows, self.embedding_dim,
        self.windows_per_call)

  # No input_signature: a waveform whose length is known when traced (4 s
  # notes in evaluation) traces only the one-window path, not the windowed
  # one too; reduce_retracing makes later shapes share one general trace.
  # serve() traces the general [batch, samples] function the SavedModel uses.
  @tf.function(reduce_retracing=True)
  def __call__(self, waveform):
    """float32 [batch, samples] at 16 kHz -> float32 [batch, embedding_dim].

    The scene embedding: one window for clips up to the training length
    (fit_length; the computation of every earlier export), else the mean
    over windows at 0, scene_hop, ... (module docstring).
    """
    waveform = tf.cast(waveform, tf.float32)
    window_samples = self.config.frontend.num_samples
    static_samples = waveform.shape[-1]
    samples = tf.shape(waveform)[1]

    def one_window():
      return self._embed_patches(
          waveform_to_patches(waveform, self.config.frontend))

    def mean_of_windows():
      count = windows_lib.num_scene_windows(samples, window_samples,
                                            self.scene_hop_samples)
      per_window = self._embed_windows(waveform, 0, self.scene_hop_samples,
                                       count)  # [B, K, D]
      return tf.reduce_mean(per_window, axis=1)

    if static_samples is not None and static_samples <= window_samples:
      embedding = one_window()
    else:
      embedding = tf.cond(samples <= window_samples, one_window,
                          mean_of_windows)
    return tf.ensure_shape(embedding, [None, self.embedding_dim])

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32,
                                              name="waveform")])
  def timestamp_embeddings(self, waveform):
    """float32 [batch, samples] -> {"embedding": [batch, frames, dim],
    "timestamps_ms": [batch, frames]}, frames = 1 + samples // hop.

    Frame k is the training-length window centred on sample k * hop,
    zero-padded past the clip's edges; its timestamp is k * hop / 16 ms.
    """
    batch = tf.shape(waveform)[0]
    count = windows_lib.num_timestamps(tf.shape(waveform)[1],
                                       self.timestamp_hop_samples)
    embedding = self._embed_windows(
        waveform, self.config.frontend.num_samples // 2,
        self.timestamp_hop_samples, count)  # [B, K, D]
    timestamps_ms = (tf.cast(tf.range(count), tf.float32) * (
        self.timestamp_hop_samples / windows_lib.SAMPLES_PER_MS))  # [K]
    timestamps_ms = tf.tile(timestamps_ms[tf.newaxis], [batch, 1])  # [B, K]
    return {"embedding": embedding, "timestamps_ms": timestamps_ms}

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32,
                                              name="waveform")])
  def serve(self, waveform):
    """The serving signature: {"embedding": [batch, embedding_dim]}."""
    return {"embedding": self.__call__(waveform)}

  @tf.function(input_signature=[])
  def framing(self):
    """The window layout as int32 scalars (saved with the SavedModel)."""
    return {"sample_rate_hz": tf.constant(spectrogram.SAMPLE_RATE_HZ),
            "window_samples": tf.constant(self.config.frontend.num_samples),
            "scene_hop_samples": tf.constant(self.scene_hop_samples),
            "timestamp_hop_samples": tf.constant(self.timestamp_hop_samples)}

  def signatures(self):
    """The SavedModel's signatures: scene (serving_default) and timestamps."""
    return {SCENE_SIGNATURE: self.serve,
            TIMESTAMP_SIGNATURE: self.timestamp_embeddings}


def random_encoder(config=None, seed=0, **overrides):
  """The untrained baseline: a WaveformEncoder with fresh seeded weights.

  Args:
    config: EncoderConfig (default: EncoderConfig()).
    seed: weight-initialisation seed (keras.utils.set_random_seed is called
      with it, which also seeds Python's and numpy's global generators).
    **overrides: flat EncoderConfig settings to replace, e.g.
      embedding_dim=512, num_patches=4.

  Returns:
    WaveformEncoder.
  """
  config = (config or EncoderConfig()).replace(**overrides)
  keras.utils.set_random_seed(seed)
  return WaveformEncoder.from_config(config)


@keras.saving.register_keras_serializable(package="audio_perm")
class WaveformFrontend(keras.layers.Layer):
  """Keras layer: waveform [batch, samples] -> patches [batch, n, h, w, 1].

  The same computation as `waveform_to_patches` (no trainable weights).
  Keyword arguments other than Layer's are FrontendConfig's fields.
  """

  def __init__(self, **kwargs):
    # Every FrontendConfig field by name (defaults: FrontendConfig's), so a
    # new frontend setting reaches the layer and its get_config unlisted.
    names = {f.name for f in dataclasses.fields(FrontendConfig)}
    settings = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
    kwargs.setdefault("dtype", "float32")
    super().__init__(**kwargs)
    self.frontend = FrontendConfig(**settings)

  def call(self, waveform):
    return waveform_to_patches(waveform, self.frontend)

  def compute_output_shape(self, input_shape):
    return ((input_shape[0], self.frontend.num_patches)
            + tuple(self.frontend.patch_shape()) + (1,))

  def get_config(self):
    config = super().get_config()
    config.update(config_lib.flatten(self.frontend))
    return config


def build_waveform_model(config, encoder=None, name="waveform_encoder"):
  """keras.Model waveform [batch, samples] -> embedding [batch, dim].

  Args:
    config: EncoderConfig.
    encoder: the patches -> embedding model to wrap; None builds a fresh one.
    name: model name.
  """
  if encoder is None:
    encoder = config.build_keras_encoder()
  waveform = keras.Input((None,), name="waveform")
  x = WaveformFrontend(**config_lib.flatten(config.frontend),
                       name="frontend")(waveform)
  return keras.Model(waveform, encoder(x), name=name)


def export_encoder(encoder, export_dir, config, **window_settings):
  """Writes a SavedModel waveform -> {"embedding"} at export_dir.

  Args:
    encoder: patches -> embedding keras.Model (models.build_encoder). Pass a
      model whose variables are not distributed (build and copy the weights
      outside any strategy scope).
    export_dir: output directory (replaced if it exists).
    config: the encoder's EncoderConfig; written to
      export_dir/encoder_config.json.
    **window_settings: WaveformEncoder's scene_hop_ms, timestamp_hop_ms,
      windows_per_call.

  Returns:
    export_dir.
  """
  module = WaveformEncoder(encoder, config, **window_settings)
  tf.io.gfile.makedirs(export_dir)
  tf.saved_model.save(module, export_dir, signatures=module.signatures())
  with tf.io.gfile.GFile(os.path.join(export_dir, CONFIG_FILENAME), "w") as f:
    json.dump(module.config.to_dict(), f, indent=2, sort_keys=True)
  return export_dir


def load_encoder(export_dir):
  """waveform [batch, samples] -> embedding [batch, dim] from a SavedModel."""
  loaded = tf.saved_model.load(export_dir)
  serve = loaded.signatures["serving_default"]

  def embed(waveform):
    return serve(waveform=tf.convert_to_tensor(waveform, tf.float32))[
        "embedding"]

  embed.saved_model = loaded
  return embed


def read_config(export_dir):
  """The EncoderConfig recorded beside a SavedModel."""
  with tf.io.gfile.GFile(os.path.join(export_dir, CONFIG_FILENAME)) as f:
    return EncoderConfig.from_dict(json.load(f))
