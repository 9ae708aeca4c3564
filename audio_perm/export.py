"""The encoder on waveforms: a tf.Module, a Keras model, and a SavedModel.

Stable names (other modules and eval.py build on these):

  EncoderConfig(patching, num_patches, grid, width, embedding_dim,
                normalization, crop_frames, num_samples)
      Everything that fixes the encoder's architecture and its frontend.
      `EncoderConfig.from_dict(d)` accepts a train.py flags.json dict (unknown
      keys are ignored); `.patch_shape()`; `.build_keras_encoder()` builds the
      patches -> embedding keras.Model with fresh weights.
  WaveformEncoder(encoder, patching="frequency", num_patches=10, grid=None,
                  crop_frames=None, num_samples=64000)
      tf.Module; `__call__(waveform)`: float32 [batch, samples] at 16 kHz ->
      float32 [batch, embedding_dim]; `WaveformEncoder.from_config(config,
      encoder=None)`. This is what the SavedModel holds.
  random_encoder(config=None, seed=0, **overrides) -> WaveformEncoder
      The untrained ("random embedding") baseline: same architecture, fresh
      seeded weights.
  build_waveform_model(config, encoder=None) -> keras.Model
      waveform [batch, samples] -> embedding [batch, embedding_dim] as a Keras
      model (frontend inside a `WaveformFrontend` layer), trainable end to end:
      the "supervised" baseline trains this with a classifier on top.
  export_encoder(encoder, export_dir, patching, num_patches, grid, ...)
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
from typing import Optional, Tuple

import keras
import tensorflow as tf

from audio_perm import models
from audio_perm import patches as patches_lib
from audio_perm import spectrogram

CONFIG_FILENAME = "encoder_config.json"


@dataclasses.dataclass
class EncoderConfig:
  """Architecture and frontend of an encoder (see the module docstring).

  The defaults are THE default architecture: training.TrainConfig (and so
  train.py's flags) and evaluation's random/supervised baselines take theirs
  from here.
  """
  patching: str = "frequency"
  num_patches: int = 10
  grid: Optional[Tuple[int, int]] = None
  width: float = 0.125  # Small enough to train in minutes on a CPU.
  embedding_dim: int = 256
  normalization: str = "batch"
  crop_frames: Optional[int] = None
  num_samples: int = spectrogram.NUM_SAMPLES

  def __post_init__(self):
    if self.grid is not None:
      self.grid = tuple(int(g) for g in self.grid)
    if not isinstance(self.num_samples, int) or self.num_samples <= 0:
      raise ValueError(f"num_samples must be a positive integer, got "
                       f"{self.num_samples!r}.")

  @classmethod
  def from_dict(cls, values):
    """From a dict such as train.py's flags.json (unknown keys ignored)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})

  def to_dict(self):
    values = dataclasses.asdict(self)
    values["grid"] = list(self.grid) if self.grid is not None else None
    return values

  def patch_shape(self):
    """(patch_frames, patch_bins) of the frontend's patches."""
    return patches_lib.frontend_patch_shape(
        self.patching, self.num_patches, self.grid,
        num_samples=self.num_samples, crop_frames=self.crop_frames)

  def build_keras_encoder(self, name="encoder"):
    """A fresh patches -> embedding keras.Model (models.build_encoder)."""
    return models.build_encoder(
        self.num_patches, self.patch_shape(), width=self.width,
        embedding_dim=self.embedding_dim, normalization=self.normalization,
        name=name)


def fit_length(waveform, num_samples=spectrogram.NUM_SAMPLES):
  """Crops or zero-pads waveforms to `num_samples` samples, on graph.

  Args:
    waveform: float [batch, samples], samples possibly unknown statically.
    num_samples: target length.

  Returns:
    float32 [batch, num_samples]: the first num_samples samples, zero-padded
    at the end when the input is shorter.
  """
  waveform = tf.cast(waveform, tf.float32)
  waveform = waveform[:, :num_samples]
  missing = num_samples - tf.shape(waveform)[1]
  waveform = tf.pad(waveform, [[0, 0], [0, missing]])
  return tf.ensure_shape(waveform, [None, num_samples])


def waveform_to_patches(waveform, config):
  """The export frontend: waveforms -> identity-order patches.

  fit_length, then patches.frontend (log spectrogram, centred crop when
  config.crop_frames is set, patches) without standardisation, exactly as the
  training pipeline computes its features (the encoder standardises).

  Args:
    waveform: float [batch, samples] at 16 kHz, any length (see fit_length).
    config: EncoderConfig.

  Returns:
    float32 [batch, num_patches, patch_frames, patch_bins, 1].
  """
  waveform = fit_length(waveform, config.num_samples)
  return patches_lib.frontend(waveform, config.patching, config.num_patches,
                              config.grid, crop_frames=config.crop_frames,
                              crop_offsets=None)


class WaveformEncoder(tf.Module):
  """Waveform -> embedding: the frontend followed by a CFN encoder.

  Args:
    encoder: a keras.Model from models.build_encoder (patches -> embedding).
    patching, num_patches, grid, crop_frames, num_samples: the frontend the
      encoder was trained with (EncoderConfig's fields).
  """

  def __init__(self, encoder, patching="frequency", num_patches=10, grid=None,
               crop_frames=None, num_samples=spectrogram.NUM_SAMPLES,
               name=None):
    super().__init__(name=name)
    embedding_dim = int(encoder.output.shape[-1])
    backbones = [layer for layer in encoder.layers
                 if isinstance(layer, models.PatchBackbone)]
    architecture = {}
    if backbones:
      architecture = dict(width=backbones[0].width,
                          normalization=backbones[0].normalization)
    self.config = EncoderConfig(
        patching=patching, num_patches=num_patches, grid=grid,
        crop_frames=crop_frames, num_samples=num_samples,
        embedding_dim=embedding_dim, **architecture)
    expected = tuple(encoder.input.shape[1:])
    got = (num_patches,) + tuple(self.config.patch_shape()) + (1,)
    if expected != got:
      raise ValueError(
          f"The encoder takes patches of shape {expected} but the frontend "
          f"(patching={patching!r}, num_patches={num_patches}, grid={grid}, "
          f"crop_frames={crop_frames}) makes {got}; build the encoder with "
          f"the same settings.")
    self.encoder = encoder
    self.embedding_dim = embedding_dim

  @classmethod
  def from_config(cls, config, encoder=None):
    """From an EncoderConfig; a fresh random encoder if `encoder` is None."""
    if encoder is None:
      encoder = config.build_keras_encoder()
    module = cls(encoder, config.patching, config.num_patches, config.grid,
                 config.crop_frames, config.num_samples)
    module.config = dataclasses.replace(config)
    return module

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32,
                                              name="waveform")])
  def __call__(self, waveform):
    """float32 [batch, samples] at 16 kHz -> float32 [batch, embedding_dim]."""
    patches = waveform_to_patches(waveform, self.config)
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
    **overrides: EncoderConfig fields to replace, e.g. embedding_dim=512.

  Returns:
    WaveformEncoder.
  """
  config = dataclasses.replace(config or EncoderConfig(), **overrides)
  keras.utils.set_random_seed(seed)
  return WaveformEncoder.from_config(config)


class WaveformFrontend(keras.layers.Layer):
  """Keras layer: waveform [batch, samples] -> patches [batch, n, h, w, 1].

  The same computation as `waveform_to_patches` (no trainable weights).
  """

  def __init__(self, patching="frequency", num_patches=10, grid=None,
               crop_frames=None, num_samples=spectrogram.NUM_SAMPLES,
               **kwargs):
    kwargs.setdefault("dtype", "float32")
    super().__init__(**kwargs)
    self.frontend_config = EncoderConfig(
        patching=patching, num_patches=num_patches, grid=grid,
        crop_frames=crop_frames, num_samples=num_samples)

  def call(self, waveform):
    return waveform_to_patches(waveform, self.frontend_config)

  def compute_output_shape(self, input_shape):
    c = self.frontend_config
    return (input_shape[0], c.num_patches) + tuple(c.patch_shape()) + (1,)

  def get_config(self):
    config = super().get_config()
    c = self.frontend_config
    config.update(patching=c.patching, num_patches=c.num_patches,
                  grid=list(c.grid) if c.grid else None,
                  crop_frames=c.crop_frames, num_samples=c.num_samples)
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
  x = WaveformFrontend(config.patching, config.num_patches, config.grid,
                       config.crop_frames, config.num_samples,
                       name="frontend")(waveform)
  return keras.Model(waveform, encoder(x), name=name)


def export_encoder(encoder, export_dir, patching="frequency", num_patches=10,
                   grid=None, crop_frames=None,
                   num_samples=spectrogram.NUM_SAMPLES, config=None):
  """Writes a SavedModel waveform -> {"embedding"} at export_dir.

  Args:
    encoder: patches -> embedding keras.Model (models.build_encoder). Pass a
      model whose variables are not distributed (build and copy the weights
      outside any strategy scope).
    export_dir: output directory (replaced if it exists).
    patching, num_patches, grid, crop_frames, num_samples: the frontend.
    config: optional EncoderConfig to record (its frontend fields must match);
      written to export_dir/encoder_config.json.

  Returns:
    export_dir.
  """
  module = WaveformEncoder(encoder, patching, num_patches, grid, crop_frames,
                           num_samples)
  if config is not None:
    module.config = dataclasses.replace(config)
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
