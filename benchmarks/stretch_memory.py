"""Memory and time of showing a deep (16-bit) image: the display stretch before and after session 43.

    PYTHONPATH=. python benchmarks/stretch_memory.py [--side 4000]

The baseline (the full-size float copy and full-size percentiles it replaced) runs in the same process, on the same
random 16-bit colour image; peak memory by tracemalloc (numpy's buffers are traced), wall time by perf_counter.
"""
from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from app.services.display import _stretch_to_uint8


def before(img: np.ndarray) -> np.ndarray:
    """The stretch as it was up to session 42."""
    arr = np.nan_to_num(img.astype(np.float32))
    lo, hi = float(np.percentile(arr, 0.5)), float(np.percentile(arr, 99.5))
    if hi <= lo:
        hi = lo + 1.0
    return np.asarray(np.clip((arr - lo) / (hi - lo), 0.0, 1.0) * 255.0 + 0.5, dtype=np.uint8)


def measure(fn, img: np.ndarray) -> tuple[float, float]:
    tracemalloc.start()
    t0 = time.perf_counter()
    fn(img)
    seconds = time.perf_counter() - t0
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20, seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--side", type=int, default=4000)
    args = ap.parse_args()
    img = np.random.default_rng(0).integers(0, 65535, (args.side, args.side, 3), dtype=np.uint16)
    print(f"{args.side} x {args.side} x 3 16-bit ({img.nbytes / 2**20:.0f} MiB raw)")
    (mb0, s0), (mb1, s1) = measure(before, img), measure(_stretch_to_uint8, img)
    print(f"before: peak {mb0:.0f} MiB, {s0:.2f} s")
    print(f"now:    peak {mb1:.0f} MiB, {s1:.2f} s  (ratio: memory {mb1 / mb0:.2f}, time {s1 / s0:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
