"""audio_perm: self-supervised audio representations from permutations.

Spectrogram patches are shuffled and a context-free network learns to put them
back in order through a differentiable ranking layer (Carr et al., IEEE SPL
2021). Modules:

  spectrogram   waveform -> log magnitude STFT (tf.signal, on graph)
  patches       spectrogram -> patches for each scheme, and back
  permutations  uniform sampling, fixed Hamming sets, ranks <-> permutations
  ranking       soft_rank / soft_sort (l2, kl), perturbed ranks, hard ranks
  data          NSynth folder datasets / Magenta TFRecords -> pretext examples
"""

__version__ = "0.1.0"
