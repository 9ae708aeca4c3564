#!/usr/bin/env bash
# The same seed under the float32 reference (TensorFlow's Eigen kernels:
# TF_ENABLE_ONEDNN_OPTS=0) and under the default (oneDNN kernels, fused
# BatchNorm), both pretrained with train.py's defaults and evaluated on the
# default data with the random and handcrafted baselines (1000 labels, 3
# probe seeds): the speed work must leave the probes within the noise floor
# (docs/noise_floor.md).
#
#   bash scripts/speed_check.sh [OUT_DIR]      (default runs/speed)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/speed}"
PY="${PYTHON:-.venv/bin/python}"
SEED="${SEED:-0}"
DATA_DIR="$("$PY" -c 'from data_prep import render; print(render.ensure_default_dataset())' 2>/dev/null | tail -1)"
for variant in float32 default; do
  env=()
  [[ $variant == float32 ]] && env=(TF_ENABLE_ONEDNN_OPTS=0)
  start=$(date +%s)
  env "${env[@]}" "$PY" train.py --model_dir="$OUT/${variant}_s$SEED" \
    --seed="$SEED" --noverbose 2>&1 | grep -E "error|Trained" || true
  echo "$variant: train.py $(( $(date +%s) - start )) s"
done
"$PY" eval.py --encoder="$OUT/float32_s$SEED/encoder,$OUT/default_s$SEED/encoder,random,handcrafted" \
  --dataset_dir="$DATA_DIR" --num_labeled=1000 --seeds=3 --output="$OUT/eval.json" \
  --report_dir="$OUT/report" --noprogress 2>&1 | grep -v "^[IW]1\|^W0\|^I0" | tail -30
