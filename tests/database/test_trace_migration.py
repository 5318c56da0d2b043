"""Migration 0004 on a database written before traceability: every row survives, without a trace."""
from __future__ import annotations

from sqlalchemy import create_engine, text

from database import migrate as mig
from database import open_database

OLD = "0003_queue_indexes"


def test_upgrade_of_an_old_database_keeps_its_rows(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            mig.upgrade(conn, OLD)
            conn.execute(text("INSERT INTO folders (id, root_path, name, added_at) "
                              "VALUES (1, '/parts', 'parts', CURRENT_TIMESTAMP)"))
            conn.execute(text("INSERT INTO images (id, folder_id, rel_path, size_bytes, mtime_ns, review_state, "
                              "flagged, priority, missing, added_at, updated_at) VALUES "
                              "(7, 1, 'L1/SN1.png', 10, 5, 'accepted', false, 0, false, "
                              "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
            conn.execute(text("INSERT INTO label_revisions (image_id, revision, author, created_at, changed, "
                              "class_name, review_state) VALUES (7, 1, 'ann', CURRENT_TIMESTAMP, 'class,state', "
                              "'ok', 'accepted')"))
    finally:
        engine.dispose()
    db = open_database(url)
    try:
        assert db.revision() == mig.head_revision()
        image = db.images.get(7)
        assert (image.rel_path, image.review_state.value) == ("L1/SN1.png", "accepted")
        assert (image.trace_serial, image.trace_lot, image.trace_station) == (None, None, None)
        [rev] = db.labels.history(7)
        assert (rev.author, rev.class_name, rev.trace) == ("ann", "ok", None)
    finally:
        db.close()
