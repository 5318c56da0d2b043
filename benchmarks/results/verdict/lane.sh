#!/usr/bin/env bash
# one lane of verdict.md's runs: ORDER:PC:SEED ...
cd /work/main
export PYTHONPATH=. OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1
for run in "$@"; do
  set -- ${run//:/ }
  echo "$1 $2 $3 start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
  nice -n 5 .venv/bin/python benchmarks/lnclasses_command.py --variant A --order "$1" --per-class "$2" --seed "$3" \
    --json "benchmarks/results/verdict/${1}_pc$2_s$3.json" > "benchmarks/results/verdict/${1}_pc$2_s$3.log" 2>&1
  echo "$1 $2 $3 end $(date -u +%H:%M:%S) rc $? load $(cut -d' ' -f1-3 /proc/loadavg)"
done
