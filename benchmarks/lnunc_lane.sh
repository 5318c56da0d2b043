#!/usr/bin/env bash
# lnunc.md's runs. usage: bash benchmarks/lnunc_lane.sh SEED... ; per seed: logreg / head margin at 240, then 120 labels
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=. OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1
out=benchmarks/results/lnunc
mkdir -p "$out"
for s in "$@"; do for pc in 40 20; do for u in logreg head; do
  echo "s$s pc$pc $u start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
  nice -n 5 .venv/bin/python benchmarks/lnclasses_command.py --variant station --uncertainty "$u" --seed "$s" \
    --per-class "$pc" --json "$out/${u}_pc${pc}_s$s.json" > "$out/${u}_pc${pc}_s$s.log" 2>&1
  rc=$?
  echo "s$s pc$pc $u end $(date -u +%H:%M:%S) rc $rc load $(cut -d' ' -f1-3 /proc/loadavg)"
done; done; done
