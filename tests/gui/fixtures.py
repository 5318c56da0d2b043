"""Test data for the review station: a small image folder, a database, and predictions.

``seed_predictions`` stores model outputs the way a worker does (model versions, predictions,
anomaly maps in the artifact cache) so GUI tests exercise review on predicted images without
running models; the end-to-end loop test runs the real worker instead.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

from app.paths import SAMPLES

CLASSES = ("crazing", "inclusion", "patches", "scratches")


def make_folder(root: Path, n: int = 6, size: int = 64, corrupt: bool = False) -> Path:
    """``n`` small gray PNGs with a bright blob each (+ one undecodable file if ``corrupt``)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = (rng.random((size, size)) * 60 + 80).astype(np.uint8)
        cv2.circle(img, (10 + 7 * i % (size - 20), 20 + 5 * i % (size - 30)), 4, 255, -1)
        cv2.imwrite(str(root / f"part_{i:02d}.png"), img)
    if corrupt:
        (root / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    return root


def copy_demo(dst: Path, subfolder: str = "steel", limit: int = 6) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for p in sorted((SAMPLES / "demo" / subfolder).glob("*.png"))[:limit]:
        shutil.copy(p, dst / p.name)
    return dst


def seed_predictions(db, folder_id: int, artifacts) -> dict[str, int]:
    """Register one model version per family and store a prediction for every image."""
    from app.services.display import encode_mask_png
    from database.dto import ImageQuery, PredictionIn

    mv = {
        "classifier": db.model_versions.register("classifier", "test-cls", "/nonexistent", activate=True,
                                                 card={"classes": list(CLASSES)}),
        "segmenter": db.model_versions.register("segmenter", "test-seg", "/nonexistent", activate=True),
        "anomaly": db.model_versions.register("anomaly", "test-anom", "/nonexistent", activate=True,
                                              card={"threshold": 0.5}),
    }
    db.classes.set("classifier", list(CLASSES))
    preds = []
    for k, im in enumerate(db.images.query(ImageQuery(folder_id=folder_id, sort="rel_path"))):
        h, w = 64, 64
        conf = 0.4 + 0.1 * (k % 6)
        scores = {c: (conf if j == k % len(CLASSES) else (1 - conf) / (len(CLASSES) - 1))
                  for j, c in enumerate(CLASSES)}
        mask = np.zeros((h, w), bool)
        mask[5 + k:15 + k, 5:15] = True
        heat = np.zeros((h, w), np.float32)
        heat[30:40, 30:40] = 0.2 + 0.15 * k
        ref = artifacts.put_map(heat)
        preds += [
            PredictionIn(im.id, mv["classifier"].id, class_scores=scores,
                         predicted_class=CLASSES[k % len(CLASSES)], confidence=conf),
            PredictionIn(im.id, mv["segmenter"].id, mask_png=encode_mask_png(mask), target_count=1 + k % 3),
            PredictionIn(im.id, mv["anomaly"].id, anomaly_score=float(heat.max()), anomaly_map_ref=ref),
        ]
    db.predictions.upsert_many(preds)
    return {f: v.id for f, v in mv.items()}
