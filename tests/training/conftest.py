"""Fixtures of the training tests: tiny configs and a fixed-batch trainer."""

import numpy as np
import pytest
import tensorflow as tf

from audio_perm import config as config_lib
from audio_perm import training


# The paper's frequency bands without the default recipe's extras (jitter,
# init_decay, VICReg): the training tests' plain base, which a test that
# exercises an extra turns on itself.
PLAIN = dict(patching="frequency", **config_lib.RECIPE_EXTRAS_OFF)


def tiny_config(data_dir, **kwargs):
  """A TrainConfig small enough to train in seconds on 2 cores."""
  values = dict(data_dir=data_dir, num_patches=4, batch_size=4,
                width=1 / 16, embedding_dim=8, learning_rate=3e-3,
                num_permutations=12, perturbation_samples=20, verbose=False,
                **PLAIN)
  values.update(kwargs)
  return training.TrainConfig().replace(**values)


def fixed_batch_trainer(data_dir, **kwargs):
  """(Trainer, iterator) repeating one fixed random batch."""
  config = tiny_config(data_dir, **dict(dict(objective="soft_rank", seed=1),
                                        **kwargs))
  trainer = training.Trainer(config)
  rng = np.random.default_rng(0)
  patches = rng.normal(size=(4, 4, 398, 128, 1)).astype(np.float32)
  target = np.stack([rng.permutation(4) for _ in range(4)]).astype(np.int32)
  iterator = trainer.distributed_iterator(
      lambda ctx: tf.data.Dataset.from_tensors((patches, target)).repeat())
  return trainer, iterator


@pytest.fixture(name="tiny_config")
def tiny_config_fixture():
  return tiny_config


@pytest.fixture(name="fixed_batch_trainer")
def fixed_batch_trainer_fixture():
  return fixed_batch_trainer
