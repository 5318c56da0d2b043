"""Small labelled image sets for the export tests: real files on disk, labels as PNG bytes."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from app.services.export_items import ExportItem, encode_mask

H, W = 24, 32


def write_image(path: Path, seed: int, suffix: str = ".png") -> Path:
    path = path.with_suffix(suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(suffix, img)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def two_blobs() -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[2:6, 3:9] = True  # a 4x6 block
    m[15, 20] = True  # a single-pixel target
    m[16, 21] = True  # diagonal neighbour: same 8-connected target
    return m


def one_line() -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[10, 5:15] = True  # one-pixel-thin line: no polygon area
    return m


def region() -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[8:14, 10:20] = True
    return m


WHEN = datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc)


def make_items(root: Path) -> dict[str, ExportItem]:
    """Six images in one folder 'lot1': four exportable, one rejected, one unreviewed."""
    folder = root / "lot1"

    def item(rel: str, seed: int, state: str, suffix: str = ".png", **label) -> ExportItem:
        src = write_image(folder / rel, seed, suffix)
        return ExportItem(source=src, rel_path=str(src.relative_to(folder)).replace("\\", "/"), folder="lot1",
                          review_state=state, reviewer="ann", reviewed_at=WHEN, width=W, height=H, **label)

    return {
        "a": item("a", 1, "corrected", class_name="crack", mask_png=encode_mask(two_blobs()),
                  anomaly_verdict="anomalous", anomaly_mask_png=encode_mask(region())),
        "b": item("b", 2, "accepted", class_name="good", mask_png=encode_mask(np.zeros((H, W), bool)),
                  anomaly_verdict="normal"),
        "c": item("sub/c", 3, "corrected", suffix=".jpg", class_name="crack", anomaly_verdict="anomalous"),
        "f": item("f", 4, "corrected", mask_png=encode_mask(one_line())),
        "rejected": item("r", 5, "rejected", class_name="crack", mask_png=encode_mask(two_blobs())),
        "unreviewed": item("u", 6, "unreviewed", class_name="good"),
    }
