r"""Channels-last (NHWC, the models' layout) against channels-first (NCHW).

  python benchmarks/conv_layout.py [--json=PATH] [--batch_size=16] \
      [--repeats=5] [--width=0.125]

For each of the five convolutions of train.py's default backbone, at the
shapes a default training step gives them (batch 16 x 10 frequency bands
of 398 frames x 51 bins), times forward + backward (input and kernel
gradients) of tf.nn.conv2d with data_format NHWC and with NCHW, alternated
`--repeats` times after a warm-up (medians). oneDNN is on (audio_perm is
imported before TensorFlow, as in training). The transposes into and out of
NCHW are left out, which favours NCHW: a model in NCHW would pay them once
at its input.

Writes {"blocks": [{"block", "input_shape", "nhwc_ms", "nchw_ms",
"nchw_over_nhwc"}...], "total_nhwc_ms", "total_nchw_ms",
"nchw_speedup"} to --json (speed-up > 1: NCHW faster) and prints it.
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# audio_perm before TensorFlow: it turns oneDNN on, as in training.
import audio_perm  # noqa: E402,F401  pylint: disable=unused-import
import tensorflow as tf  # noqa: E402

from audio_perm import config  # noqa: E402
from audio_perm import patches as patches_lib  # noqa: E402


def _block_inputs(encoder_config, batch_size):
  """(block name, conv layer, input shape NHWC) of each conv of the backbone."""
  encoder = encoder_config.build_keras_encoder()
  backbone = encoder.get_layer("backbone")
  frontend = encoder_config.frontend
  height, width = patches_lib.frontend_patch_shape(
      frontend.patching, frontend.num_patches, frontend.grid)
  shape = (batch_size * frontend.num_patches, height, width, 1)
  out = []
  for i, block in enumerate(backbone.blocks):
    out.append((f"block{i + 1}", block.conv, shape))
    shape = tuple(block.compute_output_shape(shape))
  return out


def _step(conv, shape, data_format):
  """tf.function: forward + backward of `conv`'s convolution in a layout."""
  kernel = tf.constant(conv.kernel.numpy())
  x = tf.random.stateless_normal(shape, seed=[0, 1])
  if data_format == "NCHW":
    x = tf.transpose(x, [0, 3, 1, 2])
    strides = [1, 1, conv.strides[0], conv.strides[1]]
  else:
    strides = [1, conv.strides[0], conv.strides[1], 1]

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      tape.watch([x, kernel])
      y = tf.nn.conv2d(x, kernel, strides, "SAME", data_format=data_format)
      loss = tf.reduce_sum(tf.square(y))
    return tape.gradient(loss, [x, kernel])

  return step


def _time(step):
  start = time.perf_counter()
  for g in step():
    g.numpy()
  return 1000.0 * (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--json", help="write the figures here")
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--width", type=float, default=None,
                      help="channel multiplier (default: train.py's)")
  args = parser.parse_args()
  run = config.TrainConfig()
  if args.width is not None:
    run = run.replace(width=args.width)
  blocks = []
  for name, conv, shape in _block_inputs(run.encoder, args.batch_size):
    steps = {fmt: _step(conv, shape, fmt) for fmt in ("NHWC", "NCHW")}
    times = {fmt: [] for fmt in steps}
    for fmt, step in steps.items():
      _time(step)  # Traces and warms up.
    for _ in range(args.repeats):
      for fmt, step in steps.items():
        times[fmt].append(_time(step))
    nhwc = statistics.median(times["NHWC"])
    nchw = statistics.median(times["NCHW"])
    blocks.append(dict(block=name, input_shape=list(shape),
                       kernel=list(conv.kernel.shape),
                       strides=list(conv.strides), nhwc_ms=round(nhwc, 2),
                       nchw_ms=round(nchw, 2),
                       nchw_over_nhwc=round(nchw / nhwc, 3)))
  total_nhwc = sum(b["nhwc_ms"] for b in blocks)
  total_nchw = sum(b["nchw_ms"] for b in blocks)
  results = dict(blocks=blocks, total_nhwc_ms=round(total_nhwc, 2),
                 total_nchw_ms=round(total_nchw, 2),
                 nchw_speedup=round(total_nhwc / total_nchw, 3),
                 batch_size=args.batch_size, repeats=args.repeats,
                 tensorflow=tf.__version__,
                 load_average_1min=round(os.getloadavg()[0], 2))
  text = json.dumps(results, indent=2)
  print(text)
  if args.json:
    with open(args.json, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  main()
