"""Every export carries the part's trace: summary.csv columns, COCO image attributes and a
trace.csv beside any format; the database export reads the trace the rule stored."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from app.services.export import ExportOptions, export_database, export_items
from app.services.export_items import encode_mask
from app.services.indexing import index_folder
from app.services.trace import TraceRule, change_trace_rule
from database.dto import LabelChange
from database.engine import open_database
from database.states import ReviewState
from tests.services.export_fixtures import H, W, two_blobs, write_image


def _csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return {r["rel_path"]: r for r in csv.DictReader(fh)}


def test_database_export_writes_trace_in_csv_coco_and_trace_csv(tmp_path: Path) -> None:
    root = tmp_path / "parts"
    write_image(root / "L1" / "SN1", 1)
    write_image(root / "L1" / "SN2", 2)
    db = open_database(f"sqlite:///{tmp_path / 'station.sqlite'}")
    try:
        change_trace_rule(db, TraceRule(pattern=r"(?P<lot>L\d+)/(?P<serial>SN\d+)"))
        folder_id = index_folder(db, root).folder_id
        ids = {p: i for page in db.images.trace_rows(folder_id) for i, p, _ in page}
        db.images.set_decoded({i: (W, H) for i in ids.values()})
        db.labels.append(ids["L1/SN1.png"], LabelChange(ReviewState.CORRECTED, class_name="crack",
                                                        mask_png=encode_mask(two_blobs())), "ann")
        db.labels.append(ids["L1/SN2.png"], LabelChange(ReviewState.ACCEPTED, class_name="good",
                                                        mask_png=encode_mask(np.zeros((H, W), bool))), "ann")
        out = tmp_path / "export"
        export_database(db, out, ExportOptions(formats=("csv", "coco")))
    finally:
        db.close()
    rows = _csv(out / "summary.csv")
    assert {p: (r["serial"], r["lot"], r["station"]) for p, r in rows.items()} == {
        "L1/SN1.png": ("SN1", "L1", ""), "L1/SN2.png": ("SN2", "L1", "")}
    coco = json.loads((out / "coco" / "annotations" / "instances.json").read_text())
    assert {im["source"]: im.get("attributes") for im in coco["images"]} == {
        "parts/L1/SN1.png": {"serial": "SN1", "lot": "L1"}, "parts/L1/SN2.png": {"serial": "SN2", "lot": "L1"}}
    trace = _csv(out / "trace.csv")
    assert {p: (r["serial"], r["lot"], r["file_name"]) for p, r in trace.items()} == {
        "L1/SN1.png": ("SN1", "L1", rows["L1/SN1.png"]["file_name"]),
        "L1/SN2.png": ("SN2", "L1", rows["L1/SN2.png"]["file_name"])}
    assert "trace.csv" in json.loads((out / "export.json").read_text())["files"]


def test_an_export_without_any_trace_writes_no_trace_csv(tmp_path: Path) -> None:
    from tests.services.export_fixtures import make_items
    items = [it for it in make_items(tmp_path / "src").values() if it.review_state != "unreviewed"]
    out = tmp_path / "export"
    export_items(items, out, ExportOptions(formats=("imagefolder", "csv")))
    assert not (out / "trace.csv").exists()
    assert all(r["serial"] == "" for r in _csv(out / "summary.csv").values())
