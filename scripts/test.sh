#!/usr/bin/env bash
# Sets up ./.venv and runs the whole test suite. Extra arguments go to pytest.
# Two xdist workers unless the arguments choose (-n 0: one process); work
# stealing keeps both busy when the long end-to-end tests come last.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
. .venv/bin/activate
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
workers=(-n 2 --dist worksteal)
for arg in "$@"; do
  case "$arg" in
    -n|-n*|--numprocesses|--numprocesses=*|--dist|--dist=*|no:xdist|-pno:xdist)
      workers=() ;;
  esac
done
set +e
python -m pytest -x -q "${workers[@]}" "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing on purpose" >&2
  exit 1
fi
exit "$rc"
