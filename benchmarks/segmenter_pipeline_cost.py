"""What the segmenter's ensemble members and target verifier cost, as ratios in one process.

    PYTHONPATH=. python benchmarks/segmenter_pipeline_cost.py [--model DIR] [--size 256] [--frames 8] [--threads 1]
        [--json benchmarks/results/segmenter_pipeline_cost.json]

The same frames go through ``segmentation.predict_masks`` three ways: the main network alone
(with the card's test-time flips), the card's ensemble, and the ensemble plus its verifier.
Frames are synthetic (noise, a few bright blobs and a bright bar, so the verifier has
components to score); each way runs once to warm up, then ``--repeats`` times, and the minimum
is kept. Absolute seconds depend on the machine's load; the ratios much less.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np


def synthetic_frames(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        f = rng.normal(0.3, 0.05, (size, size)).astype(np.float32)
        for _ in range(6):
            y, x = rng.integers(4, size - 4, 2)
            f[y - 1:y + 2, x - 1:x + 2] += 0.6
        y = int(rng.integers(10, size - 10))
        f[y:y + 3, size // 4:size // 2] += 0.4
        out.append(np.clip(f, 0, 1))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, help="segmenter model directory (default: the bundled one)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)

    from inference.bundled import bundled_model_dir
    from inference.checkpoints import load_model
    from inference.segmenter_predict import predict_masks
    from inference.training.common import set_threads

    set_threads(args.threads)
    loaded = load_model(args.model or bundled_model_dir("segmenter"), family="segmenter")
    frames = synthetic_frames(args.frames, args.size)
    card = dict(loaded.card)
    ways = {
        "main network only": dataclasses.replace(loaded, card={k: v for k, v in card.items() if k not in ("ensemble", "verifier")}),
        "ensemble": dataclasses.replace(loaded, card={k: v for k, v in card.items() if k != "verifier"}),
        "ensemble + verifier": loaded,
    }
    results = {}
    for name, variant in ways.items():
        predict_masks(variant, frames[:1])
        best = min(_timed(lambda: predict_masks(variant, frames)) for _ in range(args.repeats))  # noqa: B023 - timed now
        results[name] = {"seconds_per_frame": best / len(frames)}
    base = results["main network only"]["seconds_per_frame"]
    print(f"model {loaded.path}  members {1 + len(card.get('ensemble') or [])}  verifier {'verifier' in card}  "
          f"{args.frames} frames of {args.size}^2, {args.threads} thread(s)")
    for name, r in results.items():
        r["ratio"] = r["seconds_per_frame"] / base
        print(f"  {name:<22s} {r['seconds_per_frame']:.3f} s/frame  {r['ratio']:.2f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": str(loaded.path), "size": args.size, "frames": args.frames,
                                         "threads": args.threads, "results": results}, indent=2))
    return 0


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    raise SystemExit(main())
