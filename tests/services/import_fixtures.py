"""A labelled station (real folder, real indexer, SQLite) and helpers to compare two exports."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from app.services.export_items import encode_mask
from app.services.indexing import index_folder
from database import LabelChange, ReviewState, open_database
from tests.services.export_fixtures import H, W, one_line, region, write_image

CLASSES = ["good", "crack"]
OBJECT_CLASSES = [*CLASSES, "scratch"]  # a class for a region of its own (tests of per-object classes)
# Columns of summary.csv that say who imported and when, not what the label is.
REVIEW_COLUMNS = ("reviewer", "reviewed_at")
DERIVED_COLUMNS = ("anomaly_region_pixels", "target_count", "target_classes")  # counted from masks, which a CSV does not hold


def block_and_dot() -> np.ndarray:
    """Two targets every format holds exactly (YOLO writes the dot as its box, which fills back to that pixel)."""
    m = np.zeros((H, W), bool)
    m[2:6, 3:9] = True
    m[15, 20] = True
    return m


def make_folder(root: Path) -> Path:
    for i, rel in enumerate(("a", "b", "sub/c", "d", "e", "u")):
        write_image(root / rel, 10 + i, ".jpg" if rel == "sub/c" else ".png")
    return root


def open_station(tmp: Path, name: str, root: Path):
    db = open_database(f"sqlite:///{(tmp / f'{name}.sqlite').as_posix()}")
    index_folder(db, root)
    db.classes.set("classifier", CLASSES)
    return db


def label_station(db) -> dict[str, int]:
    """Every kind of label part: class, mask (blobs, thin line, empty), verdict, region."""
    ids = {Path(i.rel_path).stem: i.id for i in db.images.query()}
    db.labels.append(ids["a"], LabelChange(ReviewState.CORRECTED, class_name="crack", mask_png=encode_mask(block_and_dot()),
                                           anomaly_verdict="anomalous", anomaly_mask_png=encode_mask(region())), "ann")
    db.labels.append(ids["b"], LabelChange(ReviewState.ACCEPTED, class_name="good",
                                           mask_png=encode_mask(np.zeros((H, W), bool)), anomaly_verdict="normal"), "ann")
    db.labels.append(ids["c"], LabelChange(ReviewState.CORRECTED, class_name="crack", anomaly_verdict="anomalous"), "bob")
    db.labels.append(ids["d"], LabelChange(ReviewState.CORRECTED, mask_png=encode_mask(one_line())), "bob")
    db.labels.append(ids["e"], LabelChange(ReviewState.CORRECTED, anomaly_verdict="anomalous",
                                           anomaly_mask_png=encode_mask(region())), "cy")
    return ids


def label_object_classes(db, own_class: str = "scratch") -> dict[str, int]:
    """``label_station``, then image 'a' (class crack) gets per-object classes: the block is a crack
    (the image's class), the dot has ``own_class`` of its own."""
    from app.services.object_classes import ObjectClass, as_json

    ids = label_station(db)
    db.labels.append(ids["a"], LabelChange(ReviewState.CORRECTED, object_classes=as_json([ObjectClass(15, 20, own_class)])),
                     "ann")
    return ids


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def comparable(rel: str, data: bytes, drop_columns: tuple[str, ...] = REVIEW_COLUMNS) -> object:
    """A file's content minus what differs by design: export times, who imported and when."""
    if rel.endswith(".json"):
        doc = json.loads(data)
        doc.pop("info", None)
        doc.pop("created", None)
        return doc
    if rel.endswith(".csv"):
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
        return [{k: v for k, v in r.items() if k not in drop_columns} for r in rows]
    return data


def assert_same_export(first: Path, second: Path, drop_columns: tuple[str, ...] = REVIEW_COLUMNS,
                       only: str = "") -> None:
    """Same files with the same content (``only``: just this format's folder or file)."""
    a, b = ({k: v for k, v in tree(x).items() if k.startswith(only)} for x in (first, second))
    assert a, f"nothing exported under {only!r}"
    a.pop("export.json", None)
    b.pop("export.json", None)
    assert sorted(a) == sorted(b)
    for rel in a:
        assert comparable(rel, a[rel], drop_columns) == comparable(rel, b[rel], drop_columns), rel
