"""Selective-scan backends against the step-by-step loop, in one process: ms, ratio, peak memory.

    PYTHONPATH=. python benchmarks/scan.py [--threads N] [--device cpu|cuda] [--quick]

For each shape it times forward and forward+backward of every backend that runs on the device,
and of the "reference" loop (the baseline of every ratio), and writes
benchmarks/results/scan.json. Timings are medians of --repeats runs after one warm-up run, so
the numba JIT (compiled or loaded from its cache) is excluded from them; its first-call time is
reported on its own.

Peak memory on CPU: in a fresh child process per (shape, backend, pass), the kernel's
high-water mark of resident memory (VmHWM, reset through /proc/self/clear_refs) during one call
minus resident memory before it, i.e. what the call itself touched on top of its inputs. glibc
would otherwise serve allocations from blocks freed by earlier runs, unseen, so the script runs
with a fixed mmap threshold (large tensors mapped on allocation, unmapped on free) and calls
malloc_trim first. On CUDA it is
torch.cuda.max_memory_allocated over the run.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None and __name__ == "__main__":
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"})

import numba  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from inference.ssm import BACKENDS, default_backend, selective_scan  # noqa: E402
from inference.ssm.cuda_scan import cuda_unavailable_reason  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "scan.json"
D, N, G = 768, 16, 4
SHAPES = [(1, D, N, 3136, G), (1, D, N, 1024, G), (1, D, N, 4096, G), (1, D, N, 16384, G)]
# The loop and the torch backend keep (b, d, L, n)-sized tensors for backward (several GB at
# L = 16384 with d = 768); above this many elements their backward is skipped.
MAX_MATERIALISED_BWD = D * N * 4096
_LIBC = ctypes.CDLL("libc.so.6")
LOOPS = ("loop-naive", "reference")


def naive_loop(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The step loop as first written (before the fair "reference"): B and C copied per channel
    to (b, d, n, L) and sliced along their last, strided axis at every step. Kept as the
    baseline the issue's "about 1 s" figure was measured on."""
    delta = delta + delta_bias[None, :, None] if delta_bias is not None else delta
    delta = torch.nn.functional.softplus(delta) if delta_softplus else delta
    d = u.shape[1]
    Bx, Cx = (x.repeat_interleave(d // x.shape[1], dim=1) for x in (B, C))
    h = u.new_zeros(u.shape[0], d, A.shape[1])
    ys = []
    for dt_t, u_t, B_t, C_t in zip(delta.unbind(-1), u.unbind(-1), Bx.unbind(-1), Cx.unbind(-1)):
        h = torch.exp(dt_t[..., None] * A) * h + (dt_t * u_t)[..., None] * B_t
        ys.append((h * C_t).sum(-1))
    y = torch.stack(ys, dim=-1)
    return y + u * D[None, :, None] if D is not None else y


BACKENDS.setdefault("loop-naive", naive_loop)


def make_inputs(b, d, n, L, g, device, requires_grad):
    gen = torch.Generator().manual_seed(0)
    x = dict(
        u=torch.randn(b, d, L, generator=gen),
        delta=torch.randn(b, d, L, generator=gen) - 1.0,
        A=-torch.exp(torch.randn(d, n, generator=gen) * 0.5),
        B=torch.randn(b, g, n, L, generator=gen),
        C=torch.randn(b, g, n, L, generator=gen),
        D=torch.ones(d),
        delta_bias=torch.rand(d, generator=gen) * 0.1,
    )
    return {k: v.to(device).requires_grad_(requires_grad) for k, v in x.items()}


def run_once(x, backend, backward):
    y = selective_scan(
        x["u"], x["delta"], x["A"], x["B"], x["C"], D=x["D"], delta_bias=x["delta_bias"],
        delta_softplus=True, backend=backend,
    )
    if backward:
        y.sum().backward()
        for v in x.values():
            v.grad = None


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))


def measure(x, backend, backward, repeats, device):
    """(first-call ms, median wall ms, median CPU ms of this process, CUDA peak MB or None).

    The first call is the warm-up. CPU time (all threads) is reported next to wall time because
    on a shared machine wall time mostly measures the other tenants; ratios use wall time.
    """
    ctx = torch.enable_grad() if backward else torch.no_grad()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with ctx:
        t0 = time.perf_counter()
        run_once(x, backend, backward)
        sync()
        first_ms = (time.perf_counter() - t0) * 1e3
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        times, cpu_times = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            run_once(x, backend, backward)
            sync()
            times.append((time.perf_counter() - t0) * 1e3)
            cpu_times.append((time.process_time() - c0) * 1e3)
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if device == "cuda" else None
    return first_ms, statistics.median(times), statistics.median(cpu_times), peak


def cpu_peak_child(backend: str, backward: bool, shape: tuple[int, ...]) -> float:
    """Extra resident MB of one call, in a fresh process: what earlier runs left in the heap
    (the loops fragment it with thousands of small blocks) would otherwise be reused unseen."""
    x = make_inputs(*shape, "cpu", backward)
    ctx = torch.enable_grad() if backward else torch.no_grad()
    with ctx:
        if backend not in LOOPS:  # JIT cache load, thread pool start
            run_once(x, backend, backward)
        _LIBC.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _rss_kb("VmRSS:")
        run_once(x, backend, backward)
        return max(0, _rss_kb("VmHWM:") - base) / 1024


def cpu_peak(backend: str, backward: bool, shape: tuple[int, ...], threads: int) -> float:
    cmd = [sys.executable, __file__, "--threads", str(threads), "--peak-child", backend,
           "fwd+bwd" if backward else "fwd", *map(str, shape)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def backends_for(device: str) -> list[str]:
    names = [name for name in BACKENDS if name not in LOOPS]
    if device == "cpu":
        return [n for n in names if n != "cuda"]
    return [n for n in names if n != "numba" and (n != "cuda" or cuda_unavailable_reason() is None)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loop-repeats", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="only the VMamba stage-1 shape")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--peak-child", nargs=7, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.peak_child:
        backend, kind, *shape = args.peak_child
        print(cpu_peak_child(backend, kind == "fwd+bwd", tuple(map(int, shape))))
        return 0
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA GPU")

    report = dict(
        machine=dict(
            cpu=platform.processor() or platform.machine(), cores=os.cpu_count(), threads=args.threads,
            numba_threads=min(numba.config.NUMBA_NUM_THREADS, args.threads),
            torch=torch.__version__, numba=numba.__version__, device=device,
            gpu=torch.cuda.get_device_name() if device == "cuda" else None,
            load_average_start=os.getloadavg(),
        ),
        default_backend=default_backend(device),
        cuda_backend=cuda_unavailable_reason() or "available",
        shapes=[],
    )
    print(f"device {device}, {args.threads} threads, default backend {report['default_backend']!r}")
    for b, d, n, L, g in SHAPES[:1] if args.quick else SHAPES:
        input_mb = (2 * b * d * L + 2 * b * g * n * L + d * n + 2 * d) * 4 / 2**20
        entry = dict(shape=dict(b=b, d=d, n=n, L=L, groups=g), inputs_mb=round(input_mb, 2), results={})
        print(f"\n(b={b}, d={d}, n={n}, L={L}, groups={g}); inputs {input_mb:.1f} MB")
        print(f"{'backend':>10} {'pass':>8} {'first ms':>9} {'ms':>9} {'cpu ms':>9} {'x loop':>8} {'x naive':>8} {'peak MB':>8} {'peak/in':>8}")
        loop_ms: dict[str, float] = {}
        naive_ms: dict[str, float] = {}
        for backend in ["loop-naive", "reference", *backends_for(device)]:
            for backward in (False, True):
                kind = "fwd+bwd" if backward else "fwd"
                materialises = backend in (*LOOPS, "torch")
                if backward and materialises and b * d * L * n > MAX_MATERIALISED_BWD:
                    entry["results"].setdefault(backend, {})[kind] = None
                    continue
                x = make_inputs(b, d, n, L, g, device, backward)
                reps = args.loop_repeats if backend in LOOPS else args.repeats
                first, ms, cpu_ms, peak = measure(x, backend, backward, reps, device)
                del x
                if peak is None:
                    peak = cpu_peak(backend, backward, (b, d, n, L, g), args.threads)
                if backend == "reference":
                    loop_ms[kind] = ms
                if backend == "loop-naive":
                    naive_ms[kind] = ms
                ratio = loop_ms[kind] / ms if kind in loop_ms else None
                naive_ratio = naive_ms[kind] / ms if kind in naive_ms else None
                entry["results"].setdefault(backend, {})[kind] = dict(
                    first_ms=round(first, 2), ms=round(ms, 2), cpu_ms=round(cpu_ms, 2), speedup_vs_loop=ratio and round(ratio, 2),
                    speedup_vs_naive_loop=naive_ratio and round(naive_ratio, 2),
                    peak_mb=round(peak, 2), peak_over_inputs=round(peak / input_mb, 3),
                )
                print(f"{backend:>10} {kind:>8} {first:9.1f} {ms:9.1f} {cpu_ms:9.1f} {ratio or float('nan'):8.1f} {naive_ratio or float('nan'):8.1f} {peak:8.1f} {peak / input_mb:8.2f}")
        report["shapes"].append(entry)
    report["machine"]["load_average_end"] = os.getloadavg()
    from json_report import write_report

    write_report(report, args.output)
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
