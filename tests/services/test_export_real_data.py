"""Real masks (SIRST small targets, MVTec bottle defects) survive the export pixel for pixel."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from app.services.export import ExportOptions, export_items
from app.services.export_items import ExportItem
from tests.conftest import shared_dataset


def read_bool(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return (img.max(axis=2) if img.ndim == 3 else img) > 0


@pytest.mark.shared_data
@pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools.*")
def test_sirst_masks_round_trip(tmp_path: Path) -> None:
    root = shared_dataset("sirst")
    stems = (root / "val.txt").read_text().split()[:8]
    items = [ExportItem(source=root / "images" / f"{s}.png", rel_path=f"{s}.png", folder="sirst",
                        review_state="corrected", mask_png=(root / "masks" / f"{s}.png").read_bytes())
             for s in stems]
    out = tmp_path / "out"
    export_items(items, out, ExportOptions(formats=("masks", "coco", "csv")))
    doc = json.loads((out / "coco/annotations/instances.json").read_text())
    by_name = {i["file_name"]: i for i in doc["images"]}
    for s in stems:
        truth = read_bool(root / "masks" / f"{s}.png")
        np.testing.assert_array_equal(read_bool(out / "masks/masks" / f"{s}.png"), truth)
        img = by_name[f"{s}.png"]
        union = np.zeros_like(truth)
        anns = [a for a in doc["annotations"] if a["image_id"] == img["id"]]
        for a in anns:
            seg = a["segmentation"]
            union |= mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}).astype(bool)
        np.testing.assert_array_equal(union, truth)
        assert len(anns) == cv2.connectedComponents(truth.astype(np.uint8), connectivity=8)[0] - 1
        assert (out / "masks/images" / f"{s}.png").read_bytes() == (root / "images" / f"{s}.png").read_bytes()


@pytest.mark.shared_data
def test_mvtec_bottle_ground_truth_round_trip(tmp_path: Path) -> None:
    root = shared_dataset("mvtec_ad") / "bottle"
    items = []
    for kind in ("broken_small", "contamination"):
        for src in sorted((root / "test" / kind).glob("*.png"))[:2]:
            items.append(ExportItem(source=src, rel_path=f"{kind}/{src.name}", folder="bottle",
                                    review_state="corrected", class_name=kind, anomaly_verdict="anomalous",
                                    anomaly_mask_png=(root / "ground_truth" / kind / f"{src.stem}_mask.png").read_bytes()))
    for src in sorted((root / "train" / "good").glob("*.png"))[:5]:
        items.append(ExportItem(source=src, rel_path=f"good/{src.name}", folder="bottle",
                                review_state="accepted", class_name="good", anomaly_verdict="normal"))
    out = tmp_path / "out"
    result = export_items(items, out, ExportOptions(formats=("mvtec",)))
    assert result.formats["mvtec"]["folders"] == {"test/broken_small": 2, "test/contamination": 2,
                                                  "test/good": 1, "train/good": 4}
    for it in items[:4]:
        kind, name = it.rel_path.split("/")
        stem = f"{kind}__{Path(name).stem}"
        exported = read_bool(out / "mvtec/bottle/ground_truth" / kind / f"{stem}_mask.png")
        np.testing.assert_array_equal(exported, read_bool(root / "ground_truth" / kind / f"{Path(name).stem}_mask.png"))
        assert (out / "mvtec/bottle/test" / kind / f"{stem}.png").read_bytes() == it.source.read_bytes()
