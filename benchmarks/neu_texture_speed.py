"""Speed of the texture NEU classifier and of its feature vector, against MemoryMamba, in one process.

    PYTHONPATH=. OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/neu_texture_speed.py \\
        --data ../shared/datasets/neu_cls/val [--images 96] [--rounds 3] [--json benchmarks/results/neu-texture-2/speed.json]

Everything runs on one thread (torch, numba and OpenCV: ``cv2.setNumThreads(1)``) on the same decoded
NEU val images (decode is not timed), alternating, for ``--rounds`` rounds; rates are of the medians:

* ``vector_reference`` / ``vector_fast``: the ``defect_bank`` vector (``image_defect_bank``) as it was
  (``tests/inference/texture_reference.py``, the slow reference the tests pin the fast code to) and as it is;
* ``memorymamba`` / ``texture``: the two bundled classifiers through ``predict_images`` with their cards'
  own settings (MemoryMamba: its default profile's test-time views; the texture model: none), batch 32.

The load average is printed before and after (the machine is shared).
"""
from __future__ import annotations

import argparse
import json
import os
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

    import cv2
    import torch

    from inference.checkpoints import load_model
    from inference.classifier_predict import predict_images
    from inference.device import prepare_inference_process
    from inference.imageio import read_image
    from inference.texture_features import image_defect_bank
    from tests.inference.texture_reference import image_defect_bank as reference_defect_bank

    prepare_inference_process(1)
    cv2.setNumThreads(1)
    load_before = os.getloadavg()
    paths = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".bmp"))[: args.images]
    images = [read_image(p, "gray") for p in paths]
    models = {"memorymamba": load_model(args.baseline), "texture": load_model(args.model)}

    def vectors(fn):
        return lambda: [fn(im) for im in images]

    def classify(loaded):
        return lambda: predict_images(loaded, images, batch_size=32)

    runs = {"vector_reference": vectors(reference_defect_bank), "vector_fast": vectors(image_defect_bank),
            **{name: classify(loaded) for name, loaded in models.items()}}
    times: dict[str, list[float]] = {k: [] for k in runs}
    with torch.inference_mode():
        for loaded in models.values():
            predict_images(loaded, images[:4], batch_size=4)  # warm-up (numba, allocator)
        for _ in range(args.rounds):
            for name, run in runs.items():
                t0 = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - t0)
    rate = {k: len(images) / statistics.median(v) for k, v in times.items()}
    load_after = os.getloadavg()
    result = {"images": len(images), "rounds": args.rounds, "images_per_s": rate,
              "vector_fast_over_reference": rate["vector_fast"] / rate["vector_reference"],
              "texture_over_memorymamba": rate["texture"] / rate["memorymamba"],
              "seconds": times, "threads": 1, "load_before": load_before, "load_after": load_after}
    for k, r in rate.items():
        print(f"{k:17s} {r:8.1f} images/s  ({1000 / r:6.1f} ms/image)")
    print(f"defect_bank vector, fast / reference: {result['vector_fast_over_reference']:.2f}x")
    print(f"texture / memorymamba (classify): {result['texture_over_memorymamba']:.2f}x")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
