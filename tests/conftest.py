"""Shared pytest fixtures.

Two logical CPU devices are configured before TensorFlow initialises its
devices so that MirroredStrategy tests can run two replicas on one CPU.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

# Before TensorFlow, as the programs do: audio_perm turns on oneDNN kernels.
import audio_perm  # noqa: E402,F401  pylint: disable=unused-import
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
  tf.config.set_logical_device_configuration(
      _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:  # Devices already initialised by another plugin.
  pass


@pytest.fixture(scope="session")
def two_replicas():
  """One MirroredStrategy over the two logical CPUs for the whole session.

  Strategies created one after the other over the same devices can reuse
  collective instance keys in one process (synchronised BatchNorm then
  all-reduces mismatched tensors), so every test shares this one.
  """
  from audio_perm import distribute  # pylint: disable=g-import-not-at-top
  return distribute.get_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])


@pytest.fixture(autouse=True)
def _op_determinism_reset():
  """Op determinism (--deterministic) is process-wide: no test leaks it."""
  yield
  from tensorflow.python.framework import config as tf_config  # pylint: disable=g-import-not-at-top,g-direct-tensorflow-import
  if tf_config.is_op_determinism_enabled():
    tf_config.disable_op_determinism()


# Notes in the shared tiny dataset: enough for every split to hold several
# programs of several families, small enough to render in a few seconds.
TINY_NUM_NOTES = 120


@pytest.fixture(scope="session")
def rendered_dataset_dir(tmp_path_factory):
  """A tiny NSynth-protocol folder dataset rendered from the default soundfont.

  Returns the directory path (str); loadable with tfds.builder_from_directory,
  splits train/valid/test.
  """
  from data_prep import render
  out = tmp_path_factory.mktemp("tiny_nsynth")
  render.render_dataset(str(out), max_notes=TINY_NUM_NOTES, seed=0)
  return str(out)
