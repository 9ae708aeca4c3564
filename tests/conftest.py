"""Shared pytest fixtures.

Two logical CPU devices are configured before TensorFlow initialises its
devices so that MirroredStrategy tests can run two replicas on one CPU.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
  tf.config.set_logical_device_configuration(
      _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:  # Devices already initialised by another plugin.
  pass


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
