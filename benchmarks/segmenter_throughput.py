"""Segmenter cost against input size: seconds and peak extra memory per frame, 256^2 ... 1024^2.

    PYTHONPATH=. python benchmarks/segmenter_throughput.py [--preset cpu|paper] [--sizes 256,512,768,1024]
        [--threads 1] [--device cpu|cuda] [--json benchmarks/results/segmenter_throughput.json]

MiM-ISTD's headline is that cost grows linearly with the number of pixels (every scan is linear
in its length). Each size runs in a fresh subprocess so its peak resident memory is its own; the
figures are printed as ratios against the smallest size measured in the same run, next to the
pixel ratio: a time ratio that tracks the pixel ratio is linear growth, its square would be
attention's quadratic growth. Absolute seconds depend on the machine and its load; ratios do not
(much). The model runs whole-frame (no tiling) with random weights of the chosen preset.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def measure_one(preset: str, size: int, repeats: int, device: str, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    os.environ["NUMBA_NUM_THREADS"] = str(threads)
    from inference.models.mim_istd import MiMISTD, segment_logits
    from inference.models.mim_istd import preset as get_preset

    torch.manual_seed(0)
    model = MiMISTD(get_preset(preset)).eval().to(device)
    warm = torch.randn(1, model.config.in_chans, 64, 64, device=device)
    with torch.no_grad():
        segment_logits(model, warm)  # JIT-compile the scan kernels before measuring
    x = torch.randn(1, model.config.in_chans, size, size, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            t = time.perf_counter()
            segment_logits(model, x)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
    if device == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:  # ru_maxrss is KiB on Linux; the growth over the pre-run peak is what this frame needed
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
    return {"size": size, "seconds": min(times), "peak_mb": peak_mb}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--sizes", default="256,512,768,1024")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size, print JSON
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.preset, args.one, args.repeats, args.device, args.threads)))
        return

    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        cmd = [sys.executable, __file__, "--one", str(size), "--preset", args.preset, "--repeats", str(args.repeats),
               "--threads", str(args.threads), "--device", args.device]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"measured {size}x{size}: {rows[-1]['seconds']:.2f} s", file=sys.stderr)
    base = rows[0]
    print(f"MiM-ISTD preset {args.preset!r} on {args.device}, {args.threads} thread(s), min of {args.repeats} runs")
    print(f"{'size':>9} {'pixels x':>9} {'time x':>8} {'s/frame':>8} {'s/Mpx':>7} {'peak MB':>8} {'mem x':>6}")
    for r in rows:
        px = (r["size"] / base["size"]) ** 2
        r["pixel_ratio"] = px
        r["time_ratio"] = r["seconds"] / base["seconds"]
        r["memory_ratio"] = r["peak_mb"] / base["peak_mb"] if base["peak_mb"] > 0 else None
        r["seconds_per_mpx"] = r["seconds"] / (r["size"] ** 2 / 1e6)
        mem_x = f"{r['memory_ratio']:.2f}" if r["memory_ratio"] else "n/a"
        print(f"{r['size']:>4}x{r['size']:<4} {px:>9.2f} {r['time_ratio']:>8.2f} {r['seconds']:>8.2f} "
              f"{r['seconds_per_mpx']:>7.2f} {r['peak_mb']:>8.0f} {mem_x:>6}")
    if args.json:
        Path(args.json).write_text(json.dumps({"preset": args.preset, "device": args.device, "threads": args.threads,
                                               "rows": rows}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
