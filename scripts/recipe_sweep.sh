#!/usr/bin/env bash
# The pretraining-recipe sweep (docs/recipe_sweep.md): every setting at two
# pretraining seeds, 300 steps on the default data, then one diagnostics
# call that probes each run's conv features and fc1 against its random twin
# (same architecture, same seed), 1000 labels, 3 probe seeds.
#
#   bash scripts/recipe_sweep.sh [OUT_DIR]      (default runs/sweep)
#
# Finished runs are not retrained (train.py resumes/skips them), so the
# script can be rerun after an interruption.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/sweep}"
PY="${PYTHON:-.venv/bin/python}"
mkdir -p "$OUT"

declare -A SETTINGS=(
  [patchstd_lr1e-5]="--input_standardization=patch --learning_rate=1e-5"
  [patchstd_gap11_lr1e-5]="--input_standardization=patch --patch_gap=11 --learning_rate=1e-5"
  [jitter_gap11_lr1e-4]="--gain_jitter=3 --tilt_jitter=2 --eq_jitter=2 --patch_gap=11 --learning_rate=1e-4"
)
ORDER=(patchstd_lr1e-5 patchstd_gap11_lr1e-5 jitter_gap11_lr1e-4)
SEEDS=(${SEEDS:-0 1})

dirs=()
for name in "${ORDER[@]}"; do
  for seed in "${SEEDS[@]}"; do
    dir="$OUT/${name}_s${seed}"
    dirs+=("--model_dir=$dir")
    echo "== $name seed $seed: train.py ${SETTINGS[$name]} --seed=$seed"
    start=$(date +%s)
    # shellcheck disable=SC2086
    "$PY" train.py --model_dir="$dir" --seed="$seed" --noverbose \
      ${SETTINGS[$name]} 2>&1 | grep -E "error|Trained|Exported" || true
    echo "   $(( $(date +%s) - start )) s"
  done
done

echo "== diagnostics (conv and fc1, each run against its random twin)"
"$PY" -m audio_perm.diagnostics "${dirs[@]}" --num_labeled=1000 --seeds=3 \
  --json="$OUT/diagnostics.json" --noprogress 2>&1 | grep -v "^[IW]1\|^W0\|^I0" \
  | tee "$OUT/diagnostics.txt"
