"""Anomaly maps on a database several stations share (ADR 0061): a map made by another station's worker
is said to be missing, not silently left out, and a project maps folder lets every station draw it.

Found under Xvfb with two stations on one PostgreSQL database: station B's worker pre-labelled the folder,
its maps went to B's user cache, and station A showed the anomaly score with an empty "Heatmap" layer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.services.artifacts import ENV_OVERRIDE, ArtifactStore
from app.services.indexing import index_folder
from app.services.prelabel import submit_prelabel
from app.services.project_settings import ProjectSettingsError, load_project_settings, save_maps_folder
from app.services.review import ReviewService
from app.services.review_types import QueueFilter
from app.worker import Worker, WorkerOptions
from tests.worker.helpers import good_images


@pytest.fixture
def db(tiny_db, monkeypatch):
    monkeypatch.delenv(ENV_OVERRIDE, raising=False)
    return tiny_db


def _details(db, folder_id: int, review: ReviewService) -> list:
    return [review.detail(r.image_id).prediction for r in review.queue(QueueFilter(folder_id=folder_id))]


def test_a_map_made_by_another_stations_worker_is_said_missing(db, tmp_path: Path) -> None:
    good_images(tmp_path / "imgs", 3)
    folder = index_folder(db, tmp_path / "imgs").folder_id
    submit_prelabel(db, folder_id=folder)
    Worker(db, WorkerOptions(device="cpu", batch_size=4, poll_s=0.05),
           artifacts=ArtifactStore(tmp_path / "station-b")).run(once=True)

    here = _details(db, folder, ReviewService(db, artifacts=ArtifactStore(tmp_path / "station-a")))
    assert len(here) == 3
    for p in here:
        assert p.anomaly_score is not None and p.heatmap is None
        assert p.heatmap_missing and "not on this station" in p.heatmap_missing
        assert str(tmp_path / "station-a") in p.heatmap_missing and "Anomaly maps folder" in p.heatmap_missing
    there = _details(db, folder, ReviewService(db, artifacts=ArtifactStore(tmp_path / "station-b")))
    assert all(p.heatmap is not None and p.heatmap_missing is None for p in there)


def test_the_projects_maps_folder_is_where_workers_write_and_stations_read(db, tmp_path: Path) -> None:
    shared = tmp_path / "share"
    shared.mkdir()
    assert save_maps_folder(db, f" {shared} ", by="lead") == str(shared)
    assert load_project_settings(db).maps_folder == str(shared)
    good_images(tmp_path / "imgs", 3)
    folder = index_folder(db, tmp_path / "imgs").folder_id
    submit_prelabel(db, folder_id=folder)
    Worker(db, WorkerOptions(device="cpu", batch_size=4, poll_s=0.05)).run(once=True)  # reads the setting
    assert len(list(shared.rglob("*.npz"))) >= 1

    review = ReviewService(db)
    review.use_maps_folder(str(shared))
    assert all(p.heatmap is not None and p.heatmap_missing is None for p in _details(db, folder, review))


@pytest.mark.parametrize("folder, says", [("relative/maps", "full path"), ("/no/such/maps/folder", "not a folder")])
def test_a_maps_folder_that_cannot_be_used_is_refused_and_nothing_stored(db, folder: str, says: str) -> None:
    with pytest.raises(ProjectSettingsError, match=says):
        save_maps_folder(db, folder)
    assert load_project_settings(db).maps_folder == ""


def test_a_maps_folder_holding_files_the_station_did_not_write_is_refused(db, tmp_path: Path) -> None:
    """A session-51 audit: a share holding a line's part images in ``L1/`` was saved as the maps folder, and
    ``db sweep-maps`` then removed them. A folder not yet marked must hold only the station's own files; a marked
    one (a project's maps folder saved before this check) is still taken as it is."""
    share = tmp_path / "share"
    (share / "L1").mkdir(parents=True)
    (share / "L1" / "part_0001.png").write_bytes(b"a part image")
    with pytest.raises(ProjectSettingsError, match=r"did not write \(L1\)"):
        save_maps_folder(db, str(share))
    assert load_project_settings(db).maps_folder == ""
    maps = share / "maps"
    ArtifactStore(maps).put_map(np.ones((4, 4), np.float32))   # an older version's maps folder: maps only
    assert save_maps_folder(db, str(maps)) == str(maps)
    (share / ".inspection-maps-folder").write_text("the anomaly maps of an inspection station project (ADR 0061)\n")
    assert save_maps_folder(db, str(share)) == str(share)   # marked: an existing project's folder is not refused


def test_a_maps_folder_holding_only_a_file_managers_files_is_taken(db, tmp_path: Path) -> None:
    """A session-52 audit: a new folder on the share the inspector had opened in Finder (or Explorer) held a
    ``.DS_Store`` (``Thumbs.db``, ``desktop.ini``) and nothing else, and Settings refused it as holding files the
    station did not write. Those files are no one's data and no longer count; a real file beside them still does."""
    browsed = tmp_path / "browsed"
    (browsed / "ab").mkdir(parents=True)
    for name in (".DS_Store", "Thumbs.db", "desktop.ini"):
        (browsed / name).write_bytes(b"\0")
    (browsed / "ab" / ".DS_Store").write_bytes(b"\0")   # a map subfolder opened too
    assert save_maps_folder(db, str(browsed)) == str(browsed)
    assert (browsed / ".DS_Store").is_file()   # left as it was
    other = tmp_path / "other"
    other.mkdir()
    (other / ".DS_Store").write_bytes(b"\0")
    (other / "report.pdf").write_bytes(b"a report")
    with pytest.raises(ProjectSettingsError, match=r"did not write \(report\.pdf\)"):
        save_maps_folder(db, str(other))
    assert load_project_settings(db).maps_folder == str(browsed)


def test_pre_labelling_again_makes_a_map_this_worker_cannot_read_and_skips_one_it_can(db, tmp_path: Path) -> None:
    """A worker skips an image every version has answered; before ADR 0061 it also skipped one whose map was
    gone (another station's folder, a cleared cache), so "Pre-label selection" could never bring it back."""
    good_images(tmp_path / "imgs", 2)
    folder = index_folder(db, tmp_path / "imgs").folder_id
    submit_prelabel(db, folder_id=folder)
    store = ArtifactStore(tmp_path / "mine")
    Worker(db, WorkerOptions(device="cpu", batch_size=4, poll_s=0.05), artifacts=store).run(once=True)
    maps = sorted((tmp_path / "mine").rglob("*.npz"))
    assert maps
    for m in maps:
        m.unlink()  # the cache cleared (or the maps made at another station)
    review = ReviewService(db, artifacts=store)
    assert all(p.heatmap_missing for p in _details(db, folder, review))

    ids = [r.image_id for r in review.queue(QueueFilter(folder_id=folder))]
    submit_prelabel(db, image_ids=ids, only_missing=False)
    again = Worker(db, WorkerOptions(device="cpu", batch_size=4, poll_s=0.05), artifacts=store)
    again.run(once=True)
    assert again.stats.predicted == 2 and again.stats.skipped == 0
    assert all(p.heatmap is not None and p.heatmap_missing is None for p in _details(db, folder, review))

    submit_prelabel(db, image_ids=ids, only_missing=False)
    third = Worker(db, WorkerOptions(device="cpu", batch_size=4, poll_s=0.05), artifacts=store)
    third.run(once=True)
    assert third.stats.skipped == 2 and third.stats.predicted == 0  # every answer and map here: nothing to run


def test_a_maps_folder_set_later_gets_this_workers_maps_by_copy(db, tmp_path: Path) -> None:
    """The maps a station's worker made before the project had a maps folder are copied there when a job
    covers their images again: no model runs, and every station then draws them."""
    from app.services.artifacts import station_root
    good_images(tmp_path / "imgs", 2)
    folder = index_folder(db, tmp_path / "imgs").folder_id
    submit_prelabel(db, folder_id=folder)
    Worker(db, WorkerOptions(device="cpu", batch_size=4, poll_s=0.05)).run(once=True)  # its own folder
    own = sorted(p.name for p in station_root(db.url).rglob("*.npz"))
    assert own
    shared = tmp_path / "share"
    shared.mkdir()
    save_maps_folder(db, str(shared))
    review = ReviewService(db, artifacts=ArtifactStore(shared))  # another station, reading the share only
    assert all(p.heatmap_missing for p in _details(db, folder, review))

    ids = [r.image_id for r in review.queue(QueueFilter(folder_id=folder))]
    submit_prelabel(db, image_ids=ids, only_missing=False)
    worker = Worker(db, WorkerOptions(device="cpu", batch_size=4, poll_s=0.05))
    worker.run(once=True)
    assert worker.stats.skipped == 2 and worker.stats.predicted == 0
    assert sorted(p.name for p in shared.rglob("*.npz")) == own
    assert all(p.heatmap is not None for p in _details(db, folder, review))


def test_a_maps_folder_that_cannot_be_written_fails_no_image(db, tmp_path: Path, monkeypatch) -> None:
    """A session-47 audit: with the maps folder unwritable every image failed for good ("prediction failed:
    PermissionError"), after six runs of the models each, and its stored error then kept it out of automatic
    pre-labelling once the folder was fixed. The batch is given back untried; the job says why."""
    from app.services import artifacts
    from app.services.artifacts import MapsUnwritable
    from database.states import ItemStatus

    good_images(tmp_path / "imgs", 3)
    folder = index_folder(db, tmp_path / "imgs").folder_id
    job = submit_prelabel(db, folder_id=folder)
    real_write = artifacts.ArtifactStore._write

    def refused(self, root, ref, data, make_root=True):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(artifacts.ArtifactStore, "_write", refused)
    with pytest.raises(MapsUnwritable, match="cannot be written to .*Permission denied"):
        Worker(db, WorkerOptions(device="cpu", batch_size=4, poll_s=0.05),
               artifacts=ArtifactStore(tmp_path / "maps")).run(once=True)
    items = db.jobs.items(job)
    assert [(i.status, i.attempts) for i in items] == [(ItemStatus.QUEUED, 0)] * 3
    assert all(im.error is None for im in db.images.query())
    assert "cannot be written" in (db.jobs.get(job).message or "")
    monkeypatch.setattr(artifacts.ArtifactStore, "_write", real_write)  # the folder fixed: the same job finishes
    Worker(db, WorkerOptions(device="cpu", batch_size=4, poll_s=0.05),
           artifacts=ArtifactStore(tmp_path / "maps")).run(once=True)
    assert db.jobs.get(job).progress_done == 3 and db.jobs.get(job).message is None
