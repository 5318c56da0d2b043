"""A worker whose database a newer version of the station upgrades while it runs stops, writing nothing more.

A session-52 audit: after a newer station upgraded the schema, the older station's window noticed and stopped saving,
but the older version's pre-label worker (the window's own, and standing ``python main.py worker``s) went on claiming
jobs and storing answers into a schema it does not know.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from app.cli import main
from app.services.artifacts import ArtifactStore
from app.services.indexing import index_folder
from app.services.prelabel import NEWER_SCHEMA_EXIT, submit_prelabel
from app.worker import Worker, WorkerOptions
from database.errors import SchemaChangedError
from database.states import ItemStatus
from inference.engine import InspectionEngine
from tests.worker.helpers import good_images

NEWER = "0099_from_a_newer_station"
LINE = (f"the database was upgraded by a newer version (schema revision {NEWER}); this worker stops: start the newer "
        "version's station or worker")


def _upgrade_by_a_newer_station(url: str) -> None:
    """What a newer version's migration leaves for this one to find: a revision it does not know."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": NEWER})
    finally:
        engine.dispose()


def _job_of_six(db, tmp_path: Path) -> int:
    good_images(tmp_path / "imgs", 6)
    return submit_prelabel(db, folder_id=index_folder(db, tmp_path / "imgs").folder_id, families=["anomaly"])


def _worker(db, tmp_path: Path) -> Worker:
    return Worker(db, WorkerOptions(device="cpu", batch_size=2, poll_s=0.05), artifacts=ArtifactStore(tmp_path / "a"))


def test_a_worker_claims_nothing_more_once_a_newer_version_upgraded_the_database(tiny_db, url: str, tmp_path: Path,
                                                                                caplog) -> None:
    """Before, it went on with the job after the upgrade: every batch claimed and its answers stored. Now the first
    batch, stored before the upgrade, stays; the one claimed ahead of it is not stored, nothing more is claimed, and it
    stops with the line."""
    job = _job_of_six(tiny_db, tmp_path)
    caplog.set_level(logging.INFO, logger="station.worker")
    with pytest.raises(SchemaChangedError):
        _worker(tiny_db, tmp_path).run(once=True, on_batch=lambda *_: _upgrade_by_a_newer_station(url))
    counts = tiny_db.jobs.item_counts(job)
    assert (counts.get(ItemStatus.DONE), counts.get(ItemStatus.QUEUED)) == (2, 2)   # 2 claimed ahead, held
    assert LINE in caplog.text
    assert "the 2 image(s) this worker claimed are not given back from here" in caplog.text


def test_a_worker_stores_nothing_of_a_batch_on_the_models_when_the_upgrade_came(tiny_db, url: str, tmp_path: Path,
                                                                               monkeypatch, caplog) -> None:
    """The answers of a batch that was on the models when the newer version upgraded the database are not stored
    (before, they were, and the job went on)."""
    job = _job_of_six(tiny_db, tmp_path)
    predict = InspectionEngine.predict_decoded

    def upgraded_meanwhile(self, *args, **kwargs):
        _upgrade_by_a_newer_station(url)
        return predict(self, *args, **kwargs)
    monkeypatch.setattr(InspectionEngine, "predict_decoded", upgraded_meanwhile)
    caplog.set_level(logging.INFO, logger="station.worker")
    with pytest.raises(SchemaChangedError):
        _worker(tiny_db, tmp_path).run(once=True)
    counts = tiny_db.jobs.item_counts(job)
    assert not counts.get(ItemStatus.DONE) and counts.get(ItemStatus.QUEUED) == 2
    image_ids = [it.image_id for it in tiny_db.jobs.items(job)]
    version = tiny_db.model_versions.active("anomaly")
    assert version is not None and tiny_db.predictions.for_images(image_ids, version.id) == {}
    assert LINE in caplog.text


def test_the_worker_command_stops_with_its_own_exit_status(tiny_db, url: str, tmp_path: Path, monkeypatch,
                                                           caplog) -> None:
    """``python main.py worker`` (the station's own, and standing ones) exits NEWER_SCHEMA_EXIT, which the station's
    Jobs dock reads, instead of retrying every 5 s; it claimed nothing."""
    job = _job_of_six(tiny_db, tmp_path)
    recover = Worker._recover

    def upgraded_first(self) -> None:
        _upgrade_by_a_newer_station(url)
        recover(self)
    monkeypatch.setattr(Worker, "_recover", upgraded_first)
    monkeypatch.setenv("INSPECTION_STATION_HOME", str(tmp_path / "home"))
    assert main(["worker", "--once", "--device", "cpu", "--threads", "1", "--db", url]) == NEWER_SCHEMA_EXIT
    assert tiny_db.jobs.item_counts(job).get(ItemStatus.QUEUED) == 6
    assert LINE in caplog.text
