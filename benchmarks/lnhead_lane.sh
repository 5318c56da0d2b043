#!/usr/bin/env bash
# lnhead.md's runs. usage: bash benchmarks/lnhead_lane.sh SEED... ; per seed: texture / defect_bank at 240, then 120 labels
# (the "rc" it logs is that of the date in the same line, not the run's: every run's JSON was checked to exist)
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=. OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1
out=benchmarks/results/lnhead
for s in "$@"; do for pc in 40 20; do for sp in texture defect_bank; do
  echo "s$s pc$pc $sp start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
  nice -n 5 .venv/bin/python benchmarks/lnclasses_command.py --variant station --space $sp --seed $s --per-class $pc \
    --json $out/${sp}_pc${pc}_s$s.json > $out/${sp}_pc${pc}_s$s.log 2>&1
  echo "s$s pc$pc $sp end $(date -u +%H:%M:%S) rc $? load $(cut -d' ' -f1-3 /proc/loadavg)"
done; done; done
