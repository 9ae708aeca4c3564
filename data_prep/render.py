r"""Renders NSynth's protocol from a General MIDI soundfont to a folder dataset.

NSynth's protocol: one note per example, 16 kHz mono float32, 4 s (64000
samples): the key is held for 3 s and released, the last second holds the
release. MIDI pitches 21-108, velocities 25, 50, 75, 100, 127. Each GM program
with an NSynth family (see `data_prep.gm`: 92 of 128 programs) is an
instrument; its label is its dense id in that table.

Usage:

  python -m data_prep.render --output_dir=DIR [--soundfont=PATH] \
      [--max_notes=N] [--seed=S] [--examples_per_shard=256] \
      [--num_workers=N] [--overwrite]

Any SF2/SF3 General MIDI soundfont works. The default is TimGM6mb.sf2 (6 MB),
shipped inside the pretty_midi package, so nothing beyond pip is needed. A
larger, better soundfont is FluidR3_GM (Debian/Ubuntu: `apt-get install
fluid-soundfont-gm`, then `--soundfont=/usr/share/sounds/sf2/FluidR3_GM.sf2`).
Programs that a soundfont lacks (no bank-0 preset) are skipped and reported.

Which notes: without --max_notes every program x pitch x velocity is rendered
(92 x 88 x 5 = 40480 notes for a full GM soundfont). --max_notes=N caps the
total: N is spread evenly over programs (each gets N // programs notes; the
remainder goes one each to programs taken round-robin over families, so even
N < 92 covers every family), and within a program over pitches and velocities
(k notes take k evenly spaced pitches with a random offset, and velocities
cycle through the five values). Everything is deterministic for --seed.

Splits: train/valid/test = 80/10/10 % of the notes, disjoint by note. Each
program with k notes gives floor(k/10) notes to valid and to test, so programs
with at least 10 notes are in every split; the notes left over to reach the
split totals go one each to programs that keep a note for train (and have
the larger remainder) first, picked family by family (the family least
represented in that split first), so that a 120-note render still has all 11
families in valid and in test. Within a split the notes are shuffled (seeded)
before being cut into shards (at least 2 per split, so two readers can each
take whole files).

Audio checks: a note whose peak is below 1e-4 (-80 dBFS; e.g. a key outside
the preset's range renders exact zeros) or that is not finite is dropped and
counted. A note whose peak exceeds 1.0 (some resonant synth presets) is scaled
to peak 1.0 and counted as "limited".

Rendering is deterministic: every note starts from a reset synthesizer (reset,
render silence, reset), which makes its samples independent of what was
rendered before, hence of the worker count and order. Notes are rendered in
worker processes, one per core but one: the calling process receives the
serialized notes and writes the shards, which costs about as much as
rendering them (so on 2 cores everything runs in-process).

Output: a TFDS folder dataset (see `data_prep.nsynth`) plus
`render_summary.json` (settings, counts per split and family, dropped notes).
Crash safety: shards are written into DIR/.render_staging/ under a temporary
name and renamed when complete; only when every shard is done are they moved
into DIR, then the TFDS metadata and the summary are written. An interrupted
run therefore leaves nothing in DIR that a reader takes as data, and a rerun
with the same settings keeps the finished shards and completes the job. A
rerun with other settings into a non-empty DIR is refused unless --overwrite
(which deletes this tool's files in DIR, and nothing else).
"""

import collections
import contextlib
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time

import numpy as np

from data_prep import cli
from data_prep import gm
from data_prep import nsynth

SAMPLE_RATE_HZ = nsynth.SAMPLE_RATE_HZ
NUM_SAMPLES = nsynth.NUM_SAMPLES
HOLD_SAMPLES = 3 * SAMPLE_RATE_HZ  # Key held 3 s, then released.
PITCHES = tuple(range(21, 109))  # MIDI 21 (A0) .. 108 (C8), 88 keys.
VELOCITIES = (25, 50, 75, 100, 127)
SPLIT_FRACTIONS = (("train", 0.8), ("valid", 0.1), ("test", 0.1))
SILENCE_PEAK = 1e-4  # -80 dBFS.
EXAMPLES_PER_SHARD = 256  # About 64 MB per shard.
DEFAULT_MAX_NOTES = 3000  # Size of the embedded default dataset.
DEFAULT_SEED = 0
# Bump when rendering changes, so that a rerun does not mix old and new shards.
RENDER_VERSION = 1

STAGING_DIRNAME = ".render_staging"
SUMMARY_FILENAME = "render_summary.json"
_MANIFEST_FILENAME = "manifest.json"
_LOCK_FILENAME = ".render.lock"
_CHUNK_NOTES = 32  # Notes per worker task.
# Starting a worker costs about as much as rendering a few hundred notes.
_MIN_NOTES_PER_WORKER = 256
_TINYSOUNDFONT_HINT = (
    'data_prep.render needs tinysoundfont; install it without its playback '
    'dependency: pip install --no-deps "tinysoundfont>=0.3.7,<0.4"')


def _default_data_dir():
  return os.environ.get("AUDIO_PERM_DATA_DIR") or os.path.join(
      os.path.expanduser("~"), ".cache", "audio_perm", "nsynth_timgm6mb")


# Where `ensure_default_dataset` renders: $AUDIO_PERM_DATA_DIR if set, else
# ~/.cache/audio_perm/nsynth_timgm6mb (evaluated at import).
DEFAULT_DATA_DIR = _default_data_dir()


def default_soundfont_path():
  """Path of TimGM6mb.sf2, the GM soundfont inside the pretty_midi package.

  Raises:
    ValueError: if pretty_midi is missing or does not ship the file.
  """
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.find_spec("pretty_midi")
  if spec is None or not spec.submodule_search_locations:
    raise ValueError("The default soundfont comes with pretty_midi, which is "
                     "not installed: pip install pretty_midi, or pass "
                     "--soundfont=PATH.")
  for location in spec.submodule_search_locations:
    path = os.path.join(location, "TimGM6mb.sf2")
    if os.path.isfile(path):
      return path
  raise ValueError("pretty_midi does not ship TimGM6mb.sf2 here "
                   f"({list(spec.submodule_search_locations)}); pass "
                   "--soundfont=PATH.")


# ---------------------------------------------------------------------------
# Synthesis.
# ---------------------------------------------------------------------------


def _import_tinysoundfont():
  try:
    # pylint: disable-next=g-import-not-at-top
    from tinysoundfont import _tinysoundfont
  except ImportError as e:
    raise ImportError(_TINYSOUNDFONT_HINT) from e
  return _tinysoundfont


class Synthesizer:
  """Renders single notes from one soundfont at 16 kHz mono.

  Example:
    synth = Synthesizer(default_soundfont_path())
    audio = synth.render(program=0, pitch=60, velocity=100)  # [64000]
  """

  def __init__(self, soundfont_path, gain_db=0.0):
    """Loads the soundfont.

    Raises:
      ValueError: if the file is missing or is not a readable SF2/SF3 file;
        the message names the path.
      ImportError: if tinysoundfont is not installed (says how to install it).
    """
    tsf = _import_tinysoundfont()
    self.path = soundfont_path
    if not os.path.isfile(soundfont_path):
      raise ValueError(f"Soundfont not found: {soundfont_path!r}. Pass "
                       "--soundfont=PATH to an SF2/SF3 file.")
    try:
      self._sf = tsf.SoundFont(soundfont_path)
    except (RuntimeError, OSError) as e:
      raise ValueError(f"Cannot read soundfont {soundfont_path!r}: it is not "
                       f"a valid SF2/SF3 file ({e}).") from e
    self._sf.set_output(tsf.OutputMode.Mono, SAMPLE_RATE_HZ, float(gain_db))
    self._flush = np.zeros(4096, np.float32)

  def has_program(self, program):
    """Whether the soundfont has a bank-0 (melodic) preset for `program`."""
    return self._sf.get_preset_index(0, program) >= 0

  def preset_name(self, program):
    name = self._sf.get_preset_name(0, program)
    return None if name == "<None>" else name

  def render(self, program, pitch, velocity):
    """One note: key held 3 s then released; float32 [64000]."""
    sf = self._sf
    # Reset, render silence, reset: without the silent render the first
    # samples of a note depend slightly (~1e-7) on the previous note.
    sf.reset()
    sf.render(memoryview(self._flush).cast("B"))
    sf.reset()
    sf.channel_set_preset_number(0, program, False)
    sf.channel_note_on(0, pitch, velocity / 127.0)
    audio = np.zeros(NUM_SAMPLES, np.float32)
    sf.render(memoryview(audio[:HOLD_SAMPLES]).cast("B"))
    sf.channel_note_off(0, pitch)
    sf.render(memoryview(audio[HOLD_SAMPLES:]).cast("B"))
    return audio


def check_audio(audio, silence_peak=SILENCE_PEAK):
  """Applies the drop/limit rules to one rendered note.

  Args:
    audio: float32 [samples].
    silence_peak: notes with a smaller peak are dropped as silent.

  Returns:
    (audio or None, status) with status one of "ok", "limited" (peak above
    1.0, scaled to 1.0), "silent" or "non_finite" (audio None: dropped).
  """
  if not np.all(np.isfinite(audio)):
    return None, "non_finite"
  peak = float(np.max(np.abs(audio))) if audio.size else 0.0
  if peak < silence_peak:
    return None, "silent"
  if peak > 1.0:
    return (audio / np.float32(peak)).astype(np.float32), "limited"
  return audio, "ok"


# ---------------------------------------------------------------------------
# Which notes, which split.
# ---------------------------------------------------------------------------


def _family_round_robin(programs, rng):
  """Programs ordered so that each family appears once before any twice."""
  by_family = collections.defaultdict(list)
  for program in programs:
    by_family[gm.program_info(program).family].append(program)
  families = sorted(by_family)
  rng.shuffle(families)
  for family in families:
    rng.shuffle(by_family[family])
  order = []
  for rank in range(max(len(v) for v in by_family.values())):
    order.extend(by_family[f][rank] for f in families
                 if rank < len(by_family[f]))
  return order


def plan_notes(programs, max_notes=None, seed=0):
  """Chooses the notes to render.

  Args:
    programs: GM programs to render (each must have an NSynth family).
    max_notes: cap on the total, or None for every pitch x velocity.
    seed: int.

  Returns:
    dict program -> list of (pitch, velocity), sorted.
  """
  programs = sorted(programs)
  if not programs:
    return {}
  per_program = len(PITCHES) * len(VELOCITIES)
  if max_notes is None or max_notes >= per_program * len(programs):
    quotas = {p: per_program for p in programs}
  else:
    base, remainder = divmod(max_notes, len(programs))
    quotas = {p: base for p in programs}
    order = _family_round_robin(programs, np.random.default_rng([seed, 7]))
    for program in order[:remainder]:
      quotas[program] += 1
  plan = {}
  for program in programs:
    k = quotas[program]
    if k == 0:
      continue
    rng = np.random.default_rng([seed, program])
    offset = rng.random()
    velocity_offset = int(rng.integers(len(VELOCITIES)))
    notes = set()
    for i in range(k):
      # Runs of equal pitch are consecutive i (at most ceil(k / 88) <= 5
      # long), so the cycling velocity makes every (pitch, velocity) distinct.
      pitch_index = int((i + offset) * len(PITCHES) / k)
      notes.add((PITCHES[pitch_index],
                 VELOCITIES[(velocity_offset + i) % len(VELOCITIES)]))
    plan[program] = sorted(notes)
  return plan


def assign_splits(plan, seed=0, fractions=SPLIT_FRACTIONS):
  """Splits the planned notes, disjoint by note.

  Args:
    plan: dict program -> list of (pitch, velocity), from `plan_notes`.
    seed: int.
    fractions: ((split name, fraction), ...); the first split takes the rest.

  Returns:
    dict split -> list of (program, pitch, velocity), in a seeded random order.
  """
  names = [name for name, _ in fractions]
  total = sum(len(v) for v in plan.values())
  counts = {p: {name: 0 for name in names} for p in plan}
  for name, fraction in fractions[1:]:
    for program, notes in plan.items():
      counts[program][name] = int(np.floor(len(notes) * fraction))
  for split_index, (name, fraction) in enumerate(fractions[1:]):
    need = int(round(total * fraction)) - sum(c[name] for c in counts.values())

    def left(program):
      return len(plan[program]) - sum(counts[program].values())

    def group(program, fraction=fraction):
      # Programs that keep a train note first, then larger remainders.
      frac = len(plan[program]) * fraction - np.floor(
          len(plan[program]) * fraction)
      return (left(program) < 2, -round(frac, 9))

    candidates = [p for p in sorted(plan) if left(p) > 0]
    rng = np.random.default_rng([seed, 11, split_index])
    family_rank = {f: i for i, f in enumerate(rng.permutation(gm.FAMILIES))}
    rng.shuffle(candidates)
    taken = collections.Counter()
    for key in sorted({group(p) for p in candidates}):
      pool = [p for p in candidates if group(p) == key]
      while need > 0 and pool:
        # Greedy over families: the family least represented in this split
        # so far, then the one with the most candidates left (so that later
        # splits still find the scarce ones).
        left_in_family = collections.Counter(
            gm.program_info(p).family for p in pool)
        family = min(left_in_family, key=lambda f: (
            taken[f], -left_in_family[f], family_rank[f]))
        program = next(p for p in pool if gm.program_info(p).family == family)
        pool.remove(program)
        counts[program][name] += 1
        taken[family] += 1
        need -= 1
  splits = {name: [] for name in names}
  for program in sorted(plan):
    notes = list(plan[program])
    np.random.default_rng([seed, program, 1]).shuffle(notes)
    start = 0
    for name in names[1:]:
      n = counts[program][name]
      splits[name].extend((program,) + tuple(nv)
                          for nv in notes[start:start + n])
      start += n
    splits[names[0]].extend((program,) + tuple(nv) for nv in notes[start:])
  for index, name in enumerate(names):
    notes = sorted(splits[name])
    np.random.default_rng([seed, 100 + index]).shuffle(notes)
    splits[name] = [tuple(int(v) for v in note) for note in notes]
  return splits


def note_example(program, pitch, velocity, audio):
  """The NSynth example dict of a rendered note."""
  info = gm.program_info(program)
  return {
      "id": nsynth.note_id(info.family, info.source, info.label, pitch,
                           velocity),
      "audio": audio,
      "pitch": pitch,
      "velocity": velocity,
      "instrument": {
          "label": info.label,
          "family": gm.FAMILIES.index(info.family),
          "source": gm.SOURCES.index(info.source),
      },
      "qualities": {},  # No quality annotations: all False.
  }


# ---------------------------------------------------------------------------
# Worker processes.
# ---------------------------------------------------------------------------

_worker_synth = None


def _worker_init(soundfont_path, gain_db):
  global _worker_synth
  _worker_synth = Synthesizer(soundfont_path, gain_db)


def _render_chunk(args, synth=None):
  """Renders and serializes notes; runs in a worker (or in-process).

  Args:
    args: (task id, [(program, pitch, velocity)], silence_peak).
    synth: Synthesizer; None for the worker's own (`_worker_init`).

  Returns:
    (task id, [(serialized bytes or None, status), ...]).
  """
  task_id, notes, silence_peak = args
  synth = synth or _worker_synth
  results = []
  for program, pitch, velocity in notes:
    audio, status = check_audio(synth.render(program, pitch, velocity),
                                silence_peak)
    if audio is None:
      results.append((None, status))
    else:
      results.append((nsynth.serialize_example(
          note_example(program, pitch, velocity, audio)), status))
  return task_id, results


# ---------------------------------------------------------------------------
# The dataset.
# ---------------------------------------------------------------------------


def _file_sha256(path):
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _check_int(name, value, minimum, allow_none=False):
  if value is None and allow_none:
    return None
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or (
      value < minimum):
    raise ValueError(f"{name} must be an integer >= {minimum}, got "
                     f"{value!r}.")
  return int(value)


def _is_own_file(name):
  return (name.startswith(nsynth.DATASET_NAME + "-") or name in (
      "dataset_info.json", "features.json", SUMMARY_FILENAME,
      STAGING_DIRNAME) or name.endswith((".incomplete", ".labels.txt")))


def _remove_own_files(output_dir):
  for name in os.listdir(output_dir):
    if _is_own_file(name):
      path = os.path.join(output_dir, name)
      if os.path.isdir(path):
        shutil.rmtree(path)
      else:
        os.remove(path)


def _read_json(path):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _prepare_output_dir(output_dir, settings, settings_hash, overwrite):
  """Checks the folder against the settings; returns a finished summary or None.

  Raises:
    ValueError: if the folder holds other data and overwrite is False.
  """
  os.makedirs(output_dir, exist_ok=True)
  staging = os.path.join(output_dir, STAGING_DIRNAME)
  summary = _read_json(os.path.join(output_dir, SUMMARY_FILENAME))
  manifest = _read_json(os.path.join(staging, _MANIFEST_FILENAME))
  recorded = (summary or {}).get("settings_hash") or (manifest or {}).get(
      "settings_hash")
  entries = [e for e in os.listdir(output_dir) if e != _LOCK_FILENAME]
  if overwrite:
    _remove_own_files(output_dir)
  elif recorded is not None and recorded != settings_hash:
    old = (summary or manifest or {}).get("settings", {})
    changed = sorted(k for k in set(old) | set(settings)
                     if old.get(k) != settings.get(k))
    raise ValueError(
        f"{output_dir!r} holds a render with other settings (differs in "
        f"{changed}); choose another --output_dir or pass --overwrite.")
  elif recorded is None and entries:
    raise ValueError(
        f"{output_dir!r} is not empty and holds no render of this tool "
        f"({sorted(entries)[:5]}...); choose an empty --output_dir or pass "
        "--overwrite.")
  elif summary is not None and summary.get("complete"):
    return summary
  os.makedirs(staging, exist_ok=True)
  for name in os.listdir(staging):
    if name.endswith(".incomplete"):  # Leftovers of an interrupted run.
      os.remove(os.path.join(staging, name))
  nsynth.write_json_atomically(
      os.path.join(staging, _MANIFEST_FILENAME),
      {"settings": settings, "settings_hash": settings_hash})
  return None


def _shard_plan(splits, examples_per_shard):
  """[(split, shard index, num shards, notes)] covering every note once."""
  shards = []
  for split, notes in splits.items():
    if not notes:
      continue
    # At least two shards per split when possible, so that two readers
    # (e.g. two replicas) can each take whole files.
    num_shards = max(min(2, len(notes)),
                     -(-len(notes) // examples_per_shard))
    bounds = np.linspace(0, len(notes), num_shards + 1).round().astype(int)
    for i in range(num_shards):
      shards.append((split, i, num_shards, notes[bounds[i]:bounds[i + 1]]))
  return shards


def _print_summary(summary, file=None):
  file = file or sys.stdout
  splits = list(summary["notes"])
  print(f"Rendered {summary['total_notes']} notes into "
        f"{summary['output_dir']}", file=file)
  header = f"  {'family':12s}" + "".join(f"{s:>8s}" for s in splits)
  print(header, file=file)
  for family in gm.FAMILIES:
    counts = [summary["notes_per_family"][s].get(family, 0) for s in splits]
    print(f"  {family:12s}" + "".join(f"{c:8d}" for c in counts), file=file)
  print(f"  {'total':12s}" + "".join(f"{summary['notes'][s]:8d}"
                                     for s in splits), file=file)
  print("  programs per split: " + ", ".join(
      f"{s} {len(summary['programs'][s])}" for s in splits), file=file)
  dropped = summary["dropped"]
  print(f"  dropped notes: {sum(dropped.values())} ("
        + ", ".join(f"{k} {v}" for k, v in sorted(dropped.items())) + ")"
        + f"; peak-limited: {summary['limited']}", file=file)
  if summary["missing_programs"]:
    print(f"  programs missing from the soundfont (skipped): "
          f"{summary['missing_programs']}", file=file)
  if summary.get("notes_per_second"):
    print(f"  speed: {summary['notes_per_second']:.0f} notes/s with "
          f"{summary['num_workers']} worker(s)", file=file)


def render_dataset(output_dir, soundfont=None, max_notes=None, seed=0, *,
                   examples_per_shard=EXAMPLES_PER_SHARD, num_workers=None,
                   overwrite=False, progress=True, verbose=True, gain_db=0.0,
                   silence_peak=SILENCE_PEAK):
  """Renders NSynth-protocol notes from a GM soundfont into a folder dataset.

  See the module docstring for the protocol, the note choice, the splits and
  the crash-safety rules.

  Args:
    output_dir: dataset folder (created; must be empty, a previous render with
      the same settings, which is completed, or overwrite=True).
    soundfont: SF2/SF3 path; None for `default_soundfont_path()`.
    max_notes: cap on the number of notes (>= 1), or None for all of them.
    seed: int >= 0; fixes the notes, the splits and the shard order.
    examples_per_shard: max notes per TFRecord shard (>= 1).
    num_workers: processes rendering in parallel; None for one per core but
      one (the calling process receives and writes the records, which costs
      about as much as rendering them). With 1 worker, or fewer than 256
      notes per worker, notes are rendered in the calling process.
    overwrite: delete this tool's files in output_dir first.
    progress: show a tqdm progress bar.
    verbose: print the summary.
    gain_db: synthesizer gain in dB.
    silence_peak: notes with a smaller peak are dropped.

  Returns:
    The summary dict (also in output_dir/render_summary.json): settings,
    "notes" {split: count}, "notes_per_family" {split: {family: count}},
    "programs" {split: [programs]}, "dropped" {reason: count}, "limited",
    "missing_programs", "shard_lengths" {split: [...]}, "total_notes", ...

  Raises:
    ValueError: bad arguments, an unreadable soundfont, or an output_dir
      holding other data.
  """
  max_notes = _check_int("max_notes", max_notes, 1, allow_none=True)
  seed = _check_int("seed", seed, 0)
  examples_per_shard = _check_int("examples_per_shard", examples_per_shard, 1)
  if num_workers is not None:
    num_workers = _check_int("num_workers", num_workers, 1)
  if not output_dir:
    raise ValueError("output_dir must be a folder path, got "
                     f"{output_dir!r}.")
  soundfont = os.path.abspath(soundfont or default_soundfont_path())
  synth = Synthesizer(soundfont, gain_db)  # Validates the file early.
  output_dir = os.path.abspath(output_dir)

  available = [p for p in gm.KEPT_PROGRAMS if synth.has_program(p)]
  missing = [p for p in gm.KEPT_PROGRAMS if not synth.has_program(p)]
  if not available:
    raise ValueError(f"Soundfont {soundfont!r} has none of the GM programs "
                     "with an NSynth family in bank 0; is it a General MIDI "
                     "soundfont?")
  settings = {
      "render_version": RENDER_VERSION,
      "soundfont_sha256": _file_sha256(soundfont),
      "max_notes": max_notes,
      "seed": seed,
      "examples_per_shard": examples_per_shard,
      "gain_db": float(gain_db),
      "silence_peak": float(silence_peak),
      "split_fractions": [list(x) for x in SPLIT_FRACTIONS],
  }
  settings_hash = hashlib.sha256(
      json.dumps(settings, sort_keys=True).encode()).hexdigest()
  os.makedirs(output_dir, exist_ok=True)
  # One render at a time per folder (e.g. train.py and eval.py both asking
  # for the default dataset); a second caller waits, then finds it done.
  with _folder_lock(output_dir):
    finished = _prepare_output_dir(output_dir, settings, settings_hash,
                                   overwrite)
    if finished is not None:
      if verbose:
        print(f"{output_dir} already holds this render; nothing to do.")
        _print_summary(finished)
      return finished

    start_time = time.time()
    staging = os.path.join(output_dir, STAGING_DIRNAME)
    splits = assign_splits(plan_notes(available, max_notes, seed), seed)
    shards = _shard_plan(splits, examples_per_shard)

    def stats_path(name):
      return os.path.join(staging, name + ".json")

    todo = []
    for split, index, num_shards, notes in shards:
      name = nsynth.shard_filename(split, index, num_shards)
      done = (os.path.exists(os.path.join(staging, name)) or os.path.exists(
          os.path.join(output_dir, name))) and os.path.exists(stats_path(name))
      if not done:
        todo.append((split, index, num_shards, notes))

    num_todo = sum(len(s[3]) for s in todo)
    if num_workers is None:
      # The parent's receiving and writing keeps one core busy: on 2 cores,
      # in-process rendering (682 notes/s) beats 2 workers (477 notes/s).
      num_workers = max(1, (os.cpu_count() or 1) - 1)
    num_workers = max(1, min(num_workers, num_todo // _MIN_NOTES_PER_WORKER))
    tasks = []
    for shard_index, (_, _, _, notes) in enumerate(todo):
      for start in range(0, len(notes), _CHUNK_NOTES):
        tasks.append(((shard_index, start),
                      notes[start:start + _CHUNK_NOTES], silence_peak))

    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    bar = tqdm(total=num_todo, unit="note", desc="render", disable=not progress)
    pool = None
    try:
      if num_workers > 1:
        pool = multiprocessing.get_context("spawn").Pool(
            num_workers, initializer=_worker_init,
            initargs=(soundfont, gain_db))
        results = _bounded_ordered_map(pool, _render_chunk, tasks,
                                       window=4 * num_workers)
      else:
        results = (_render_chunk(task, synth) for task in tasks)
      for shard_index, (split, index, num_shards, notes) in enumerate(todo):
        statuses = []

        def shard_records(shard_index=shard_index, notes=notes,
                          statuses=statuses):
          """Streams the shard's records as the workers deliver them."""
          while len(statuses) < len(notes):
            (task_shard, _), chunk = next(results)
            if task_shard != shard_index:
              raise RuntimeError("render tasks arrived out of order")
            for record, status in chunk:
              statuses.append(status)
              if record is not None:
                yield record
            bar.update(len(chunk))

        name = nsynth.shard_filename(split, index, num_shards)
        num_examples, _ = _write_shard(os.path.join(staging, name),
                                       shard_records())
        kept = [n for n, s in zip(notes, statuses) if s in ("ok", "limited")]
        stats = {
            "split": split,
            "num_examples": num_examples,
            "programs": sorted({n[0] for n in kept}),
            "families": dict(collections.Counter(
                gm.program_info(n[0]).family for n in kept)),
            "dropped": dict(collections.Counter(
                s for s in statuses if s not in ("ok", "limited"))),
            "limited": statuses.count("limited"),
        }
        # A shard counts as done when both it and its stats exist.
        nsynth.write_json_atomically(stats_path(name), stats)
    finally:
      bar.close()
      if pool is not None:
        pool.terminate()
        pool.join()
    render_seconds = time.time() - start_time

    # Every shard is complete: move them into place, then the metadata.
    shard_lengths = collections.defaultdict(list)
    summary = {
        "output_dir": output_dir,
        "soundfont": soundfont,
        "settings": settings,
        "settings_hash": settings_hash,
        "notes": {name: 0 for name, _ in SPLIT_FRACTIONS},
        "notes_per_family": {name: {} for name, _ in SPLIT_FRACTIONS},
        "programs": {name: [] for name, _ in SPLIT_FRACTIONS},
        "dropped": {"silent": 0, "non_finite": 0},
        "limited": 0,
        "missing_programs": missing,
    }
    for split, index, num_shards, _ in shards:
      name = nsynth.shard_filename(split, index, num_shards)
      stats = _read_json(stats_path(name))
      if os.path.exists(os.path.join(staging, name)):
        os.replace(os.path.join(staging, name), os.path.join(output_dir, name))
      shard_lengths[split].append(stats["num_examples"])
      summary["notes"][split] += stats["num_examples"]
      for family, count in stats["families"].items():
        per_family = summary["notes_per_family"][split]
        per_family[family] = per_family.get(family, 0) + count
      summary["programs"][split] = sorted(
          set(summary["programs"][split]) | set(stats["programs"]))
      for reason, count in stats["dropped"].items():
        summary["dropped"][reason] = summary["dropped"].get(reason, 0) + count
      summary["limited"] += stats["limited"]
    summary["shard_lengths"] = dict(shard_lengths)
    summary["total_notes"] = sum(summary["notes"].values())
    nsynth.write_folder_metadata(
        output_dir, dict(shard_lengths),
        description=("NSynth-protocol notes rendered from the General MIDI "
                     f"soundfont {os.path.basename(soundfont)} by audio_perm's "
                     "data_prep.render."))
    summary["num_workers"] = num_workers
    summary["render_seconds"] = round(render_seconds, 3)
    summary["notes_per_second"] = (
        round(num_todo / render_seconds, 1) if num_todo and render_seconds
        else None)
    summary["complete"] = True
    nsynth.write_json_atomically(os.path.join(output_dir, SUMMARY_FILENAME),
                                 summary)
    shutil.rmtree(staging, ignore_errors=True)
    if verbose:
      _print_summary(summary)
    return summary


@contextlib.contextmanager
def _folder_lock(folder):
  """Exclusive advisory lock on folder/.render.lock (no-op without fcntl)."""
  try:
    import fcntl  # pylint: disable=g-import-not-at-top
  except ImportError:  # Not POSIX.
    yield
    return
  with open(os.path.join(folder, _LOCK_FILENAME), "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def _bounded_ordered_map(pool, func, tasks, window):
  """Like pool.imap, but with at most `window` tasks in flight.

  pool.imap runs ahead without limit; with a slow writer the finished
  results (256 kB of audio per note) would pile up in memory.
  """
  pending = collections.deque()
  tasks = iter(tasks)
  for task in tasks:
    pending.append(pool.apply_async(func, (task,)))
    if len(pending) >= window:
      break
  while pending:
    result = pending.popleft().get()
    for task in tasks:
      pending.append(pool.apply_async(func, (task,)))
      break
    yield result


def _write_shard(path, records):
  """Writes one shard atomically (module-level so tests can interrupt it)."""
  return nsynth.write_tfrecord_atomically(path, records)


def is_complete(data_dir):
  """Whether `data_dir` holds a finished render (summary and metadata)."""
  summary = _read_json(os.path.join(data_dir, SUMMARY_FILENAME))
  return bool(summary and summary.get("complete")) and os.path.exists(
      os.path.join(data_dir, "dataset_info.json"))


def ensure_default_dataset(data_dir=None, progress=True):
  """Returns the embedded default dataset's folder, rendering it on first use.

  The default dataset: TimGM6mb (inside pretty_midi), max_notes=3000, seed
  0: 32-33 notes for each of the 92 programs, 2400/300/300 train/valid/test
  before 25 silent notes are dropped (2975 notes kept, every program in every
  split), 763 MB on disk; rendering takes 10-20 s on 2 cores.

  Args:
    data_dir: folder; None for DEFAULT_DATA_DIR ($AUDIO_PERM_DATA_DIR or
      ~/.cache/audio_perm/nsynth_timgm6mb).
    progress: show a progress bar while rendering.

  Returns:
    str, the folder (loadable with tfds.builder_from_directory).
  """
  data_dir = os.path.abspath(data_dir or _default_data_dir())
  if not is_complete(data_dir):
    print(f"Rendering the default NSynth-protocol dataset (TimGM6mb, "
          f"{DEFAULT_MAX_NOTES} notes) into {data_dir}; this is done once.",
          flush=True)
    render_dataset(data_dir, soundfont=None, max_notes=DEFAULT_MAX_NOTES,
                   seed=DEFAULT_SEED, progress=progress)
  return data_dir


# ---------------------------------------------------------------------------
# Command line.
# ---------------------------------------------------------------------------


def _define_flags():
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("output_dir", None, "Dataset folder to write.")
  flags.DEFINE_string("soundfont", None,
                      "SF2/SF3 General MIDI soundfont; default: TimGM6mb.sf2 "
                      "from pretty_midi.")
  flags.DEFINE_integer("max_notes", None,
                       "Cap on the number of notes, spread evenly over "
                       "programs, pitches and velocities; default: all.")
  flags.DEFINE_integer("seed", 0, "Seed for the notes, splits and order.")
  flags.DEFINE_integer("examples_per_shard", EXAMPLES_PER_SHARD,
                       "Max notes per TFRecord shard.")
  flags.DEFINE_integer("num_workers", None,
                       "Rendering processes; default: one per core but "
                       "one (the writer).")
  flags.DEFINE_boolean("overwrite", False,
                       "Delete this tool's files in --output_dir first.")
  flags.DEFINE_boolean("progress", True, "Show a progress bar.")


def main(argv):
  del argv  # Stray arguments are refused by cli.run.
  from absl import flags  # pylint: disable=g-import-not-at-top
  flag_values = flags.FLAGS
  cli.check_output_dir(flag_values.output_dir)
  try:
    render_dataset(flag_values.output_dir, soundfont=flag_values.soundfont,
                   max_notes=flag_values.max_notes, seed=flag_values.seed,
                   examples_per_shard=flag_values.examples_per_shard,
                   num_workers=flag_values.num_workers,
                   overwrite=flag_values.overwrite,
                   progress=flag_values.progress)
  except ImportError as e:  # No tinysoundfont: the message says what to do.
    raise ValueError(str(e)) from e


def run():
  """Console entry point (audio-perm-render)."""
  _define_flags()
  cli.run(main, "data_prep.render")


if __name__ == "__main__":
  run()
