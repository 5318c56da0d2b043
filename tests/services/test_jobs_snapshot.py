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


class _FakeWorker:
    """A worker handle as ``start_worker_process`` returns one; ``die`` is a SIGKILL."""

    def __init__(self, pid: int) -> None:
        from types import SimpleNamespace
        self.pid, self.process, self._alive = pid, SimpleNamespace(returncode=None), True

    def alive(self) -> bool:
        return self._alive

    def die(self, code: int) -> None:
        self._alive, self.process.returncode = False, code

    def stop(self) -> None:
        self._alive = False


def _fake_worker_starts(tmp_path: Path, monkeypatch, first_pid: int) -> "list[_FakeWorker]":
    """``start_worker_process`` replaced by fakes with pids from ``first_pid``; the list of those started."""
    from app.services import prelabel

    monkeypatch.setenv("INSPECTION_STATION_HOME", str(tmp_path / "home"))
    started: list[_FakeWorker] = []

    def start(*_a, **_k) -> _FakeWorker:
        started.append(_FakeWorker(first_pid + len(started)))
        return started[-1]
    monkeypatch.setattr(prelabel, "start_worker_process", start)
    return started


def test_the_event_line_says_a_new_worker_started_however_it_was_started(tmp_path: Path, monkeypatch) -> None:
    """Seen under Xvfb: a worker killed while idle, then "Pre-label folder" started a new one through the
    submission, not the poll, and the Jobs dock kept saying only "stopped (exit code -9)" while the new
    worker ran the jobs. A death nobody polled yet, found by the next submission, is said too."""
    started = _fake_worker_starts(tmp_path, monkeypatch, 100)
    db = open_database(f"sqlite:///{(tmp_path / 's.sqlite').as_posix()}")
    try:
        jobs = ReviewJobs(db, "unused")
        jobs.ensure_worker()
        assert jobs.check_worker(False).event is None
        started[0].die(-9)
        idle = jobs.check_worker(False)        # nothing waits: noticed, not replaced
        assert not idle.alive and idle.event is not None and "stopped (exit code -9)" in idle.event
        jobs.ensure_worker()                   # a new job is submitted
        st = jobs.check_worker(True)
        assert st.alive and st.restarts == 1 and st.event is not None
        assert st.event.endswith("a new one was started (pid 101)") and st.event_id == idle.event_id + 1
        started[1].die(-9)                     # dies, and the next submission comes before any poll
        jobs.ensure_worker()
        st = jobs.check_worker(True)
        assert st.alive and st.restarts == 2 and st.pid == 102 and st.event is not None
        assert "stopped (exit code -9)" in st.event and st.event.endswith("a new one was started (pid 102)")
    finally:
        db.close()


def test_a_worker_that_dies_during_a_comparison_is_replaced_while_the_comparison_waits(tmp_path: Path,
                                                                                       monkeypatch) -> None:
    """Seen under Xvfb (session 41): the worker killed during Find disagreements was never replaced (only pre-label
    jobs counted as waiting work), so the comparison stopped at 24 of 160 for good. Once it is finished (or with no
    comparison), a dead worker is noticed but not replaced, as before."""
    from app.services.champion import COMPARE
    from database.states import JobStatus

    started = _fake_worker_starts(tmp_path, monkeypatch, 200)
    db = open_database(f"sqlite:///{(tmp_path / 's.sqlite').as_posix()}")
    try:
        jobs = ReviewJobs(db, "unused")
        compare = db.jobs.create(COMPARE, {"version_id": 1}, priority=1)
        jobs.ensure_worker()
        started[0].die(-9)
        snap = jobs.snapshot()
        assert snap.jobs == () and snap.worker.alive and snap.worker.pid == 201
        assert snap.worker.event is not None and snap.worker.event.endswith("a new one was started (pid 201)")
        assert db.jobs.request_cancel(compare.id).status == JobStatus.CANCELLED   # the comparison is over
        started[1].die(-9)
        idle = jobs.snapshot()
        assert not idle.worker.alive and len(started) == 2 and "stopped (exit code -9)" in (idle.worker.event or "")
    finally:
        db.close()


def test_new_images_of_a_rescan_are_queued_without_reading_the_rest_of_the_folder(tmp_path: Path) -> None:
    """``prelabel_new_images(folder, ids)`` (the window's folder following): only those ids, only this folder's,
    only images no active model has seen, never one already waiting; without ids, the whole folder as before."""
    from database.dto import FileEntry
    db = open_database(f"sqlite:///{(tmp_path / 's.sqlite').as_posix()}")
    try:
        folder, other = db.folders.add("/line"), db.folders.add("/other")
        ids = list(db.images.sync(folder.id, [FileEntry(f"p{i}.png", 10, i, content_hash=f"h{i}")
                                              for i in range(6)]).added_ids)
        foreign = list(db.images.sync(other.id, [FileEntry("q.png", 10, 1, content_hash="q")]).added_ids)
        jobs = ReviewJobs(db, "unused")
        first = jobs.prelabel_new_images(folder.id, ids[4:] + foreign)
        queued = {item.image_id for job in first for item in db.jobs.items(job)}
        assert first and queued == set(ids[4:])
        assert jobs.prelabel_new_images(folder.id, ids[4:]) == []  # already waiting: nothing twice
        assert jobs.prelabel_new_images(folder.id) == first        # joins the automatic job still waiting
        assert {item.image_id for job in first for item in db.jobs.items(job)} == set(ids)
        assert db.jobs.get(first[0]).progress_total == 6
    finally:
        db.close()


def test_two_stations_opening_one_folder_at_once_queue_each_image_once(tmp_path: Path, monkeypatch) -> None:
    """A session-47 audit: two stations read "nothing waiting" before either submitted, and each queued every image
    (on SQLite two jobs, two workers ran the models on each image; on PostgreSQL one job with two items per image).
    The second station's read is made stale here; the check inside the submitting transaction still holds."""
    from app.services import prelabel
    from database.dto import FileEntry
    db = open_database(f"sqlite:///{(tmp_path / 's.sqlite').as_posix()}")
    try:
        folder = db.folders.add("/line")
        ids = list(db.images.sync(folder.id, [FileEntry(f"p{i}.png", 10, i, content_hash=f"h{i}")
                                              for i in range(5)]).added_ids)
        a, b = ReviewJobs(db, "unused"), ReviewJobs(db, "unused")
        first = a.prelabel_new_images(folder.id)
        monkeypatch.setattr(prelabel, "images_waiting", lambda db: set())  # b read before a's submission landed
        assert b.prelabel_new_images(folder.id) in ([], first)
        queued = [item.image_id for job in db.jobs.list() for item in db.jobs.items(job.id)]
        assert sorted(queued) == ids and db.jobs.get(first[0]).progress_total == 5
        # a cancelled job's images are not waiting: a later submission queues them again
        db.jobs.request_cancel(first[0])
        again = b.prelabel_new_images(folder.id)
        assert again and again != first and len(db.jobs.items(again[0])) == 5
    finally:
        db.close()


def test_a_line_s_new_files_join_one_automatic_job_and_never_a_cancelled_stale_or_manual_one(
        tmp_path: Path, monkeypatch) -> None:
    """A followed folder on a line: every re-scan finds a few files. They join the automatic job still
    open (one row in the Jobs dock, its total growing), not one job per re-scan; when the worker keeps
    up and that job has just finished, it is reopened for them; a job that was cancelled, or finished
    longer ago than ``AUTOMATIC_REOPEN_S``, is not, and a job the inspector queued is never extended."""
    from app.services import prelabel
    from app.services.prelabel import submit_prelabel
    from database import new_worker_id
    from database.dto import FileEntry
    from database.states import JobStatus
    db = open_database(f"sqlite:///{(tmp_path / 's.sqlite').as_posix()}")
    try:
        folder = db.folders.add("/line")

        def arrive(n: int, start: int) -> list[int]:
            return list(db.images.sync(folder.id, [FileEntry(f"p{i}.png", 10, i, content_hash=f"h{i}")
                                                   for i in range(start + n)]).added_ids)

        w = new_worker_id()

        def catch_up() -> None:
            while (batch := db.jobs.claim_items(w, 10)) is not None:
                db.jobs.complete_items(w, [i.id for i in batch.items])

        jobs = ReviewJobs(db, "unused")
        first = jobs.prelabel_new_images(folder.id, arrive(2, 0))
        second = jobs.prelabel_new_images(folder.id, arrive(3, 2))
        assert second == first and db.jobs.get(first[0]).progress_total == 5
        catch_up()
        assert db.jobs.get(first[0]).status is JobStatus.DONE
        third = jobs.prelabel_new_images(folder.id, arrive(1, 5))  # the worker kept up: the job reopens
        reopened = db.jobs.get(first[0])
        assert third == first and reopened.status is JobStatus.QUEUED and reopened.finished_at is None
        assert reopened.progress_total == 6
        catch_up()
        assert db.jobs.get(first[0]).status is JobStatus.DONE and db.jobs.get(first[0]).progress_done == 6
        monkeypatch.setattr(prelabel, "AUTOMATIC_REOPEN_S", 0.0)  # the line paused longer than the window
        fourth = jobs.prelabel_new_images(folder.id, arrive(1, 6))
        assert fourth != first and db.jobs.get(fourth[0]).progress_total == 1
        monkeypatch.undo()
        db.jobs.request_cancel(fourth[0])
        catch_up()
        fifth = jobs.prelabel_new_images(folder.id, arrive(1, 7))
        assert fifth not in (first, fourth)  # neither the cancelled job nor the older one behind it
        catch_up()
        manual = submit_prelabel(db, image_ids=arrive(1, 8), families=jobs.available_families())  # the inspector's
        sixth = jobs.prelabel_new_images(folder.id, arrive(1, 9))
        assert sixth != [manual] and db.jobs.get(manual).progress_total == 1
    finally:
        db.close()


def test_a_job_records_what_it_was_queued_for(tmp_path: Path) -> None:
    """The Jobs dock of a later session names a job by what the inspector asked for (``params["scope"]``):
    the folder, its new images or a selection; an automatic job keeps its own mark and no scope."""
    import pytest

    from app.services.prelabel import PrelabelError, submit_prelabel
    from database.dto import FileEntry
    db = open_database(f"sqlite:///{(tmp_path / 's.sqlite').as_posix()}")
    try:
        folder = db.folders.add("/line")
        ids = list(db.images.sync(folder.id, [FileEntry(f"p{i}.png", 10, i, content_hash=f"h{i}")
                                              for i in range(4)]).added_ids)
        jobs = ReviewJobs(db, "unused")
        jobs.ensure_worker = lambda: None  # type: ignore[method-assign]
        [whole] = jobs.prelabel_folder(folder.id)
        [new] = jobs.prelabel_folder(folder.id, only_new=True)
        [picked] = jobs.prelabel_images(ids[:2])
        later = ReviewJobs(db, "unused")
        later.check_worker = lambda work_waiting: WorkerStatus(False)  # type: ignore[method-assign]
        snap = later.snapshot()
        assert snap.scopes == {whole: "folder", new: "new images", picked: "selection"}
        assert not snap.automatic
        odd = db.jobs.create(PRELABEL, {"families": ["classifier"], "scope": "x" * 10_000})  # written by another program
        assert odd.id not in later.snapshot().scopes
        with pytest.raises(PrelabelError, match="unknown job scope"):
            submit_prelabel(db, image_ids=ids, families=jobs.available_families(), scope="everything")
    finally:
        db.close()


def test_a_folder_with_nothing_to_pre_label_says_why_and_stores_no_empty_job(tmp_path: Path) -> None:
    """A session-49 audit: Pre-label folder on an empty folder, and Pre-label new images on a folder every model had
    answered, each stored a job of 0 images ("Pre-label job #1 done: 0/0 images") and said nothing of why."""
    import pytest

    from app.services.prelabel import chosen_versions
    from app.services.review_jobs import JobsError
    from database.dto import FileEntry, PredictionIn
    db = open_database(f"sqlite:///{(tmp_path / 's.sqlite').as_posix()}")
    try:
        empty = db.folders.add("/empty")
        line = db.folders.add("/line")
        ids = list(db.images.sync(line.id, [FileEntry(f"p{i}.png", 10, i, content_hash=f"h{i}")
                                            for i in range(3)]).added_ids)
        jobs = ReviewJobs(db, "unused")
        jobs.ensure_worker = lambda: None  # type: ignore[method-assign]
        for only_new in (False, True):
            with pytest.raises(JobsError, match="^nothing to run: the folder holds no images$"):
                jobs.prelabel_folder(empty.id, only_new=only_new)
        for version in chosen_versions(db, jobs.available_families(), {}, None).values():
            db.predictions.upsert_many([PredictionIn(i, version.id) for i in ids])
        with pytest.raises(JobsError, match="every image has the answers of the versions that run on it"):
            jobs.prelabel_folder(line.id, only_new=True)
        assert db.jobs.list() == []
        [job] = jobs.prelabel_folder(line.id)   # the whole folder again: asked for, queued
        assert db.jobs.get(job).progress_total == 3
    finally:
        db.close()


def test_a_failure_retried_at_another_station_shows_its_new_reason(tmp_path: Path) -> None:
    """Found by a session-45 probe: station Y listed a failed image as "empty file"; station X pressed Retry and it
    failed again as "not a decodable image"; Y went on listing the first reason (its list was cached by the count,
    1 both times)."""
    from database import FileEntry, new_worker_id
    db = open_database(f"sqlite:///{(tmp_path / 's.sqlite').as_posix()}")
    try:
        folder = db.folders.add("/data/line")
        ids = list(db.images.sync(folder.id, [FileEntry("cam.png", 1, 1)]).added_ids)
        job = db.jobs.create(PRELABEL, {"families": ["anomaly"]}, ids)
        worker = new_worker_id()

        def fail(reason: str) -> None:
            batch = db.jobs.claim_items(worker, 1)
            db.jobs.fail_items(worker, {it.id: reason for it in batch.items})
        station_y = ReviewJobs(db, "unused")
        station_y.check_worker = lambda work_waiting: WorkerStatus(False)  # type: ignore[method-assign]
        fail("empty file (0 bytes)")
        assert [f.reason for f in station_y.snapshot().failures[job.id]] == ["empty file (0 bytes)"]
        assert db.jobs.requeue_failed(job.id) == 1  # Retry at station X
        fail("not a decodable image (corrupt or unsupported format)")
        assert [f.reason for f in station_y.snapshot().failures[job.id]] == [
            "not a decodable image (corrupt or unsupported format)"]
    finally:
        db.close()


def test_a_worker_started_after_the_give_up_says_so_and_the_give_up_expires(tmp_path: Path, monkeypatch) -> None:
    """A session-48 probe: after three kills the Jobs dock said "stopped 3 times … was not restarted" in red, and kept
    saying it while a worker started by a new job ran the jobs; and the give-up never expired."""
    import app.services.prelabel as prelabel

    class Handle:
        pid, n = 100, 0

        def __init__(self) -> None:
            Handle.n += 1
            self.pid = 100 + Handle.n
            self.dead = False
            self.process = type("P", (), {"returncode": -9})()

        def alive(self) -> bool:
            return not self.dead

    started: list[Handle] = []
    monkeypatch.setattr(prelabel, "start_worker_process", lambda *a, **k: started.append(Handle()) or started[-1])
    db = open_database(f"sqlite:///{(tmp_path / 's.sqlite').as_posix()}")
    try:
        jobs = ReviewJobs(db, "unused")
        jobs.ensure_worker()
        for _ in range(3):   # three kills in a row: restarted twice, then given up
            started[-1].dead = True
            jobs.check_worker(work_waiting=True)
        assert len(started) == 3 and "was not restarted" in jobs._event
        jobs.ensure_worker()   # a new job (or Retry) starts one
        assert len(started) == 4 and jobs._event.startswith(f"A new pre-label worker was started (pid {started[-1].pid})")
        started[-1].dead = True
        jobs.check_worker(work_waiting=True)   # a fourth stop within the window: not restarted, said
        assert len(started) == 4 and "was not restarted" in jobs._event
        monkeypatch.setattr(ReviewJobs, "RESTART_WINDOW_S", 0.0)   # the window has passed
        jobs.check_worker(work_waiting=True)
        assert len(started) == 5 and started[-1].alive()
    finally:
        db.close()


def test_a_selection_whose_images_were_removed_is_refused_for_that_reason(tmp_path: Path) -> None:
    """A session-50 review: pre-labelling a selection whose folder was removed meanwhile was refused with "the project's
    model routing gives these images no model to run", in a project with no routing rules. It says they are gone."""
    import pytest

    from app.services.review_jobs import JobsError
    from database.dto import FileEntry
    db = open_database(f"sqlite:///{tmp_path / 's.sqlite'}")
    try:
        f = db.folders.add(str(tmp_path / "imgs"))
        db.images.sync(f.id, [FileEntry("a.png", 10, 1), FileEntry("b.png", 10, 1)])
        ids = [im.id for im in db.images.get_many(list(range(1, 10)))]
        db.model_versions.register("classifier", "clf", "/m/clf", activate=True)
        db.folders.remove(f.id)
        jobs = ReviewJobs(db, "unused", model_dirs=None)
        with pytest.raises(JobsError, match="no longer in the project"):
            jobs.prelabel_images(ids)
    finally:
        db.close()


def test_a_worker_stopped_by_a_newer_versions_upgrade_is_said_and_not_restarted(tmp_path: Path, monkeypatch) -> None:
    """A session-52 audit's older worker, stopped since on a database a newer version upgraded (``NEWER_SCHEMA_EXIT``):
    the Jobs dock said only "stopped (exit code N)" and started it again while jobs waited, each new one failing to open
    the upgraded database. It says why, and no worker is started again, by the poll or by a new job."""
    from sqlalchemy import text

    from app.services.prelabel import NEWER_SCHEMA_EXIT, newer_schema_stop

    started = _fake_worker_starts(tmp_path, monkeypatch, 300)
    db = open_database(f"sqlite:///{(tmp_path / 's.sqlite').as_posix()}")
    try:
        jobs = ReviewJobs(db, "unused")
        jobs.ensure_worker()
        with db.engine.begin() as conn:   # what a newer version's migration leaves: a revision this one does not know
            conn.execute(text("UPDATE alembic_version SET version_num = '0099_from_a_newer_station'"))
        started[0].die(NEWER_SCHEMA_EXIT)
        jobs.ensure_worker()   # a job queued before the poll noticed: it starts none, and leaves the stop to the poll
        assert len(started) == 1
        st = jobs.check_worker(True)
        assert not st.alive and st.event is not None and "exit code" not in st.event
        assert st.event.endswith(f"and is not restarted: {newer_schema_stop()}")
        jobs.ensure_worker()   # a job queued meanwhile
        assert not jobs.check_worker(True).alive and len(started) == 1
    finally:
        db.close()


def test_a_worker_exiting_the_newer_schema_status_on_a_database_at_head_is_a_crash_and_restarted(
        tmp_path: Path, monkeypatch) -> None:
    """A session-52 audit: any worker exit status 3 was taken for "upgraded by a newer version", and no worker was
    started again for the rest of the session; 3 is also what the C runtime's abort() exits with on Windows, so a
    native crash there left the Jobs dock saying "… is not restarted: the database was upgraded by a newer version"
    on a database nobody had upgraded, and the jobs waited for good. Now the status is one no runtime gives, and the
    station asks the database before it believes it: at this version's head, or unreadable, it is a crash, said with
    its exit code, and a new worker is started."""
    from app.services.prelabel import NEWER_SCHEMA_EXIT
    from database.errors import DatabaseError

    assert NEWER_SCHEMA_EXIT not in (1, 2, 3, 120)   # Python's own statuses, and abort()'s on Windows
    started = _fake_worker_starts(tmp_path, monkeypatch, 400)
    db = open_database(f"sqlite:///{(tmp_path / 's.sqlite').as_posix()}")
    try:
        jobs = ReviewJobs(db, "unused")
        jobs.ensure_worker()
        started[0].die(NEWER_SCHEMA_EXIT)
        st = jobs.check_worker(True)
        assert st.alive and len(started) == 2 and st.event is not None
        assert f"stopped (exit code {NEWER_SCHEMA_EXIT})" in st.event and "a new one was started (pid 401)" in st.event

        def unreadable() -> None:
            raise DatabaseError("cannot reach the database")
        monkeypatch.setattr(db, "schema_changed", unreadable)
        started[1].die(NEWER_SCHEMA_EXIT)   # and the read that would confirm it fails: a crash too
        st = jobs.check_worker(True)
        assert st.alive and len(started) == 3 and "a new one was started (pid 402)" in (st.event or "")
    finally:
        db.close()
