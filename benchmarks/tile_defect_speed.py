"""Inference time per tile of anomaly model directories, as ratios against the first one measured
in the same process (issue 19: "inference comparable to today's").

    PYTHONPATH=. python benchmarks/tile_defect_speed.py --model BASELINE_DIR --model NEW_DIR [--repeats 3]

Reads the demo tiles (``--folder``), runs ``predict_images`` (what the station's worker runs) on
all of them ``--repeats`` times per model after one warm-up pass, and prints the median seconds
per tile. One thread unless ``--threads``; the machine may be shared, so the ratio is the figure.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", action="append", required=True)
    p.add_argument("--folder", default=str(ROOT / "resources" / "samples" / "demo" / "tiles"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import torch

    from inference.anomaly_predict import predict_images
    from inference.checkpoints import load_model
    from inference.imageio import is_image_file, read_image

    torch.set_num_threads(args.threads)
    files = sorted(f for f in Path(args.folder).iterdir() if f.is_file() and is_image_file(f))
    base = None
    for d in args.model:
        loaded = load_model(d, family="anomaly")
        imgs = [read_image(f, "gray" if loaded.config.in_channels == 1 else "rgb") for f in files]
        predict_images(loaded, imgs[:2])
        runs = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            predict_images(loaded, imgs)
            runs.append((time.perf_counter() - t0) / len(imgs))
        sec = statistics.median(runs)
        base = base or sec
        print(f"{d} ({loaded.name}): {sec:.3f} s per tile ({len(imgs)} tiles x {args.repeats}), "
              f"ratio to the first {sec / base:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
