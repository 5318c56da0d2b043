#!/usr/bin/env bash
# Runs lnclasses_command.py for foldermix.md, accmix.md, counter.md and thin.md: per seed and order (ORDERS, default
# both), each variant and each of COUNTS (labels per class, default 40) in turn, one at a time, one thread, nice 5,
# logging the load at each start and end. A variant is NAME=retrain options; VARIANTS lists them ';'-separated,
# or MIXES lists --class-mix values (variant NAME = the value, options "--class-mix VALUE"). --keep-if-worse always.
# Options after " ++ " in a variant go to lnclasses_command.py instead (e.g. "base= ++ --unmarked", provenance.md).
# Usage (repository root):
#   MIXES="pool acc-folder" OUT=benchmarks/results/accmix bash benchmarks/prior_run.sh 15 16 17 18 19 >> benchmarks/results/accmix/run.log 2>&1
#   MIXES=acc-folder COUNTS="10 20 40 80" OUT=benchmarks/results/counter bash benchmarks/prior_run.sh 20 22 >> ... 2>&1
#   VARIANTS="k5=--min-per-class 5;k2=--min-per-class 2" ORDERS=label-next COUNTS="10 20" OUT=... bash benchmarks/prior_run.sh 24
#   (foldermix.md's MIXES="pool folder" needs the code of commit 6606f76: --class-mix folder was removed after it.)
#   Two runs of one seed must not overlap: they share the seed's split folder in /tmp.
set -u
export PYTHONPATH=. OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1
out=${OUT:?set OUT to the results folder}
mkdir -p "$out"
if [ -z "${VARIANTS:-}" ]; then
  VARIANTS=""
  for mix in ${MIXES:?set VARIANTS or MIXES}; do VARIANTS="$VARIANTS${VARIANTS:+;}$mix=--class-mix $mix"; done
fi
for s in "$@"; do
  for order in ${ORDERS:-label-next per-class}; do
    IFS=';' read -ra variants <<< "$VARIANTS"
    for variant in "${variants[@]}"; do
      vname=${variant%%=*}
      vargs=${variant#*=}
      largs=""
      if [[ "$vargs" == *" ++ "* ]] || [[ "$vargs" == "++ "* ]]; then
        largs=${vargs#*++ }
        vargs=${vargs%%++ *}
      fi
      for n in ${COUNTS:-40}; do
        name="${order}_${vname}_s$s"
        [ -n "${COUNTS:-}" ] && name="${order}_${vname}_pc${n}_s$s"
        echo "$order $vname $n seed $s start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
        nice -n 5 .venv/bin/python benchmarks/lnclasses_command.py --variant A --seed "$s" --order "$order" \
          --per-class "$n" --retrain-args "--keep-if-worse $vargs" $largs --json "$out/$name.json" \
          > "$out/$name.log" 2>&1
        rc=$?
        echo "$order $vname $n seed $s end $(date -u +%H:%M:%S) rc $rc load $(cut -d' ' -f1-3 /proc/loadavg)"
      done
    done
  done
done
