#!/usr/bin/env bash
# Runs lnclasses_command.py for lnab.md: per seed A then B (then base, if BASE=1), one at a time, one thread,
# nice 10, logging uptime load at each start and end. Why a cut-off: the brief forbids starting runs after 16:10 UTC.
# Usage (from the worktree root): BASE=0 bash benchmarks/lnab_run.sh 5 6 7 8 9 >> benchmarks/results/lnab/run.log 2>&1
set -u
export PYTHONPATH=. OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1
CUTOFF=${CUTOFF:-16:10}
VARIANTS=${VARIANTS:-"A B"}
out=${OUT:-benchmarks/results/lnab/command}
mkdir -p "$out"
for s in "$@"; do
  for v in $VARIANTS; do
    if [[ "$(date -u +%H:%M)" > "$CUTOFF" || "$(date -u +%H:%M)" == "$CUTOFF" ]]; then
      echo "cut-off $CUTOFF reached: $v seed $s not started ($(date -u +%H:%M:%S))"; exit 0
    fi
    echo "$v seed $s start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
    nice -n 10 .venv/bin/python benchmarks/lnclasses_command.py --variant "$v" --seed "$s" \
      --json "$out/${v}_s$s.json"
    rc=$?
    echo "$v seed $s end $(date -u +%H:%M:%S) rc $rc load $(cut -d' ' -f1-3 /proc/loadavg)"
  done
done
