"""Export -> import into a fresh database -> export gives the same files, for every format."""
from __future__ import annotations

from pathlib import Path

import pytest

from app.services.export import ExportOptions, export_database
from app.services.export_split import SplitSpec
from app.services.importing import ImportOptions, import_labels
from tests.services.import_fixtures import (
    DERIVED_COLUMNS,
    REVIEW_COLUMNS,
    assert_same_export,
    label_station,
    make_folder,
    open_station,
)

FORMATS = ("imagefolder", "masks", "coco", "mvtec", "yolo", "csv")


@pytest.fixture
def exported(tmp_path: Path):
    root = make_folder(tmp_path / "lot1")
    db = open_station(tmp_path, "first", root)
    label_station(db)
    out = tmp_path / "export"
    export_database(db, out, ExportOptions(formats=FORMATS))
    db.close()
    return tmp_path, root, out


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_per_format(exported, fmt: str) -> None:
    tmp, root, out = exported
    fresh = open_station(tmp, f"fresh-{fmt}", root)
    result = import_labels(fresh, out, ImportOptions(format=fmt))
    assert result.preview.errors == () and result.preview.unmatched == ()
    assert result.written == result.preview.counts["matched"] > 0
    again = tmp / f"again-{fmt}"
    export_database(fresh, again, ExportOptions(formats=(fmt,)))
    fresh.close()
    # The CSV holds classes, verdicts and states; its mask counts come from masks it does not carry.
    assert_same_export(out, again, REVIEW_COLUMNS + (DERIVED_COLUMNS if fmt == "csv" else ()),
                       only="summary.csv" if fmt == "csv" else fmt)


def test_round_trip_of_a_whole_export_with_split(tmp_path: Path) -> None:
    """Masks, MVTec and the CSV together give back every label part, split included."""
    root = make_folder(tmp_path / "lot1")
    db = open_station(tmp_path, "first", root)
    label_station(db)
    split = SplitSpec.parse("0.5,0.5")
    out = tmp_path / "export"
    export_database(db, out, ExportOptions(formats=FORMATS, split=split))
    fresh = open_station(tmp_path, "fresh", root)
    for fmt in ("masks", "mvtec", "csv"):
        import_labels(fresh, out, ImportOptions(format=fmt))
    again = tmp_path / "again"
    export_database(fresh, again, ExportOptions(formats=FORMATS, split=split))
    assert_same_export(out, again)
    for image_id in (i.id for i in fresh.images.query()):
        history = fresh.labels.history(image_id)
        assert all(r.note.startswith("imported from ") for r in history)
    db.close()
    fresh.close()
