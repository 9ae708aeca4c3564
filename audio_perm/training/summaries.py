"""TensorBoard summaries through core TF (tensorboard need not be installed)."""

import tensorflow as tf
from tensorflow.core.framework import summary_pb2


def _plugin_metadata(plugin_name):
  metadata = summary_pb2.SummaryMetadata()
  metadata.plugin_data.plugin_name = plugin_name
  return metadata


def write_scalar(name, value, step):
  """A TensorBoard scalar through core TF (tensorboard need not be installed).

  Writes what tf.summary.scalar writes: a float32 scalar tagged for the
  "scalars" plugin, to the default summary writer.
  """
  return tf.summary.write(name, tf.constant(value, tf.float32), step=step,
                          metadata=_plugin_metadata("scalars"))


def write_images(name, images, step):
  """TensorBoard images ([k, height, width, 1] in [0, 1]) through core TF.

  The tensor is what tf.summary.image writes: [width, height, png...] strings
  tagged for the "images" plugin.
  """
  images = tf.convert_to_tensor(images)
  encoded = tf.map_fn(
      lambda image: tf.io.encode_png(
          tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0),
                  tf.uint8)),
      images, fn_output_signature=tf.string)
  shape = tf.shape(images)
  tensor = tf.concat([tf.strings.as_string([shape[2], shape[1]]), encoded],
                     axis=0)
  return tf.summary.write(name, tensor, step=step,
                          metadata=_plugin_metadata("images"))

