#!/usr/bin/env bash
# temper.md's runs. usage: bash benchmarks/temper_lane.sh SEED... ; per seed and label count (40, 20, 10 per class):
# label next with the untempered folder mix (base: --class-mix acc-folder-full), then with the tempered one (T)
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=. OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1
out=benchmarks/results/temper
mkdir -p $out
for s in "$@"; do for pc in 40 20 10; do for v in base T; do
  if [ $v = base ]; then args="--keep-if-worse --class-mix acc-folder-full"; else args="--keep-if-worse"; fi
  echo "s$s pc$pc $v start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
  nice -n 5 .venv/bin/python benchmarks/lnclasses_command.py --variant station --space defect_bank --seed $s \
    --per-class $pc --retrain-args="$args" --json $out/${v}_pc${pc}_s$s.json > $out/${v}_pc${pc}_s$s.log 2>&1
  rc=$?
  echo "s$s pc$pc $v end $(date -u +%H:%M:%S) rc $rc load $(cut -d' ' -f1-3 /proc/loadavg)"
done; done; done
