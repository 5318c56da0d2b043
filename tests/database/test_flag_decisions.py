"""Inspectors' flag decisions kept as history (``flag_decisions``, migration 0022), on both engines."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import create_engine, inspect, text

from database import FileEntry, open_database
from database import migrate as mig
from database.audit import flag_audit_records


def _images(db, root: str = "/parts", n: int = 3) -> list[int]:
    folder = db.folders.add(root)
    db.images.sync(folder.id, [FileEntry(f"{i}.png", 1, 0) for i in range(n)])
    return sorted(i.id for i in db.images.query() if i.folder_id == folder.id)


def test_each_inspector_flag_write_and_clear_is_recorded_with_its_author_and_time(url: str) -> None:
    """A session-51 audit: ``set_inspector_flag`` / ``clear_inspector_flag`` overwrote ``images.flag_override`` /
    ``flag_by`` in place and kept no history, so no one could tell who flagged a part or cleared it, and when. Each
    write now adds a row in its own transaction (an id that is no image gets none), stamped by the database's clock;
    the rows go with their images."""
    db = open_database(url)
    try:
        ids = _images(db)
        before = datetime.now(timezone.utc) - timedelta(seconds=5)
        db.images.set_inspector_flag([ids[0]], True, "ann")
        db.images.set_inspector_flag([ids[0]], False, "bob")
        db.images.set_inspector_flag([ids[0]], True, "ann", author="bob")   # bob's undo puts back ann's flag
        db.images.clear_inspector_flag([ids[1], 999_999], False, "cy")      # 999999: no such image, no row
        assert db.images.get(ids[0]).flag_by == "ann"
        records = list(flag_audit_records(db, page=2))
        assert [(r.rel_path, r.flagged, r.author) for r in records] == [
            ("0.png", True, "ann"), ("0.png", False, "bob"), ("0.png", True, "bob"), ("1.png", None, "cy")]
        assert all(before <= r.created_at <= datetime.now(timezone.utc) + timedelta(seconds=5) for r in records)
        assert [r.created_at for r in records] == sorted(r.created_at for r in records)
        other = _images(db, "/other", n=1)
        db.images.set_inspector_flag(other, True, None)     # no name at the station
        assert [(r.folder, r.author) for r in flag_audit_records(db, db.images.get(other[0]).folder_id)] == [
            ("other", None)]
        db.folders.remove(db.images.get(ids[0]).folder_id)
        assert [(r.folder, r.rel_path) for r in flag_audit_records(db)] == [("other", "0.png")]   # cascaded
    finally:
        db.close()


def test_0022_adds_the_table_and_downgrades(url: str) -> None:
    """A downgrade to 0021 drops ``flag_decisions`` (the history with it) and an upgrade adds it again, empty."""
    db = open_database(url)
    ids = _images(db, n=1)
    db.images.set_inspector_flag(ids, True, "ann")
    db.close()
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            mig.downgrade(conn, "0021_queue_folder_confidence")
        with engine.connect() as conn:
            assert "flag_decisions" not in inspect(conn).get_table_names()
        with engine.begin() as conn:
            mig.upgrade(conn)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM flag_decisions")).scalar() == 0
    finally:
        engine.dispose()
