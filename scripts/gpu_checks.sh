#!/usr/bin/env bash
# Issue 21 item 5: the prepared GPU check, run on a lent GPU machine through the device tool:
#
#   here, once:   bash scripts/gpu_checks.sh prepare      # puts mamba-ssm's source in .carry/ (ignored)
#   device run:   command "bash scripts/gpu_checks.sh run", carry [".carry"], timeout_s 590
#
# On the GPU machine (no network; its image has torch, nvcc, numba, OpenCV, safetensors, no Qt):
# 1. builds mamba-ssm from the carried source for this GPU's architecture only, unless it imports
#    already (bounded: the rest runs without the fused kernel if the build does not finish);
# 2. runs the CUDA tests of the scan (tests/inference/test_ssm_cuda.py: kernel and torch scan on the
#    GPU against the reference);
# 3. runs benchmarks/gpu_check.py: the fused kernel and the torch scan against our numba CPU scan on
#    the SS2D shapes of the bundled models (forward and gradients), and each family's throughput
#    on the GPU at batch 1/8/32 with half precision where the engine's probe keeps results, and the
#    paper presets' training-step cost;
# 4. runs benchmarks/gpu_agreement.py: every family's answers on the demo images on the GPU (float32,
#    and as the station runs it) against the CPU's.
# Everything it writes goes to $OUT (gpu_check.json, logs), which the device tool brings back.
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-run}
CARRY=.carry

if [ "$MODE" = prepare ]; then
  mkdir -p "$CARRY"
  grep -qx "/$CARRY/" .git/info/exclude 2>/dev/null || echo "/$CARRY/" >> .git/info/exclude
  # The sdist's metadata step imports torch and would build CUDA code: skip that here.
  MAMBA_SKIP_CUDA_BUILD=TRUE .venv/bin/pip download --no-deps --no-build-isolation "mamba-ssm>=2.2" -d "$CARRY"
  ls -l "$CARRY"
  exit 0
fi

OUT=${OUT:-/tmp/gpu-check-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
BUILD_S=${BUILD_S:-300}
{
  date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
  command -v nvcc && nvcc --version | tail -n 2
} > "$OUT/environment.txt" 2>&1

if ! $PY -c "import mamba_ssm.ops.selective_scan_interface" > /dev/null 2>&1; then
  SDIST=$(ls "$CARRY"/mamba_ssm-*.tar.gz 2>/dev/null | head -n 1)
  if [ -n "$SDIST" ]; then
    ARCH=$($PY -c "import torch; m, n = torch.cuda.get_device_capability(); print(f'{m}.{n}')")
    echo "building $SDIST for compute capability $ARCH (at most $BUILD_S s)"
    # Its setup.py compiles for nine architectures whatever TORCH_CUDA_ARCH_LIST says (far past the
    # bound on one lease): an unpacked copy is told to compile for this GPU's alone.
    SRC=/tmp/mamba-src; rm -rf "$SRC"; mkdir -p "$SRC"; tar xzf "$SDIST" -C "$SRC" --strip-components=1
    $PY - "$SRC/setup.py" <<'PYEOF'
import sys
p = sys.argv[1]
s = open(p).read()
hook = "    # HACK: The compiler flag -D_GLIBCXX_USE_CXX11_ABI"
assert hook in s, "mamba-ssm's setup.py changed: no place for the one-architecture override"
s = s.replace(hook, '    if os.getenv("MAMBA_ONLY_GENCODE"):\n        cc_flag = ["-gencode", os.environ["MAMBA_ONLY_GENCODE"]]\n' + hook, 1)
open(p, "w").write(s)
PYEOF
    CC_ARCH=${ARCH/./}
    MAMBA_ONLY_GENCODE="arch=compute_$CC_ARCH,code=sm_$CC_ARCH" \
    MAMBA_FORCE_BUILD=TRUE TORCH_CUDA_ARCH_LIST="$ARCH" MAX_JOBS=$(nproc) \
      timeout "$BUILD_S" $PY -m pip install --no-deps --no-build-isolation --no-index "$SRC" \
      > "$OUT/mamba_build.log" 2>&1 && echo "mamba-ssm built" || echo "mamba-ssm build failed or timed out (see mamba_build.log)"
  else
    echo "no mamba-ssm source in $CARRY (run 'bash scripts/gpu_checks.sh prepare' here first)"
  fi
fi

# STEPS (default all three) lets a rerun inside the same lease skip what already came back.
STEPS=${STEPS:-"tests check agree"}
# --noconftest: the suite's conftest wants the station's packages (Qt, SQLAlchemy) the GPU image lacks.
[[ $STEPS == *tests* ]] && PYTHONPATH=. $PY -m pytest -q --noconftest -p no:cacheprovider tests/inference/test_ssm_cuda.py 2>&1 | tee "$OUT/test_ssm_cuda.log" | tail -n 5
[[ $STEPS == *check* ]] && PYTHONPATH=. $PY benchmarks/gpu_check.py --out "$OUT/gpu_check.json" --device cuda --batches 1 8 32 --images 64 2>&1 \
  | tee "$OUT/gpu_check.log" | tail -n 40
# 4. the station's answers on the GPU against its answers on the CPU, on the bundled demo images
[[ $STEPS == *agree* ]] && PYTHONPATH=. $PY benchmarks/gpu_agreement.py --out "$OUT/gpu_agreement.json" 2>&1 \
  | tee "$OUT/gpu_agreement.log" | tail -n 20
exit 0
