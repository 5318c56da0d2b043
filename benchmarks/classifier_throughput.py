"""Classifier throughput on CPU: images/s at batch 1 and batched, end to end (resize + model).

    PYTHONPATH=. python benchmarks/classifier_throughput.py [--model DIR] [--threads 1] [--batch 32]

Figures are printed as ratios against batch 1 without test-time augmentation, measured in the
same process (the shared machines' absolute speed varies with load); each test-time
augmentation mode (none, flips, d4: the card's default) is timed batched. The JSON goes to
benchmarks/results/.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _rate(fn, images, batch: int, min_seconds: float) -> float:
    fn(images[:batch])  # warm-up (numba compilation, allocator)
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < min_seconds:
        fn(images[n % len(images) : n % len(images) + batch] if batch > 1 else [images[n % len(images)]])
        n += batch
    return n / (time.perf_counter() - t0)


def main() -> int:
    import numpy as np
    import torch

    from inference.bundled import bundled_model_dir
    from inference.checkpoints import load_model
    from inference.classifier_predict import TTA_MODES, model_tta, predict_images
    from inference.training.common import set_threads

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, default=None,
                    help="model directory (default: the bundled MemoryMamba, classifier-neu: its test-time views are what is timed)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--image-size", type=int, default=200, help="side of the synthetic input images")
    ap.add_argument("--seconds", type=float, default=5.0, help="minimum timing window per setting")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "classifier_throughput.json")
    args = ap.parse_args()

    set_threads(args.threads)
    model_dir = args.model or bundled_model_dir("classifier", "classifier-neu")
    loaded = load_model(model_dir)
    rng = np.random.default_rng(0)
    images = [rng.random((args.image_size, args.image_size), dtype=np.float32) for _ in range(2 * args.batch)]

    card_mode = model_tta(loaded)

    def runner(mode):
        def run(chunk):
            loaded.card["test_time_augmentation"] = mode
            return predict_images(loaded, chunk, batch_size=len(chunk))
        return run

    with torch.inference_mode():
        one = _rate(runner("none"), images, 1, args.seconds)
        many = _rate(runner("none"), images, args.batch, args.seconds)
        by_mode = {mode: _rate(runner(mode), images, args.batch, args.seconds) for mode in TTA_MODES if mode != "none"}
    loaded.card["test_time_augmentation"] = card_mode
    result = {
        "model": str(model_dir),
        "config": {"img_size": loaded.config.img_size, "in_chans": loaded.config.in_chans, "depths": list(loaded.config.depths), "embed_dim": loaded.config.embed_dim},
        "parameters": int(sum(p.numel() for p in loaded.model.parameters())),
        "threads": args.threads,
        "input": f"{args.image_size}x{args.image_size} gray float",
        "images_per_s_batch1": one,
        f"images_per_s_batch{args.batch}": many,
        "batched_over_batch1": many / one,
        "card_test_time_augmentation": card_mode,
        **{f"images_per_s_batch{args.batch}_tta_{m}": r for m, r in by_mode.items()},
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
    print(f"model {model_dir} ({result['parameters']:,} parameters, input {loaded.config.img_size}², {args.threads} thread(s))")
    print(f"batch 1          : {one:8.1f} images/s  (baseline)")
    print(f"batch {args.batch:<11d}: {many:8.1f} images/s  ({many / one:.2f}x batch 1)")
    for m, r in by_mode.items():
        mark = "  <- the card's choice" if m == card_mode else ""
        print(f"batch {args.batch}, tta {m:<5s}: {r:8.1f} images/s  ({r / one:.2f}x batch 1, {r / many:.2f}x batched without){mark}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
