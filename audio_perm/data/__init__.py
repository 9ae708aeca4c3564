"""NSynth records -> tf.data pipelines for pretraining and evaluation.

Inputs (exactly one of): `data_dir`, a TFDS folder dataset with the nsynth
features as data_prep writes it, or `file_pattern`, globs of TFRecord files
(Magenta's released NSynth files or a folder dataset's shards).

Modules, each using only those above it:
  files      the TFRecord files of a folder dataset split or of globs
             (`list_files`); `is_folder_dataset`, `check_folder_dataset`.
  records    schema detection, per-record parsing (pad/crop, finiteness),
             `inspect_records` and its `RecordReport`.
  checks     corrupt files and bad records: `find_corrupt_files`,
             `bad_record_message` (file and record index of an error),
             `report_skipped` (what skip_corrupt loses), the check_files=
             scan and `corrupt_files_message`, the programs' one-line error.
  pipelines  `pretext_dataset` (shuffled patches and targets) and
             `waveform_dataset` (waveforms and labels): sharding, seeds,
             options.
"""

from audio_perm.data.checks import bad_record_message
from audio_perm.data.checks import corrupt_files_message
from audio_perm.data.checks import find_bad_record
from audio_perm.data.checks import find_corrupt_files
from audio_perm.data.checks import report_skipped
from audio_perm.data.checks import scan_files
from audio_perm.data.files import check_folder_dataset
from audio_perm.data.files import DATASET_INFO_FILENAME
from audio_perm.data.files import is_folder_dataset
from audio_perm.data.files import list_files
from audio_perm.data.files import shard_lengths
from audio_perm.data.pipelines import pretext_dataset
from audio_perm.data.pipelines import TARGETS
from audio_perm.data.pipelines import waveform_dataset
from audio_perm.data.records import detect_schema
from audio_perm.data.records import inspect_records
from audio_perm.data.records import LABEL_KEYS
from audio_perm.data.records import LABELS
from audio_perm.data.records import NUM_SAMPLES
from audio_perm.data.records import RecordReport
