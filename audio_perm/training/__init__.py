"""The training stack on top of the library.

  trainer      Trainer: model, optimizer, checkpoint, the distributed step
  checkpoints  flags.json, checkpoints, resume and model-only restore
  summaries    TensorBoard scalars and images through core TF
  loop         train(): run, resume or export a pretraining run

`TrainConfig` (audio_perm.config) holds every setting of a run.
"""

from audio_perm.config import TrainConfig
from audio_perm.config import check_data_source
from audio_perm.training.checkpoints import FLAGS_FILENAME
from audio_perm.training.checkpoints import RUNTIME_FIELDS
from audio_perm.training.checkpoints import check_model_dir
from audio_perm.training.loop import EXPORT_INFO_FILENAME
from audio_perm.training.loop import load_trained_encoder
from audio_perm.training.loop import make_dataset_fn
from audio_perm.training.loop import train
from audio_perm.training.trainer import OPTIMIZERS
from audio_perm.training.trainer import Trainer
from audio_perm.training.trainer import enable_determinism
from audio_perm.training.trainer import make_optimizer
from audio_perm.training.trainer import mixed_precision_policy
