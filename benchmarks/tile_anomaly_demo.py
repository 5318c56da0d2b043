"""The demo tiles' anomaly scores against a model's threshold (issue 19: "the demo's defective
tiles flagged"). The class is the file-name prefix (``crack_exp1_num_339819.png``; ``free`` = good).

    PYTHONPATH=. python benchmarks/tile_anomaly_demo.py [--model DIR ...] [--folder resources/samples/demo/tiles]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", action="append", help="model directory (default: the bundled anomaly model)")
    p.add_argument("--folder", default=str(ROOT / "resources" / "samples" / "demo" / "tiles"))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import torch

    from inference.anomaly_predict import predict_images
    from inference.bundled import bundled_model_dir
    from inference.checkpoints import load_model
    from inference.imageio import is_image_file, read_image

    torch.set_num_threads(args.threads)
    files = sorted(f for f in Path(args.folder).iterdir() if f.is_file() and is_image_file(f))
    for d in args.model or [str(bundled_model_dir("anomaly"))]:
        loaded = load_model(d, family="anomaly")
        gray = loaded.config.in_channels == 1
        preds = predict_images(loaded, [read_image(f, "gray" if gray else "rgb") for f in files])
        thr = preds[0].threshold if preds else float("nan")
        print(f"\n{d} ({loaded.name}), threshold {thr:.4f}\n| tile | class | score | flagged |\n|---|---|---|---|")
        hits = {"defect": [0, 0], "good": [0, 0]}
        for f, r in zip(files, preds):
            cls = f.name.split("_", 1)[0]
            kind = "good" if cls in ("free", "good") else "defect"
            hits[kind][0] += r.is_anomalous
            hits[kind][1] += 1
            print(f"| {f.name} | {cls} | {r.score:.4f} | {'yes' if r.is_anomalous else 'no'} |")
        print(f"defective tiles flagged: {hits['defect'][0]} of {hits['defect'][1]}; "
              f"good tiles flagged: {hits['good'][0]} of {hits['good'][1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
