"""The jobs snapshot that reports a worker's death holds everything that worker wrote.

The panel tells "worker restarting" from "the new worker is progressing" by comparing counts
with those of the snapshot that announced the restart; that is only true if the snapshot read
the rows after it noticed the death (a read before it can miss the dead worker's last commit,
which the next poll would then show as the new worker's progress).
"""
from __future__ import annotations

from pathlib import Path

from app.services.prelabel import PRELABEL
from app.services.review_jobs import ReviewJobs, WorkerStatus
from database.engine import open_database


def test_rows_are_read_again_when_the_worker_event_changes(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{(tmp_path / 's.sqlite').as_posix()}")
    try:
        job = db.jobs.create(PRELABEL, {"families": ["classifier"]})
        db.jobs.set_progress(job.id, 3, total=10)
        jobs = ReviewJobs(db, "unused")

        def dying_worker(work_waiting: bool) -> WorkerStatus:
            # The old worker's last commit lands after the rows were read, then it is found dead
            # and replaced: one event, as ``check_worker`` reports it.
            db.jobs.set_progress(job.id, 5)
            jobs._say("The pre-label worker stopped (exit code -9); a new one was started (pid 1)")
            return WorkerStatus(True, 1, 1, jobs._event, jobs._event_id)

        jobs.check_worker = dying_worker  # type: ignore[method-assign]
        snap = jobs.snapshot()
        assert snap.worker.event_id == 1
        assert [p.done for p in snap.jobs] == [5]

        # Without an event the snapshot reads the rows as they are.
        jobs.check_worker = lambda work_waiting: WorkerStatus(True, 1, 1, jobs._event, jobs._event_id)  # type: ignore[method-assign]
        db.jobs.set_progress(job.id, 6)
        assert [p.done for p in jobs.snapshot().jobs] == [6]
    finally:
        db.close()
