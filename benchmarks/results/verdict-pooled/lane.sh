#!/usr/bin/env bash
# one lane of verdict-pooled.md's runs: ORDER:PC:SEED ... (OUT: where the reports go, default this folder)
cd "$(dirname "$0")/../../.."   # the checkout this script lies in (a worktree of the judged commit)
OUT=${OUT:-benchmarks/results/verdict-pooled}
PYTHON=${PYTHON:-.venv/bin/python}   # the runs: PYTHON=/work/main/.venv/bin/python from a worktree of the judged commit
export PYTHONPATH=. OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1
for run in "$@"; do
  set -- ${run//:/ }
  echo "$1 $2 $3 start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
  nice -n 5 "$PYTHON" benchmarks/lnclasses_command.py --variant A --order "$1" --per-class "$2" --seed "$3" \
    --json "$OUT/${1}_pc$2_s$3.json" > "$OUT/${1}_pc$2_s$3.log" 2>&1
  echo "$1 $2 $3 end $(date -u +%H:%M:%S) rc $? load $(cut -d' ' -f1-3 /proc/loadavg)"
done
