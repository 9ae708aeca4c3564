"""The encoder on waveforms: a tf.Module, a Keras model, and a SavedModel.

Stable names (other modules and eval.py build on these):

  EncoderConfig (audio_perm.config): everything that fixes the encoder's
      architecture and its frontend; `.build_keras_encoder()` builds the
      patches -> embedding keras.Model with fresh weights.
  WaveformEncoder(encoder, config)
      tf.Module; `__call__(waveform)`: float32 [batch, samples] at 16 kHz ->
      float32 [batch, embedding_dim]. This is what the SavedModel holds.
  random_encoder(config=None, seed=0, **overrides) -> WaveformEncoder
      The untrained ("random embedding") baseline: same architecture, fresh
      seeded weights.
  build_waveform_model(config, encoder=None) -> keras.Model
      waveform [batch, samples] -> embedding [batch, embedding_dim] as a Keras
      model (frontend inside a `WaveformFrontend` layer), trainable end to end:
      the "supervised" baseline trains this with a classifier on top.
  export_encoder(encoder, export_dir, config)
      Writes the SavedModel (and encoder_config.json beside it).
  load_encoder(export_dir) -> callable waveform -> embedding, through the
      SavedModel's serving_default signature.

The SavedModel's `serving_default` signature takes `waveform`: float32
[batch, samples] at 16 kHz (any batch size, any length) and returns
{"embedding": float32 [batch, embedding_dim]}. It needs only TensorFlow to load:
  loaded = tf.saved_model.load(export_dir)
  emb = loaded.signatures["serving_default"](waveform=w)["embedding"]
or, in Keras, keras.layers.TFSMLayer(export_dir,
call_endpoint="serving_default").

Length rule: the encoder was trained on 4 s notes (64,000 samples). A waveform
of another length is first fitted to `num_samples` ON GRAPH: longer ones are
cropped to their FIRST num_samples samples, shorter ones are zero-padded at the
end. The frontend is then audio_perm.patches.frontend with the settings the
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

CONFIG_FILENAME = "encoder_config.json"
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
                              crop_offsets=None)


class WaveformEncoder(tf.Module):
  """Waveform -> embedding: the frontend followed by a CFN encoder.

  Args:
    encoder: a keras.Model from models.build_encoder (patches -> embedding).
    config: the EncoderConfig the encoder was built with (its frontend is
      the one the encoder was trained with).
  """

  def __init__(self, encoder, config, name=None):
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
    self.config = dataclasses.replace(config)
    self.encoder = encoder
    self.embedding_dim = int(encoder.output.shape[-1])

  @classmethod
  def from_config(cls, config, encoder=None):
    """From an EncoderConfig; a fresh random encoder if `encoder` is None."""
    if encoder is None:
      encoder = config.build_keras_encoder()
    return cls(encoder, config)

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32,
                                              name="waveform")])
  def __call__(self, waveform):
    """float32 [batch, samples] at 16 kHz -> float32 [batch, embedding_dim]."""
    patches = waveform_to_patches(waveform, self.config.frontend)
    embedding = self.encoder(patches, training=False)
    return tf.cast(embedding, tf.float32)

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32,
                                              name="waveform")])
  def serve(self, waveform):
    """The serving signature: {"embedding": [batch, embedding_dim]}."""
    return {"embedding": self.__call__(waveform)}


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

  def __init__(self, patching="frequency", num_patches=10, grid=None,
               crop_frames=None, num_samples=spectrogram.NUM_SAMPLES,
               **kwargs):
    kwargs.setdefault("dtype", "float32")
    super().__init__(**kwargs)
    self.frontend = FrontendConfig(
        patching=patching, num_patches=num_patches, grid=grid,
        crop_frames=crop_frames, num_samples=num_samples)

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


def export_encoder(encoder, export_dir, config):
  """Writes a SavedModel waveform -> {"embedding"} at export_dir.

  Args:
    encoder: patches -> embedding keras.Model (models.build_encoder). Pass a
      model whose variables are not distributed (build and copy the weights
      outside any strategy scope).
    export_dir: output directory (replaced if it exists).
    config: the encoder's EncoderConfig; written to
      export_dir/encoder_config.json.

  Returns:
    export_dir.
  """
  module = WaveformEncoder(encoder, config)
  tf.io.gfile.makedirs(export_dir)
  tf.saved_model.save(module, export_dir,
                      signatures={"serving_default": module.serve})
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
