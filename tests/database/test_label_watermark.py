"""The labels' watermark (``LabelRepository.watermark``): what a window's ``LabelWatch`` polls to learn that labels
changed elsewhere. It must move with every change of labels, in commit order: on PostgreSQL the newest revision's id,
which it was, stayed put when an import committed after a later single save at another station, and open windows
kept their stale counts, gallery and label-next list (a session-51 audit)."""
from __future__ import annotations

import threading

from sqlalchemy import create_engine, inspect, text

from database import FileEntry, LabelChange, ReviewState, open_database
from database import labels as labels_module
from database import migrate as mig


def _images(db, root: str = "/parts", n: int = 4) -> list[int]:
    folder = db.folders.add(root)
    db.images.sync(folder.id, [FileEntry(f"{i}.png", 1, 0) for i in range(n)])
    return sorted(i.id for i in db.images.query() if i.folder_id == folder.id)


def test_every_change_of_labels_moves_the_watermark(url: str) -> None:
    """A save, an undo, an import and a folder removed (its labels with it) each move the mark; reads do not."""
    db = open_database(url)
    try:
        ids = _images(db)
        marks = [db.labels.watermark()]
        db.labels.append(ids[0], LabelChange(ReviewState.CORRECTED, class_name="crack"), "ann")
        marks.append(db.labels.watermark())
        db.labels.revert(ids[0], 0, "ann")
        marks.append(db.labels.watermark())
        db.labels.append_many([(i, LabelChange(ReviewState.ACCEPTED, class_name="good"), 0) for i in ids[1:]], "imp")
        marks.append(db.labels.watermark())
        db.labels.history(ids[0])
        assert db.labels.watermark() == marks[-1]
        db.folders.remove(db.images.get(ids[0]).folder_id)
        marks.append(db.labels.watermark())
        assert marks == sorted(set(marks)), marks
    finally:
        db.close()


def test_an_import_committing_after_a_later_save_moves_the_watermark(pg_url: str, monkeypatch) -> None:
    """PostgreSQL: the import takes its revision ids first and commits last; the save at another station meanwhile
    commits a higher id. The window's look after the save, then after the import, must differ (with the newest id
    both looks read the save's id and the import went unnoticed)."""
    importer, station, window = open_database(pg_url), open_database(pg_url), open_database(pg_url)
    try:
        ids = _images(importer, n=41)
        inserted, go_on = threading.Event(), threading.Event()
        real = labels_module.set_label_keys

        def held(s, image_ids, state, label_class) -> None:   # the import's revisions are in, not yet committed
            real(s, image_ids, state, label_class)
            inserted.set()
            assert go_on.wait(30)

        monkeypatch.setattr(labels_module, "set_label_keys", held)
        failures: list[BaseException] = []

        def run_import() -> None:
            try:
                importer.labels.append_many(
                    [(i, LabelChange(ReviewState.CORRECTED, class_name="crazing"), 0) for i in ids[:-1]], "import")
            except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
                failures.append(exc)

        thread = threading.Thread(target=run_import)
        thread.start()
        try:
            assert inserted.wait(30)
            monkeypatch.setattr(labels_module, "set_label_keys", real)
            saved = threading.Thread(target=station.labels.append, args=(
                ids[-1], LabelChange(ReviewState.CORRECTED, class_name="patches"), "alice", 0))
            saved.start()
            saved.join(20)
            assert not saved.is_alive(), "a single save waited for the import"
            after_save = window.labels.watermark()   # the window's look: the save is in, the import not yet
            assert window.images.state_counts(None)[ReviewState.CORRECTED] == 1
        finally:
            go_on.set()
            thread.join(30)
        assert not failures
        with window.session() as s:   # the revision ids really are out of commit order
            first, last = s.execute(text("SELECT MIN(id), MAX(id) FROM label_revisions WHERE author = 'import'")).one()
        assert window.labels.current(ids[-1]).id > last > first
        assert window.labels.watermark() != after_save, "the import's commit went unnoticed"
    finally:
        for db in (importer, station, window):
            db.close()


def test_0020_starts_the_watermark_at_the_newest_revision_and_downgrades(url: str) -> None:
    """Upgraded from 0019 with labels, the mark starts at the newest revision's id (what windows of the older
    version last read); a downgrade drops the table and a second upgrade writes the row again."""
    db = open_database(url)
    ids = _images(db, n=2)
    for i in ids:
        db.labels.append(i, LabelChange(ReviewState.CORRECTED, class_name="crack"), "ann")
    newest = db.labels.current(ids[-1]).id
    db.close()
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            mig.downgrade(conn, "0019_queue_domain")
        with engine.connect() as conn:
            assert "label_watermark" not in inspect(conn).get_table_names()
        with engine.begin() as conn:
            mig.upgrade(conn)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id, mark FROM label_watermark")).all() == [(1, newest)]
    finally:
        engine.dispose()
