"""Migration 0004 on a database written before traceability: every row survives, without a trace."""
from __future__ import annotations

from database import migrate as mig
from database import open_database
from tests.database.old_rows import old_labelled_image

OLD = "0003_queue_indexes"


def test_upgrade_of_an_old_database_keeps_its_rows(url: str) -> None:
    old_labelled_image(url, OLD, "L1/SN1.png", "ok", "accepted")
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
