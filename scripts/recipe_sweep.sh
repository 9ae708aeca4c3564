#!/usr/bin/env bash
# The pretraining-recipe sweep (docs/recipe_sweep.md): every setting of a
# round at two pretraining seeds, 300 steps on the default data, then one
# diagnostics call that probes each run's conv features and fc1 against its
# random twin (same architecture, same seed), 1000 labels, 3 probe seeds.
#
#   bash scripts/recipe_sweep.sh [ROUND] [OUT_DIR]   (default 1, runs/sweep)
#
# Finished runs are not retrained (train.py resumes/skips them), so the
# script can be rerun after an interruption. SEEDS="0 1 2" overrides the
# pretraining seeds; DATA_DIR=DIR pretrains and probes on another rendered
# dataset (python -m data_prep.render --output_dir=DIR --soundfont=...)
# instead of the default data (give it its own OUT_DIR: a finished run of
# the same name in OUT_DIR is not retrained).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUND="${1:-1}"
OUT="${2:-runs/sweep}"
PY="${PYTHON:-.venv/bin/python}"
mkdir -p "$OUT"

# train.py's defaults when rounds 1-35 ran (10 frequency bands, width 1/8,
# none of the recipe's extras), given first so that every setting below
# means what it meant then; each setting's own flags come after and win.
# Round 35's setting became the default afterwards.
BASE="--patching=frequency --width=0.125 --gain_jitter=0 --tilt_jitter=0 --eq_jitter=0 --init_decay=0 --variance_penalty=0 --covariance_penalty=0"
JITTER="--gain_jitter=3 --tilt_jitter=2 --eq_jitter=2"
declare -A SETTINGS=(
  # Round 1.
  [patchstd_lr1e-5]="--input_standardization=patch --learning_rate=1e-5"
  [patchstd_gap11_lr1e-5]="--input_standardization=patch --patch_gap=11 --learning_rate=1e-5"
  [jitter_gap11_lr1e-4]="$JITTER --patch_gap=11 --learning_rate=1e-4"
  # Round 2. lr 1e-12 moves no weight (Adam steps ~lr): only BatchNorm's
  # moving statistics change, so it separates their effect from learning.
  [patchstd_lr1e-12]="--input_standardization=patch --learning_rate=1e-12"
  [tf_patchstd_lr1e-5]="--patching=time_frequency --input_standardization=patch --learning_rate=1e-5"
  [tf_jitter_lr1e-4]="--patching=time_frequency $JITTER --learning_rate=1e-4"
  [time_patchstd_lr1e-5]="--patching=time --input_standardization=patch --learning_rate=1e-5"
  # Round 3: conv5 averaged over frames only (bin positions kept).
  [tp_patchstd_lr1e-5]="--pooling=time --input_standardization=patch --learning_rate=1e-5"
  [tp_jitter_gap11_lr1e-4]="--pooling=time $JITTER --patch_gap=11 --learning_rate=1e-4"
  # Round 4: round 1's jitter setting with no weight change (BatchNorm only).
  [jitter_gap11_lr1e-12]="$JITTER --patch_gap=11 --learning_rate=1e-12"
  # Round 5: time-frequency tiles (the strongest twins) with jitter, pulled
  # towards their initialisation (init_decay; the per-weight gradients at
  # the start are 0.04-1.8, so the pull bounds the drift at ~0.01 and
  # ~0.001), and their weightless control.
  [tf_jitter_decay10_lr1e-4]="--patching=time_frequency $JITTER --init_decay=10 --learning_rate=1e-4"
  [tf_jitter_decay100_lr1e-4]="--patching=time_frequency $JITTER --init_decay=100 --learning_rate=1e-4"
  [tf_jitter_lr1e-12]="--patching=time_frequency $JITTER --learning_rate=1e-12"
  # Round 6: the pull of round 5 that still learns (init_decay=10), three
  # times longer (the pretext was still rising at step 300), and at lr 1e-3.
  [tf_jitter_decay10_lr1e-4_900]="--patching=time_frequency $JITTER --init_decay=10 --learning_rate=1e-4 --train_steps=900"
  [tf_jitter_decay10_lr1e-3]="--patching=time_frequency $JITTER --init_decay=10 --learning_rate=1e-3"
  # Round 8: BatchNorm's moving statistics alone cost the tiles pitch (round
  # 5's weightless control), and refitting them on natural audio costs more
  # (docs/recipe_sweep.md): the same candidate without moving statistics
  # (no normalisation; per-example normalisation), and a stronger pull.
  [tf_jitter_decay10_lr1e-3_nonorm]="--patching=time_frequency $JITTER --init_decay=10 --learning_rate=1e-3 --normalization=none"
  [tf_jitter_decay10_lr1e-3_exnorm]="--patching=time_frequency $JITTER --init_decay=10 --learning_rate=1e-3 --normalization=example"
  [tf_jitter_decay30_lr1e-3]="--patching=time_frequency $JITTER --init_decay=30 --learning_rate=1e-3"
  # Round 10: the log-frequency axis (--frequency_scale=log, 256 bands from
  # 27.5 Hz), where a pitch change is a shift and each band holds a
  # different density of partials: the paper's 10 bands (25 bins, 20-bin
  # cuts), and round 6's candidate tiles.
  [log_jitter_gap5_lr1e-4]="--frequency_scale=log $JITTER --patch_gap=5 --learning_rate=1e-4"
  [log_tf_jitter_decay10_lr1e-3]="--frequency_scale=log --patching=time_frequency $JITTER --init_decay=10 --learning_rate=1e-3"
  # Round 11: VICReg's variance and covariance terms on the per-patch
  # features (VICReg's weights, 25 and 1; at the start the variance term
  # is ~0.7, the covariance term ~0.1, the pretext loss ~26): on the tiles
  # instead of the pull, with it, and on round 1's 10 bands.
  [tf_jitter_vc_lr1e-3]="--patching=time_frequency $JITTER --variance_penalty=25 --covariance_penalty=1 --learning_rate=1e-3"
  [tf_jitter_decay10_vc_lr1e-3]="--patching=time_frequency $JITTER --init_decay=10 --variance_penalty=25 --covariance_penalty=1 --learning_rate=1e-3"
  [jitter_gap11_vc_lr1e-4]="$JITTER --patch_gap=11 --variance_penalty=25 --covariance_penalty=1 --learning_rate=1e-4"
  # Round 13: round 12's candidate with conv5 averaged over frames only, so
  # that the terms act on features that keep each bin position (pitch).
  [tp_tf_jitter_decay10_vc_lr1e-3]="--pooling=time --patching=time_frequency $JITTER --init_decay=10 --variance_penalty=25 --covariance_penalty=1 --learning_rate=1e-3"
  # Round 14: round 12's candidate with the first conv blocks kept random
  # (frozen_blocks: the random low-level filters carry pitch), 2 and 4 of 5.
  [tf_jitter_frozen2_decay10_vc_lr1e-3]="--patching=time_frequency $JITTER --frozen_blocks=2 --init_decay=10 --variance_penalty=25 --covariance_penalty=1 --learning_rate=1e-3"
  [tf_jitter_frozen4_decay10_vc_lr1e-3]="--patching=time_frequency $JITTER --frozen_blocks=4 --init_decay=10 --variance_penalty=25 --covariance_penalty=1 --learning_rate=1e-3"
  # Round 16: frozen4's weightless control (lr 1e-12): only conv5's
  # BatchNorm statistics change, which separates them from conv5's weights.
  [tf_jitter_frozen4_decay10_vc_lr1e-12]="--patching=time_frequency $JITTER --frozen_blocks=4 --init_decay=10 --variance_penalty=25 --covariance_penalty=1 --learning_rate=1e-12"
  # Round 17: conv5's weights held nearer their start (a 3x stronger pull,
  # which with blocks 1-4 frozen acts on conv5 and the dense layers only).
  [tf_jitter_frozen4_decay30_vc_lr1e-3]="--patching=time_frequency $JITTER --frozen_blocks=4 --init_decay=30 --variance_penalty=25 --covariance_penalty=1 --learning_rate=1e-3"
  # Round 18: a pretext term that needs pitch (--pitch_copies): each note as
  # 4 copies shifted by up to +-3 semitones, ranked by a linear score of
  # their features averaged over patches, on round 12's candidate; the
  # term's weight 1 (at the start ~1/5 of the pretext loss) and 5.
  [tf_jitter_decay10_vc_pitch4_lr1e-3]="--patching=time_frequency $JITTER --init_decay=10 --variance_penalty=25 --covariance_penalty=1 --pitch_copies=4 --learning_rate=1e-3"
  [tf_jitter_decay10_vc_pitch4w5_lr1e-3]="--patching=time_frequency $JITTER --init_decay=10 --variance_penalty=25 --covariance_penalty=1 --pitch_copies=4 --pitch_weight=5 --learning_rate=1e-3"
  # Round 19: round 18 cost pitch, more with weight 5: the copies could be
  # ranked by their moved envelope and shortened note. Each copy keeps the
  # note's own smooth envelope (--pitch_envelope=original), so only where
  # the partials lie tells them apart.
  [tf_jitter_decay10_vc_pitch4env_lr1e-3]="--patching=time_frequency $JITTER --init_decay=10 --variance_penalty=25 --covariance_penalty=1 --pitch_copies=4 --pitch_envelope=original --learning_rate=1e-3"
  [tf_jitter_decay10_vc_pitch4envw5_lr1e-3]="--patching=time_frequency $JITTER --init_decay=10 --variance_penalty=25 --covariance_penalty=1 --pitch_copies=4 --pitch_envelope=original --pitch_weight=5 --learning_rate=1e-3"
  # Round 21: the copies anti-aliased, their interpolation images removed
  # and all limited to the band they share (--pitch_band=common, the
  # default since round 21; rounds 18-20 ran before the filters).
  [tf_jitter_decay10_vc_pitch4envband_lr1e-3]="--patching=time_frequency $JITTER --init_decay=10 --variance_penalty=25 --covariance_penalty=1 --pitch_copies=4 --pitch_envelope=original --pitch_band=common --learning_rate=1e-3"
  [tf_jitter_decay10_vc_pitch4envband12_lr1e-3]="--patching=time_frequency $JITTER --init_decay=10 --variance_penalty=25 --covariance_penalty=1 --pitch_copies=4 --pitch_envelope=original --pitch_band=common --pitch_range=12 --learning_rate=1e-3"
  # Round 22: the score on fc1; +-12 semitones with each copy's own band.
  [tf_jitter_decay10_vc_pitch4envbandfc1_lr1e-3]="--patching=time_frequency $JITTER --init_decay=10 --variance_penalty=25 --covariance_penalty=1 --pitch_copies=4 --pitch_envelope=original --pitch_band=common --pitch_features=embedding --learning_rate=1e-3"
  [tf_jitter_decay10_vc_pitch4envfull12_lr1e-3]="--patching=time_frequency $JITTER --init_decay=10 --variance_penalty=25 --covariance_penalty=1 --pitch_copies=4 --pitch_envelope=original --pitch_band=full --pitch_range=12 --learning_rate=1e-3"
  # Round 23: the copies' scores asked to move by their shifts, not only to
  # keep their order (--pitch_loss=shift, SPICE's relative-pitch loss), at
  # +-3 semitones with weights 1 and 5, and at +-6.
  [tf_jitter_decay10_vc_pitch4shift_lr1e-3]="--patching=time_frequency $JITTER --init_decay=10 --variance_penalty=25 --covariance_penalty=1 --pitch_copies=4 --pitch_envelope=original --pitch_band=common --pitch_loss=shift --learning_rate=1e-3"
  [tf_jitter_decay10_vc_pitch4shiftw5_lr1e-3]="--patching=time_frequency $JITTER --init_decay=10 --variance_penalty=25 --covariance_penalty=1 --pitch_copies=4 --pitch_envelope=original --pitch_band=common --pitch_loss=shift --pitch_weight=5 --learning_rate=1e-3"
  [tf_jitter_decay10_vc_pitch4shift6_lr1e-3]="--patching=time_frequency $JITTER --init_decay=10 --variance_penalty=25 --covariance_penalty=1 --pitch_copies=4 --pitch_envelope=original --pitch_band=common --pitch_loss=shift --pitch_range=6 --learning_rate=1e-3"
  # Round 24: the copies without the term (--pitch_weight=0), at +-3 and
  # +-6: what training the pretext on the copies alone costs.
  [tf_jitter_decay10_vc_copies4w0_lr1e-3]="--patching=time_frequency $JITTER --init_decay=10 --variance_penalty=25 --covariance_penalty=1 --pitch_copies=4 --pitch_envelope=original --pitch_band=common --pitch_weight=0 --learning_rate=1e-3"
  [tf_jitter_decay10_vc_copies4r6w0_lr1e-3]="--patching=time_frequency $JITTER --init_decay=10 --variance_penalty=25 --covariance_penalty=1 --pitch_copies=4 --pitch_envelope=original --pitch_band=common --pitch_range=6 --pitch_weight=0 --learning_rate=1e-3"
  # Round 25: the pretext on the notes as they are, the copies for the
  # pitch term only (--pitch_pretext=note), rank and shift losses; round
  # 12's candidate again as the baseline of this environment.
  [tf_jitter_decay10_vc_pitch4note_lr1e-3]="--patching=time_frequency $JITTER --init_decay=10 --variance_penalty=25 --covariance_penalty=1 --pitch_copies=4 --pitch_envelope=original --pitch_band=common --pitch_pretext=note --learning_rate=1e-3"
  [tf_jitter_decay10_vc_pitch4noteshift_lr1e-3]="--patching=time_frequency $JITTER --init_decay=10 --variance_penalty=25 --covariance_penalty=1 --pitch_copies=4 --pitch_envelope=original --pitch_band=common --pitch_pretext=note --pitch_loss=shift --learning_rate=1e-3"
  # Round 27: as round 25's shift setting, but the copies normalised by
  # their own batch's statistics (--pitch_pretext=note_batch), as when the
  # term learned in rounds 19-23, while the moving statistics stay the
  # notes'; weights 1 and 5.
  [tf_jitter_decay10_vc_pitch4nbshift_lr1e-3]="--patching=time_frequency $JITTER --init_decay=10 --variance_penalty=25 --covariance_penalty=1 --pitch_copies=4 --pitch_envelope=original --pitch_band=common --pitch_pretext=note_batch --pitch_loss=shift --learning_rate=1e-3"
  [tf_jitter_decay10_vc_pitch4nbshiftw5_lr1e-3]="--patching=time_frequency $JITTER --init_decay=10 --variance_penalty=25 --covariance_penalty=1 --pitch_copies=4 --pitch_envelope=original --pitch_band=common --pitch_pretext=note_batch --pitch_loss=shift --pitch_weight=5 --learning_rate=1e-3"
  # Round 29: round 27's weight-1 setting with +-12 semitones (the common
  # band then low-passes the copies alone, at 4 kHz, not the pretext's
  # inputs), and with the score read from fc1, the layer the probe reads.
  [tf_jitter_decay10_vc_pitch4nbshift12_lr1e-3]="--patching=time_frequency $JITTER --init_decay=10 --variance_penalty=25 --covariance_penalty=1 --pitch_copies=4 --pitch_envelope=original --pitch_band=common --pitch_pretext=note_batch --pitch_loss=shift --pitch_range=12 --learning_rate=1e-3"
  [tf_jitter_decay10_vc_pitch4nbshiftfc1_lr1e-3]="--patching=time_frequency $JITTER --init_decay=10 --variance_penalty=25 --covariance_penalty=1 --pitch_copies=4 --pitch_envelope=original --pitch_band=common --pitch_pretext=note_batch --pitch_loss=shift --pitch_features=embedding --learning_rate=1e-3"
  # Round 30: round 27's weight-1 setting three times longer (900 steps).
  # Round 31: round 12's candidate twice as wide (less spread between
  # random initialisations, more channels for pitch), and with a fifth of
  # the variance weight (between round 7's pull alone and round 12).
  [tf_jitter_decay10_vc_w025_lr1e-3]="--patching=time_frequency $JITTER --init_decay=10 --variance_penalty=25 --covariance_penalty=1 --width=0.25 --learning_rate=1e-3"
  [tf_jitter_decay10_v5c_lr1e-3]="--patching=time_frequency $JITTER --init_decay=10 --variance_penalty=5 --covariance_penalty=1 --learning_rate=1e-3"
  # Round 32: round 31's variance weight 5 (fc1 pitch -23 MSE at seeds 0
  # and 1, the timbre gain gone) at more seeds (SEEDS="2 3"), and weight 10.
  [tf_jitter_decay10_v10c_lr1e-3]="--patching=time_frequency $JITTER --init_decay=10 --variance_penalty=10 --covariance_penalty=1 --learning_rate=1e-3"
  # Round 33: round 12's candidate with conv5's kernels kept as drawn
  # (--random_kernels=1: rounds 14-17 put pretraining's pitch loss in what
  # conv5's weights learn; its timbre gain may live below), and variance
  # weight 5 at width 0.25 (whose twins spread least, round 31).
  [tf_jitter_decay10_vc_rk1_lr1e-3]="--patching=time_frequency $JITTER --init_decay=10 --variance_penalty=25 --covariance_penalty=1 --random_kernels=1 --learning_rate=1e-3"
  [tf_jitter_decay10_v5c_w025_lr1e-3]="--patching=time_frequency $JITTER --init_decay=10 --variance_penalty=5 --covariance_penalty=1 --width=0.25 --learning_rate=1e-3"
  [tf_jitter_decay10_v10c_w025_lr1e-3]="--patching=time_frequency $JITTER --init_decay=10 --variance_penalty=10 --covariance_penalty=1 --width=0.25 --learning_rate=1e-3"
  [tf_jitter_decay10_vc_pitch4nbshift_lr1e-3_900]="--patching=time_frequency $JITTER --init_decay=10 --variance_penalty=25 --covariance_penalty=1 --pitch_copies=4 --pitch_envelope=original --pitch_band=common --pitch_pretext=note_batch --pitch_loss=shift --learning_rate=1e-3 --train_steps=900"
)
case "$ROUND" in
  1) ORDER=(patchstd_lr1e-5 patchstd_gap11_lr1e-5 jitter_gap11_lr1e-4) ;;
  2) ORDER=(patchstd_lr1e-12 tf_patchstd_lr1e-5 tf_jitter_lr1e-4 time_patchstd_lr1e-5) ;;
  3) ORDER=(tp_patchstd_lr1e-5 tp_jitter_gap11_lr1e-4) ;;
  4) ORDER=(jitter_gap11_lr1e-12) ;;
  5) ORDER=(tf_jitter_decay10_lr1e-4 tf_jitter_decay100_lr1e-4 tf_jitter_lr1e-12) ;;
  6) ORDER=(tf_jitter_decay10_lr1e-3 tf_jitter_decay10_lr1e-4_900) ;;
  # Round 7: the nearest candidate of round 6 at more seeds (SEEDS="2 3").
  7) ORDER=(tf_jitter_decay10_lr1e-3) ;;
  8) ORDER=(tf_jitter_decay10_lr1e-3_nonorm tf_jitter_decay10_lr1e-3_exnorm tf_jitter_decay30_lr1e-3) ;;
  # Round 9: round 8's stronger pull, the only setting level with or above
  # its twin on all three tasks, at more seeds (SEEDS="2 3").
  9) ORDER=(tf_jitter_decay30_lr1e-3) ;;
  10) ORDER=(log_jitter_gap5_lr1e-4 log_tf_jitter_decay10_lr1e-3) ;;
  11) ORDER=(tf_jitter_vc_lr1e-3 tf_jitter_decay10_vc_lr1e-3 jitter_gap11_vc_lr1e-4) ;;
  # Round 12: round 11's pull with the terms, level with or above its twin
  # on fc1 at seeds 0 and 1, at more seeds (SEEDS="2 3").
  12) ORDER=(tf_jitter_decay10_vc_lr1e-3) ;;
  13) ORDER=(tp_tf_jitter_decay10_vc_lr1e-3) ;;
  14) ORDER=(tf_jitter_frozen2_decay10_vc_lr1e-3 tf_jitter_frozen4_decay10_vc_lr1e-3) ;;
  # Round 15: round 12's candidate and round 14's frozen4 on other data:
  # FluidR3_GM rendered by data_prep.render (DATA_DIR, required).
  15) ORDER=(tf_jitter_decay10_vc_lr1e-3 tf_jitter_frozen4_decay10_vc_lr1e-3)
      if [ -z "${DATA_DIR:-}" ]; then
        echo "recipe_sweep.sh: round 15 runs on FluidR3_GM: render it with python -m data_prep.render --output_dir=DIR --soundfont=/usr/share/sounds/sf2/FluidR3_GM.sf2 --max_notes=3000, then pass DATA_DIR=DIR." >&2
        exit 2
      fi ;;
  16) ORDER=(tf_jitter_frozen4_decay10_vc_lr1e-12) ;;
  17) ORDER=(tf_jitter_frozen4_decay30_vc_lr1e-3) ;;
  18) ORDER=(tf_jitter_decay10_vc_pitch4_lr1e-3 tf_jitter_decay10_vc_pitch4w5_lr1e-3) ;;
  19) ORDER=(tf_jitter_decay10_vc_pitch4env_lr1e-3 tf_jitter_decay10_vc_pitch4envw5_lr1e-3) ;;
  # Round 20: round 19's weight-1 setting, the nearest yet, at more seeds
  # (SEEDS="2 3").
  20) ORDER=(tf_jitter_decay10_vc_pitch4env_lr1e-3) ;;
  # Round 21: the copies without the cues the filters remove, at +-3 and
  # +-12 semitones (an octave-scale order, nearer what the probe's pitch
  # needs).
  21) ORDER=(tf_jitter_decay10_vc_pitch4envband_lr1e-3 tf_jitter_decay10_vc_pitch4envband12_lr1e-3) ;;
  # Round 22: the pitch score read from fc1 (what the probe sees), and +-12
  # semitones with each copy keeping its own band (round 21's +-12 run
  # low-passed every input at 4 kHz).
  22) ORDER=(tf_jitter_decay10_vc_pitch4envbandfc1_lr1e-3 tf_jitter_decay10_vc_pitch4envfull12_lr1e-3) ;;
  # Round 23: the shift loss on the copies' scores.
  23) ORDER=(tf_jitter_decay10_vc_pitch4shift_lr1e-3 tf_jitter_decay10_vc_pitch4shiftw5_lr1e-3 tf_jitter_decay10_vc_pitch4shift6_lr1e-3) ;;
  # Round 24: round 23's copies with the term off (weight 0), a control.
  24) ORDER=(tf_jitter_decay10_vc_copies4w0_lr1e-3 tf_jitter_decay10_vc_copies4r6w0_lr1e-3) ;;
  # Round 25: the copies for the pitch term only (--pitch_pretext=note).
  25) ORDER=(tf_jitter_decay10_vc_lr1e-3 tf_jitter_decay10_vc_pitch4note_lr1e-3 tf_jitter_decay10_vc_pitch4noteshift_lr1e-3) ;;
  # Round 26: round 25's shift-loss setting, on fc1 at or above its twin on
  # all three tasks at seeds 0 and 1, at more seeds (SEEDS="2 3").
  26) ORDER=(tf_jitter_decay10_vc_pitch4noteshift_lr1e-3) ;;
  # Round 27: the copies through their own batch statistics.
  27) ORDER=(tf_jitter_decay10_vc_pitch4nbshift_lr1e-3 tf_jitter_decay10_vc_pitch4nbshiftw5_lr1e-3) ;;
  # Round 28: round 27's weight-1 setting, on fc1 above its twin on all
  # three tasks at seeds 0 and 1 (pitch by -9 MSE), at more seeds
  # (SEEDS="2 3").
  28) ORDER=(tf_jitter_decay10_vc_pitch4nbshift_lr1e-3) ;;
  # Round 29: +-12 semitones, and the score on fc1, both with note_batch.
  29) ORDER=(tf_jitter_decay10_vc_pitch4nbshift12_lr1e-3 tf_jitter_decay10_vc_pitch4nbshiftfc1_lr1e-3) ;;
  # Round 30: 900 steps, at the seeds where round 28 lost pitch
  # (SEEDS="2 3"; the same twins as round 28's).
  30) ORDER=(tf_jitter_decay10_vc_pitch4nbshift_lr1e-3_900) ;;
  # Round 31: width 0.25, and variance weight 5.
  31) ORDER=(tf_jitter_decay10_vc_w025_lr1e-3 tf_jitter_decay10_v5c_lr1e-3) ;;
  32) ORDER=(tf_jitter_decay10_v5c_lr1e-3 tf_jitter_decay10_v10c_lr1e-3) ;;
  # Round 33: conv5's kernels as drawn; variance weight 5 at width 0.25.
  33) ORDER=(tf_jitter_decay10_vc_rk1_lr1e-3 tf_jitter_decay10_v5c_w025_lr1e-3) ;;
  # Round 34: both of round 33's settings at more seeds (SEEDS="2 3"):
  # width 0.25 with weight 5 gave fc1 pitch -15 MSE with timbre above the
  # twin, conv5's random kernels +0.02 timbre with pitch -7.5 MSE.
  34) ORDER=(tf_jitter_decay10_v5c_w025_lr1e-3 tf_jitter_decay10_vc_rk1_lr1e-3) ;;
  # Round 35: weight 5 at width 0.25 at more seeds (SEEDS="4 5"): at 4
  # seeds its fc1 family and pitch gains clear the pooled std, its
  # instrument gain (+0.013 against 0.017) does not.
  35) ORDER=(tf_jitter_decay10_v5c_w025_lr1e-3) ;;
  # Round 36 (not run yet): weight 10 at width 0.25, between weight 25's
  # timbre gain and weight 5's pitch gain.
  36) ORDER=(tf_jitter_decay10_v10c_w025_lr1e-3) ;;
  *) echo "recipe_sweep.sh: no round $ROUND; rounds are 1 to 36." >&2; exit 2 ;;
esac
SEEDS=(${SEEDS:-0 1})
DATA=()
PROBE_DATA=()
if [ -n "${DATA_DIR:-}" ]; then
  DATA=("--data_dir=$DATA_DIR")
  PROBE_DATA=("--dataset_dir=$DATA_DIR")
fi

dirs=()
for name in "${ORDER[@]}"; do
  for seed in "${SEEDS[@]}"; do
    dir="$OUT/${name}_s${seed}"
    dirs+=("--model_dir=$dir")
    echo "== $name seed $seed: train.py ${SETTINGS[$name]} --seed=$seed"
    start=$(date +%s)
    # shellcheck disable=SC2086
    "$PY" train.py --model_dir="$dir" --seed="$seed" --noverbose \
      $BASE ${SETTINGS[$name]} "${DATA[@]}" 2>&1 | grep -E ": error: |Trained|Exported" || true
    echo "   $(( $(date +%s) - start )) s"
  done
done

# Round 1 wrote diagnostics.{json,txt}; later rounds carry their number.
suffix=$([ "$ROUND" = 1 ] && echo "" || echo "_round$ROUND")
echo "== diagnostics (conv and fc1, each run against its random twin)"
"$PY" -m audio_perm.diagnostics "${dirs[@]}" "${PROBE_DATA[@]}" --num_labeled=1000 --seeds=3 \
  --json="$OUT/diagnostics$suffix.json" --noprogress 2>&1 \
  | grep -v "^[IW]1\|^W0\|^I0" | tee "$OUT/diagnostics$suffix.txt"
