#!/usr/bin/env bash
# pu.md's stage 2 runs. usage: bash benchmarks/pu_lane.sh SEED... ; per seed, order (ORDERS, default per-class draws and
# random order) and labels per class (PCS, default 40): the retrain command without the unreviewed images in the fit
# (base), then with them (U); file names gain _pc<N> when PCS is set
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=. OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1
out=${OUT:-benchmarks/results/pu}   # the fourth candidate's runs: OUT=benchmarks/results/pu/all
mkdir -p $out
for s in "$@"; do for order in ${ORDERS:-per-class random}; do for pc in ${PCS:-40}; do for v in base U; do
  tag=${PCS:+_pc$pc}
  if [ $v = base ]; then args="--keep-if-worse --no-unreviewed-in-fit"; else args="--keep-if-worse"; fi
  echo "s$s $order$tag $v start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
  nice -n 5 .venv/bin/python benchmarks/lnclasses_command.py --variant station --space defect_bank --seed $s \
    --order $order --per-class $pc --retrain-args="$args" --json $out/${v}_${order}${tag}_s$s.json > $out/${v}_${order}${tag}_s$s.log 2>&1
  rc=$?
  echo "s$s $order$tag $v end $(date -u +%H:%M:%S) rc $rc load $(cut -d' ' -f1-3 /proc/loadavg)"
done; done; done; done
