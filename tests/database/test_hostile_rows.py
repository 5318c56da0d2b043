"""Rows another program wrote (a tampered or hand-edited shared database) give one sentence, never
a traceback, and change nothing. Found by benchmarks/fuzz_database_rows.py (issue 17)."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from database import DatabaseError, FileEntry, LabelChange, PredictionIn, ReviewState, open_database
from inference.imageio import ImageReadError, read_raw


@pytest.fixture
def station(tmp_path: Path):
    path = tmp_path / "s.sqlite"
    db = open_database(f"sqlite:///{path}")
    folder = db.folders.add(str(tmp_path / "imgs"))
    db.images.sync(folder.id, [FileEntry(f"{n}.png", 10, 0, width=8, height=8) for n in "ab"])
    ids = [i.id for i in db.images.query()]
    mv = db.model_versions.register("classifier", "c1", "/nowhere")
    db.predictions.upsert_many([PredictionIn(ids[0], mv.id, class_scores={"good": 1.0}, predicted_class="good")])
    db.labels.append(ids[1], LabelChange(ReviewState.CORRECTED, class_name="crack"), "ann")
    yield db, path, ids
    db.close()


def raw(path: Path, sql: str, *args) -> None:
    with sqlite3.connect(path) as con:
        con.execute(sql, args)


def test_prediction_scores_that_are_not_json(station) -> None:
    db, path, ids = station
    raw(path, "UPDATE predictions SET class_scores = 'garbage'")
    with pytest.raises(DatabaseError, match="holds a row the station cannot read") as exc:
        db.predictions.for_image(ids[0])
    assert "\n" not in str(exc.value)
    assert db.labels.current(ids[1]).class_name == "crack"


def test_a_file_name_with_a_nul_is_a_read_error_not_a_crash() -> None:
    with pytest.raises(ImageReadError, match="not a usable file name"):
        read_raw("/tmp/a\x00b.png")


def test_export_skips_an_image_whose_folder_is_gone(station, tmp_path: Path) -> None:
    from app.services.export import ExportError, export_database

    db, path, ids = station
    raw(path, "UPDATE images SET folder_id = 999 WHERE id = ?", ids[1])
    with pytest.raises(ExportError, match="nothing to export"):
        export_database(db, tmp_path / "out")
    from app.services.export_source import items_from_database

    items, skipped = items_from_database(db)
    assert items == [] and any("its folder 999 is not in the database" in s for s in skipped)


def test_a_label_source_another_program_wrote_is_read_not_trusted(station) -> None:
    """A revision's source the station does not know (a newer station, a hand edit, an overlong value) is read back
    as it is and never counted as chosen by "label next"; saving goes on."""
    db, path, ids = station
    raw(path, "UPDATE label_revisions SET source = ?", "x" * 5000)
    assert db.labels.current(ids[1]).source == "x" * 5000
    assert db.labels.chosen_by_label_next() == {}
    db.labels.append(ids[1], LabelChange(ReviewState.CORRECTED, class_name="dent"), "bob")
    assert [r.source for r in db.labels.history(ids[1])] == ["x" * 5000, None]
