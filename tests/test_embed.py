"""Tests for audio_perm.embed: audio files -> embeddings with an export."""

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import soxr
import tensorflow as tf

from audio_perm import embed
from audio_perm import export

TINY = dict(width=1 / 32, embedding_dim=8)
# name: (sample rate, channels, seconds, soundfile format, subtype)
FILES = {
    "mono16k.wav": (16000, 1, 3.0, "WAV", "PCM_16"),
    "also4s.wav": (16000, 1, 4.0, "WAV", "FLOAT"),
    "stereo44k.wav": (44100, 2, 5.0, "WAV", "PCM_16"),
    "stereo48k.flac": (48000, 2, 2.5, "FLAC", "PCM_24"),
    "mono8k.ogg": (8000, 1, 4.5, "OGG", "VORBIS"),
    "stereo44k.mp3": (44100, 2, 3.0, "MP3", "MPEG_LAYER_III"),
}


def _signal(rate, channels, seconds, seed):
  rng = np.random.default_rng(seed)
  t = np.arange(int(rate * seconds)) / rate
  tones = [0.4 * np.sin(2 * np.pi * rng.uniform(100, 3000) * t) * np.exp(-t)
           for _ in range(channels)]
  return (np.stack(tones, axis=1)
          + 0.02 * rng.normal(size=(len(t), channels))).astype(np.float32)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  """An exported tiny encoder (250 ms timestamp hop) and audio files."""
  root = tmp_path_factory.mktemp("embed")
  module = export.random_encoder(seed=3, **TINY)
  export.export_encoder(module.encoder, str(root / "enc"), module.config,
                        timestamp_hop_ms=250)
  clips = root / "clips"
  clips.mkdir()
  for seed, (name, (rate, channels, seconds, fmt, subtype)) in enumerate(
      FILES.items()):
    if fmt not in soundfile.available_formats():
      continue  # An older libsndfile without MP3.
    soundfile.write(str(clips / name), _signal(rate, channels, seconds, seed),
                    rate, format=fmt, subtype=subtype)
  return root


_LOADED = {}


def _expected(encoder_dir, path):
  """The SavedModel's own signatures on the file's mono 16 kHz waveform."""
  audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
  mono = audio.mean(axis=1)
  if rate != 16000:
    mono = soxr.resample(mono, rate, 16000)
  if encoder_dir not in _LOADED:
    _LOADED[encoder_dir] = tf.saved_model.load(encoder_dir)
  loaded = _LOADED[encoder_dir]
  w = tf.constant(mono[np.newaxis].astype(np.float32))
  out = loaded.signatures["timestamp_embeddings"](waveform=w)
  return (loaded.signatures["serving_default"](waveform=w)["embedding"]
          .numpy()[0], out["embedding"].numpy()[0],
          out["timestamps_ms"].numpy()[0])


@pytest.mark.parametrize("name", ["stereo44k.wav", "stereo48k.flac",
                                  "mono8k.ogg"])
def test_read_audio_mixes_to_mono_and_resamples_to_16k(folder, name):
  path = str(folder / "clips" / name)
  audio, rate = soundfile.read(path, dtype="float64", always_2d=True)
  got = embed.read_audio(path)
  assert got.dtype == np.float32 and got.ndim == 1
  assert abs(len(got) - len(audio) * 16000 / rate) <= 1
  # Against an independent resampler (scipy's polyphase), away from edges.
  from scipy import signal  # pylint: disable=g-import-not-at-top
  from fractions import Fraction  # pylint: disable=g-import-not-at-top
  ratio = Fraction(16000, rate)
  want = signal.resample_poly(audio.mean(axis=1), ratio.numerator,
                              ratio.denominator)
  n = min(len(got), len(want))
  # The two filters differ near the lower rate's Nyquist frequency (4 kHz
  # for 8 kHz files): compare below 3 kHz.
  lowpass = signal.butter(8, 3000, fs=16000, output="sos")
  got, want = (signal.sosfiltfilt(lowpass, x[:n]) for x in (got, want))
  inner = slice(200, n - 200)
  error = np.sqrt(np.mean((got[inner] - want[inner]) ** 2))
  assert error < 0.01 * np.sqrt(np.mean(want[inner] ** 2))


def test_embeddings_equal_the_saved_model_on_each_files_waveform(folder):
  files = embed.expand_inputs(str(folder / "clips"))
  assert len(files) == sum(
      fmt in soundfile.available_formats() for _, _, _, fmt, _ in
      FILES.values())
  result = embed.embed_files(str(folder / "enc"), files, timestamps=True,
                             batch_size=4, progress=False)
  assert result.files == files and not result.skipped
  for path in files:
    scene, stamps, times = _expected(str(folder / "enc"), path)
    # Batched with other clips (zero-padded to the longest): same values.
    np.testing.assert_allclose(result.scene[path], scene, rtol=1e-4,
                               atol=1e-5, err_msg=path)
    np.testing.assert_allclose(result.timestamp_embeddings[path], stamps,
                               rtol=1e-4, atol=1e-5, err_msg=path)
    np.testing.assert_array_equal(result.timestamps_ms[path], times)


def test_plan_batches_sorts_by_length_and_keeps_one_key_per_batch():
  framing = embed.Framing(64000, 32000, 800)
  lengths = [100000, 1000, 64000, 70000, 30000, 200000, 96000]
  batches = embed.plan_batches(lengths, framing.scene_windows, 2,
                               max_batch_samples=10 ** 9)
  assert batches == [[1, 4], [2], [3, 6], [0], [5]]
  assert embed.plan_batches(lengths, framing.scene_windows, 8,
                            max_batch_samples=150000) == [
                                [1, 4], [2], [3], [6], [0], [5]]


def test_an_unreadable_or_empty_file_is_named_or_skipped(folder, tmp_path):
  good = str(folder / "clips" / "mono16k.wav")
  empty = tmp_path / "empty.wav"
  soundfile.write(str(empty), np.zeros([0, 1], np.float32), 16000)
  text = tmp_path / "notes.wav"
  text.write_text("not audio")
  for bad, says in ((str(empty), "has no audio samples"),
                    (str(text), "not readable as audio")):
    with pytest.raises(embed.AudioError, match=f"^{bad}: {says}"):
      embed.embed_files(str(folder / "enc"), [good, bad], progress=False)
  result = embed.embed_files(str(folder / "enc"), [str(text), good,
                                                   str(empty)],
                             skip_invalid=True, progress=False)
  assert result.files == [good]
  assert [p for p, _ in result.skipped] == [str(text), str(empty)]


def test_expand_inputs(folder, tmp_path):
  clips = folder / "clips"
  wavs = embed.expand_inputs(str(clips / "*.wav"))
  assert wavs == sorted(str(p) for p in clips.glob("*.wav"))
  both = embed.expand_inputs(f"{clips}/*.flac,{clips}/mono16k.wav,"
                             f"{clips}/*.flac")
  assert both == [str(clips / "stereo48k.flac"), str(clips / "mono16k.wav")]
  with pytest.raises(ValueError, match="matched no audio file"):
    embed.expand_inputs(str(tmp_path / "*.wav"))


def _run(args, cwd):
  return subprocess.run(
      [sys.executable, "-m", "audio_perm.embed"] + args, capture_output=True,
      text=True, timeout=300, cwd=cwd,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.path.dirname(os.path.dirname(
                   os.path.abspath(embed.__file__)))))


@pytest.mark.slow
def test_command_line_writes_the_npz_and_reports_bad_files(folder, tmp_path):
  clips = folder / "clips"
  out = tmp_path / "out" / "embeddings.npz"
  proc = _run([f"--encoder={folder / 'enc'}", f"--input={clips}/*.wav",
               f"--output={out}", "--timestamps", "--noprogress"],
              str(tmp_path))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "embedded 3 file(s)" in proc.stdout
  assert "embedding" not in proc.stderr  # --noprogress: no bar.
  data = np.load(out)
  wavs = sorted(str(p) for p in clips.glob("*.wav"))
  assert list(data["__files__"]) == wavs
  assert int(data["__num_skipped__"]) == 0
  for path in wavs:
    scene, stamps, times = _expected(str(folder / "enc"), path)
    np.testing.assert_allclose(data[path], scene, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(data[path + "::timestamp_embeddings"], stamps,
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(data[path + "::timestamps_ms"], times)

  bad = tmp_path / "broken.wav"
  bad.write_bytes(b"RIFF\x00\x00")
  proc = _run([f"--encoder={folder / 'enc'}", f"--input={bad},{clips}/*.ogg",
               f"--output={tmp_path / 'x.npz'}", "--noprogress"],
              str(tmp_path))
  assert proc.returncode == 2
  assert "Traceback" not in proc.stderr
  # One line (TensorFlow's C++ start-up lines may come before it).
  assert proc.stderr.strip().splitlines()[-1].startswith(
      f"audio_perm.embed: error: {bad}: not readable"), proc.stderr
  assert not (tmp_path / "x.npz").exists()

  proc = _run([f"--encoder={folder / 'enc'}", f"--input={bad},{clips}/*.ogg",
               f"--output={tmp_path / 'x.npz'}", "--skip_invalid"],
              str(tmp_path))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "skipped 1 invalid file(s)" in proc.stdout
  data = np.load(tmp_path / "x.npz")
  assert int(data["__num_skipped__"]) == 1
  assert list(data["__skipped__"]) == [str(bad)]
  assert list(data["__files__"]) == [str(clips / "mono8k.ogg")]
  assert "::timestamps_ms" not in " ".join(data.files)
