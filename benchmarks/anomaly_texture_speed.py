"""The bundled texture anomaly model (the tile default) per 256² image, issue 21's paths off vs on.

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 PYTHONPATH=. python benchmarks/anomaly_texture_speed.py [--reps 5] [--batch 1]

Alternates the previous paths (``inference.ssm.speed`` off: torch conv2d blur, addmm + min
nearest rows) and the new ones (OpenCV blur, fused numba nearest rows) image batch by image
batch in one process, and prints the best and median milliseconds per image of each stage.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.bundled import bundled_model_dir  # noqa: E402
from inference.checkpoints import load_model  # noqa: E402
from inference.device import set_threads  # noqa: E402
from inference.ssm import speed  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args()
    set_threads(1)
    model = load_model(bundled_model_dir("anomaly"), map_location="cpu", family="anomaly").model.eval()
    x = torch.randn(args.batch, model.config.in_channels, model.config.image_size, model.config.image_size)
    stages = {
        "features": lambda: model.features(x),
        "map (features + nearest rows + smoothing)": lambda: model.anomaly_map(x),
    }
    times: dict[tuple[str, bool], list[float]] = {}
    with torch.inference_mode():
        for on in (False, True):  # warm-up (numba compilation)
            speed.set_enabled(on)
            model.anomaly_map(x)
        for _ in range(args.reps):
            for on in (False, True):
                speed.set_enabled(on)
                for name, fn in stages.items():
                    t = time.perf_counter()
                    fn()
                    times.setdefault((name, on), []).append((time.perf_counter() - t) * 1000 / args.batch)
    speed.set_enabled(True)
    print(f"texture_knn, batch {args.batch}, {args.reps} alternating reps, load {os.getloadavg()[0]:.1f}")
    for name in stages:
        before, after = times[(name, False)], times[(name, True)]
        print(f"{name}: previous {min(before):.1f} / {np.median(before):.1f} ms, new {min(after):.1f} / "
              f"{np.median(after):.1f} ms (best / median); ratio of medians {np.median(before) / np.median(after):.2f}x")


if __name__ == "__main__":
    main()
