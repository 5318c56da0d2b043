#!/usr/bin/env bash
# Create .venv and install the station with its dev tools. Idempotent and quick when nothing changed.
# torch is pinned to 2.13.0 first: that CPU wheel is on the stations' disk, while an unpinned
# torch would pull several GB of CUDA packages.
# A first run takes minutes: each step says what it does, with pip's own progress lines
# (Collecting / Downloading with its size / Installing); a run with nothing to do prints nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
say() { echo "setup: $*"; }

# pip_step WHAT ARGS...: run `pip install ARGS`, showing only the lines that tell progress;
# the whole output goes to .venv/setup-pip.log and its end is shown if pip fails.
pip_step() {
  local what=$1 log=.venv/setup-pip.log status
  shift
  say "$what"
  echo "=== $what ===" >> "$log"
  set +e
  .venv/bin/python -m pip install --disable-pip-version-check "$@" 2>&1 | tee -a "$log" \
    | grep --line-buffered -E '^\s*(Collecting|Downloading|Installing collected|Successfully installed|ERROR)' \
    | sed -u 's/^\s*/  /'
  status=${PIPESTATUS[0]}
  set -e
  if [ "$status" -ne 0 ]; then
    echo "setup: pip failed ($what); the end of $log:" >&2
    tail -n 15 "$log" >&2
    exit 1
  fi
}

if [ ! -x .venv/bin/python ]; then
  say "creating the virtual environment .venv ($("$PY" --version 2>&1))"
  "$PY" -m venv .venv
fi
stamp=.venv/.station-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing the station's dependencies into .venv (the first time: a few minutes)"
  : > .venv/setup-pip.log  # every step's whole output, one after another (each step used to replace the last's)
  pip_step "1/3 torch 2.13.0 (CPU build)" "torch==2.13.0"
  pip_step "2/3 the station and its tools (PySide6, OpenCV, SQLAlchemy, numba, pytest, …)" -e ".[dev]"
  say "3/3 checking that everything imports"
  .venv/bin/python -c "import torch, PySide6, cv2, sqlalchemy, numba, safetensors" \
    || { echo "setup: installation failed" >&2; exit 1; }
  echo "$want" > "$stamp"
  say "done"
fi
