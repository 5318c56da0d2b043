"""How much of each demo tile the bundled tile model's map puts over its pixel threshold.

The known flaw of ADR 0032: on a tile the image head is sure of, the combined map (pixel logit +
map_image_weight x image logit) clears the pixel threshold everywhere, so the heatmap and the
region Accept takes cover the tile. Prints, per demo tile, the image score, the fraction of the
map over the card's pixel threshold, the same for the pixel head alone, and (where the demo has
a ground-truth mask) the defect's share of the tile and the mean map inside / outside it.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/tile_defect_map_extent.py
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=str(ROOT / "resources/models/anomaly-magnetic_tile"))
    p.add_argument("--tiles", default=str(ROOT / "resources/samples/demo/tiles"))
    p.add_argument("--truth", default=str(ROOT / "resources/samples/ground_truth/tiles"))
    args = p.parse_args(argv)

    from inference.anomaly_predict import anomaly_input, normalise_batch, predict_images
    from inference.checkpoints import load_model

    loaded = load_model(args.model, family="anomaly")
    cfg = loaded.model.config
    threshold = json.loads((Path(args.model) / "card.json").read_text())["threshold"]["pixel"]
    print(f"pixel threshold {threshold:.2f}, map_offset {cfg.map_offset}, map_image_weight {cfg.map_image_weight}, "
          f"map_gate {cfg.map_gate}")
    for path in sorted(Path(args.tiles).glob("*.png")):
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
        pred = predict_images(loaded, [img])[0]
        heat = pred.anomaly_map
        x = normalise_batch(loaded.model, anomaly_input(img, cfg.image_size, cfg.in_channels)[None])
        pix, _ = loaded.model.head_outputs(x)
        pixel_head = cv2.resize(pix[0], heat.shape[::-1], interpolation=cv2.INTER_LINEAR)
        line = (f"{path.name[:30]:30s} score {pred.score:.3f}  map over threshold {float((heat > threshold).mean()):.3f}"
                f"  pixel head over threshold {float((pixel_head > threshold).mean()):.3f}")
        truth = Path(args.truth) / path.name
        mask = cv2.imread(str(truth), cv2.IMREAD_GRAYSCALE) if truth.exists() else None
        if mask is not None and mask.any():
            inside = mask > 0
            line += (f"  defect {float(inside.mean()):.3f} of the tile; map inside {float(heat[inside].mean()):.2f}"
                     f" outside {float(heat[~inside].mean()):.2f}; pixel head inside {float(pixel_head[inside].mean()):.2f}"
                     f" outside {float(pixel_head[~inside].mean()):.2f}")
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
