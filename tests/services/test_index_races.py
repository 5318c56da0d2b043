"""Two stations indexing the same new files at once on one PostgreSQL database: both follow the same open folder
when the line drops files into it, or both open a new lot folder together. One of them failed with a raw duplicate
key ("The open folder cannot be followed: ... uq_images_folder_rel_path", "Cannot open ...") although the other had
indexed the files (a session-51 audit; SQLite has one writer and never met it). Both now end with the same rows and
a true message. Each test holds the first station's transaction open right after its INSERT, so the second meets
the race every time, not by chance. An import, a folder's removal and a batch flag write beside a re-scan of the
folder are held the same way."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from sqlalchemy import event, text

from app.services.review import ReviewService, ReviewSettings
from app.services.review_types import FolderChange
from database import Database, open_database
from tests.database.conftest import pg_url  # noqa: F401  (fixture reused here)


def _write_images(root: Path, names: list[str], seed: int = 0) -> None:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        cv2.imwrite(str(root / name), rng.integers(0, 255, (12, 16), dtype=np.uint8))


@dataclass
class Hold:
    held: threading.Event = field(default_factory=threading.Event)     # the INSERT ran, its transaction is open
    go_on: threading.Event = field(default_factory=threading.Event)    # let it commit


@contextmanager
def _held_after(db: Database, table: str, verb: str = "INSERT INTO") -> Iterator[Hold]:
    """While inside: ``db``'s first INSERT into ``table`` (or ``verb`` of it) is held, its transaction open, until
    ``go_on`` is set."""
    hold = Hold()

    def hook(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith(f"{verb} {table.upper()}") and not hold.held.is_set():
            hold.held.set()
            hold.go_on.wait(30)

    event.listen(db.engine, "after_cursor_execute", hook)
    try:
        yield hold
    finally:
        hold.go_on.set()
        event.remove(db.engine, "after_cursor_execute", hook)


def _wait_until_blocked(db: Database) -> None:
    """Until another session of this database waits on a lock (the second station, met by the first's insert)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with db.session() as s:
            if s.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                             "AND wait_event_type = 'Lock'")):
                return
        time.sleep(0.05)
    raise AssertionError("the second station never met the first one's transaction")


def _race(first: Callable[[], Any], second: Callable[[], Any], hold: Hold, watcher: Database) -> dict[str, Any]:
    """``first`` runs until its INSERT is held, ``second`` until it waits on a lock; then both finish. Returns each
    one's result or exception."""
    out: dict[str, Any] = {}

    def run(name: str, fn: Callable[[], Any]) -> None:
        try:
            out[name] = fn()
        except Exception as exc:  # noqa: BLE001 - reported by the assertions
            out[name] = exc

    a = threading.Thread(target=run, args=("A", first))
    a.start()
    assert hold.held.wait(30)
    b = threading.Thread(target=run, args=("B", second))
    b.start()
    try:
        _wait_until_blocked(watcher)
    finally:
        hold.go_on.set()
        a.join(30)
        b.join(30)
    return out


def test_two_stations_following_one_folder_index_its_new_files_once(pg_url: str, tmp_path: Path) -> None:  # noqa: F811
    dbs = [open_database(pg_url) for _ in range(3)]
    a, b, watcher = dbs
    try:
        lot = tmp_path / "lotA"
        _write_images(lot, ["p0.png"])
        A, B = ReviewService(a, ReviewSettings(reviewer="alice")), ReviewService(b, ReviewSettings(reviewer="bob"))
        folder_id = A.open_folder(lot).id
        _write_images(lot, [f"p{i}.png" for i in range(1, 6)], seed=1)
        with _held_after(a, "images") as hold:
            out = _race(lambda: A.rescan_folder(folder_id), lambda: B.rescan_folder(folder_id), hold, watcher)
        messages = {k: v.summary() if isinstance(v, FolderChange) else f"{type(v).__name__}: {v}"
                    for k, v in out.items()}
        assert messages == {"A": "lotA: 5 new image files on disk", "B": "lotA: unchanged"}, messages
        assert A.counts(folder_id) == B.counts(folder_id) and sum(A.counts(folder_id).values()) == 6
    finally:
        for db in dbs:
            db.close()


def test_two_stations_opening_one_new_lot_folder_both_open_it(pg_url: str, tmp_path: Path) -> None:  # noqa: F811
    """The folder's row: the second station's insert met the first's (uq_folders_root_path) and said "Cannot
    open"."""
    dbs = [open_database(pg_url) for _ in range(3)]
    a, b, watcher = dbs
    try:
        lot = tmp_path / "lotB"
        _write_images(lot, ["q0.png", "q1.png", "q2.png"])
        A, B = ReviewService(a, ReviewSettings(reviewer="alice")), ReviewService(b, ReviewSettings(reviewer="bob"))
        with _held_after(a, "folders") as hold:
            out = _race(lambda: A.open_folder(lot), lambda: B.open_folder(lot), hold, watcher)
        assert not [v for v in out.values() if isinstance(v, Exception)], out
        assert out["A"].id == out["B"].id and {out["A"].image_count, out["B"].image_count} == {3}, out
        assert [(f.name, f.image_count) for f in A.folders()] == [("lotB", 3)]
    finally:
        for db in dbs:
            db.close()


def test_two_stations_indexing_one_new_lot_folder_both_see_its_files(pg_url: str, tmp_path: Path) -> None:  # noqa: F811
    """The images' rows of a folder both opened: the second's bulk insert met the first's (uq_images_folder_rel_path)
    and said "Cannot open"."""
    dbs = [open_database(pg_url) for _ in range(3)]
    a, b, watcher = dbs
    try:
        lot = tmp_path / "lotC"
        _write_images(lot, ["r0.png", "r1.png", "r2.png"])
        a.folders.add(str(lot))
        A, B = ReviewService(a, ReviewSettings(reviewer="alice")), ReviewService(b, ReviewSettings(reviewer="bob"))
        with _held_after(a, "images") as hold:
            out = _race(lambda: A.open_folder(lot), lambda: B.open_folder(lot), hold, watcher)
        assert not [v for v in out.values() if isinstance(v, Exception)], out
        assert out["A"].id == out["B"].id and {out["A"].image_count, out["B"].image_count} == {3}, out
    finally:
        for db in dbs:
            db.close()


def test_an_import_and_a_rescan_of_its_folder_at_once_both_end(pg_url: str) -> None:  # noqa: F811
    """A session-51 review: an import (``append_many``) locked its images' rows while a re-scan of their folder
    (``ImageRepository.sync``) updated them in another order, and PostgreSQL broke the deadlock by failing one: "nothing
    imported: ... deadlock detected." Here the re-scan has updated the newest image (a changed file) and is held
    before it marks the oldest missing; the import of both images then comes. It now waits for the re-scan to end,
    and both end."""
    from database import FileEntry, LabelChange, ReviewState
    dbs = [open_database(pg_url) for _ in range(3)]
    a, b, watcher = dbs
    try:
        folder_id = a.folders.add("/lots/lotD").id
        a.images.sync(folder_id, [FileEntry(f"s{i}.png", 10, 1) for i in range(4)])
        ids = {i.rel_path: i.id for i in a.images.query()}
        oldest, newest = ids["s0.png"], ids["s3.png"]
        scan = [FileEntry(f"s{i}.png", 10, 1) for i in (1, 2)] + [FileEntry("s3.png", 11, 2)]  # s3 changed, s0 gone
        labels = [(i, LabelChange(ReviewState.CORRECTED, class_name="scratch"), 0) for i in (oldest, newest)]
        with _held_after(a, "images", verb="UPDATE") as hold:
            out = _race(lambda: a.images.sync(folder_id, scan, complete=True),
                        lambda: b.labels.append_many(labels, "import"), hold, watcher)
        assert not [v for v in out.values() if isinstance(v, Exception)], out
        assert out["B"] == 2 and out["A"].missing == 1 and out["A"].changed_ids == (newest,), out
        assert {i: r.class_name for i, r in watcher.labels.current_many([oldest, newest]).items()} == {
            oldest: "scratch", newest: "scratch"}
    finally:
        for db in dbs:
            db.close()


@pytest.mark.parametrize("writer", ["remove the folder", "set_flagged", "set_priorities"])
def test_a_folder_removal_or_a_flag_write_beside_a_rescan_of_it_both_end(pg_url: str, writer: str) -> None:  # noqa: F811
    """A session-52 audit: removing a folder (``FolderRepository.remove``) and the models' flags and priorities
    written for many images (``set_flagged``, ``set_priorities``: a worker's batch, a re-flag) locked the images'
    rows without the folder's index lock that a re-scan takes, so beside a re-scan of the folder at another station
    they took the rows in the other order and PostgreSQL failed one of the two with "deadlock detected". Held as the
    import above: the re-scan has updated the newest image and is held before it marks the oldest missing; the
    write of both then comes. It now waits for the re-scan to end, and both end."""
    from database import FileEntry
    dbs = [open_database(pg_url) for _ in range(3)]
    a, b, watcher = dbs
    try:
        folder_id = a.folders.add("/lots/lotE").id
        a.images.sync(folder_id, [FileEntry(f"s{i}.png", 10, 1) for i in range(4)])
        ids = {i.rel_path: i.id for i in a.images.query()}
        oldest, newest = ids["s0.png"], ids["s3.png"]
        scan = [FileEntry(f"s{i}.png", 10, 1) for i in (1, 2)] + [FileEntry("s3.png", 11, 2)]  # s3 changed, s0 gone
        write: Callable[[], Any] = {
            "remove the folder": lambda: b.folders.remove(folder_id),
            "set_flagged": lambda: b.images.set_flagged([oldest, newest], True),
            "set_priorities": lambda: b.images.set_priorities({oldest: 1.0, newest: 2.0}),
        }[writer]
        with _held_after(a, "images", verb="UPDATE") as hold:
            out = _race(lambda: a.images.sync(folder_id, scan, complete=True), write, hold, watcher)
        assert not [v for v in out.values() if isinstance(v, Exception)], out
        assert out["A"].missing == 1 and out["A"].changed_ids == (newest,), out
        if writer == "remove the folder":
            assert watcher.folders.get(folder_id) is None and watcher.images.get_many([oldest, newest]) == []
        else:   # written after the re-scan: its values stand
            got = {i.id: (i.flagged, i.priority) for i in watcher.images.get_many([oldest, newest])}
            assert got == ({oldest: (True, 0.0), newest: (True, 0.0)} if writer == "set_flagged"
                           else {oldest: (False, 1.0), newest: (False, 2.0)}), got
    finally:
        for db in dbs:
            db.close()
