"""An image whose prediction raises costs that image a bounded number of attempts, never the worker.

Issue 17: any Python error inside a model's predict escaped ``Worker._process``; every worker
exited with a traceback, the claims were given back with the attempt taken back, and the job
stayed queued for ever, crashing each restart.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from app.services.artifacts import ArtifactStore
from app.services.indexing import index_folder
from app.services.prelabel import failed_images, job_status, submit_prelabel
from app.worker import Worker, WorkerOptions
from database.jobs import MAX_ATTEMPTS
from inference.engine import InspectionEngine
from tests.worker.helpers import good_images, make_db


@pytest.fixture
def db(url, tiny_models):
    database = make_db(url, tiny_models)
    yield database
    database.close()


def worker(db, tmp_path: Path) -> Worker:
    return Worker(db, WorkerOptions(device="cpu", batch_size=4, poll_s=0.05),
                  artifacts=ArtifactStore(tmp_path / "artifacts"))


def poison_folder(tmp_path: Path) -> Path:
    good_images(tmp_path / "imgs", 3)
    assert cv2.imwrite(str(tmp_path / "imgs" / "poison.png"), np.full((32, 32), 7, np.uint8))
    return tmp_path / "imgs"


def raise_on_flat_images(monkeypatch, exc: Exception) -> list[int]:
    """A model bug that only one kind of image triggers (here: a flat one), as a TypeError etc. would."""
    real = InspectionEngine._predict_family
    calls: list[int] = []

    def predict(self, family, images, sizes):
        calls.append(len(images))
        if any(float(np.ptp(im)) == 0.0 for im in images):
            raise exc
        return real(self, family, images, sizes)

    monkeypatch.setattr(InspectionEngine, "_predict_family", predict)
    return calls


def test_a_raising_prediction_fails_that_image_after_bounded_attempts(db, tmp_path: Path, monkeypatch) -> None:
    raise_on_flat_images(monkeypatch, ZeroDivisionError("float division by zero"))
    folder = index_folder(db, poison_folder(tmp_path)).folder_id
    job = submit_prelabel(db, folder_id=folder, families=["anomaly"])
    stats = worker(db, tmp_path).run(once=True)
    status = job_status(db, job)
    assert (status.state, status.done, status.failed) == ("done", 3, 1)
    assert stats.predicted == 3 and stats.failed == 1
    [(path, reason)] = failed_images(db, job)
    assert path.endswith("poison.png")
    assert "ZeroDivisionError: float division by zero" in reason and f"all {MAX_ATTEMPTS} attempts" in reason
    [item] = [it for it in db.jobs.items(job) if it.status.value == "failed"]
    assert item.attempts == MAX_ATTEMPTS and "Traceback" not in item.error
    poison = next(i for i in db.images.query() if i.rel_path == "poison.png")
    assert "ZeroDivisionError" in poison.error


def test_an_error_that_stops_the_worker_counts_an_attempt_across_restarts(db, tmp_path: Path,
                                                                          monkeypatch) -> None:
    """Whatever escapes the worker: the batch it held was tried, so restarts end in a failed item."""
    good_images(tmp_path / "imgs", 1)
    job = submit_prelabel(db, folder_id=index_folder(db, tmp_path / "imgs").folder_id, families=["anomaly"])

    def broken_collect(_pending):
        raise TypeError("'NoneType' object is not subscriptable")

    monkeypatch.setattr(InspectionEngine, "collect", staticmethod(broken_collect))
    for attempt in range(1, MAX_ATTEMPTS + 1):
        with pytest.raises(TypeError):
            worker(db, tmp_path).run(once=True)
        [item] = db.jobs.items(job)
        assert item.attempts == attempt
    status = job_status(db, job)
    assert (status.state, status.failed) == ("failed", 1)
    assert "worker stopped on an error" in failed_images(db, job)[0][1]


def test_a_database_error_while_storing_gives_the_batch_back_untried(db, tmp_path: Path, monkeypatch) -> None:
    """Found by a session-44 probe (connection drops while a worker stored its answers): each drop counted an attempt
    of the batch in hand, three failed it for good, and the database's error became each image's pre-label error.
    The database failed, not the images: they go back untried and keep no error."""
    from app.worker import Worker as W
    from database import DatabaseError
    good_images(tmp_path / "imgs", 2)
    job = submit_prelabel(db, folder_id=index_folder(db, tmp_path / "imgs").folder_id, families=["anomaly"])

    def dropped(*_args, **_kwargs):
        raise DatabaseError("cannot reach the database 'station' on 127.0.0.1:5432 (server closed the connection)")
    monkeypatch.setattr(W, "_store", dropped)
    for _ in range(MAX_ATTEMPTS + 1):
        with pytest.raises(DatabaseError):
            worker(db, tmp_path).run(once=True)
    assert [(it.status.value, it.attempts) for it in db.jobs.items(job)] == [("queued", 0), ("queued", 0)]
    assert all(im.error is None for im in db.images.query())
    monkeypatch.undo()  # the database is back: the images run
    worker(db, tmp_path).run(once=True)
    assert job_status(db, job).state == "done"


def test_give_back_after_a_graceful_stop_is_not_an_attempt(db, tmp_path: Path) -> None:
    good_images(tmp_path / "imgs", 2)
    job = submit_prelabel(db, folder_id=index_folder(db, tmp_path / "imgs").folder_id, families=["anomaly"])
    batch = db.jobs.claim_items("me:1:a", 2)
    db.jobs.release_items("me:1:a", [it.id for it in batch.items])
    assert [it.attempts for it in db.jobs.items(job)] == [0, 0]


def test_a_standing_worker_gives_back_what_it_held_when_the_database_went_away(db, tmp_path: Path, monkeypatch) -> None:
    """Found by a session-44 probe (a PostgreSQL restart): the standing worker started afresh under a new id, so the
    batches the old one held stayed "running" until they went stale (50-60 s of a false ETA in the Jobs dock) and
    each cost an attempt. They are given back untried as soon as the database answers again."""
    import argparse

    from app.commands import worker as worker_command
    from database import DatabaseError
    good_images(tmp_path / "imgs", 3)
    job = submit_prelabel(db, folder_id=index_folder(db, tmp_path / "imgs").folder_id, families=["anomaly"])
    seen: list[list[tuple[str, int]]] = []

    def run(self, once=False, until=None, on_batch=None):
        if not seen:
            seen.append([])
            self.db.jobs.register_worker(self.id)
            self.db.jobs.claim_items(self.id, 4)  # claimed, then the server goes away
            raise DatabaseError("cannot reach the database (server closed the connection)")
        seen.append([(it.status.value, it.attempts) for it in db.jobs.items(job)])
        return self.stats

    monkeypatch.setattr(Worker, "run", run)
    monkeypatch.setattr(worker_command, "RETRY_S", 0.0)
    monkeypatch.setattr(worker_command.signal, "signal", lambda *_a: None)
    args = argparse.Namespace(db=db.url, device="cpu", once=False, batch_size=4, stale_after=60.0, threads=1, nice=0,
                              exit_with_parent=None)
    assert worker_command.run(args) == 0
    assert seen[1] == [("queued", 0)] * 3


def test_a_refusal_of_the_data_while_storing_still_counts_an_attempt(db, tmp_path: Path, monkeypatch) -> None:
    """The session-44 review: only the database being away gives a batch back untried; a refusal of the data itself
    (a ConflictError) counts, so a batch refused every time fails for good instead of looping."""
    from app.worker import Worker as W
    from database import ConflictError
    good_images(tmp_path / "imgs", 1)
    job = submit_prelabel(db, folder_id=index_folder(db, tmp_path / "imgs").folder_id, families=["anomaly"])

    def refused(*_args, **_kwargs):
        raise ConflictError("a duplicate key")
    monkeypatch.setattr(W, "_store", refused)
    for _ in range(MAX_ATTEMPTS):
        with pytest.raises(ConflictError):
            worker(db, tmp_path).run(once=True)
    assert job_status(db, job).state == "failed"


def test_models_are_loaded_with_no_image_claimed(db, tmp_path: Path, monkeypatch) -> None:
    """A session-47 audit: three kills while the worker loaded its models (the OOM killer) failed its first batch's
    images for good as "stopped responding 3 times" although no model had seen them: the claim came first and
    counted an attempt. Now nothing is held while models load; a model that cannot load still fails the items."""
    import app.worker as worker_module
    from database.states import ItemStatus

    folder = index_folder(db, poison_folder(tmp_path)).folder_id
    job = submit_prelabel(db, folder_id=folder, families=["anomaly"])
    held_at_load: list[int] = []
    real = worker_module.InspectionEngine

    def engine(*args, **kwargs):
        held_at_load.append(sum(it.status == ItemStatus.RUNNING for it in db.jobs.items(job)))
        return real(*args, **kwargs)
    monkeypatch.setattr(worker_module, "InspectionEngine", engine)
    worker(db, tmp_path).run(once=True)
    assert held_at_load == [0] and job_status(db, job).done == 4
    assert all(it.attempts == 1 for it in db.jobs.items(job))  # the give-back before the load counted nothing

    def broken(*args, **kwargs):
        raise worker_module.CheckpointError("model.safetensors: truncated")
    monkeypatch.setattr(worker_module, "InspectionEngine", broken)
    again = submit_prelabel(db, folder_id=folder, families=["anomaly"], only_missing=False)
    worker(db, tmp_path).run(once=True)
    assert job_status(db, again).failed == 4
    assert all("model cannot be loaded: model.safetensors: truncated" in (it.error or "") for it in db.jobs.items(again))


def test_the_worker_counts_what_it_stored_not_what_it_ran(db, tmp_path: Path, monkeypatch) -> None:
    """A session-47 audit: a worker that stalled past its claims ran them, stored nothing (another worker had taken
    them over) and still logged "20 images predicted"."""
    folder = index_folder(db, poison_folder(tmp_path)).folder_id
    submit_prelabel(db, folder_id=folder, families=["anomaly"])
    real = db.jobs.complete_items
    taken_over: list[int] = []

    def complete(worker_id, item_ids, *args, **kwargs):
        if not taken_over:  # the first batch's claims went stale meanwhile: nothing of it is stored
            taken_over.extend(item_ids)
            db.jobs.release_items(worker_id, list(item_ids))
        return real(worker_id, item_ids, *args, **kwargs)
    monkeypatch.setattr(db.jobs, "complete_items", complete)
    w = worker(db, tmp_path)
    w.run(once=True)
    # the batch given back was claimed again and stored then: each image counted once, as stored
    assert taken_over and w.stats.predicted == 4
    assert w.stats.predicted == sum(1 for im in db.images.query() if db.predictions.for_image(im.id))


def test_the_next_jobs_models_load_after_the_batch_in_hand_is_done(db, tmp_path: Path, monkeypatch) -> None:
    """The review of session 47: the batch claimed ahead, while another was on the models, loaded its own job's models
    with the batch in hand still claimed: a kill then counted an attempt on images no model had seen."""
    import app.worker as worker_module
    from database.states import ItemStatus

    folder = index_folder(db, poison_folder(tmp_path)).folder_id
    first = submit_prelabel(db, folder_id=folder, families=["anomaly"])
    second = submit_prelabel(db, folder_id=folder, families=["classifier"], only_missing=False)
    held_at_load: list[int] = []
    real = worker_module.InspectionEngine

    def engine(*args, **kwargs):
        held_at_load.append(sum(it.status == ItemStatus.RUNNING for j in (first, second) for it in db.jobs.items(j)))
        return real(*args, **kwargs)
    monkeypatch.setattr(worker_module, "InspectionEngine", engine)
    Worker(db, WorkerOptions(device="cpu", batch_size=2, poll_s=0.05),
           artifacts=ArtifactStore(tmp_path / "artifacts")).run(once=True)
    assert held_at_load == [0, 0]
    assert job_status(db, first).done == 4 and job_status(db, second).done == 4
