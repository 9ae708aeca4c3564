"""Downstream evaluation: frozen encoders x tasks x label regimes x seeds.

  from audio_perm import evaluation
  report = evaluation.evaluate(evaluation.EvalConfig(encoders=("random",)))

Modules, each using only those above it:
  datasets    the TFDS/folder dataset, its checks, split files, labels, reading
              splits (data.waveform_dataset); EvaluationError, TASKS.
  encoders    FrozenEncoder: handcrafted, random, SavedModel encoders;
              make_encoder, default_architecture.
  embedding   compute_embeddings: a split's notes through every encoder in one
              batched pass.
  supervised  fit_supervised: the CFN trained from scratch on a labelled subset
              (the no-pretraining baseline).
  protocol    draw_subsets; embed_and_probe, the labels -> subsets ->
              embeddings -> probes flow (shared with audio_perm.diagnostics);
              evaluate.
  report      markdown_table, write_json, write_report (report.md and plots).

The settings are audio_perm.config's EvalConfig, ProbeConfig and
SupervisedConfig.
"""

from audio_perm import config as _config
from audio_perm.evaluation.datasets import bad_record_message
from audio_perm.evaluation.datasets import check_features
from audio_perm.evaluation.datasets import check_num_labeled
from audio_perm.evaluation.datasets import check_splits
from audio_perm.evaluation.datasets import corrupt_shards_message
from audio_perm.evaluation.datasets import dataset_description
from audio_perm.evaluation.datasets import EvaluationError
from audio_perm.evaluation.datasets import Head
from audio_perm.evaluation.datasets import HOW_TO_PREPARE
from audio_perm.evaluation.datasets import open_dataset
from audio_perm.evaluation.datasets import read_labels
from audio_perm.evaluation.datasets import read_split
from audio_perm.evaluation.datasets import report_skipped
from audio_perm.evaluation.datasets import split_files
from audio_perm.evaluation.datasets import split_size
from audio_perm.evaluation.datasets import Task
from audio_perm.evaluation.datasets import TASKS
from audio_perm.evaluation.embedding import compute_embeddings
from audio_perm.evaluation.encoders import checked_architecture
from audio_perm.evaluation.encoders import default_architecture
from audio_perm.evaluation.encoders import EMBEDDING_KEY
from audio_perm.evaluation.encoders import ENCODER_WORDS
from audio_perm.evaluation.encoders import FrozenEncoder
from audio_perm.evaluation.encoders import handcrafted_encoder
from audio_perm.evaluation.encoders import handcrafted_features
from audio_perm.evaluation.encoders import make_encoder
from audio_perm.evaluation.encoders import random_encoder
from audio_perm.evaluation.encoders import saved_model_encoder
from audio_perm.evaluation.encoders import SERVING_SIGNATURE
from audio_perm.evaluation.protocol import config_to_dict
from audio_perm.evaluation.protocol import draw_subsets
from audio_perm.evaluation.protocol import embed_and_probe
from audio_perm.evaluation.protocol import evaluate
from audio_perm.evaluation.protocol import ProbeRun
from audio_perm.evaluation.protocol import subset_seed
from audio_perm.evaluation.protocol import summarize
from audio_perm.evaluation.report import markdown_table
from audio_perm.evaluation.report import short_name
from audio_perm.evaluation.report import write_json
from audio_perm.evaluation.report import write_report
from audio_perm.evaluation.supervised import fit_supervised
from audio_perm.evaluation.supervised import SupervisedModel

EvalConfig = _config.EvalConfig
SupervisedConfig = _config.SupervisedConfig
