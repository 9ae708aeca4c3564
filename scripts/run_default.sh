#!/usr/bin/env bash
# Sets up ./.venv and runs the main job end to end on the embedded default data:
# renders the default NSynth-protocol dataset from the TimGM6mb soundfont shipped
# with pretty_midi (first run only), pretrains an encoder with train.py's
# defaults, exports it, and evaluates it against the random and handcrafted
# baselines with eval.py. Extra arguments go to train.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
. .venv/bin/activate
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
MODEL_DIR="${MODEL_DIR:-runs/default}"
python train.py --model_dir="$MODEL_DIR" "$@"
DATA_DIR="$(python -c 'from data_prep import render; print(render.ensure_default_dataset())')"
python eval.py --encoder="$MODEL_DIR/encoder,random,handcrafted" \
  --dataset_dir="$DATA_DIR" --output="$MODEL_DIR/eval.json" \
  --report_dir="$MODEL_DIR/report"
echo "Report: $MODEL_DIR/report"
