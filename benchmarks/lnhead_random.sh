#!/usr/bin/env bash
# lnhead.md's information runs: the random order at 480 labels (80 per class equivalent) on the same train-only splits.
# usage: bash benchmarks/lnhead_random.sh SEED...   (one thread, nice 5; JSON and log per run in benchmarks/results/lnhead)
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=. OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1
out=${OUT:-benchmarks/results/lnhead}   # temper.md: OUT=benchmarks/results/temper
for s in "$@"; do
  echo "s$s random pc80 start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
  nice -n 5 .venv/bin/python benchmarks/lnclasses_command.py --variant station --order random --seed "$s" --per-class 80 \
    --json "$out/random_pc80_s$s.json" > "$out/random_pc80_s$s.log" 2>&1
  rc=$?
  echo "s$s random pc80 end $(date -u +%H:%M:%S) rc $rc load $(cut -d' ' -f1-3 /proc/loadavg)"
done
