"""A worker on a machine that does not see an image's folder leaves its items for a worker that does.

Before, it failed each one as "file not found" and wrote that error on the image — shown at every station of a
shared database, also where the file was there (a standing worker on another machine, a share mounted at
another path, an unplugged drive)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.services.indexing import index_folder
from app.services.prelabel import submit_prelabel
from database.states import ItemStatus
from tests.worker.helpers import cpu_worker, good_images


@pytest.fixture
def db(tiny_db):
    return tiny_db


_worker = cpu_worker


def test_items_of_a_folder_this_machine_does_not_see_stay_queued_and_the_job_says_why(db, tmp_path: Path) -> None:
    good_images(tmp_path / "share" / "line3", 3)
    folder = index_folder(db, tmp_path / "share" / "line3").folder_id
    job = submit_prelabel(db, folder_id=folder)
    shutil.move(str(tmp_path / "share"), str(tmp_path / "unmounted"))  # this machine no longer sees it

    blind = _worker(db, tmp_path)
    blind.run(once=True)
    assert blind.stats.failed == 0 and blind.stats.predicted == 0
    assert all(im.error is None for im in db.images.query())  # no false "file not found" on the images
    items = db.jobs.items(job)
    assert [it.status for it in items] == [ItemStatus.QUEUED] * 3
    info = db.jobs.get(job)
    assert info.status.value in ("queued", "running")  # open: nothing failed, nothing done
    assert "waiting for a worker that sees" in (info.message or "") and "line3" in info.message

    shutil.move(str(tmp_path / "unmounted"), str(tmp_path / "share"))  # a worker that sees it (or the drive back)
    seeing = _worker(db, tmp_path)
    seeing.run(once=True)
    assert seeing.stats.predicted == 3 and db.jobs.get(job).status.value == "done"
    assert db.jobs.get(job).message is None  # the note is past once a worker got on with it (it stayed: a probe)


def test_a_missing_file_in_a_folder_this_machine_sees_is_still_an_error(db, tmp_path: Path) -> None:
    paths = good_images(tmp_path / "imgs", 2)
    folder = index_folder(db, tmp_path / "imgs").folder_id
    submit_prelabel(db, folder_id=folder)
    paths[0].unlink()
    w = _worker(db, tmp_path)
    w.run(once=True)
    assert w.stats.failed == 1 and w.stats.predicted == 1
    assert sorted(im.error or "" for im in db.images.query())[1] == "file not found"


def test_another_machines_worker_prelabels_through_the_map(db, tmp_path: Path, monkeypatch) -> None:
    """ADR 0065: the share stored as station A's path, mounted elsewhere here and mapped: this worker reads it."""
    from database.path_map import ENV
    monkeypatch.delenv(ENV, raising=False)
    good_images(tmp_path / "share" / "line3", 3)
    folder = index_folder(db, tmp_path / "share" / "line3").folder_id
    submit_prelabel(db, folder_id=folder)
    shutil.move(str(tmp_path / "share"), str(tmp_path / "mnt-b"))
    monkeypatch.setenv(ENV, f"{tmp_path / 'share'}={tmp_path / 'mnt-b'}")
    worker = cpu_worker(db, tmp_path)
    worker.run(once=True)
    assert worker.stats.predicted == 3 and worker.stats.failed == 0
