#!/usr/bin/env bash
# Runs retraining_loop.py (the real retrain command) on a data set's train pool, scored on its val, for each of
# RUNS (ORDER:PER_CLASS:SEED:DATASET, space-separated), one at a time, one thread, nice 5, logging the load at each
# start and end; JSON and log per run in OUT. Used by accmix.md and thin.md (their val scoring, once).
# Usage (repository root):
#   RUNS="label-next:10:0:magnetic_tile per-class:40:1:magnetic_tile" OUT=benchmarks/results/thin/val bash benchmarks/val_run.sh
# LOOP_ARGS: more retraining_loop.py options, and TAG a name part for them (provenance.md: LOOP_ARGS=--unmarked TAG=_base);
# RETRAIN_ARGS: the retrain command's options (default --keep-if-worse; pu.md: "--keep-if-worse --no-unreviewed-in-fit").
set -u
export PYTHONPATH=. OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1
out=${OUT:?set OUT to the results folder}
mkdir -p "$out"
for run in ${RUNS:?set RUNS}; do
  set -- ${run//:/ }
  D=${DATA_ROOT:-/work/shared/datasets}/$4
  echo "$4 $1 $2 $3 start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
  nice -n 5 .venv/bin/python benchmarks/retraining_loop.py --train "$D/train" --val "$D/val" \
    --per-class "$2" --order "$1" --seed "$3" --threads 1 --retrain-args="${RETRAIN_ARGS:---keep-if-worse}" \
    ${LOOP_ARGS:-} --json "$out/$4_${1}${TAG:-}_pc$2_s$3.json" > "$out/$4_${1}${TAG:-}_pc$2_s$3.log" 2>&1
  echo "$4 $1 $2 $3 end $(date -u +%H:%M:%S) rc $? load $(cut -d' ' -f1-3 /proc/loadavg)"
done
