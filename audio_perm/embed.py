r"""Embeddings of your own audio files with an exported encoder.

  python -m audio_perm.embed --encoder=runs/default/encoder \
      --input='clips/*.wav' --output=embeddings.npz [--timestamps] \
      [--batch_size=16] [--skip_invalid] [--noprogress]

Files are read with soundfile (libsndfile: WAV, FLAC, OGG/Vorbis, MP3 and
the other formats it knows), mixed to mono (the mean of the channels) and
resampled to 16 kHz with soxr (its default high quality). Clips are sorted
by length and batched so that padding never changes an embedding: a batch
holds clips with the same number of scene windows (every clip up to 4 s
shares one), padded with zeros to the longest (zeros past a clip's end are
what the encoder pads with anyway), and each clip's timestamp frames are cut
back to its own 1 + samples // hop.

The .npz output, keyed by the file path as matched by --input:
  PATH                          float32 [dim]: the scene embedding
  PATH::timestamp_embeddings    float32 [frames, dim]   (--timestamps)
  PATH::timestamps_ms           float32 [frames]        (--timestamps)
  __files__                     str [n]: the embedded files, in input order
  __skipped__, __skip_reasons__ str [m]: files skipped by --skip_invalid
  __num_skipped__               int: m
"""

import os

if __name__ == "__main__":
  # Before TensorFlow is imported: its C++ start-up lines are noise here.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# pylint: disable=g-import-not-at-top,wrong-import-position
import dataclasses
import glob
import sys

import numpy as np

from audio_perm import cli

SAMPLE_RATE_HZ = 16000
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif",
                    ".au", ".caf", ".w64", ".rf64")
TIMESTAMP_EMBEDDINGS_SUFFIX = "::timestamp_embeddings"
TIMESTAMPS_SUFFIX = "::timestamps_ms"


class AudioError(cli.Error):
  """A file that is not usable audio; the message names it."""


def expand_inputs(patterns):
  """Files named by a comma list of globs, files and folders, in order.

  A folder stands for the audio files under it (by extension, recursively);
  `**` in a glob matches folders recursively. Duplicates are dropped.

  Raises:
    ValueError: if a pattern matches nothing.
  """
  if isinstance(patterns, str):
    patterns = [p for p in patterns.split(",") if p.strip()]
  files = []
  for pattern in patterns:
    pattern = pattern.strip()
    if os.path.isdir(pattern):
      found = sorted(
          os.path.join(root, name)
          for root, _, names in os.walk(pattern) for name in names
          if name.lower().endswith(AUDIO_EXTENSIONS))
    else:
      found = sorted(p for p in glob.glob(pattern, recursive=True)
                     if not os.path.isdir(p))
    if not found:
      raise ValueError(f"--input: {pattern!r} matched no audio file.")
    files.extend(found)
  return list(dict.fromkeys(files))


def read_audio(path, sample_rate_hz=SAMPLE_RATE_HZ):
  """A file as float32 mono [samples] at sample_rate_hz.

  Channels are averaged; other rates are resampled with soxr.resample
  (quality "HQ").

  Raises:
    AudioError: unreadable, empty or non-finite audio, naming the file.
  """
  import soundfile  # Imported here: only this needs libsndfile.
  import soxr
  try:
    audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
  except (RuntimeError, OSError, EOFError, ValueError) as error:
    reason = " ".join(str(error).split()) or type(error).__name__
    raise AudioError(f"{path}: not readable as audio ({reason})") from None
  if audio.shape[0] == 0:
    raise AudioError(f"{path}: has no audio samples (empty file)")
  mono = audio.mean(axis=1, dtype=np.float32)  # [samples]
  if not np.all(np.isfinite(mono)):
    raise AudioError(f"{path}: has non-finite (NaN or inf) samples")
  if rate != sample_rate_hz:
    mono = soxr.resample(mono, rate, sample_rate_hz).astype(np.float32)
  return mono


def estimated_length(path, sample_rate_hz=SAMPLE_RATE_HZ):
  """Samples at sample_rate_hz from the file's header (no decoding).

  Raises:
    AudioError: unreadable or empty, naming the file.
  """
  import soundfile
  try:
    info = soundfile.info(path)
  except (RuntimeError, OSError, EOFError, ValueError) as error:
    reason = " ".join(str(error).split()) or type(error).__name__
    raise AudioError(f"{path}: not readable as audio ({reason})") from None
  if info.frames <= 0:
    raise AudioError(f"{path}: has no audio samples (empty file)")
  return int(round(info.frames * sample_rate_hz / info.samplerate))


@dataclasses.dataclass(frozen=True)
class Framing:
  """The window layout of an exported encoder (export.WaveformEncoder)."""
  window_samples: int
  scene_hop_samples: int
  timestamp_hop_samples: int

  def scene_windows(self, samples):
    extra = max(int(samples) - self.window_samples, 0)
    return 1 + -(-extra // self.scene_hop_samples)

  def timestamps(self, samples):
    return 1 + int(samples) // self.timestamp_hop_samples


class Encoder:
  """An exported encoder's two signatures; ValueError if it is not one."""

  def __init__(self, path):
    import tensorflow as tf
    if not os.path.isdir(path):
      raise ValueError(f"--encoder={path!r} is not a directory; pass an "
                       "exported encoder (train.py's --export_dir).")
    self.saved_model = tf.saved_model.load(path)
    signatures = self.saved_model.signatures
    if "serving_default" not in signatures:
      raise ValueError(f"--encoder={path!r} has no serving_default signature;"
                       " pass an exported encoder (train.py's --export_dir).")
    self.scene = signatures["serving_default"]
    self.timestamps = signatures.get("timestamp_embeddings")
    self.framing = None
    if hasattr(self.saved_model, "framing"):
      values = {k: int(v) for k, v in self.saved_model.framing().items()}
      if values["sample_rate_hz"] != SAMPLE_RATE_HZ:
        raise ValueError(f"--encoder={path!r} takes audio at "
                         f"{values['sample_rate_hz']} Hz, not 16 kHz.")
      self.framing = Framing(values["window_samples"],
                             values["scene_hop_samples"],
                             values["timestamp_hop_samples"])
    self.path = path

  def batch_key(self, samples):
    """Clips with equal keys give the same embeddings padded together."""
    if self.framing is None:  # Not ours: only equal lengths are safe.
      return int(samples)
    return self.framing.scene_windows(samples)


def plan_batches(lengths, key, batch_size, max_batch_samples):
  """Indices of clips in batches: sorted by length, one key per batch.

  Args:
    lengths: samples of each clip.
    key: samples -> batch key (clips of one batch share it).
    batch_size: most clips per batch.
    max_batch_samples: most (clips x longest clip) samples per batch; a
      clip longer than that is a batch of its own.

  Returns:
    list of lists of indices into lengths.
  """
  order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
  batches, current = [], []
  for i in order:
    if current and (key(lengths[i]) != key(lengths[current[0]])
                    or len(current) >= batch_size
                    or (len(current) + 1) * lengths[i] > max_batch_samples):
      batches.append(current)
      current = []
    current.append(i)
  if current:
    batches.append(current)
  return batches


@dataclasses.dataclass
class Embeddings:
  """What embed_files returns (and write_npz writes)."""
  files: list
  scene: dict  # path -> float32 [dim]
  timestamp_embeddings: dict  # path -> float32 [frames, dim]
  timestamps_ms: dict  # path -> float32 [frames]
  skipped: list  # (path, reason)
  seconds_of_audio: float = 0.0


def _call(signature, waveform):
  """A signature on its one input, whatever its name (ours: `waveform`)."""
  inputs = signature.structured_input_signature[1]
  if len(inputs) != 1:
    raise ValueError(f"the encoder's signature takes {sorted(inputs)}; "
                     "expected one float32 waveform [batch, samples].")
  return signature(**{next(iter(inputs)): waveform})


def _embed_batch(encoder, clips, timestamps):
  """Scene (and timestamp) embeddings of clips sharing a batch key."""
  import tensorflow as tf
  longest = max(len(c) for c in clips)
  batch = np.zeros([len(clips), longest], np.float32)
  for row, clip in enumerate(clips):
    batch[row, :len(clip)] = clip
  waveform = tf.constant(batch)
  scene = _call(encoder.scene, waveform)["embedding"].numpy()
  if not timestamps:
    return scene, None, None
  out = _call(encoder.timestamps, waveform)
  frames = [encoder.framing.timestamps(len(c)) if encoder.framing else None
            for c in clips]
  embeddings = [e[:k] for e, k in zip(out["embedding"].numpy(), frames)]
  times = [t[:k] for t, k in zip(out["timestamps_ms"].numpy(), frames)]
  return scene, embeddings, times


def embed_files(encoder_path, files, timestamps=False, batch_size=16,
                skip_invalid=False, progress=True, max_batch_seconds=None):
  """Embeds audio files with an exported encoder.

  Args:
    encoder_path: SavedModel directory (export.export_encoder).
    files: audio file paths.
    timestamps: also compute timestamp embeddings.
    batch_size: most clips per encoder call.
    skip_invalid: skip and count unreadable or empty files instead of
      raising.
    progress: show a progress bar (tqdm, on stderr).
    max_batch_seconds: most seconds of (padded) audio per batch; default
      batch_size x 16 s.

  Returns:
    Embeddings.

  Raises:
    AudioError: a bad file when not skip_invalid.
    ValueError: bad settings or encoder.
  """
  from tqdm import tqdm
  if int(batch_size) < 1:
    raise ValueError(f"--batch_size={batch_size} must be >= 1.")
  encoder = Encoder(encoder_path)
  if timestamps and encoder.timestamps is None:
    raise ValueError(f"--encoder={encoder_path!r} has no timestamp_embeddings "
                     "signature; export it again with this version.")
  max_batch_samples = int((max_batch_seconds or 16.0 * batch_size)
                          * SAMPLE_RATE_HZ)
  result = Embeddings([], {}, {}, {}, [])

  def bad(path, error):
    if not skip_invalid:
      raise error
    result.skipped.append((path, str(error)))

  good, lengths = [], []
  for path in files:
    try:
      lengths.append(estimated_length(path))
      good.append(path)
    except AudioError as error:
      bad(path, error)
  batches = plan_batches(lengths, encoder.batch_key, int(batch_size),
                         max_batch_samples)
  with tqdm(total=len(good), unit="file", disable=not progress,
            file=sys.stderr, desc="embedding") as bar:
    for batch in batches:
      clips = {}
      for i in batch:
        try:
          clips[good[i]] = read_audio(good[i])
        except AudioError as error:
          bad(good[i], error)
      # Decoded lengths can differ from the header's by a few samples:
      # regroup by the exact key.
      groups = {}
      for path, clip in clips.items():
        groups.setdefault(encoder.batch_key(len(clip)), []).append(path)
      for paths in groups.values():
        scene, embeddings, times = _embed_batch(
            encoder, [clips[p] for p in paths], timestamps)
        for row, path in enumerate(paths):
          result.scene[path] = scene[row]
          result.seconds_of_audio += len(clips[path]) / SAMPLE_RATE_HZ
          if timestamps:
            result.timestamp_embeddings[path] = embeddings[row]
            result.timestamps_ms[path] = times[row]
      bar.update(len(batch))
  result.files = [p for p in files if p in result.scene]
  return result


def write_npz(result, output):
  """Writes Embeddings as the module docstring's .npz (atomically)."""
  arrays = {}
  for path in result.files:
    arrays[path] = result.scene[path]
    if path in result.timestamp_embeddings:
      arrays[path + TIMESTAMP_EMBEDDINGS_SUFFIX] = (
          result.timestamp_embeddings[path])
      arrays[path + TIMESTAMPS_SUFFIX] = result.timestamps_ms[path]
  arrays["__files__"] = np.array(result.files, dtype=str)
  arrays["__skipped__"] = np.array([p for p, _ in result.skipped], dtype=str)
  arrays["__skip_reasons__"] = np.array([r for _, r in result.skipped],
                                        dtype=str)
  arrays["__num_skipped__"] = np.array(len(result.skipped))
  folder = os.path.dirname(os.path.abspath(output))
  os.makedirs(folder, exist_ok=True)
  partial = output + ".partial"
  with open(partial, "wb") as f:
    np.savez(f, **arrays)
  os.replace(partial, output)


def _define_flags():
  from absl import flags
  flags.DEFINE_string("encoder", None, "Exported encoder (SavedModel folder).")
  flags.DEFINE_string("input", None, "Comma list of audio files, globs (`**` "
                      "recurses) and folders (their audio files, recursively).")
  flags.DEFINE_string("output", None, "The .npz to write.")
  flags.DEFINE_boolean("timestamps", False,
                       "Also write timestamp embeddings and timestamps.")
  flags.DEFINE_integer("batch_size", 16, "Clips per encoder call.")
  flags.DEFINE_boolean("skip_invalid", False, "Skip and count unreadable or "
                       "empty files instead of stopping.")
  flags.DEFINE_boolean("progress", True, "Show a progress bar.")


def main(argv):
  del argv  # Stray arguments are refused by cli.run.
  from absl import flags
  values = flags.FLAGS
  for name in ("encoder", "input", "output"):
    if not values[name].value:
      raise ValueError(f"--{name} is required.")
  files = expand_inputs(values.input)
  result = embed_files(values.encoder, files, timestamps=values.timestamps,
                       batch_size=values.batch_size,
                       skip_invalid=values.skip_invalid,
                       progress=values.progress)
  if not result.files:
    raise cli.Error(f"none of the {len(files)} input file(s) could be read "
                    f"(first: {result.skipped[0][1]}); nothing written.")
  write_npz(result, values.output)
  print(f"embedded {len(result.files)} file(s), "
        f"{result.seconds_of_audio:.1f} s of audio, into {values.output}"
        + (f"; skipped {len(result.skipped)} invalid file(s)"
           if result.skipped else ""), flush=True)
  for path, reason in result.skipped[:10]:
    print(f"  skipped: {reason}", flush=True)


def run(argv=None):
  """Entry point: python -m audio_perm.embed."""
  _define_flags()
  cli.run(main, "audio_perm.embed", argv)


if __name__ == "__main__":
  run()
