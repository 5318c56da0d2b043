cd /tmp/truth; export PYTHONPATH=. OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1
for run in $RUNS; do
  set -- ${run//:/ }
  D=/work/shared/datasets/$4
  echo "$4 $1 $2 $3 start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
  nice -n 5 .venv/bin/python benchmarks/retraining_loop.py --train $D/train --val $D/val \
    --per-class $2 --order $1 --seed $3 --threads 1 --retrain-args=--keep-if-worse \
    --json benchmarks/results/thin/val/$4_${1}_pc$2_s$3.json > benchmarks/results/thin/val/$4_${1}_pc$2_s$3.log 2>&1
  echo "$4 $1 $2 $3 end $(date -u +%H:%M:%S) rc $? load $(cut -d' ' -f1-3 /proc/loadavg)"
done
