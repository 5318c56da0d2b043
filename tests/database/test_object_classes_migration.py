"""Migration 0005 on a database written before per-object classes: every revision loads, meaning
"each region has the image's class", and the history goes on with object classes."""
from __future__ import annotations

from database import LabelChange, ReviewState, open_database
from database import migrate as mig
from tests.database.old_rows import old_labelled_image

OLD = "0004_trace_fields"


def test_upgrade_keeps_old_revisions_without_object_classes(url: str) -> None:
    old_labelled_image(url, OLD, "SN1.png", "crack", "corrected")
    db = open_database(url)
    try:
        assert db.revision() == mig.head_revision()
        [old] = db.labels.history(7)
        assert (old.class_name, old.object_classes) == ("crack", None)
        seeds = [{"x": 3, "y": 2, "class": "scratch"}]
        new = db.labels.append(7, LabelChange(ReviewState.CORRECTED, object_classes=seeds), "bob")
        assert new.changed == ("objects",) and new.class_name == "crack"
        assert [r.object_classes for r in db.labels.history(7)] == [None, seeds]
        assert db.labels.append(7, LabelChange(ReviewState.CORRECTED, object_classes=[]), "bob").object_classes is None
    finally:
        db.close()
