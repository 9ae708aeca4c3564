"""Tests of data_prep.render, data_prep.nsynth and data_prep.gm."""

import collections
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from audio_perm import data
from audio_perm.data import files as data_files
from data_prep import gm
from data_prep import nsynth
from data_prep import render

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_NUM_NOTES = 30  # Per extra render in this file: ~0.3 s each.


def _read_split(data_dir, split):
  """All examples of a split through a plain TFRecordDataset (no TFDS)."""
  files = sorted(glob.glob(os.path.join(data_dir,
                                        f"nsynth-{split}.tfrecord-*")))
  ds = tf.data.TFRecordDataset(files).map(
      lambda r: tf.io.parse_single_example(r, nsynth.tf_example_spec()))
  return [{k: v.numpy() for k, v in e.items()} for e in ds]


def _shard_bytes(data_dir):
  out = {}
  for path in sorted(glob.glob(os.path.join(data_dir, "nsynth-*"))):
    with open(path, "rb") as f:
      out[os.path.basename(path)] = f.read()
  return out


@pytest.fixture(scope="module")
def small_render(tmp_path_factory):
  """A 30-note render (seed 3) rendered in-process, and its summary."""
  out = str(tmp_path_factory.mktemp("small"))
  summary = render.render_dataset(out, max_notes=SMALL_NUM_NOTES, seed=3,
                                  progress=False, verbose=False)
  return out, summary


# --------------------------------------------------------------------------
# The GM table.
# --------------------------------------------------------------------------


def test_gm_table_is_dense_and_covers_every_family():
  table = gm.program_table()
  assert len(table) == 92
  assert [info.label for info in table] == list(range(92))
  assert [info.program for info in table] == sorted(gm.KEPT_PROGRAMS)
  assert {info.family for info in table} == set(nsynth.FAMILIES)
  assert {info.source for info in table} == set(nsynth.SOURCES)
  # The official class names, in the official order.
  official = nsynth.features()["instrument"]
  assert tuple(official["family"].names) == nsynth.FAMILIES
  assert tuple(official["source"].names) == nsynth.SOURCES


@pytest.mark.parametrize("program,family,source", [
    (0, "keyboard", "acoustic"), (4, "keyboard", "electronic"),
    (12, "mallet", "acoustic"), (16, "organ", "electronic"),
    (19, "organ", "acoustic"), (24, "guitar", "acoustic"),
    (30, "guitar", "electronic"), (32, "bass", "acoustic"),
    (33, "bass", "electronic"), (38, "bass", "synthetic"),
    (40, "string", "acoustic"), (50, "string", "synthetic"),
    (52, "vocal", "acoustic"), (54, "vocal", "synthetic"),
    (56, "brass", "acoustic"), (62, "brass", "synthetic"),
    (65, "reed", "acoustic"), (73, "flute", "acoustic"),
    (80, "synth_lead", "synthetic"),
])
def test_gm_known_programs(program, family, source):
  info = gm.program_info(program)
  assert (info.family, info.source) == (family, source)
  assert info.name == gm.GM_PROGRAM_NAMES[program]


@pytest.mark.parametrize("program", [47, 55, 88, 95, 96, 103, 112, 119, 127])
def test_gm_skipped_programs(program):
  assert gm.program_info(program) is None
  assert program not in gm.KEPT_PROGRAMS


@pytest.mark.parametrize("program", [-1, 128, 3.0, "0"])
def test_gm_bad_program(program):
  with pytest.raises(ValueError, match="GM program"):
    gm.program_info(program)


# --------------------------------------------------------------------------
# tf.Example encoding.
# --------------------------------------------------------------------------


def _example(rng, **overrides):
  ex = {
      "id": "reed_acoustic_054-061-075",
      "audio": rng.standard_normal(nsynth.NUM_SAMPLES).astype(np.float32),
      "pitch": 61, "velocity": 75,
      "instrument": {"label": 1005, "family": 10, "source": 2},
      "qualities": {"bright": True, "tempo-synced": True},
  }
  ex.update(overrides)
  return ex


def test_serialize_example_parses_like_tfds():
  rng = np.random.default_rng(0)
  ex = _example(rng)
  ours = nsynth.serialize_example(ex)
  full = dict(ex, qualities={q: q in ex["qualities"]
                             for q in nsynth.QUALITIES})
  reference = nsynth.features().serialize_example(full)
  assert (tf.train.Example.FromString(ours) ==
          tf.train.Example.FromString(reference))
  # And decodes through the TFDS decoder to the input values.
  decoded = nsynth.features().deserialize_example(ours)
  np.testing.assert_array_equal(decoded["audio"].numpy(), ex["audio"])
  assert decoded["id"].numpy() == ex["id"].encode()
  assert int(decoded["instrument"]["label"]) == 1005
  assert bool(decoded["qualities"]["tempo-synced"])
  assert not bool(decoded["qualities"]["dark"])


@pytest.mark.parametrize("overrides,match", [
    ({"audio": np.zeros(63999, np.float32)}, "shape"),
    ({"pitch": 128}, "pitch"),
    ({"velocity": -1}, "velocity"),
    ({"instrument": {"label": 1006, "family": 0, "source": 0}}, "label"),
    ({"instrument": {"label": 0, "family": 11, "source": 0}}, "family"),
    ({"instrument": {"label": 0, "family": 0, "source": 3}}, "source"),
    ({"qualities": {"shiny": True}}, "shiny"),
])
def test_serialize_example_rejects_bad_values(overrides, match):
  with pytest.raises(ValueError, match=match):
    nsynth.serialize_example(_example(np.random.default_rng(0), **overrides))


# --------------------------------------------------------------------------
# Synthesis.
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth():
  return render.Synthesizer(render.default_soundfont_path())


@pytest.mark.parametrize("program,pitch", [(0, 48), (0, 69), (40, 60),
                                           (40, 81), (80, 57)])
def test_rendered_pitch_matches_midi_pitch(synth, program, pitch):
  """The strongest spectral peak of a sustained note is its fundamental."""
  audio = synth.render(program, pitch, 100)
  assert audio.shape == (render.NUM_SAMPLES,) and audio.dtype == np.float32
  segment = audio[8000:40000]  # Sustain, away from attack and release.
  spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment))))
  peak_hz = np.fft.rfftfreq(len(segment), 1 / render.SAMPLE_RATE_HZ)[
      np.argmax(spectrum)]
  midi_hz = 440.0 * 2.0 ** ((pitch - 69) / 12)
  assert abs(12 * np.log2(peak_hz / midi_hz)) < 0.25


def test_key_is_released_after_three_seconds(synth):
  # Acoustic piano: its sustain continues while the key is held; after the
  # release at 3 s the level falls fast.
  audio = synth.render(0, 60, 100)
  def rms(a):
    return float(np.sqrt(np.mean(a ** 2)))
  before = rms(audio[render.HOLD_SAMPLES - 1600:render.HOLD_SAMPLES])
  after = rms(audio[render.HOLD_SAMPLES + 4800:render.HOLD_SAMPLES + 6400])
  assert before > 0 and after < 0.1 * before


def test_render_is_independent_of_history(synth):
  first = synth.render(0, 60, 100)
  synth.render(38, 40, 127)
  synth.render(73, 90, 25)
  again = synth.render(0, 60, 100)
  fresh = render.Synthesizer(render.default_soundfont_path()).render(0, 60, 100)
  np.testing.assert_array_equal(first, again)
  np.testing.assert_array_equal(first, fresh)


def test_check_audio_rules():
  ok = np.full(10, 0.5, np.float32)
  assert render.check_audio(ok)[1] == "ok"
  assert render.check_audio(np.zeros(10, np.float32)) == (None, "silent")
  assert render.check_audio(np.full(10, 5e-5, np.float32))[1] == "silent"
  assert render.check_audio(np.array([0.5, np.nan], np.float32)) == (
      None, "non_finite")
  assert render.check_audio(np.array([0.5, np.inf], np.float32))[1] == (
      "non_finite")
  limited, status = render.check_audio(np.array([0.5, -4.0], np.float32))
  assert status == "limited"
  np.testing.assert_allclose(limited, [0.125, -1.0])


# --------------------------------------------------------------------------
# Note choice and splits (no rendering).
# --------------------------------------------------------------------------


@pytest.mark.parametrize("max_notes", [1, 50, 120, 92 * 7, 3000, 92 * 440])
def test_plan_spreads_notes_evenly(max_notes):
  plan = render.plan_notes(gm.KEPT_PROGRAMS, max_notes, seed=0)
  per_program = [len(plan.get(p, [])) for p in gm.KEPT_PROGRAMS]
  assert sum(per_program) == max_notes
  assert max(per_program) - min(per_program) <= 1
  for notes in plan.values():
    assert len(set(notes)) == len(notes)
    pitches = sorted(p for p, _ in notes)
    assert all(p in render.PITCHES for p in pitches)
    velocity_counts = collections.Counter(v for _, v in notes)
    assert set(velocity_counts) <= set(render.VELOCITIES)
    if len(notes) >= 5:  # Velocities cycle: balanced to within one.
      assert (max(velocity_counts.values()) -
              min(velocity_counts.values())) <= 1
      assert len(velocity_counts) == 5
    # Pitches evenly spaced: k notes cover the 88 keys in k even steps.
    k = len(notes)
    if 2 <= k <= 88:
      gaps = np.diff(pitches)
      assert gaps.min() >= int(88 / k) and gaps.max() <= int(np.ceil(88 / k))
  # With fewer notes than programs, the families are still covered.
  families = {gm.program_info(p).family for p in plan}
  assert len(families) == min(11, max_notes)


def test_full_plan_is_the_whole_grid():
  plan = render.plan_notes(gm.KEPT_PROGRAMS, None, seed=0)
  for notes in plan.values():
    assert len(notes) == 88 * 5


@pytest.mark.parametrize("max_notes", [50, 120, 3000])
def test_splits_are_disjoint_exact_and_cover_programs(max_notes):
  plan = render.plan_notes(gm.KEPT_PROGRAMS, max_notes, seed=5)
  splits = render.assign_splits(plan, seed=5)
  notes = [n for split in splits.values() for n in split]
  assert len(notes) == len(set(notes)) == max_notes
  assert set(notes) == {(p,) + n for p, ns in plan.items() for n in ns}
  assert len(splits["valid"]) == len(splits["test"]) == round(max_notes / 10)
  for split in ("valid", "test"):
    families = {gm.program_info(n[0]).family for n in splits[split]}
    assert len(families) == min(11, len(splits[split]))
  if max_notes >= 92 * 10:  # Every program in every split.
    for split in splits.values():
      assert {n[0] for n in split} == set(gm.KEPT_PROGRAMS)
  if max_notes >= 92 * 3 or max_notes == 120:  # Train keeps every program.
    assert {n[0] for n in splits["train"]} == set(gm.KEPT_PROGRAMS)


def test_plan_and_splits_depend_on_seed():
  a = render.assign_splits(render.plan_notes(gm.KEPT_PROGRAMS, 120, 0), 0)
  b = render.assign_splits(render.plan_notes(gm.KEPT_PROGRAMS, 120, 0), 0)
  c = render.assign_splits(render.plan_notes(gm.KEPT_PROGRAMS, 120, 1), 1)
  assert a == b
  assert a != c


# --------------------------------------------------------------------------
# The dataset on disk.
# --------------------------------------------------------------------------


def test_tiny_render_loads_with_nsynth_features(rendered_dataset_dir):
  builder = tfds.builder_from_directory(rendered_dataset_dir)
  assert (builder.info.features.to_json() ==
          nsynth.features().to_json())
  with open(os.path.join(rendered_dataset_dir,
                         render.SUMMARY_FILENAME)) as f:
    summary = json.load(f)
  assert summary["complete"]
  assert summary["total_notes"] + sum(summary["dropped"].values()) == 120
  all_ids = set()
  for split in ("train", "valid", "test"):
    assert builder.info.splits[split].num_examples == summary["notes"][split]
    examples = list(tfds.as_numpy(builder.as_dataset(split=split)))
    assert len(examples) == summary["notes"][split]
    programs, families = set(), collections.Counter()
    for ex in examples:
      audio = ex["audio"]
      assert audio.shape == (64000,) and audio.dtype == np.float32
      assert np.all(np.isfinite(audio))
      assert render.SILENCE_PEAK <= np.max(np.abs(audio)) <= 1.0
      info = gm.program_table()[ex["instrument"]["label"]]
      assert nsynth.FAMILIES[ex["instrument"]["family"]] == info.family
      assert nsynth.SOURCES[ex["instrument"]["source"]] == info.source
      assert ex["id"].decode() == nsynth.note_id(
          info.family, info.source, info.label, ex["pitch"], ex["velocity"])
      assert 21 <= ex["pitch"] <= 108
      assert ex["velocity"] in render.VELOCITIES
      assert not any(ex["qualities"].values())
      programs.add(info.program)
      families[info.family] += 1
    assert sorted(programs) == summary["programs"][split]
    assert dict(families) == summary["notes_per_family"][split]
    ids = {ex["id"] for ex in examples}
    assert len(ids) == len(examples) and not ids & all_ids  # Disjoint.
    all_ids |= ids
  # The tiny render still covers every family in every split.
  for split in ("train", "valid", "test"):
    assert len(summary["notes_per_family"][split]) == 11


def test_shards_read_with_plain_tfrecord_dataset(rendered_dataset_dir):
  builder = tfds.builder_from_directory(rendered_dataset_dir)
  for split in ("train", "valid"):
    plain = _read_split(rendered_dataset_dir, split)
    via_tfds = list(tfds.as_numpy(builder.as_dataset(split=split,
                                                     shuffle_files=False)))
    # TFDS interleaves the shards; compare by id.
    plain_by_id = {e["id"]: e for e in plain}
    assert len(plain_by_id) == len(plain)
    assert set(plain_by_id) == {e["id"] for e in via_tfds}
    for e in via_tfds[:3]:
      np.testing.assert_array_equal(plain_by_id[e["id"]]["audio"], e["audio"])
      assert plain_by_id[e["id"]]["instrument/label"] == (
          e["instrument"]["label"])
    # At least two shards per split, named as TFDS names them.
    names = glob.glob(os.path.join(rendered_dataset_dir,
                                   f"nsynth-{split}.tfrecord-*-of-*"))
    assert len(names) == builder.info.splits[split].num_shards >= 2


def test_same_seed_same_bytes_other_seed_differs(small_render, tmp_path,
                                                 monkeypatch):
  out, summary = small_render
  # Same seed, rendered by two worker processes instead of in-process.
  monkeypatch.setattr(render, "_MIN_NOTES_PER_WORKER", 1)
  again = str(tmp_path / "again")
  summary2 = render.render_dataset(again, max_notes=SMALL_NUM_NOTES, seed=3,
                                   num_workers=2, progress=False,
                                   verbose=False)
  assert summary2["num_workers"] == 2
  assert _shard_bytes(out) == _shard_bytes(again)
  assert summary2["notes"] == summary["notes"]
  other = str(tmp_path / "other")
  render.render_dataset(other, max_notes=SMALL_NUM_NOTES, seed=4,
                        progress=False, verbose=False)
  ids = {e["id"] for e in _read_split(out, "train")}
  other_ids = {e["id"] for e in _read_split(other, "train")}
  assert ids != other_ids


def test_interrupted_render_is_completed_by_rerun(small_render, tmp_path,
                                                  monkeypatch):
  reference, _ = small_render
  out = str(tmp_path / "interrupted")
  real_write = render._write_shard
  calls = []

  def write_then_die(path, records):
    calls.append(path)
    if len(calls) == 2:
      # Die in the middle of the second shard: a partial temporary file.
      with open(path + ".incomplete", "wb") as f:
        f.write(b"partial")
      raise KeyboardInterrupt
    return real_write(path, records)

  monkeypatch.setattr(render, "_write_shard", write_then_die)
  with pytest.raises(KeyboardInterrupt):
    render.render_dataset(out, max_notes=SMALL_NUM_NOTES, seed=3,
                          progress=False, verbose=False)
  # Nothing a reader would take as data.
  assert glob.glob(os.path.join(out, "nsynth-*")) == []
  assert not os.path.exists(os.path.join(out, "dataset_info.json"))
  with pytest.raises(Exception):
    tfds.builder_from_directory(out)
  staged = os.listdir(os.path.join(out, render.STAGING_DIRNAME))
  assert any(name.endswith(".incomplete") for name in staged)
  # Readers refuse the folder in one line that says how to complete it.
  with pytest.raises(ValueError) as raised:
    data.check_folder_dataset(out)
  assert str(raised.value) == (
      f"data_dir={out!r} holds an unfinished render (interrupted: its "
      ".render_staging folder is there, no dataset_info.json); run `python "
      f"-m data_prep.render --output_dir={out} --max_notes="
      f"{SMALL_NUM_NOTES} --seed=3 --examples_per_shard=256` (with the same "
      "--soundfont, if any) to complete it.")
  assert data_files.RENDER_STAGING_DIRNAME == render.STAGING_DIRNAME

  calls.clear()
  monkeypatch.setattr(render, "_write_shard",
                      lambda path, records: (calls.append(path),
                                             real_write(path, records))[1])
  summary = render.render_dataset(out, max_notes=SMALL_NUM_NOTES, seed=3,
                                  progress=False, verbose=False)
  num_shards = sum(len(v) for v in summary["shard_lengths"].values())
  assert len(calls) == num_shards - 1  # The finished shard was kept.
  assert _shard_bytes(out) == _shard_bytes(reference)
  assert not os.path.exists(os.path.join(out, render.STAGING_DIRNAME))
  assert tfds.builder_from_directory(out).info.splits["train"].num_examples


def _dataset_files(data_dir):
  """{name: bytes} of a render's files, timings of its summary left out.

  render_summary.json holds the render's duration and speed (and its
  folder); everything else must be byte-identical between two renders.
  """
  out = {}
  for name in sorted(os.listdir(data_dir)):
    path = os.path.join(data_dir, name)
    if name.startswith(".") or os.path.isdir(path):
      continue  # The lock file, and a staging folder checked apart.
    if name == render.SUMMARY_FILENAME:
      summary = json.load(open(path))
      for key in ("render_seconds", "notes_per_second", "num_workers",
                  "output_dir"):
        summary.pop(key)
      out[name] = summary
    else:
      with open(path, "rb") as f:
        out[name] = f.read()
  return out


@pytest.mark.slow
def test_kill_9_during_a_render_leaves_no_data_and_a_rerun_completes_it(
    tmp_path):
  """SIGKILL once the first shard is finished, mid-way through the others."""
  import signal  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  out = tmp_path / "killed"
  settings = ["--max_notes=120", "--seed=0", "--examples_per_shard=8"]
  command = [sys.executable, "-m", "data_prep.render", "--noprogress",
             f"--output_dir={out}"] + settings
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  proc = subprocess.Popen(command, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, cwd=REPO_ROOT, env=env)
  staging = out / render.STAGING_DIRNAME
  deadline = time.time() + 300
  try:
    while not glob.glob(str(staging / "nsynth-*-of-*[0-9]")):
      assert proc.poll() is None, proc.communicate()[1][-3000:]
      assert time.time() < deadline, "no shard in time"
      time.sleep(0.005)
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  staged = [n for n in os.listdir(staging) if n.startswith("nsynth-")
            and not n.endswith((".incomplete", ".json"))]
  assert 1 <= len(staged) < 16, staged  # 12 + 2 + 2 shards of <= 8 notes.
  print(f"killed with {len(staged)} of 16 shards staged")
  # No partial data visible: no shard, no metadata in the dataset folder,
  # and the readers refuse it in one line saying how to complete it.
  assert sorted(os.listdir(out)) == [".render.lock", render.STAGING_DIRNAME]
  with pytest.raises(ValueError, match="holds an unfinished render.*"
                     "--max_notes=120 --seed=0 --examples_per_shard=8"):
    data.check_folder_dataset(out)

  rerun = subprocess.run(command, capture_output=True, text=True,
                         cwd=REPO_ROOT, env=env, timeout=300)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert not staging.exists()
  reference = tmp_path / "uninterrupted"
  render.render_dataset(str(reference), max_notes=120, seed=0,
                        examples_per_shard=8, progress=False, verbose=False)
  completed, expected = _dataset_files(out), _dataset_files(reference)
  assert sorted(completed) == sorted(expected)
  assert len([n for n in completed if n.startswith("nsynth-")]) == 16
  for name in expected:
    assert completed[name] == expected[name], name


def test_rerun_is_a_noop_and_other_settings_are_refused(small_render,
                                                        tmp_path):
  out = str(tmp_path / "rerun")
  first = render.render_dataset(out, max_notes=12, seed=0, progress=False,
                                verbose=False)
  mtimes = {p: os.path.getmtime(p) for p in glob.glob(out + "/nsynth-*")}
  again = render.render_dataset(out, max_notes=12, seed=0, progress=False,
                                verbose=False)
  assert again["notes"] == first["notes"]
  assert mtimes == {p: os.path.getmtime(p)
                    for p in glob.glob(out + "/nsynth-*")}
  with pytest.raises(ValueError, match="other settings.*max_notes.*overwrite"):
    render.render_dataset(out, max_notes=13, seed=0, progress=False,
                          verbose=False)
  summary = render.render_dataset(out, max_notes=13, seed=0, overwrite=True,
                                  progress=False, verbose=False)
  assert summary["total_notes"] + sum(summary["dropped"].values()) == 13
  # A folder holding something else is refused too.
  foreign = tmp_path / "foreign"
  foreign.mkdir()
  (foreign / "notes.txt").write_text("mine")
  with pytest.raises(ValueError, match="not empty"):
    render.render_dataset(str(foreign), max_notes=12, progress=False,
                          verbose=False)


# --------------------------------------------------------------------------
# Bad input.
# --------------------------------------------------------------------------


def test_missing_soundfont_names_the_path(tmp_path):
  path = str(tmp_path / "nope.sf2")
  with pytest.raises(ValueError, match="nope.sf2"):
    render.render_dataset(str(tmp_path / "out"), soundfont=path,
                          max_notes=5)


def test_unreadable_soundfont_names_the_path(tmp_path):
  path = tmp_path / "garbage.sf2"
  path.write_bytes(b"RIFF not really a soundfont" * 10)
  with pytest.raises(ValueError, match="garbage.sf2.*not a valid SF2"):
    render.render_dataset(str(tmp_path / "out"), soundfont=str(path),
                          max_notes=5)


@pytest.mark.parametrize("kwargs,match", [
    ({"max_notes": 0}, "max_notes"), ({"max_notes": -3}, "max_notes"),
    ({"max_notes": 2.5}, "max_notes"), ({"max_notes": True}, "max_notes"),
    ({"seed": -1}, "seed"), ({"seed": "0"}, "seed"),
    ({"examples_per_shard": 0}, "examples_per_shard"),
    ({"num_workers": 0}, "num_workers"),
])
def test_bad_arguments(tmp_path, kwargs, match):
  with pytest.raises(ValueError, match=match):
    render.render_dataset(str(tmp_path / "out"), **kwargs)
  assert not os.path.exists(tmp_path / "out")


def test_missing_tinysoundfont_says_how_to_install(monkeypatch):
  monkeypatch.setitem(sys.modules, "tinysoundfont", None)
  with pytest.raises(ImportError, match="pip install --no-deps"):
    render.Synthesizer(render.default_soundfont_path())


@pytest.mark.slow
@pytest.mark.parametrize("args,match", [
    (["--soundfont=/no/such.sf2"], "/no/such.sf2"),
    (["--max_notes=0"], "max_notes"),
    (["--max_notes=many"], "max_notes"),
    (["--seed=-2"], "seed"),
    ([], "output_dir"),
])
def test_cli_errors_are_one_line_exit_2(tmp_path, args, match):
  if args:
    args = [f"--output_dir={tmp_path / 'out'}"] + args
  proc = subprocess.run(
      [sys.executable, "-m", "data_prep.render", "--noprogress"] + args,
      capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr
  assert lines[0].startswith("data_prep.render: error: "), proc.stderr
  assert match in lines[0]


def test_ensure_default_dataset_renders_once(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(render, "DEFAULT_MAX_NOTES", 12)
  monkeypatch.setenv("AUDIO_PERM_DATA_DIR", str(tmp_path / "default"))
  path = render.ensure_default_dataset(progress=False)
  assert path == str(tmp_path / "default")
  assert "Rendering the default" in capsys.readouterr().out
  assert render.is_complete(path)
  assert tfds.builder_from_directory(path).info.splits.total_num_examples
  mtime = os.path.getmtime(os.path.join(path, "dataset_info.json"))
  assert render.ensure_default_dataset(progress=False) == path
  assert capsys.readouterr().out == ""  # Not rendered again.
  assert os.path.getmtime(os.path.join(path, "dataset_info.json")) == mtime


def test_concurrent_renders_of_one_folder_do_not_clash(tmp_path):
  import threading  # pylint: disable=g-import-not-at-top
  out = str(tmp_path / "shared")
  results, errors = [], []

  def work():
    try:
      results.append(render.render_dataset(out, max_notes=12, seed=0,
                                           progress=False, verbose=False))
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)

  threads = [threading.Thread(target=work) for _ in range(2)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert not errors
  assert results[0]["notes"] == results[1]["notes"]
  assert render.is_complete(out)
  assert sum(len(_read_split(out, s)) for s in ("train", "valid", "test")) == (
      results[0]["total_notes"])
