"""Migration 0005 on a database written before per-object classes: every revision loads, meaning
"each region has the image's class", and the history goes on with object classes."""
from __future__ import annotations

from sqlalchemy import create_engine, text

from database import LabelChange, ReviewState, open_database
from database import migrate as mig

OLD = "0004_trace_fields"


def test_upgrade_keeps_old_revisions_without_object_classes(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            mig.upgrade(conn, OLD)
            conn.execute(text("INSERT INTO folders (id, root_path, name, added_at) "
                              "VALUES (1, '/parts', 'parts', CURRENT_TIMESTAMP)"))
            conn.execute(text("INSERT INTO images (id, folder_id, rel_path, size_bytes, mtime_ns, review_state, "
                              "flagged, priority, missing, added_at, updated_at) VALUES "
                              "(7, 1, 'SN1.png', 10, 5, 'corrected', false, 0, false, "
                              "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
            conn.execute(text("INSERT INTO label_revisions (image_id, revision, author, created_at, changed, "
                              "class_name, review_state) VALUES (7, 1, 'ann', CURRENT_TIMESTAMP, 'class,state', "
                              "'crack', 'corrected')"))
    finally:
        engine.dispose()
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
