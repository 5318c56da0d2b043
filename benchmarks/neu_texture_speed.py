"""Speed of the texture NEU classifier against the bundled MemoryMamba one, in the same process.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/neu_texture_speed.py --data ../shared/datasets/neu_cls/val \\
        [--images 96] [--rounds 3] [--json benchmarks/results/neu-texture/speed.json]

Both models classify the same decoded NEU val images (decode is not timed) with their cards' own
settings (MemoryMamba: its default profile's test-time views; the texture model: none), batch 32,
alternating model by model for ``--rounds`` rounds; the ratio is of the medians.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--baseline", type=Path, default=ROOT / "resources/models/classifier-neu")
    ap.add_argument("--model", type=Path, default=ROOT / "resources/models/classifier-neu-texture")
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import torch

    from inference.checkpoints import load_model
    from inference.classifier_predict import predict_images
    from inference.device import prepare_inference_process
    from inference.imageio import read_image

    prepare_inference_process(1)
    paths = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".bmp"))[: args.images]
    images = [read_image(p, "gray") for p in paths]
    models = {"memorymamba": load_model(args.baseline), "texture": load_model(args.model)}
    times: dict[str, list[float]] = {k: [] for k in models}
    with torch.inference_mode():
        for loaded in models.values():
            predict_images(loaded, images[:4], batch_size=4)  # warm-up (numba, allocator)
        for _ in range(args.rounds):
            for name, loaded in models.items():
                t0 = time.perf_counter()
                predict_images(loaded, images, batch_size=32)
                times[name].append(time.perf_counter() - t0)
    rate = {k: len(images) / statistics.median(v) for k, v in times.items()}
    result = {"images": len(images), "rounds": args.rounds, "images_per_s": rate,
              "texture_over_memorymamba": rate["texture"] / rate["memorymamba"],
              "seconds": times, "threads": 1}
    for k, r in rate.items():
        print(f"{k:12s} {r:8.1f} images/s")
    print(f"texture / memorymamba: {result['texture_over_memorymamba']:.1f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
