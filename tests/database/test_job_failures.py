"""What the station shows about failed pre-label items: the list with paths and reasons, the
latest failure of each image, and an inspector's Retry that queues them again."""
from __future__ import annotations

from database import Database, FileEntry, ItemStatus, JobStatus, new_worker_id


def _failed_job(db: Database, n: int = 4, fail: int = 2) -> tuple[int, list[int], str]:
    folder = db.folders.add("/data/parts")
    ids = list(db.images.sync(folder.id, [FileEntry(f"{i}.png", 1, i) for i in range(n)]).added_ids)
    job = db.jobs.create("prelabel", {}, ids).id
    worker = new_worker_id()
    batch = db.jobs.claim_items(worker, n)
    items = list(batch.items)
    db.jobs.fail_items(worker, {it.id: f"cannot decode {it.image_id}" for it in items[:fail]})
    db.jobs.complete_items(worker, [it.id for it in items[fail:]])
    return job, ids, worker


def test_failed_items_carry_their_file_and_reason(db: Database) -> None:
    job, ids, _ = _failed_job(db)
    failed = db.jobs.failed_items(job)
    assert [f.image_id for f in failed] == ids[:2]
    assert [f.image_path for f in failed] == ["/data/parts/0.png", "/data/parts/1.png"]
    assert [f.error for f in failed] == [f"cannot decode {ids[0]}", f"cannot decode {ids[1]}"]
    assert len(db.jobs.failed_items(job, limit=1)) == 1


def test_latest_failure_of_an_image_is_superseded_by_a_later_run(db: Database) -> None:
    job, ids, worker = _failed_job(db)
    assert db.jobs.last_failures(ids) == {ids[0]: f"cannot decode {ids[0]}", ids[1]: f"cannot decode {ids[1]}"}
    db.jobs.create("prelabel", {}, [ids[0]])  # queued again in a new job: no longer "failed"
    assert db.jobs.last_failures(ids) == {ids[1]: f"cannot decode {ids[1]}"}


def test_retry_requeues_the_failed_items_and_reopens_the_job(db: Database) -> None:
    job, ids, _ = _failed_job(db)
    before = db.jobs.get(job)
    assert (before.status, before.progress_done, before.progress_failed) == (JobStatus.DONE, 2, 2)
    assert db.jobs.requeue_failed(job) == 2
    after = db.jobs.get(job)
    assert (after.status, after.progress_done, after.progress_failed, after.finished_at, after.error) == \
        (JobStatus.QUEUED, 2, 0, None, None)
    counts = db.jobs.item_counts(job)
    assert (counts[ItemStatus.QUEUED], counts[ItemStatus.FAILED], counts[ItemStatus.DONE]) == (2, 0, 2)
    assert all(it.attempts == 0 and it.error is None for it in db.jobs.items(job, ItemStatus.QUEUED))
    assert db.jobs.last_failures(ids) == {}
    # A worker takes them again and the job closes with the new outcome.
    worker = new_worker_id()
    batch = db.jobs.claim_items(worker, 10)
    assert sorted(it.image_id for it in batch.items) == ids[:2]
    db.jobs.complete_items(worker, [it.id for it in batch.items])
    final = db.jobs.get(job)
    assert (final.status, final.progress_done, final.progress_failed) == (JobStatus.DONE, 4, 0)
    assert db.jobs.requeue_failed(job) == 0
