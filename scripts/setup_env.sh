#!/usr/bin/env bash
# Creates ./.venv (if absent) and installs the project with its test extras.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# tinysoundfont renders SoundFonts offline; its declared pyaudio requirement is
# only for live playback and does not build without portaudio headers.
python -m pip install -q --no-deps "tinysoundfont>=0.3.7,<0.4"
python -m pip install -q -e ".[test]"
