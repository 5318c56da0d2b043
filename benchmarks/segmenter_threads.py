"""One 256² frame through the full bundled segmenter at 1 and at 2 torch/numba threads,
alternating in one process (the load of a shared machine weighs on both alike).

    PYTHONPATH=. python benchmarks/segmenter_threads.py [--side 256] [--reps 3]

Why: on a machine whose cores other processes also use, each of the segmenter's ~1,000 small
ops per pass ends in an OpenMP barrier that waits for a descheduled thread (issue 21).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.bundled import bundled_model_dir  # noqa: E402
from inference.checkpoints import load_model  # noqa: E402
from inference.segmenter_predict import predict_masks  # noqa: E402
from inference.training.common import set_threads  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    loaded = load_model(bundled_model_dir("segmenter"), family="segmenter")
    img = np.random.default_rng(0).random((args.side, args.side), dtype=np.float32)
    seconds: dict[int, list[float]] = {1: [], 2: []}
    for t in seconds:  # warm-up (compilation, allocator) at both settings
        set_threads(t)
        predict_masks(loaded, [img])
    for rep in range(args.reps):
        for t in ((1, 2) if rep % 2 == 0 else (2, 1)):
            set_threads(t)
            assert torch.get_num_threads() == t
            start = time.perf_counter()
            predict_masks(loaded, [img])
            seconds[t].append(round(time.perf_counter() - start, 2))
    print(f"{args.side}² frame, seconds per run: 1 thread {seconds[1]}, 2 threads {seconds[2]}; "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
