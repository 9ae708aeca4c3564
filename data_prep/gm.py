"""General MIDI programs -> NSynth instrument family, source and label.

Each of the 128 General MIDI (GM) melodic programs (0-based, bank 0) either maps
to one of NSynth's 11 instrument families and 3 sources, or is skipped because
NSynth has no family for it (synth pads, synth effects, percussive programs,
sound effects, and a few instruments that fit no family; drum kits live in
bank 128 and are never used). The instrument label of a kept program is its
dense index among the kept programs, in program order; it does not depend on
the soundfont, so label 17 means "Drawbar Organ" in every render.

Rules (source = how the sound is produced, as in NSynth: acoustic instruments,
electronic = electric/electromechanical instruments, synthetic = synthesizers):

  GM group (programs)            family       source
  Piano (0-7)                    keyboard     acoustic; electric pianos,
                                              electric grand, clavinet:
                                              electronic
  Chromatic percussion (8-15)    mallet       acoustic
  Organ (16-20)                  organ        electronic (drawbar,
                                              percussive, rock); acoustic
                                              (church, reed organ)
  Accordion, harmonica (21-23)   reed         acoustic (free reeds)
  Guitar (24-31)                 guitar       acoustic (nylon, steel);
                                              electronic (electric guitars)
  Bass (32-39)                   bass         acoustic (32); electronic
                                              (33-37); synthetic (synth bass)
  Strings (40-46)                string       acoustic; Timpani (47) skipped
  Ensemble (48-54)               string       acoustic (48, 49); synthetic
                                              (synth strings 50, 51)
                                 vocal        acoustic (choir, voice oohs);
                                              synthetic (synth voice 54);
                                              Orchestra Hit (55) skipped
  Brass (56-63)                  brass        acoustic; synthetic (synth
                                              brass 62, 63)
  Reed (64-71)                   reed         acoustic
  Pipe (72-79)                   flute        acoustic
  Synth lead (80-87)             synth_lead   synthetic
  Synth pad, synth effects       skipped
  (88-103)
  Ethnic (104-111)               sitar, banjo, shamisen -> guitar acoustic;
                                 fiddle -> string acoustic; bagpipe, shanai ->
                                 reed acoustic; koto, kalimba skipped
  Percussive (112-119), sound    skipped
  effects (120-127)

92 programs are kept. `program_table()` lists them; `python -m data_prep.gm`
prints the full table (program, GM name, family, source, label).
"""

import collections

# NSynth's class names, in the order of the official nsynth FeaturesDict.
FAMILIES = ("bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ",
            "reed", "string", "synth_lead", "vocal")
SOURCES = ("acoustic", "electronic", "synthetic")

# The General MIDI level 1 program names, index = 0-based program number.
GM_PROGRAM_NAMES = (
    # Piano.
    "Acoustic Grand Piano", "Bright Acoustic Piano", "Electric Grand Piano",
    "Honky-tonk Piano", "Electric Piano 1", "Electric Piano 2", "Harpsichord",
    "Clavinet",
    # Chromatic percussion.
    "Celesta", "Glockenspiel", "Music Box", "Vibraphone", "Marimba",
    "Xylophone", "Tubular Bells", "Dulcimer",
    # Organ.
    "Drawbar Organ", "Percussive Organ", "Rock Organ", "Church Organ",
    "Reed Organ", "Accordion", "Harmonica", "Tango Accordion",
    # Guitar.
    "Acoustic Guitar (nylon)", "Acoustic Guitar (steel)",
    "Electric Guitar (jazz)", "Electric Guitar (clean)",
    "Electric Guitar (muted)", "Overdriven Guitar", "Distortion Guitar",
    "Guitar Harmonics",
    # Bass.
    "Acoustic Bass", "Electric Bass (finger)", "Electric Bass (pick)",
    "Fretless Bass", "Slap Bass 1", "Slap Bass 2", "Synth Bass 1",
    "Synth Bass 2",
    # Strings.
    "Violin", "Viola", "Cello", "Contrabass", "Tremolo Strings",
    "Pizzicato Strings", "Orchestral Harp", "Timpani",
    # Ensemble.
    "String Ensemble 1", "String Ensemble 2", "Synth Strings 1",
    "Synth Strings 2", "Choir Aahs", "Voice Oohs", "Synth Voice",
    "Orchestra Hit",
    # Brass.
    "Trumpet", "Trombone", "Tuba", "Muted Trumpet", "French Horn",
    "Brass Section", "Synth Brass 1", "Synth Brass 2",
    # Reed.
    "Soprano Sax", "Alto Sax", "Tenor Sax", "Baritone Sax", "Oboe",
    "English Horn", "Bassoon", "Clarinet",
    # Pipe.
    "Piccolo", "Flute", "Recorder", "Pan Flute", "Blown Bottle", "Shakuhachi",
    "Whistle", "Ocarina",
    # Synth lead.
    "Lead 1 (square)", "Lead 2 (sawtooth)", "Lead 3 (calliope)",
    "Lead 4 (chiff)", "Lead 5 (charang)", "Lead 6 (voice)", "Lead 7 (fifths)",
    "Lead 8 (bass + lead)",
    # Synth pad.
    "Pad 1 (new age)", "Pad 2 (warm)", "Pad 3 (polysynth)", "Pad 4 (choir)",
    "Pad 5 (bowed)", "Pad 6 (metallic)", "Pad 7 (halo)", "Pad 8 (sweep)",
    # Synth effects.
    "FX 1 (rain)", "FX 2 (soundtrack)", "FX 3 (crystal)", "FX 4 (atmosphere)",
    "FX 5 (brightness)", "FX 6 (goblins)", "FX 7 (echoes)", "FX 8 (sci-fi)",
    # Ethnic.
    "Sitar", "Banjo", "Shamisen", "Koto", "Kalimba", "Bagpipe", "Fiddle",
    "Shanai",
    # Percussive.
    "Tinkle Bell", "Agogo", "Steel Drums", "Woodblock", "Taiko Drum",
    "Melodic Tom", "Synth Drum", "Reverse Cymbal",
    # Sound effects.
    "Guitar Fret Noise", "Breath Noise", "Seashore", "Bird Tweet",
    "Telephone Ring", "Helicopter", "Applause", "Gunshot",
)
assert len(GM_PROGRAM_NAMES) == 128  # A static table, not user input.


def _family_source(program):
  """(family, source) of a GM program, or None if it is skipped."""
  p = program
  if p in (2, 4, 5, 7):
    return ("keyboard", "electronic")
  if 0 <= p <= 7:
    return ("keyboard", "acoustic")
  if 8 <= p <= 15:
    return ("mallet", "acoustic")
  if 16 <= p <= 18:
    return ("organ", "electronic")
  if p in (19, 20):
    return ("organ", "acoustic")
  if 21 <= p <= 23:
    return ("reed", "acoustic")
  if p in (24, 25):
    return ("guitar", "acoustic")
  if 26 <= p <= 31:
    return ("guitar", "electronic")
  if p == 32:
    return ("bass", "acoustic")
  if 33 <= p <= 37:
    return ("bass", "electronic")
  if p in (38, 39):
    return ("bass", "synthetic")
  if 40 <= p <= 46 or p in (48, 49):
    return ("string", "acoustic")
  if p in (50, 51):
    return ("string", "synthetic")
  if p in (52, 53):
    return ("vocal", "acoustic")
  if p == 54:
    return ("vocal", "synthetic")
  if 56 <= p <= 61:
    return ("brass", "acoustic")
  if p in (62, 63):
    return ("brass", "synthetic")
  if 64 <= p <= 71:
    return ("reed", "acoustic")
  if 72 <= p <= 79:
    return ("flute", "acoustic")
  if 80 <= p <= 87:
    return ("synth_lead", "synthetic")
  if p in (104, 105, 106):
    return ("guitar", "acoustic")
  if p == 110:
    return ("string", "acoustic")
  if p in (109, 111):
    return ("reed", "acoustic")
  return None  # 47, 55, 88-103, 107, 108, 112-127.


ProgramInfo = collections.namedtuple(
    "ProgramInfo", ["program", "name", "family", "source", "label"])


def _build_table():
  table = []
  for program, name in enumerate(GM_PROGRAM_NAMES):
    fs = _family_source(program)
    if fs is not None:
      table.append(ProgramInfo(program, name, fs[0], fs[1], len(table)))
  return tuple(table)


_TABLE = _build_table()
_BY_PROGRAM = {info.program: info for info in _TABLE}

# GM programs with an NSynth family, in program order.
KEPT_PROGRAMS = tuple(info.program for info in _TABLE)


def program_table():
  """The kept GM programs as a tuple of ProgramInfo, ordered by program.

  ProgramInfo fields: program (0-based GM number), name (GM name), family and
  source (NSynth class names), label (dense instrument label 0..91).
  """
  return _TABLE


def program_info(program):
  """ProgramInfo of a GM program, or None if the program is skipped.

  Raises:
    ValueError: if `program` is not an integer in [0, 127].
  """
  if not isinstance(program, int) or not 0 <= program <= 127:
    raise ValueError(
        f"GM program must be an integer in [0, 127], got {program!r}.")
  return _BY_PROGRAM.get(program)


def format_table():
  """The full GM table (kept and skipped programs) as text, one per line."""
  lines = ["program  label  family      source      GM name"]
  for program, name in enumerate(GM_PROGRAM_NAMES):
    info = _BY_PROGRAM.get(program)
    if info is None:
      lines.append(f"{program:7d}      -  (skipped)               {name}")
    else:
      lines.append(f"{program:7d}  {info.label:5d}  {info.family:10s}  "
                   f"{info.source:10s}  {name}")
  return "\n".join(lines)


if __name__ == "__main__":
  print(format_table())
