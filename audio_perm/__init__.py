"""audio_perm: self-supervised audio representations from permutations.

Spectrogram patches are shuffled and a context-free network learns to put them
back in order through a differentiable ranking layer (Carr et al., IEEE SPL
2021). The library, data flowing top to bottom:

  config        every setting, its default and its validation, once
  spectrogram   waveform -> log magnitude STFT (tf.signal, on graph)
  patches       spectrogram -> patches for each scheme, and back
  permutations  uniform sampling, fixed Hamming sets, ranks <-> permutations
  ranking/      soft_rank / soft_sort (l2, kl), perturbed ranks, hard ranks,
                the Fenchel-Young loss and Keras wrappers (graph-native)
  objectives    the four pretext losses and the partial-ranks accuracy
  data/         NSynth folder datasets / Magenta TFRecords -> pretext examples
                and waveforms; corrupt-file checks
  models        the CFN encoder from registered, fully tracked layers
  distribute    tf.distribute strategies by name
  export        waveform encoders and SavedModels (clips of any length;
                scene and timestamp signatures)
  windows       clips -> 4 s windows sliced from one spectrogram a clip
  training/     the loop, checkpoints (model + optimizer + step), summaries
  probe         probes on frozen embeddings
  evaluation/   datasets, encoders, embedding, supervised baseline, protocol,
                report
  diagnostics   what a run learned against its random twin
  shortcuts     what rules with nothing learned solve of a setting's pretext
  hear          the HEAR 2021 API over an exported encoder
  embed         python -m audio_perm.embed: audio files -> embeddings (.npz)
  study/        the paper's study harness (Tables I-II, Figs. 2-3)
"""

import os as _os

__version__ = "0.1.0"

# TensorFlow's oneDNN CPU kernels are off by default in the TensorFlow build
# this project pins (2.21 on x86-64); with them a default training step is
# about 2x faster on CPU (benchmarks/train.py). The switch is read once, when
# TensorFlow is imported, so the programs import audio_perm first. An explicit
# TF_ENABLE_ONEDNN_OPTS=0 in the environment wins.
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
