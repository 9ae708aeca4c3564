"""Tests of audio_perm.training.loop: a run on rendered data, crops, export."""

import numpy as np
import pytest
import tensorflow as tf

from audio_perm import training


@pytest.mark.slow
def test_crop_frames_trains_on_random_crops_and_exports_the_centred_one(tiny_config, 
    tmp_path, rendered_dataset_dir):
  from audio_perm import export  # pylint: disable=g-import-not-at-top
  from audio_perm import patches as patches_lib  # pylint: disable=g-import-not-at-top
  from audio_perm import permutations  # pylint: disable=g-import-not-at-top
  config = tiny_config(rendered_dataset_dir, objective="soft_rank",
                        crop_frames=100, model_dir=str(tmp_path / "run"))
  config.validate()
  trainer = training.Trainer(config)
  assert tuple(trainer.encoder.input.shape) == (None, 4, 100, 128, 1)
  dataset_fn = training.make_dataset_fn(config)
  patches, ranks = next(iter(dataset_fn(tf.distribute.InputContext())))
  assert patches.shape == (4, 4, 100, 128, 1)
  # Each training example is SOME 100-frame window of its note's spectrogram;
  # the un-shuffled bands stitched back together must be that window.
  original = permutations.unshuffle_patches(patches[..., 0], ranks)
  crops = patches_lib.assemble_patches(original, "frequency").numpy()
  assert crops.shape == (4, 100, 512)
  from audio_perm import data  # pylint: disable=g-import-not-at-top
  from audio_perm import spectrogram  # pylint: disable=g-import-not-at-top
  full = np.concatenate([  # [notes, 398, 512]
      spectrogram.log_magnitude_spectrogram(batch["audio"])[..., :512]
      for batch in data.waveform_dataset(rendered_dataset_dir, split="train",
                                         batch_size=32)])
  offsets = []
  for crop in crops:
    # A crop's first frame can be near-silent (a decayed note), which many
    # frames match: take every best match of the first frame among the valid
    # offsets, and keep the one whose whole window is the crop.
    gaps = np.abs(full[:, :398 - 100 + 1] - crop[0]).max(axis=-1)
    candidates = np.argwhere(gaps <= gaps.min() + 1e-5)  # [(note, offset)]
    matches = [(n, o) for n, o in candidates
               if np.allclose(full[n, o:o + 100], crop, atol=1e-5)]
    assert matches, f"no window of the data is this crop ({gaps.min()})"
    offsets.append(int(matches[0][1]))
  assert offsets != [(398 - 100) // 2] * 4, offsets  # Random, not centred.

  export_dir = trainer.export(str(tmp_path / "encoder"))
  assert export.read_config(export_dir).frontend.crop_frames == 100
  embed = export.load_encoder(export_dir)
  waveform = tf.random.stateless_normal([2, 64000], [3, 4])
  centred = patches_lib.frontend(waveform, "frequency", 4, crop_frames=100)
  np.testing.assert_allclose(
      embed(waveform), trainer.encoder(centred, training=False),
      rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="crop_frames=500"):
    tiny_config(rendered_dataset_dir, crop_frames=500).validate()
