#!/usr/bin/env bash
# Set up (if needed), run the guard rails (ruff, then mypy: configured in pyproject.toml, ADR 0016)
# and then the whole test suite headless. Extra arguments go to pytest.
# GUARD_RAILS=0 skips ruff and mypy for a quick local rerun of a few tests; CI never sets it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${GUARD_RAILS:-1}" != "0" ]; then
  if ! .venv/bin/ruff check --quiet; then
    echo "test.sh: ruff check failed (findings above; many are fixed by .venv/bin/ruff check --fix)" >&2
    exit 1
  fi
  if ! .venv/bin/mypy; then
    echo "test.sh: mypy failed (type errors above)" >&2
    exit 1
  fi
fi
export QT_QPA_PLATFORM=offscreen
# The suite runs in TEST_PROCESSES processes (2 by default: a CI machine's two cores; ADR 0080). Most tests wait on
# real worker processes, locks and timers, so two processes nearly halve the time; 1 runs it in this process alone.
processes=${TEST_PROCESSES:-2}
if [ "$processes" -gt 1 ] 2>/dev/null; then
  exec .venv/bin/python -m pytest -n "$processes" "$@"
fi
exec .venv/bin/python -m pytest "$@"
