"""Every setting of the project, its default and its validation, once.

Nested dataclasses, one per concern:

  FrontendConfig    waveform -> patches (patching, num_patches, grid, ...)
  EncoderConfig     the CFN encoder: a FrontendConfig plus width,
                    embedding_dim, normalization
  ObjectiveConfig   the pretext loss (objective, regularization, ...)
  OptimizerConfig   optimizer and learning rate
  TrainConfig       a pretraining run: data, encoder, objective, optimizer and
                    the run's rhythm (steps, checkpoints, strategy, seed)
  ProbeConfig       the downstream probe
  SupervisedConfig  the no-pretraining baseline's training budget
  EvalConfig        an evaluation: encoders, data, tasks, regimes, probe,
                    supervised baseline

Each leaf field carries its help text and its flag name in its metadata, so
that train.py, eval.py, the study and the diagnostics define their absl flags
from here (`define_flags`, `from_flags`) and never re-type a default. The
flat view of a config (`flatten` / `unflatten`: flag name -> value) is what
flags.json and encoder_config.json hold. `paper_train_config()` is the paper's
setting; configs/paper.flags is generated from it (`paper_flagfile()`).

Validation raises ValueError naming the bad value (and the flag).
"""

from audio_perm.config.evaluation import ENCODER_WORDS
from audio_perm.config.evaluation import EvalConfig
from audio_perm.config.evaluation import PROBES
from audio_perm.config.evaluation import ProbeConfig
from audio_perm.config.evaluation import SupervisedConfig
from audio_perm.config.evaluation import TASK_NAMES
from audio_perm.config.fields import check_fields
from audio_perm.config.fields import flatten
from audio_perm.config.fields import replace
from audio_perm.config.fields import runtime_names
from audio_perm.config.fields import unflatten
from audio_perm.config.flags import define_flags
from audio_perm.config.flags import flag_overrides
from audio_perm.config.flags import from_flags
from audio_perm.config.model import EncoderConfig
from audio_perm.config.model import FrontendConfig
from audio_perm.config.model import NORMALIZATIONS
from audio_perm.config.model import NUM_BLOCKS
from audio_perm.config.model import POOLINGS
from audio_perm.config.model import STANDARDIZATIONS
from audio_perm.config.model import OBJECTIVES
from audio_perm.config.model import ObjectiveConfig
from audio_perm.config.model import OPTIMIZERS
from audio_perm.config.model import OptimizerConfig
from audio_perm.config.model import RANKING_OBJECTIVES
from audio_perm.config.model import REGULARIZATIONS
from audio_perm.config.model import STRATEGIES
from audio_perm.config.run import AugmentConfig
from audio_perm.config.run import RECIPE_EXTRAS
from audio_perm.config.run import RECIPE_EXTRAS_OFF
from audio_perm.config.run import check_data_source
from audio_perm.config.run import paper_flagfile
from audio_perm.config.run import paper_train_config
from audio_perm.config.run import TrainConfig
