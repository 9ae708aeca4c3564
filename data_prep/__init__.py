"""Dataset preparation: NSynth's protocol rendered from General MIDI soundfonts,
and Magenta's released NSynth files converted to a TFDS folder dataset."""
