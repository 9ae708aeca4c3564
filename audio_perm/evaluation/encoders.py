"""Frozen encoders: waveforms [batch, samples] -> embeddings [batch, dim].

An --encoder entry (`make_encoder`) is the path of a SavedModel exported by
train.py (its `serving_default` signature: float32 waveforms [batch, samples]
-> {"embedding": [batch, dim]}), `random` (the CFN untrained, built from
`config.EncoderConfig` with `encoder_seed`: the paper's Random Embedding) or
`handcrafted` (mean and standard deviation over time of the log-magnitude
spectrogram, per bin: 2 x 513 dims). The `supervised` baseline is not frozen:
see audio_perm.evaluation.supervised. `default_architecture` says which CFN
the random and supervised baselines are built with.
"""

import json
import os

import tensorflow as tf

from audio_perm import config as config_lib
from audio_perm import export
from audio_perm import spectrogram as spectrogram_lib
from audio_perm.evaluation.datasets import EvaluationError

ENCODER_WORDS = config_lib.ENCODER_WORDS
SERVING_SIGNATURE = "serving_default"
EMBEDDING_KEY = "embedding"


class FrozenEncoder:
  """A named waveform -> embedding function.

  Attributes:
    name: the --encoder entry it came from.
    embed: callable float32 [batch, samples] -> float32 [batch, dim], on graph.
    description: JSON-ready facts about it (kind, dim, path, ...).
  """

  def __init__(self, name, embed, description):
    self.name = name
    self.embed = embed
    self.description = description

  def __call__(self, waveforms):
    return self.embed(waveforms)


def handcrafted_features(waveforms):
  """Mean and standard deviation over time of the log spectrogram, per bin.

  Args:
    waveforms: float32 [batch, samples] at 16 kHz.

  Returns:
    float32 [batch, 2 * bins] (2 * 513 = 1026 with the default STFT): the
    per-bin means followed by the per-bin standard deviations.
  """
  spec = spectrogram_lib.log_magnitude_spectrogram(waveforms)  # [B, T, F]
  mean, variance = tf.nn.moments(spec, axes=[1])  # [B, F] each
  return tf.concat([mean, tf.sqrt(variance)], axis=-1)  # [B, 2F]


def handcrafted_encoder(num_samples=spectrogram_lib.NUM_SAMPLES):
  """The `handcrafted` FrozenEncoder on notes of num_samples samples."""
  embed = tf.function(
      handcrafted_features,
      input_signature=[tf.TensorSpec([None, num_samples], tf.float32)])
  dim = 2 * spectrogram_lib.num_bins()
  return FrozenEncoder("handcrafted", embed,
                       {"kind": "handcrafted", "embedding_dim": dim})


def default_architecture(encoder_specs=()):
  """The CFN the `random` and `supervised` baselines are built with.

  The encoder_config.json written by export beside the first SavedModel in
  `encoder_specs` (so the baselines share the pretrained encoder's
  architecture and frontend), else `export.EncoderConfig()`.
  """
  for spec in encoder_specs:
    if spec in ENCODER_WORDS:
      continue
    path = os.path.join(spec, export.CONFIG_FILENAME)
    if os.path.exists(path):
      try:
        return export.read_config(spec)
      except (ValueError, TypeError, json.JSONDecodeError) as error:
        raise EvaluationError(
            f"{path} could not be read as an encoder config: {error}") from None
  return export.EncoderConfig()


def checked_architecture(architecture, num_samples):
  """`architecture` for notes of num_samples samples, validated.

  Raises:
    EvaluationError: naming the architecture and what is wrong with it.
  """
  architecture = architecture.replace(num_samples=num_samples)
  try:
    architecture.validate()
  except ValueError as error:
    raise EvaluationError(
        f"CFN architecture {architecture.to_dict()}: {error}") from None
  return architecture


def random_encoder(architecture, num_samples=spectrogram_lib.NUM_SAMPLES,
                   seed=0):
  """The CFN with random (untrained) weights: the paper's Random Embedding.

  Args:
    architecture: export.EncoderConfig.
    num_samples: samples per note of the dataset.
    seed: initialisation seed (also seeds Python's and numpy's generators,
      through keras.utils.set_random_seed).
  """
  architecture = checked_architecture(architecture, num_samples)
  module = export.random_encoder(architecture, seed=int(seed))
  description = {"kind": "random", "seed": int(seed),
                 "embedding_dim": int(module.embedding_dim),
                 "architecture": architecture.to_dict()}
  return FrozenEncoder("random", module, description)


def saved_model_encoder(path):
  """Loads an exported encoder; EvaluationError if it is not one.

  The SavedModel must have a `serving_default` signature taking one float32
  tensor [batch, samples] and returning {"embedding": [batch, dim]}.
  """
  if not os.path.isdir(path):
    raise EvaluationError(
        f"--encoder={path!r} is neither a directory nor one of "
        f"{', '.join(ENCODER_WORDS)}; pass the --export_dir of a train.py run "
        "(default MODEL_DIR/encoder).")
  if not (os.path.exists(os.path.join(path, "saved_model.pb")) or
          os.path.exists(os.path.join(path, "saved_model.pbtxt"))):
    raise EvaluationError(
        f"--encoder={path!r} is not a SavedModel (no saved_model.pb); pass the "
        "--export_dir of a train.py run (default MODEL_DIR/encoder).")
  try:
    loaded = tf.saved_model.load(path)
  except Exception as error:  # pylint: disable=broad-except
    raise EvaluationError(
        f"--encoder={path!r} could not be loaded as a SavedModel "
        f"({type(error).__name__}: {str(error).splitlines()[0]}).") from None
  signatures = getattr(loaded, "signatures", {})
  if SERVING_SIGNATURE not in signatures:
    raise EvaluationError(
        f"--encoder={path!r} has no {SERVING_SIGNATURE!r} signature (it has: "
        f"{', '.join(signatures.keys()) or 'none'}); export it with train.py "
        "--export_only.")
  signature = signatures[SERVING_SIGNATURE]
  _, input_specs = signature.structured_input_signature
  outputs = signature.structured_outputs
  problem = None
  if len(input_specs) != 1:
    problem = f"it takes {len(input_specs)} inputs"
  else:
    (input_name, spec), = input_specs.items()
    if spec.dtype != tf.float32 or spec.shape.rank != 2:
      problem = f"its input {input_name!r} is {spec.dtype.name} {spec.shape}"
  if problem is None and (not isinstance(outputs, dict) or
                          EMBEDDING_KEY not in outputs):
    listed = sorted(outputs) if isinstance(outputs, dict) else outputs
    problem = f"its outputs are {listed}"
  if problem is None and outputs[EMBEDDING_KEY].shape.rank != 2:
    problem = f"its embedding has shape {outputs[EMBEDDING_KEY].shape}"
  if problem is not None:
    raise EvaluationError(
        f"--encoder={path!r}: signature {SERVING_SIGNATURE!r} is not the "
        "encoder signature (float32 waveforms [batch, samples] -> "
        f"{{'embedding': [batch, dim]}}): {problem}.")

  def embed(waveforms):
    return signature(**{input_name: waveforms})[EMBEDDING_KEY]

  embed.loaded = loaded  # Keeps the variables alive.
  description = {"kind": "saved_model", "path": os.path.abspath(path),
                 "input": input_name,
                 "embedding_dim": outputs[EMBEDDING_KEY].shape[-1]}
  return FrozenEncoder(path, embed, description)


def make_encoder(spec, architecture=None,
                 num_samples=spectrogram_lib.NUM_SAMPLES, encoder_seed=0):
  """A FrozenEncoder from an --encoder entry (not for `supervised`).

  Args:
    spec: "handcrafted", "random" or a SavedModel path.
    architecture: export.EncoderConfig for "random" (None: the default).
    num_samples: samples per note of the dataset.
    encoder_seed: initialisation seed for "random".
  """
  if spec == "handcrafted":
    return handcrafted_encoder(num_samples)
  if spec == "random":
    return random_encoder(architecture or export.EncoderConfig(), num_samples,
                          encoder_seed)
  if spec == "supervised":
    raise ValueError("`supervised` is trained per subset; see fit_supervised.")
  return saved_model_encoder(spec)
