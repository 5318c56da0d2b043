"""Jobs: claiming, progress, cancel, stale-worker recovery, and concurrent workers never sharing an item."""
from __future__ import annotations

import multiprocessing as mp
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from database import (
    Database,
    DatabaseError,
    FileEntry,
    ItemStatus,
    JobStatus,
    PredictionIn,
    new_worker_id,
    open_database,
)
from database.models import JobItem, Worker, utcnow


def _images(db: Database, n: int) -> list[int]:
    folder = db.folders.add("/data/parts")
    return list(db.images.sync(folder.id, [FileEntry(f"{i}.png", 1, i) for i in range(n)]).added_ids)


def test_item_job_lifecycle_with_predictions(db: Database) -> None:
    ids = _images(db, 5)
    mv = db.model_versions.register("classifier", "v1", "/c")
    job = db.jobs.create("prelabel", {"families": ["classifier"]}, ids + ids[:1])
    assert (job.status, job.progress_total, job.has_items) == (JobStatus.QUEUED, 5, True)
    w = new_worker_id()
    batch = db.jobs.claim_items(w, 3)
    assert batch.job.id == job.id and batch.job.status is JobStatus.RUNNING and batch.job.started_at
    assert [i.image_id for i in batch.items] == ids[:3]
    assert batch.items[0].image_path == "/data/parts/0.png" and batch.items[0].attempts == 1
    preds = [PredictionIn(i.image_id, mv.id, predicted_class="ok") for i in batch.items]
    assert db.jobs.complete_items(w, [i.id for i in batch.items[:2]], preds) == 2
    assert db.predictions.image_ids_with(mv.id) == set(ids[:2])  # the third is not completed yet
    assert db.jobs.fail_items(w, {batch.items[2].id: "cannot decode"}) == 1
    assert db.jobs.get(job.id).progress_done == 2 and db.jobs.get(job.id).progress_failed == 1

    rest = db.jobs.claim_items(w, 10)
    assert len(rest.items) == 2
    assert db.jobs.claim_items(w, 10) is None
    db.jobs.complete_items(w, [i.id for i in rest.items])
    done = db.jobs.get(job.id)
    assert done.status is JobStatus.DONE and done.finished and done.error == "1 of 5 images failed"
    assert db.jobs.item_counts(job.id)[ItemStatus.DONE] == 4
    assert db.jobs.items(job.id, ItemStatus.FAILED)[0].error == "cannot decode"
    assert [j.id for j in db.jobs.list([JobStatus.DONE])] == [job.id]


def test_claims_follow_priority_and_kind(db: Database) -> None:
    ids = _images(db, 4)
    low = db.jobs.create("prelabel", {}, ids[:2])
    high = db.jobs.create("prelabel", {}, ids[2:], priority=5)
    other = db.jobs.create("index", {}, ids[:1])
    w = new_worker_id()
    assert db.jobs.claim_items(w, 10, kinds=["prelabel"]).job.id == high.id
    assert db.jobs.claim_items(w, 10, kinds=["prelabel"]).job.id == low.id
    assert db.jobs.claim_items(w, 10, kinds=["prelabel"]) is None
    assert db.jobs.claim_items(w, 10).job.id == other.id


def test_all_items_failing_fails_the_job_and_empty_job_is_done(db: Database) -> None:
    ids = _images(db, 2)
    job = db.jobs.create("prelabel", {}, ids)
    w = new_worker_id()
    items = db.jobs.claim_items(w, 5).items
    db.jobs.fail_items(w, {i.id: f"bad {i.image_id}" for i in items})
    failed = db.jobs.get(job.id)
    assert failed.status is JobStatus.FAILED and "bad" in failed.error
    assert db.jobs.create("prelabel", {}, []).status is JobStatus.DONE


def test_cancel_queued_and_running_jobs(db: Database) -> None:
    ids = _images(db, 6)
    queued = db.jobs.create("prelabel", {}, ids[:2])
    assert db.jobs.request_cancel(queued.id).status is JobStatus.CANCELLED
    running = db.jobs.create("prelabel", {}, ids)
    w = new_worker_id()
    batch = db.jobs.claim_items(w, 2)
    assert db.jobs.heartbeat(w) == frozenset()
    after = db.jobs.request_cancel(running.id)
    assert after.status is JobStatus.RUNNING and after.cancel_requested
    assert db.jobs.heartbeat(w) == {running.id}               # the worker learns of it
    assert db.jobs.claim_items(w, 10) is None                 # nothing more is handed out
    assert db.jobs.release_items(w, [i.id for i in batch.items]) == 2
    final = db.jobs.get(running.id)
    assert final.status is JobStatus.CANCELLED and final.finished_at is not None
    assert db.jobs.item_counts(running.id)[ItemStatus.CANCELLED] == 6


def test_release_requeues_without_counting_an_attempt(db: Database) -> None:
    ids = _images(db, 2)
    db.jobs.create("prelabel", {}, ids)
    w1, w2 = new_worker_id(), new_worker_id()
    first = db.jobs.claim_items(w1, 2)
    assert db.jobs.get(first.job.id).status is JobStatus.RUNNING
    assert db.jobs.release_items(w1, [i.id for i in first.items]) == 2
    assert db.jobs.get(first.job.id).status is JobStatus.QUEUED  # nobody works on it any more
    again = db.jobs.claim_items(w2, 2)
    assert db.jobs.get(first.job.id).status is JobStatus.RUNNING
    assert [i.id for i in again.items] == [i.id for i in first.items] and again.items[0].attempts == 1
    assert db.jobs.complete_items(w1, [i.id for i in first.items]) == 0  # w1 no longer holds them


def _age_worker(db: Database, worker_id: str, seconds: float) -> None:
    with db.session(write=True) as s:
        s.execute(update(Worker).where(Worker.id == worker_id)
                  .values(heartbeat_at=utcnow() - timedelta(seconds=seconds)))


def test_crashed_worker_loses_only_its_batch(db: Database) -> None:
    ids = _images(db, 4)
    job = db.jobs.create("prelabel", {}, ids)
    crashed, alive = new_worker_id(), new_worker_id()
    lost = db.jobs.claim_items(crashed, 2)
    kept = db.jobs.claim_items(alive, 1)
    assert db.jobs.requeue_stale(timeout_s=60) == 0          # nobody is stale yet
    _age_worker(db, crashed, 120)
    assert db.jobs.requeue_stale(timeout_s=60) == 2
    assert {w.id for w in db.jobs.workers()} == {alive}
    resumed = db.jobs.claim_items(alive, 10)
    never_claimed = {i.id for i in db.jobs.items(job.id)} - {i.id for i in lost.items + kept.items}
    assert {i.id for i in resumed.items} == {i.id for i in lost.items} | never_claimed
    assert kept.items[0].id not in {i.id for i in resumed.items}
    db.jobs.complete_items(alive, [i.id for i in kept.items + resumed.items])
    assert db.jobs.get(job.id).status is JobStatus.DONE
    assert db.jobs.complete_items(crashed, [i.id for i in lost.items]) == 0  # late report is ignored


def test_a_job_whose_only_worker_crashed_waits_queued_not_running(db: Database) -> None:
    """A session-47 audit: after a kill -9 of `prelabel`, its job stayed "running" with nothing running, for good."""
    ids = _images(db, 3)
    job = db.jobs.create("prelabel", {}, ids)
    crashed = new_worker_id()
    db.jobs.claim_items(crashed, 2)
    assert db.jobs.get(job.id).status is JobStatus.RUNNING
    _age_worker(db, crashed, 120)
    assert db.jobs.requeue_stale(timeout_s=60) == 2
    assert db.jobs.get(job.id).status is JobStatus.QUEUED


def test_crashed_worker_of_a_cancelled_job_lets_the_job_finish(db: Database) -> None:
    ids = _images(db, 3)
    job = db.jobs.create("prelabel", {}, ids)
    w = new_worker_id()
    db.jobs.claim_items(w, 2)
    db.jobs.request_cancel(job.id)
    _age_worker(db, w, 120)
    assert db.jobs.requeue_stale(timeout_s=60) == 2
    assert db.jobs.get(job.id).status is JobStatus.CANCELLED
    assert db.jobs.item_counts(job.id)[ItemStatus.CANCELLED] == 3


@pytest.mark.parametrize("cancelled", [False, True])
def test_an_item_whose_image_changed_since_its_claim_goes_back_or_is_cancelled(db: Database, cancelled: bool) -> None:
    """An image re-indexed as changed while its item was on its way: its answers are not stored and the item goes
    back to the queue; where the job's cancel was asked meanwhile it is cancelled instead (queued again, no worker
    took it and the job stayed open for good: found by the session-43 review)."""
    from database.models import Image
    ids = _images(db, 3)
    with db.session(write=True) as s:
        s.execute(update(Image).values(content_hash="old"))
    mv = db.model_versions.register("anomaly", "a1", "/a")
    job = db.jobs.create("prelabel", {}, ids)
    w = new_worker_id()
    batch = db.jobs.claim_items(w, 3)
    assert [it.content_hash for it in batch.items] == ["old"] * 3
    if cancelled:
        db.jobs.request_cancel(job.id)
    with db.session(write=True) as s:
        s.execute(update(Image).where(Image.id == ids[0]).values(content_hash="new"))
    preds = [PredictionIn(i, mv.id, anomaly_score=0.5) for i in ids]
    read = {it.image_id: it.content_hash for it in batch.items}
    assert db.jobs.complete_items(w, [it.id for it in batch.items], preds, read) == 2
    assert db.predictions.image_ids_with(mv.id) == set(ids[1:])
    first = db.jobs.items(job.id)[0]
    if cancelled:
        assert first.status is ItemStatus.CANCELLED and db.jobs.get(job.id).status is JobStatus.CANCELLED
    else:
        assert (first.status, first.attempts) == (ItemStatus.QUEUED, 0)
        assert [it.image_id for it in db.jobs.claim_items(w, 3).items] == [ids[0]]


def test_an_unreadable_image_changed_since_its_claim_goes_back_instead_of_failing(db: Database) -> None:
    """Found by a session-45 probe: a file still being written when the worker decoded it ("damaged PNG") was
    re-indexed as changed once complete, then the batch's failure landed: the image read "Cannot load" and its
    item failed for good, so automatic pre-labelling never took the finished bytes. It goes back to the queue."""
    from database.models import Image
    ids = _images(db, 2)
    with db.session(write=True) as s:
        s.execute(update(Image).values(content_hash="partial"))
    job = db.jobs.create("prelabel", {}, ids)
    w = new_worker_id()
    batch = db.jobs.claim_items(w, 2)
    with db.session(write=True) as s:
        s.execute(update(Image).where(Image.id == ids[0]).values(content_hash="complete"))
    read = {it.image_id: it.content_hash for it in batch.items}
    errors = {it.id: "not a decodable image (damaged PNG)" for it in batch.items}
    assert db.jobs.fail_items(w, errors, read, image_error=True) == 1
    first, second = db.jobs.items(job.id)
    assert (first.status, first.attempts, first.error) == (ItemStatus.QUEUED, 0, None)
    assert second.status is ItemStatus.FAILED
    with db.session() as s:
        assert s.get(Image, ids[0]).error is None
        assert s.get(Image, ids[1]).error == "not a decodable image (damaged PNG)"


def test_a_worker_that_lost_its_claim_never_marks_the_image_unreadable(db: Database) -> None:
    """Found by a session-45 probe: a worker declared stale decoded a file half-written, another worker then
    pre-labelled the finished file, and the first one's late failure still wrote "Cannot load" on the image."""
    from database.models import Image
    ids = _images(db, 1)
    mv = db.model_versions.register("classifier", "v1", "/c")
    db.jobs.create("prelabel", {}, ids)
    slow, other = new_worker_id(), new_worker_id()
    lost = db.jobs.claim_items(slow, 1)
    _age_worker(db, slow, 120)
    assert db.jobs.requeue_stale(timeout_s=60) == 1
    took = db.jobs.claim_items(other, 1)
    db.jobs.complete_items(other, [it.id for it in took.items], [PredictionIn(ids[0], mv.id, predicted_class="ok")])
    assert db.jobs.fail_items(slow, {it.id: "damaged PNG" for it in lost.items}, image_error=True) == 0
    with db.session() as s:
        assert s.get(Image, ids[0]).error is None
    assert db.jobs.items(took.job.id)[0].status is ItemStatus.DONE


def test_a_station_whose_clock_is_behind_keeps_its_claims_on_postgresql(db: Database, monkeypatch) -> None:
    """Found by a session-45 probe: each station stamped heartbeats and claims with its own clock, so a worker on a
    line PC 90 s behind had its batch taken as stale by another station's recovery, redone, and after three claims
    failed as "stopped responding". Stamps and the staleness check read the database's clock."""
    import database.jobs as jobs
    if db.dialect != "postgresql":
        pytest.skip("one SQLite file is read by one machine's clock")
    ids = _images(db, 2)
    db.jobs.create("prelabel", {}, ids)
    behind = new_worker_id()
    real = jobs.utcnow
    monkeypatch.setattr(jobs, "utcnow", lambda: real() - timedelta(seconds=90))
    db.jobs.claim_items(behind, 2)
    db.jobs.heartbeat(behind)
    monkeypatch.setattr(jobs, "utcnow", real)
    assert db.jobs.requeue_stale(timeout_s=60) == 0  # its beat is fresh by the server's clock


def test_item_that_keeps_killing_workers_is_failed(db: Database) -> None:
    ids = _images(db, 1)
    job = db.jobs.create("prelabel", {}, ids)
    for _ in range(2):
        w = new_worker_id()
        assert db.jobs.claim_items(w, 1) is not None
        _age_worker(db, w, 120)
        db.jobs.requeue_stale(timeout_s=60, max_attempts=2)
    item = db.jobs.items(job.id)[0]
    assert item.status is ItemStatus.FAILED and "stopped responding 2 times" in item.error
    assert db.jobs.get(job.id).status is JobStatus.FAILED


def test_dead_worker_claims_count_as_attempts(db: Database) -> None:
    """A crashed process on this host is recovered at once (no heartbeat wait), and an image
    that crashes every worker still fails after max_attempts instead of looping."""
    ids = _images(db, 1)
    job = db.jobs.create("prelabel", {}, ids)
    for _attempt in range(2):
        w = new_worker_id()
        assert db.jobs.claim_items(w, 1) is not None
        assert db.jobs.requeue_stale(timeout_s=60, max_attempts=2) == 0  # heartbeat is fresh
        assert db.jobs.requeue_stale(timeout_s=60, max_attempts=2, dead_workers=[w]) == 1
        assert w not in {info.id for info in db.jobs.workers()}
    item = db.jobs.items(job.id)[0]
    assert item.status is ItemStatus.FAILED and item.attempts == 2


def test_a_batch_claimed_ahead_by_a_worker_that_died_goes_back_uncounted(db: Database) -> None:
    """Found by a session-45 probe: a worker killed by the image on its models (the OOM killer) also held the next
    batch, claimed ahead and decoding; after three such deaths that batch failed for good as "the worker stopped
    responding 3 times" though it never reached the models. Only the earliest claim of a dead worker is counted."""
    ids = _images(db, 4)
    job = db.jobs.create("prelabel", {}, ids)
    for _ in range(3):
        w = new_worker_id()
        on_models = db.jobs.claim_items(w, 2)
        ahead = db.jobs.claim_items(w, 2)
        assert on_models is not None and ahead is not None
        db.jobs.requeue_stale(timeout_s=60, max_attempts=3, dead_workers=[w])
    items = {it.image_id: it for it in db.jobs.items(job.id)}
    assert [items[i].status for i in ids[:2]] == [ItemStatus.FAILED] * 2
    assert [(items[i].status, items[i].attempts) for i in ids[2:]] == [(ItemStatus.QUEUED, 0)] * 2


def test_whole_jobs_claim_progress_finish_and_recover(db: Database) -> None:
    train = db.jobs.create("train", {"family": "classifier"})
    assert not train.has_items
    w = new_worker_id()
    assert db.jobs.claim_job(w, ["export"]) is None
    got = db.jobs.claim_job(w, ["train"])
    assert got.id == train.id and got.status is JobStatus.RUNNING and got.claimed_by == w
    assert db.jobs.claim_job(new_worker_id(), ["train"]) is None
    db.jobs.set_progress(train.id, 3, 10, "epoch 3/10")
    j = db.jobs.get(train.id)
    assert (j.progress_done, j.progress_total, j.message) == (3, 10, "epoch 3/10")
    _age_worker(db, w, 120)
    assert db.jobs.requeue_stale(timeout_s=60) == 1
    assert db.jobs.get(train.id).status is JobStatus.QUEUED
    w2 = new_worker_id()
    assert db.jobs.claim_job(w2, ["train"]).attempts == 2
    assert not db.jobs.finish_job(train.id, w, {"model_version_id": 1})  # the old worker lost it
    assert db.jobs.finish_job(train.id, w2, {"model_version_id": 1})
    assert db.jobs.get(train.id).result == {"model_version_id": 1}
    exp = db.jobs.create("export", {})
    db.jobs.claim_job(w2, ["export"])
    assert db.jobs.fail_job(exp.id, w2, "disk full")
    assert db.jobs.get(exp.id).status is JobStatus.FAILED and db.jobs.get(exp.id).error == "disk full"
    queued = db.jobs.create("export", {})
    assert db.jobs.request_cancel(queued.id).status is JobStatus.CANCELLED


def test_unregister_gives_items_back(db: Database) -> None:
    ids = _images(db, 3)
    job = db.jobs.create("prelabel", {}, ids)
    w = new_worker_id()
    db.jobs.register_worker(w)
    db.jobs.claim_items(w, 2)
    assert db.jobs.unregister_worker(w) == 2
    assert db.jobs.item_counts(job.id)[ItemStatus.QUEUED] == 3
    assert db.jobs.workers() == []


def _claim_all(url: str, batch: int) -> list[int]:
    db = open_database(url, migrate=False)
    w, got = new_worker_id(), []
    try:
        while (b := db.jobs.claim_items(w, batch)) is not None:
            got += [i.image_id for i in b.items]
            db.jobs.complete_items(w, [i.id for i in b.items])
    finally:
        db.close()
    return got


def test_concurrent_threads_never_share_an_item(db: Database, url: str) -> None:
    ids = _images(db, 120)
    job = db.jobs.create("prelabel", {}, ids)
    results: list[list[int]] = [[] for _ in range(3)]
    threads = [threading.Thread(target=lambda k=k: results[k].extend(_claim_all(url, 4))) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    claimed = [i for r in results for i in r]
    assert sorted(claimed) == sorted(ids)  # every image exactly once
    assert db.jobs.get(job.id).status is JobStatus.DONE and db.jobs.get(job.id).progress_done == 120


def test_concurrent_processes_never_share_an_item(db: Database, url: str) -> None:
    ids = _images(db, 60)
    db.jobs.create("prelabel", {}, ids)
    with mp.get_context("spawn").Pool(2) as pool:
        results = pool.starmap(_claim_all, [(url, 3), (url, 3)])
    assert sorted(results[0] + results[1]) == sorted(ids)


def test_release_keeps_a_job_running_while_another_worker_holds_items(db: Database) -> None:
    ids = _images(db, 4)
    job = db.jobs.create("prelabel", {}, ids)
    w1, w2 = new_worker_id(), new_worker_id()
    a = db.jobs.claim_items(w1, 2)
    db.jobs.claim_items(w2, 2)
    db.jobs.release_items(w1, [i.id for i in a.items])
    assert db.jobs.get(job.id).status is JobStatus.RUNNING


def test_heartbeats_beside_completions_never_deadlock(db: Database) -> None:
    """A worker's heartbeat thread and its own commits lock the job and worker rows in one order:
    a beat that locked the worker's row first deadlocked on PostgreSQL against complete_items
    (job, then worker), which stopped the worker and cost its batch an attempt (seen in CI)."""
    ids = _images(db, 240)
    mv = db.model_versions.register("classifier", "v1", "/c")
    db.jobs.create("prelabel", {"families": ["classifier"]}, ids)
    w = new_worker_id()
    db.jobs.claim_items(w, 1)  # registers the worker
    stop, errors = threading.Event(), []

    def beat() -> None:
        while not stop.is_set():
            try:
                db.jobs.heartbeat(w)
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)
                return
    beater = threading.Thread(target=beat)
    beater.start()
    try:
        while (batch := db.jobs.claim_items(w, 2)) is not None and not errors:
            db.jobs.complete_items(w, [i.id for i in batch.items],
                                   [PredictionIn(i.image_id, mv.id, predicted_class="ok") for i in batch.items])
    finally:
        stop.set()
        beater.join()
    assert errors == []


def test_items_join_an_open_job_and_never_a_closed_one(db: Database) -> None:
    ids = _images(db, 6)
    job = db.jobs.create("prelabel", {}, ids[:2])
    assert db.jobs.add_items(job.id, ids[2:4] + ids[2:3])          # queued: joins (duplicates dropped)
    assert db.jobs.get(job.id).progress_total == 4
    w = new_worker_id()
    batch = db.jobs.claim_items(w, 10)
    assert [i.image_id for i in batch.items] == ids[:4]
    assert db.jobs.add_items(job.id, ids[4:5])                      # running: joins, and is claimed next
    db.jobs.complete_items(w, [i.id for i in batch.items])
    assert db.jobs.get(job.id).status is not JobStatus.DONE         # the joined item is still open
    [late] = db.jobs.claim_items(w, 10).items
    assert late.image_id == ids[4]
    db.jobs.complete_items(w, [late.id])
    done = db.jobs.get(job.id)
    assert (done.status, done.progress_done, done.progress_total) == (JobStatus.DONE, 5, 5)
    assert not db.jobs.add_items(job.id, ids[5:])                   # finished: refused, nothing written
    assert db.jobs.get(job.id).progress_total == 5 and len(db.jobs.items(job.id)) == 5
    other = db.jobs.create("prelabel", {}, ids[5:])
    db.jobs.request_cancel(other.id)
    assert not db.jobs.add_items(other.id, ids[:1])                 # cancel asked: refused
    assert not db.jobs.add_items(10**6, ids[:1])                    # no such job


@pytest.mark.parametrize("reopen", [None, 600.0], ids=["open-only", "reopening"])
def test_items_joined_while_workers_finish_are_never_orphaned(db: Database, url: str, reopen: float | None) -> None:
    """Joining races the last completion: either the job stays open for the new items, or the
    join is refused and the caller queues a new job; never a closed job holding queued items.
    Reopening a just-finished job (the automatic jobs of a line) makes every join land."""
    ids = _images(db, 200)
    for round_ in range(10):
        part = ids[round_ * 20:(round_ + 1) * 20]
        job = db.jobs.create("prelabel", {}, part[:10])
        joined: list[bool] = []
        worker = threading.Thread(target=lambda: _claim_all(url, 3))
        worker.start()
        for i in range(10, 20):
            joined.append(db.jobs.add_items(job.id, part[i:i + 1], reopen_within_s=reopen))
        worker.join(60)
        _claim_all(url, 3)                                           # what joined after the worker stopped
        info = db.jobs.get(job.id)
        assert info.status is JobStatus.DONE and info.finished_at is not None
        assert info.progress_done == info.progress_total == 10 + sum(joined)
        assert db.jobs.item_counts(job.id).get(ItemStatus.QUEUED, 0) == 0
        assert reopen is None or all(joined)


def test_a_just_finished_job_reopens_for_new_items_but_never_a_cancelled_failed_or_stale_one(db: Database) -> None:
    ids = _images(db, 8)
    w = new_worker_id()

    def finish(job_id: int) -> None:
        while (b := db.jobs.claim_items(w, 10)) is not None:
            db.jobs.complete_items(w, [i.id for i in b.items])

    job = db.jobs.create("prelabel", {}, ids[:2])
    finish(job.id)
    assert db.jobs.get(job.id).status is JobStatus.DONE
    assert not db.jobs.add_items(job.id, ids[2:3])                       # no window given: closed stays closed
    assert not db.jobs.add_items(job.id, ids[2:3], reopen_within_s=0.0)  # finished before "now - 0 s"
    assert db.jobs.add_items(job.id, ids[2:4], reopen_within_s=600)      # finished just now: reopened
    info = db.jobs.get(job.id)
    assert (info.status, info.finished_at, info.progress_total) == (JobStatus.QUEUED, None, 4)
    [batch_item, other] = db.jobs.claim_items(w, 10).items               # the worker takes the new items
    assert {batch_item.image_id, other.image_id} == set(ids[2:4])
    db.jobs.complete_items(w, [batch_item.id, other.id])
    done = db.jobs.get(job.id)
    assert (done.status, done.progress_done, done.progress_total) == (JobStatus.DONE, 4, 4) and done.finished_at
    cancelled = db.jobs.create("prelabel", {}, ids[4:5])
    db.jobs.request_cancel(cancelled.id)
    finish(cancelled.id)
    assert not db.jobs.add_items(cancelled.id, ids[5:6], reopen_within_s=600)
    failing = db.jobs.create("prelabel", {}, ids[6:7])
    for _ in range(5):                                                   # every attempt fails: the job fails
        b = db.jobs.claim_items(w, 10)
        if b is None:
            break
        db.jobs.fail_items(w, {i.id: "unreadable" for i in b.items})
    assert db.jobs.get(failing.id).status is JobStatus.FAILED
    assert not db.jobs.add_items(failing.id, ids[7:8], reopen_within_s=600)
    assert [len(db.jobs.items(j)) for j in (job.id, cancelled.id, failing.id)] == [4, 1, 1]  # nothing written



def test_submissions_at_the_same_moment_queue_each_image_once(url: str) -> None:
    """Two stations opening one folder at once (a session-47 audit): each read "nothing waiting" and queued every
    image. ``create_unless_waiting`` and ``add_items(skip_waiting=True)`` check inside the submitting transaction,
    one submission at a time, on SQLite and PostgreSQL."""
    a, b = open_database(url), open_database(url)
    try:
        ids = _images(a, 6)
        for _ in range(3):
            barrier = threading.Barrier(2)
            made: list[object] = []

            def submit(db: Database, barrier: threading.Barrier, made: list[object]) -> None:
                barrier.wait()
                made.append(db.jobs.create_unless_waiting("prelabel", {"families": ["classifier"]}, ids))

            threads = [threading.Thread(target=submit, args=(d, barrier, made)) for d in (a, b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            open_ids = [j.id for j in a.jobs.list(statuses=(JobStatus.QUEUED,))]
            queued = sorted(i.image_id for j in open_ids for i in a.jobs.items(j))
            assert queued == ids and sorted(made, key=lambda j: j is not None)[0] is None
            job = next(j for j in made if j is not None)
            assert a.jobs.add_items(job.id, ids[:3], skip_waiting=True)  # all waiting: nothing written
            assert a.jobs.get(job.id).progress_total == 6
            a.jobs.request_cancel(job.id)  # a cancelled job's images wait no more: the next round queues them again
    finally:
        a.close()
        b.close()


def _freeze_inside_complete_items(monkeypatch, db: Database, worker: str, item_ids: list[int],
                                  preds: list[PredictionIn]) -> tuple[threading.Thread, threading.Event, list]:
    """A worker that stops (SIGSTOP, a paused VM) inside ``complete_items``: its items' rows locked, its transaction
    open. Returns the thread, the event that resumes it, and a list that gets its outcome (a count or the error)."""
    import database.jobs as jobs_mod
    real, gate, reached, outcome = jobs_mod.upsert_predictions, threading.Event(), threading.Event(), []

    def stalls(s, rows):
        if threading.current_thread().name == "frozen":
            reached.set()
            gate.wait(60)
        return real(s, rows)

    def save() -> None:
        try:
            outcome.append(db.jobs.complete_items(worker, item_ids, preds))
        except DatabaseError as exc:
            outcome.append(exc)

    monkeypatch.setattr(jobs_mod, "upsert_predictions", stalls)
    thread = threading.Thread(target=save, name="frozen", daemon=True)
    thread.start()
    assert reached.wait(10)
    return thread, gate, outcome


@pytest.mark.postgres
def test_a_worker_frozen_mid_commit_has_its_claims_recovered_on_postgresql(pg_url: str, monkeypatch) -> None:
    """A session-51 audit: a worker frozen while saving kept its images' rows locked; ``requeue_stale`` skipped them
    for good and deleted the worker's row anyway, so the job sat at "running: 502/504" with nobody on it. A worker's
    transactions are ended by the server once idle past their limit: its claims are recovered, the job finishes, and
    the worker, resumed, stores nothing and counts nothing twice."""
    frozen_db, other = open_database(pg_url), open_database(pg_url)
    try:
        ids = _images(frozen_db, 4)
        mv = frozen_db.model_versions.register("classifier", "v1", "/c")
        job = frozen_db.jobs.create("prelabel", {}, ids)
        frozen_db.end_idle_writes_after(1.0)   # as app.worker.Worker sets it, shorter than the stale time below
        frozen = "otherhost:4242:deadbeef"
        held = [it.id for it in frozen_db.jobs.claim_items(frozen, 2).items]
        preds = [PredictionIn(i, mv.id, predicted_class="frozen") for i in ids[:2]]
        thread, gate, outcome = _freeze_inside_complete_items(monkeypatch, frozen_db, frozen, held, preds)
        try:
            time.sleep(3.0)   # past the idle limit, and the frozen worker's heartbeat older than 2 s
            assert other.jobs.requeue_stale(timeout_s=2.0) == 2
            assert {it.status for it in other.jobs.items(job.id)} == {ItemStatus.QUEUED}
            assert frozen not in {w.id for w in other.jobs.workers()}   # all it held is recovered
            healthy = "healthy:1:1"
            while (batch := other.jobs.claim_items(healthy, 10)) is not None:
                other.jobs.complete_items(healthy, [it.id for it in batch.items],
                                          [PredictionIn(it.image_id, mv.id, predicted_class="healthy")
                                           for it in batch.items if it.image_id is not None])
            done = other.jobs.get(job.id)
            assert (done.status, done.progress_done) == (JobStatus.DONE, 4)
        finally:
            gate.set()
            thread.join(30)
        assert isinstance(outcome[0], DatabaseError)   # its commit failed: the server had ended its transaction
        assert frozen_db.jobs.complete_items(frozen, held, preds) == 0   # saved again: none of them is its own now
        after = other.jobs.get(job.id)
        assert (after.status, after.progress_done, after.progress_failed) == (JobStatus.DONE, 4, 0)
        assert {p.predicted_class for p in other.predictions.for_images(ids, mv.id).values()} == {"healthy"}
    finally:
        frozen_db.close()
        other.close()


@pytest.mark.postgres
def test_a_stale_worker_whose_items_are_still_locked_stays_listed_until_they_are_recovered(
        pg_url: str, monkeypatch) -> None:
    """A session-51 audit: ``requeue_stale`` deleted a stale worker's row though the rows it still locked were
    skipped, so no worker was shown on a job with images "running". Its row stays until nothing it claimed is left,
    retried on each pass."""
    frozen_db, other = open_database(pg_url), open_database(pg_url)
    try:
        ids = _images(frozen_db, 3)
        job = frozen_db.jobs.create("prelabel", {}, ids)
        frozen = "otherhost:4242:deadbeef"
        claimed = [it.id for it in frozen_db.jobs.claim_items(frozen, 3).items]
        thread, gate, outcome = _freeze_inside_complete_items(monkeypatch, frozen_db, frozen, claimed[:2], [])
        try:
            time.sleep(2.5)
            assert other.jobs.requeue_stale(timeout_s=2.0) == 1   # the one it did not lock
            assert frozen in {w.id for w in other.jobs.workers()}
            assert other.jobs.item_counts(job.id)[ItemStatus.RUNNING] == 2
            assert other.jobs.requeue_stale(timeout_s=2.0) == 0   # still locked: tried again, the row kept
            assert frozen in {w.id for w in other.jobs.workers()}
        finally:
            gate.set()
            thread.join(30)
        assert outcome == [2]   # never ended by the server (no limit set here): its commit stands
        assert other.jobs.get(job.id).progress_done == 2
        assert other.jobs.requeue_stale(timeout_s=2.0) == 0   # the next pass: nothing it claimed is left, row gone
        assert frozen not in {w.id for w in other.jobs.workers()}
    finally:
        frozen_db.close()
        other.close()


@pytest.mark.postgres
def test_a_batch_claimed_ahead_is_not_counted_while_the_frozen_workers_batch_is_locked(pg_url: str) -> None:
    """A session-51 review: ``requeue_stale`` took a worker's earliest claim over the rows its SKIP LOCKED select
    returned. A worker frozen inside complete_items holds its batch's rows locked, so the batch it claimed ahead (never
    on the models) looked like its earliest claim and was counted: after three freezes it failed as "stopped
    responding 3 times". The earliest claim is read over all of the worker's running items."""
    db, other = open_database(pg_url), open_database(pg_url)
    try:
        ids = _images(db, 4)
        job = db.jobs.create("prelabel", {}, ids)
        frozen = "otherhost:1:frozen"
        on_models = [it.id for it in db.jobs.claim_items(frozen, 2).items]
        time.sleep(0.3)
        ahead = [it.id for it in db.jobs.claim_items(frozen, 2).items]
        holder = db.engine.connect()
        tx = holder.begin()
        try:   # as its complete_items does: the batch on the models locked FOR UPDATE
            holder.execute(select(JobItem).where(JobItem.id.in_(on_models)).with_for_update()).all()
            time.sleep(2.5)
            assert other.jobs.requeue_stale(timeout_s=2.0) == 2   # the batch claimed ahead only
            attempts = {it.id: (it.status, it.attempts) for it in other.jobs.items(job.id)}
            assert [attempts[i] for i in ahead] == [(ItemStatus.QUEUED, 0)] * 2
        finally:
            tx.rollback()
            holder.close()
        assert other.jobs.requeue_stale(timeout_s=2.0) == 2   # unlocked now: the batch it was on, counted
        attempts = {it.id: (it.status, it.attempts) for it in other.jobs.items(job.id)}
        assert [attempts[i] for i in on_models] == [(ItemStatus.QUEUED, 1)] * 2
    finally:
        db.close()
        other.close()
