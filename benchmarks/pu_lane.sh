#!/usr/bin/env bash
# pu.md's stage 2 runs. usage: bash benchmarks/pu_lane.sh SEED... ; per seed and order (per-class draws, random order,
# 40 labels per class): the retrain command without the unreviewed images in the fit (base), then with them (U)
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=. OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1
out=${OUT:-benchmarks/results/pu}   # the fourth candidate's runs: OUT=benchmarks/results/pu/all
mkdir -p $out
for s in "$@"; do for order in per-class random; do for v in base U; do
  if [ $v = base ]; then args="--keep-if-worse --no-unreviewed-in-fit"; else args="--keep-if-worse"; fi
  echo "s$s $order $v start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
  nice -n 5 .venv/bin/python benchmarks/lnclasses_command.py --variant station --space defect_bank --seed $s \
    --order $order --per-class 40 --retrain-args="$args" --json $out/${v}_${order}_s$s.json > $out/${v}_${order}_s$s.log 2>&1
  rc=$?
  echo "s$s $order $v end $(date -u +%H:%M:%S) rc $rc load $(cut -d' ' -f1-3 /proc/loadavg)"
done; done; done
