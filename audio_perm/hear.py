"""The HEAR 2021 common API over an exported encoder.

  from audio_perm import hear
  model = hear.load_model("runs/default/encoder")   # a SavedModel directory
  scene = hear.get_scene_embeddings(audio, model)   # [n_sounds, dim]
  emb, ts = hear.get_timestamp_embeddings(audio, model)

`audio` is a float32 tf.Tensor [n_sounds, n_samples] of mono audio at 16 kHz
in [-1, 1] (any length). Scene embeddings come from the SavedModel's
`serving_default` signature (one 4 s window for clips up to 4 s, else the
mean over 4 s windows at a 2 s hop), timestamp embeddings from its
`timestamp_embeddings` signature: one every timestamp hop (50 ms by default,
chosen at export), each the embedding of the 4 s window centred on its
timestamp, with timestamps in milliseconds from 0 to the clip's end. See
audio_perm.export for the layout.

Validate with the HEAR validator (it needs PyTorch: `pip install
"audio_perm[hear]"`):
  hear-validator audio_perm.hear --model runs/default/encoder

Only TensorFlow is used here: the SavedModel holds the frontend and encoder.
"""

import tensorflow as tf

SAMPLE_RATE_HZ = 16000
SCENE_SIGNATURE = "serving_default"
TIMESTAMP_SIGNATURE = "timestamp_embeddings"


class HearModel(tf.Module):
  """An exported encoder with the attributes the HEAR API asks for.

  Attributes:
    sample_rate: 16000 (the encoder's input rate; HEAR resamples to it).
    scene_embedding_size: int, dimension of get_scene_embeddings.
    timestamp_embedding_size: int, dimension of get_timestamp_embeddings.
    saved_model: the loaded SavedModel.
  """

  def __init__(self, saved_model, path=None, name=None):
    super().__init__(name=name)
    signatures = getattr(saved_model, "signatures", {})
    missing = [s for s in (SCENE_SIGNATURE, TIMESTAMP_SIGNATURE)
               if s not in signatures]
    if missing:
      raise ValueError(
          f"The SavedModel at {path!r} has no {' or '.join(missing)} "
          f"signature (it has: {', '.join(signatures.keys()) or 'none'}); "
          "export it again with this version of audio_perm (train.py "
          "--export_only).")
    self.saved_model = saved_model
    self.path = path
    self.sample_rate = SAMPLE_RATE_HZ
    self._scene = signatures[SCENE_SIGNATURE]
    self._timestamps = signatures[TIMESTAMP_SIGNATURE]
    self.scene_embedding_size = _embedding_size(self._scene, 2, path)
    self.timestamp_embedding_size = _embedding_size(self._timestamps, 3,
                                                    path)


def _embedding_size(signature, rank, path):
  shape = signature.structured_outputs["embedding"].shape
  if shape.rank != rank or shape[-1] is None:
    raise ValueError(f"The SavedModel at {path!r}: its embedding has shape "
                     f"{shape}, expected rank {rank} with a known size.")
  return int(shape[-1])


def load_model(model_file_path=""):
  """Loads an exported encoder (a SavedModel directory) as a HearModel.

  Args:
    model_file_path: the SavedModel directory (train.py's --export_dir).

  Raises:
    ValueError: no path, or a SavedModel without the two signatures.
  """
  if not model_file_path:
    raise ValueError(
        "audio_perm.hear.load_model needs the path of an exported encoder "
        "(a SavedModel directory, e.g. runs/default/encoder); pass it as "
        "`hear-validator audio_perm.hear --model PATH`.")
  return HearModel(tf.saved_model.load(model_file_path),
                   path=model_file_path)


def _as_audio(audio):
  audio = tf.convert_to_tensor(audio)
  if audio.dtype != tf.float32:
    audio = tf.cast(audio, tf.float32)
  if audio.shape.rank != 2:
    raise ValueError(f"audio must be [n_sounds, n_samples], got shape "
                     f"{audio.shape}.")
  return audio


def get_scene_embeddings(audio, model):
  """One embedding per sound.

  Args:
    audio: float32 [n_sounds, n_samples] at model.sample_rate, in [-1, 1].
    model: a HearModel from load_model.

  Returns:
    float32 tf.Tensor [n_sounds, model.scene_embedding_size].
  """
  return model._scene(waveform=_as_audio(audio))["embedding"]  # pylint: disable=protected-access


def get_timestamp_embeddings(audio, model):
  """Embeddings at regular intervals, centred on their timestamps.

  Args:
    audio: float32 [n_sounds, n_samples] at model.sample_rate, in [-1, 1].
    model: a HearModel from load_model.

  Returns:
    (embeddings float32 [n_sounds, n_timestamps,
    model.timestamp_embedding_size], timestamps float32 [n_sounds,
    n_timestamps] in milliseconds): n_timestamps = 1 + n_samples // hop.
  """
  out = model._timestamps(waveform=_as_audio(audio))  # pylint: disable=protected-access
  return out["embedding"], out["timestamps_ms"]
