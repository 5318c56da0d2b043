"""Jobs and their items, claimed by worker processes.

A job with images (prelabel) is split into one item per image so several workers can share it:
``claim_items`` hands each worker a batch nobody else holds (``SELECT … FOR UPDATE SKIP LOCKED``
on PostgreSQL; SQLite serialises writers with ``BEGIN IMMEDIATE``). Items a worker holds stay
``running`` until it completes, fails or releases them; if its heartbeat goes stale they are
requeued, so a crash loses at most the batch in flight. Jobs without items (train, export) are
claimed whole with ``claim_job``.

Every transaction that touches both locks item rows before the job row, so PostgreSQL never
sees two of them waiting on each other.
"""
from __future__ import annotations

import builtins
import os
import socket
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, and_, case, exists, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from database import path_map
from database.convert import to_dto
from database.dto import ClaimedBatch, JobInfo, JobItemInfo, PredictionIn, WorkerInfo
from database.errors import ConflictError
from database.images import chunks, join_path
from database.locks import lock_for_transaction
from database.models import Folder, Image, Job, JobItem, Worker, db_now, table_of, utcnow
from database.predictions import upsert_predictions
from database.processes import ended_here
from database.states import ItemStatus, JobStatus

if TYPE_CHECKING:
    from database.engine import Database

QUEUED, RUNNING = ItemStatus.QUEUED.value, ItemStatus.RUNNING.value
OPEN_JOB = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
MAX_ATTEMPTS = 3  # claims of one item that ended in an error or a dead worker before it is failed
STALE_AFTER_S = 60.0  # a worker whose heartbeat is older is taken for gone (its work requeued), unless told otherwise


def new_worker_id() -> str:
    """A name unique to this process: host, pid and a random suffix (pids get reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def job_dto(row: Job) -> JobInfo:
    return to_dto(row, JobInfo, status=JobStatus(row.status))


def item_dto(row: JobItem, image_path: str | None = None, folder_root: str | None = None,
             content_hash: str | None = None) -> JobItemInfo:
    return to_dto(row, JobItemInfo, status=ItemStatus(row.status), image_path=image_path, folder_root=folder_root,
                  content_hash=content_hash)


def _waiting_among(s: Session, kind: str, params: Mapping[str, Any], ids: Sequence[int],
                   among: Sequence[int] | None = None) -> set[int]:
    """Of ``ids``, the images queued or running in an open job of ``kind`` that does the work ``params`` asks for
    (each of its families, by the same model version), read inside the submitting transaction after
    ``_lock_submissions``: two stations opening one folder at once read "not waiting" apart and queued every image
    twice (two workers then ran the models on each; a session-47 audit). A job of other families or versions does
    not count (an image waiting for the anomaly model alone still needs the classifier: the review of session 47).
    ``among``: only these jobs count."""
    families = list(params.get("families") or ())
    versions = params.get("model_versions") or {}
    stmt = select(Job.id, Job.params).where(Job.kind == kind, Job.status.in_(OPEN_JOB), Job.cancel_requested.is_(False))
    if among is not None:
        stmt = stmt.where(Job.id.in_(list(among)))
    covering = []
    for job_id, theirs in s.execute(stmt):
        theirs = theirs or {}
        their_versions = theirs.get("model_versions") or {}
        if set(families) <= set(theirs.get("families") or ()) and all(
                str(their_versions.get(f)) == str(versions.get(f)) for f in families):
            covering.append(job_id)
    out: set[int] = set()
    for part in chunks(list(ids)) if covering else ():
        out.update(s.scalars(select(JobItem.image_id).where(
            JobItem.job_id.in_(covering), JobItem.status.in_((QUEUED, RUNNING)), JobItem.image_id.in_(part))))
    return out


def _lock_submissions(s: Session, kind: str) -> None:
    """Submissions of one kind of job, one at a time: SQLite's write transaction already is (BEGIN IMMEDIATE); on
    PostgreSQL an advisory lock held to the commit, so the next submission's read sees this one's items."""
    lock_for_transaction(s, f"jobs:{kind}")


def _touch_worker(s: Session, worker_id: str, job_id: int | None = None) -> Worker:
    now = db_now(s)
    w = s.get(Worker, worker_id)
    if w is None:
        host, _, rest = worker_id.partition(":")
        pid = rest.partition(":")[0]
        w = Worker(id=worker_id, host=host or socket.gethostname(), pid=int(pid) if pid.isdigit() else 0,
                   started_at=now, heartbeat_at=now, current_job_id=job_id)
        s.add(w)
    else:
        w.heartbeat_at = now
        if job_id is not None:
            w.current_job_id = job_id
    s.flush()
    return w


def _pause_if_idle(s: Session, job_id: int) -> None:
    """A job whose items were all given back, none running, is waiting for a worker: show it queued.

    Otherwise a worker stopped gracefully leaves its job "running" with nobody on it until
    another worker claims from it, and the jobs panel's ETA counts down for nothing.
    """
    job = s.get_one(Job, job_id)
    s.refresh(job)
    if job.status != JobStatus.RUNNING.value:
        return
    running = s.scalar(select(JobItem.id).where(JobItem.job_id == job_id, JobItem.status == RUNNING).limit(1))
    if running is None:
        job.status = JobStatus.QUEUED.value
        job.claimed_by = None
        s.flush()



def _give_back_changed(s: Session, rows: list[JobItem], read_bytes: Mapping[int, str | None] | None
                       ) -> tuple[list[JobItem], set[int]]:
    """The held ``rows`` whose image still holds the bytes the claim read (``read_bytes``: image id -> hash), and
    the jobs to settle; the others were re-indexed as changed since, so their answer or failure describes bytes the
    file no longer holds: each goes back to the queue (no attempt counted), or is cancelled if its job's cancel was
    asked. Found by a session-43 probe: such an answer was stored after the re-index had dropped the old one."""
    settle_too: set[int] = set()
    if not read_bytes:
        return rows, settle_too
    # FOR SHARE: a re-index committing between this read and the writes after it would store the old bytes' answer
    # after all (PostgreSQL; SQLite's one writer already keeps them apart)
    now_hash = dict(s.execute(select(Image.id, Image.content_hash).where(
        Image.id.in_([r.image_id for r in rows if r.image_id in read_bytes]))
        .with_for_update(read=True)).tuples().all())
    changed = {r.id for r in rows if r.image_id is not None and read_bytes.get(r.image_id) is not None
               and now_hash.get(r.image_id) not in (None, read_bytes[r.image_id])}
    cancelling = set(s.scalars(select(Job.id).where(
        Job.id.in_({r.job_id for r in rows if r.id in changed}), Job.cancel_requested.is_(True)))) \
        if changed else set()
    for r in rows:
        if r.id in changed:
            r.claimed_by, r.claimed_at = None, None
            if r.job_id in cancelling:  # queued again, no worker would take it: the job stayed open
                r.status, r.finished_at = ItemStatus.CANCELLED.value, utcnow()
                settle_too.add(r.job_id)
            else:
                r.status, r.attempts = QUEUED, max(0, r.attempts - 1)
    return [r for r in rows if r.id not in changed], settle_too

def _settle(s: Session, job_id: int, done: int = 0, failed: int = 0) -> None:
    """Add to the job's counters and finish it once no item is queued or running.

    The UPDATE takes the job row's lock before counting, so of two workers finishing the last
    items concurrently the second one sees the first one's commit and closes the job.
    """
    s.execute(update(Job).where(Job.id == job_id).values(
        progress_done=Job.progress_done + done, progress_failed=Job.progress_failed + failed,
        heartbeat_at=db_now(s)))   # (by the database's clock, as every heartbeat: the stale check reads them together)
    open_item = s.scalar(select(JobItem.id).where(JobItem.job_id == job_id, JobItem.status.in_((QUEUED, RUNNING)))
                         .limit(1))  # existence only: counting would grow with the job
    if open_item is not None:
        return
    job = s.get_one(Job, job_id)
    s.refresh(job)
    if job.status not in OPEN_JOB:
        return
    job.finished_at = utcnow()
    job.claimed_by = None
    if job.cancel_requested or s.scalar(select(JobItem.id).where(
            JobItem.job_id == job_id, JobItem.status == ItemStatus.CANCELLED.value).limit(1)) is not None:
        # A cancelled job whose failed images were retried: the images its cancel left are still not run, so it
        # stays cancelled (it read "done: 1/8" with six never run; found by a session-43 probe).
        job.status = JobStatus.CANCELLED.value
    elif job.progress_total and job.progress_failed >= job.progress_total:
        job.status = JobStatus.FAILED.value
        first = s.scalar(select(JobItem.error).where(JobItem.job_id == job_id, JobItem.error.is_not(None))
                         .order_by(JobItem.id).limit(1))
        job.error = f"every image failed; first error: {first}"
    else:
        job.status = JobStatus.DONE.value
        if job.progress_failed:
            job.error = f"{job.progress_failed} of {job.progress_total} images failed"
    s.flush()


class JobRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- creating and reading -------------------------------------------------------------
    def create(self, kind: str, params: Mapping[str, Any] | None = None, image_ids: Sequence[int] | None = None,
               priority: int = 0) -> JobInfo:
        """Queue a job; with ``image_ids`` it gets one item per image (duplicates dropped)."""
        job = self._create(kind, params, image_ids, priority, skip_waiting=False)
        assert job is not None
        return job

    def create_unless_waiting(self, kind: str, params: Mapping[str, Any] | None, image_ids: Sequence[int],
                              priority: int = 0, among: Sequence[int] | None = None) -> JobInfo | None:
        """Queue a job for those of ``image_ids`` not already queued or running in an open job of ``kind`` doing the
        same work (``_waiting_among``; ``among``: only these jobs count); None when none is left (nothing written).
        The check and the insert are one transaction, one submission at a time: automatic pre-labelling queues each
        image once whichever station submits it."""
        return self._create(kind, params, image_ids, priority, skip_waiting=True, among=among)

    def _create(self, kind: str, params: Mapping[str, Any] | None, image_ids: Sequence[int] | None, priority: int,
                skip_waiting: bool, among: Sequence[int] | None = None) -> JobInfo | None:
        ids = list(dict.fromkeys(image_ids)) if image_ids is not None else None
        with self.db.session(write=True) as s:
            if skip_waiting and ids:
                _lock_submissions(s, kind)
                waiting = _waiting_among(s, kind, params or {}, ids, among)
                ids = [i for i in ids if i not in waiting]
                if not ids:
                    return None
            job = Job(kind=kind, params=dict(params or {}), priority=priority, has_items=ids is not None,
                      progress_total=len(ids) if ids is not None else 0, status=JobStatus.QUEUED.value)
            s.add(job)
            s.flush()
            if ids:
                s.execute(table_of(JobItem).insert(),
                          [{"job_id": job.id, "image_id": i, "status": QUEUED, "attempts": 0} for i in ids])
            if ids is not None and not ids:
                job.status, job.finished_at = JobStatus.DONE.value, utcnow()
            s.flush()
            return job_dto(job)

    def open_jobs_holding(self, kind: str, image_ids: Sequence[int]) -> builtins.list[JobInfo]:
        """Open jobs of ``kind`` (queued or running, no cancel asked) with some of ``image_ids`` still to do, oldest
        first: what a command run again over a folder takes up instead of queuing its images a second time."""
        ids: set[int] = set()
        with self.db.session() as s:
            for part in chunks(list(dict.fromkeys(image_ids))):
                ids.update(s.scalars(select(Job.id).join(JobItem, JobItem.job_id == Job.id).where(
                    Job.kind == kind, Job.status.in_(OPEN_JOB), Job.cancel_requested.is_(False),
                    JobItem.status.in_((QUEUED, RUNNING)), JobItem.image_id.in_(part))))
            return [job_dto(j) for j in s.scalars(select(Job).where(Job.id.in_(sorted(ids))).order_by(Job.id))]

    def add_items(self, job_id: int, image_ids: Sequence[int], reopen_within_s: float | None = None,
                  skip_waiting: bool = False) -> bool:
        """Append images to an item job that is still open (queued or running, no cancel asked);
        False, and nothing written, when it is not (the caller queues a new job instead).

        Why: a followed folder on a line finds a few new files every re-scan; while the worker is
        behind they join the automatic job already waiting rather than queue one job per re-scan.
        ``reopen_within_s``: a job that finished (done, never cancelled or all failed) at most that
        many seconds ago is reopened for them too (queued again, its finish time cleared), so a
        worker that keeps up with the line does not make one small job per re-scan either.
        The UPDATE takes the job row's lock first, as ``_settle`` does: a job the last worker
        commit closed is seen closed here, and items added here are seen by that count.
        ``skip_waiting``: images already queued or running in an open job of its kind are left out, in the same
        transaction (``create_unless_waiting``); True, and nothing written, when none is left."""
        ids = list(dict.fromkeys(image_ids))
        if not ids:
            return True
        accepts: ColumnElement[bool] = Job.status.in_(OPEN_JOB)
        if reopen_within_s is not None:
            since = utcnow() - timedelta(seconds=max(0.0, reopen_within_s))
            accepts = or_(accepts, and_(Job.status == JobStatus.DONE.value, Job.finished_at.is_not(None),
                                        Job.finished_at >= since))
        with self.db.session(write=True) as s:
            if skip_waiting:
                row = s.execute(select(Job.kind, Job.params).where(Job.id == job_id)).first()
                if row is None:
                    return False
                _lock_submissions(s, row.kind)
                waiting = _waiting_among(s, row.kind, row.params or {}, ids)
                ids = [i for i in ids if i not in waiting]
                if not ids:
                    return True
            done = Job.status == JobStatus.DONE.value
            res = s.execute(update(Job).where(Job.id == job_id, Job.has_items.is_(True), accepts,
                                              Job.cancel_requested.is_(False))
                            .values(progress_total=Job.progress_total + len(ids),
                                    status=case((done, JobStatus.QUEUED.value), else_=Job.status),
                                    finished_at=case((done, None), else_=Job.finished_at)))
            if cast("CursorResult[Any]", res).rowcount != 1:
                return False
            s.execute(table_of(JobItem).insert(),
                      [{"job_id": job_id, "image_id": i, "status": QUEUED, "attempts": 0} for i in ids])
            return True

    def get(self, job_id: int) -> JobInfo | None:
        with self.db.session() as s:
            row = s.get(Job, job_id)
            return None if row is None else job_dto(row)

    def list(self, statuses: Iterable[JobStatus] | None = None, kind: str | None = None,
             limit: int = 100) -> builtins.list[JobInfo]:
        """Newest first."""
        stmt = select(Job).order_by(Job.id.desc()).limit(limit)
        if statuses is not None:
            stmt = stmt.where(Job.status.in_([JobStatus(x).value for x in statuses]))
        if kind is not None:
            stmt = stmt.where(Job.kind == kind)
        with self.db.session() as s:
            return [job_dto(r) for r in s.scalars(stmt)]

    def items(self, job_id: int, status: ItemStatus | None = None) -> builtins.list[JobItemInfo]:
        stmt = select(JobItem).where(JobItem.job_id == job_id).order_by(JobItem.id)
        if status is not None:
            stmt = stmt.where(JobItem.status == ItemStatus(status).value)
        with self.db.session() as s:
            return [item_dto(r) for r in s.scalars(stmt)]

    def item_counts(self, job_id: int) -> dict[ItemStatus, int]:
        counts = {st: 0 for st in ItemStatus}
        with self.db.session() as s:
            for st, n in s.execute(select(JobItem.status, func.count(JobItem.id))
                                   .where(JobItem.job_id == job_id).group_by(JobItem.status)):
                counts[ItemStatus(st)] = int(n)
        return counts

    # --- what a station shows about failed items (read-only but for an inspector's Retry) ------
    def failed_items(self, job_id: int, limit: int = 200) -> builtins.list[JobItemInfo]:
        """The job's failed items (first ``limit`` by id) with their image paths and reasons:
        one query, so the jobs panel can list them on every change without a read per image."""
        stmt = (select(JobItem, Folder.root_path, Image.rel_path)
                .outerjoin(Image, Image.id == JobItem.image_id).outerjoin(Folder, Folder.id == Image.folder_id)
                .where(JobItem.job_id == job_id, JobItem.status == ItemStatus.FAILED.value)
                .order_by(JobItem.id).limit(max(0, int(limit))))
        with self.db.session() as s:
            return [item_dto(it, join_path(path_map.local(root), rel) if root is not None else None)
                    for it, root, rel in s.execute(stmt)]

    def last_failures(self, image_ids: Sequence[int]) -> dict[int, str]:
        """image id -> reason, for each image whose most recent job item failed (a later run that
        is queued, running or done supersedes an old failure)."""
        out: dict[int, str] = {}
        with self.db.session() as s:
            for part in chunks(sorted(set(image_ids))):
                latest = (select(func.max(JobItem.id)).where(JobItem.image_id.in_(part))
                          .group_by(JobItem.image_id))
                for image_id, error in s.execute(select(JobItem.image_id, JobItem.error).where(
                        JobItem.id.in_(latest), JobItem.status == ItemStatus.FAILED.value)):
                    if image_id is not None:  # filtered to the asked ids: never NULL here
                        out[int(image_id)] = error or "unknown error"
        return out

    def requeue_failed(self, job_id: int) -> int:
        """An inspector's Retry: the job's failed items are queued again with a fresh attempt
        count, and a finished job reopens to take them. Returns how many items were requeued."""
        with self.db.session(write=True) as s:
            rows = s.scalars(select(JobItem).where(JobItem.job_id == job_id,
                                                   JobItem.status == ItemStatus.FAILED.value)
                             .order_by(JobItem.id).with_for_update()).all()
            if not rows:
                return 0
            for r in rows:
                r.status, r.error, r.finished_at, r.attempts = QUEUED, None, None, 0
                r.claimed_by, r.claimed_at = None, None
            s.flush()
            s.execute(update(Job).where(Job.id == job_id).values(progress_failed=Job.progress_failed - len(rows)))
            job = s.get_one(Job, job_id)
            s.refresh(job)
            if job.status not in OPEN_JOB:
                job.status, job.finished_at, job.error = JobStatus.QUEUED.value, None, None
                job.cancel_requested, job.claimed_by = False, None
            s.flush()
            return len(rows)

    # --- workers ---------------------------------------------------------------------------
    def register_worker(self, worker_id: str) -> WorkerInfo:
        with self.db.session(write=True) as s:
            return to_dto(_touch_worker(s, worker_id), WorkerInfo)

    def workers(self) -> builtins.list[WorkerInfo]:
        with self.db.session() as s:
            return [to_dto(w, WorkerInfo) for w in s.scalars(select(Worker).order_by(Worker.started_at))]

    def live_workers(self, stale_after_s: float = STALE_AFTER_S) -> builtins.list[WorkerInfo]:
        """The workers whose heartbeat is fresh by ``requeue_stale``'s rule, less those of this machine whose process
        has ended (``processes.ended_here``, the rule by which a worker recovers their claims at once). Why: closing a
        station kills its busy worker after 10 s without its sign-off, and the row it left counted as another user of
        the database for up to a minute: the next start of a newer version asked "Upgrade anyway" about a process that
        was gone, and ``db upgrade`` refused (a session-52 audit). Reads only the columns the table has had since its
        first schema: an upgrade asks it of an older database before migrating it (``database.users``)."""
        cols = (Worker.id, Worker.host, Worker.pid, Worker.started_at, Worker.heartbeat_at, Worker.current_job_id)
        with self.db.session() as s:
            cutoff = db_now(s) - timedelta(seconds=stale_after_s)
            rows = s.execute(select(*cols).where(Worker.heartbeat_at >= cutoff).order_by(Worker.started_at)).all()
        return [WorkerInfo(*row) for row in rows if not ended_here(row.host, row.pid)]

    def heartbeat(self, worker_id: str) -> frozenset[int]:
        """Prove the worker alive; returns the ids of jobs it works on whose cancel was requested."""
        with self.db.session(write=True) as s:
            held = set(s.scalars(select(JobItem.job_id).where(JobItem.claimed_by == worker_id,
                                                              JobItem.status == RUNNING).distinct()))
            held |= set(s.scalars(select(Job.id).where(Job.claimed_by == worker_id, Job.status == RUNNING)))
            # Rows are locked in the order every writer uses (items, jobs, then the worker's row):
            # a beat that took the worker's row first deadlocked on PostgreSQL with the worker's
            # own complete_items, which settles its job and then touches the worker.
            now = db_now(s)
            if held:
                s.execute(update(Job).where(Job.id.in_(sorted(held))).values(heartbeat_at=now))
            # Only a registered worker's row is refreshed: a beat that lands after the worker
            # signed off (unregister_worker) must not write the row back, or the worker would
            # later be reported as crashed ("gone from this host").
            s.execute(update(Worker).where(Worker.id == worker_id).values(heartbeat_at=now))
            return frozenset(s.scalars(select(Job.id).where(Job.id.in_(held), Job.cancel_requested.is_(True)))) \
                if held else frozenset()

    def unregister_worker(self, worker_id: str) -> int:
        """A worker leaving cleanly: its unfinished items go back to the queue. Returns how many."""
        with self.db.session(write=True) as s:
            rows = s.scalars(select(JobItem).where(JobItem.claimed_by == worker_id, JobItem.status == RUNNING)
                             .with_for_update()).all()
            n = self._release(s, rows)
            s.execute(update(Job).where(Job.claimed_by == worker_id, Job.status == RUNNING)
                      .values(status=JobStatus.QUEUED.value, claimed_by=None))
            w = s.get(Worker, worker_id)
            if w is not None:
                s.delete(w)
            return n

    # --- item jobs ---------------------------------------------------------------------------
    def claim_items(self, worker_id: str, limit: int, kinds: Iterable[str] | None = None,
                    skip_jobs: Iterable[int] = (), only_jobs: Iterable[int] | None = None) -> ClaimedBatch | None:
        """Atomically take up to ``limit`` queued items of the most urgent open job (not of ``skip_jobs``:
        jobs whose folder this worker found it cannot see; ``only_jobs``: of these jobs alone).

        Two workers never receive the same item. Returns None when no item is waiting.
        """
        skip = sorted(set(skip_jobs))
        kinds = list(kinds) if kinds is not None else None
        with self.db.session(write=True) as s:
            stmt = (select(Job.id).where(Job.has_items.is_(True), Job.status.in_(OPEN_JOB),
                                         Job.cancel_requested.is_(False),
                                         exists().where(JobItem.job_id == Job.id, JobItem.status == QUEUED))
                    .order_by(Job.priority.desc(), Job.id).limit(8))
            if kinds is not None:
                stmt = stmt.where(Job.kind.in_(kinds))
            if skip:
                stmt = stmt.where(Job.id.not_in(skip))
            if only_jobs is not None:
                stmt = stmt.where(Job.id.in_(sorted(set(only_jobs))))
            for job_id in s.scalars(stmt).all():
                ids = s.scalars(select(JobItem.id).where(JobItem.job_id == job_id, JobItem.status == QUEUED)
                                .order_by(JobItem.id).limit(limit).with_for_update(skip_locked=True)).all()
                if not ids:
                    continue  # another worker holds all of this job's remaining items
                now = db_now(s)
                s.execute(update(JobItem).where(JobItem.id.in_(ids)).values(
                    status=RUNNING, claimed_by=worker_id, claimed_at=now, attempts=JobItem.attempts + 1))
                s.execute(update(Job).where(Job.id == job_id).values(
                    status=JobStatus.RUNNING.value, heartbeat_at=now,
                    started_at=func.coalesce(Job.started_at, now)))
                _touch_worker(s, worker_id, job_id)
                rows = s.execute(select(JobItem, Folder.root_path, Image.rel_path, Image.content_hash)
                                 .outerjoin(Image, Image.id == JobItem.image_id)
                                 .outerjoin(Folder, Folder.id == Image.folder_id)
                                 .where(JobItem.id.in_(ids)).order_by(JobItem.id)).all()
                items = tuple(item_dto(it, join_path(path_map.local(root), rel) if root is not None else None,
                                      path_map.local(root) if root is not None else None, digest)
                              for it, root, rel, digest in rows)
                job = s.get_one(Job, job_id)
                s.refresh(job)
                return ClaimedBatch(job=job_dto(job), items=items)
            return None

    def _held(self, s: Session, worker_id: str, item_ids: Sequence[int]) -> builtins.list[JobItem]:
        rows: builtins.list[JobItem] = []
        for part in chunks(sorted(set(item_ids))):
            rows += s.scalars(select(JobItem).where(JobItem.id.in_(part), JobItem.claimed_by == worker_id,
                                                    JobItem.status == RUNNING)
                              .order_by(JobItem.id).with_for_update()).all()
        return rows

    def complete_items(self, worker_id: str, item_ids: Sequence[int],
                       predictions: Sequence[PredictionIn] = (),
                       read_bytes: Mapping[int, str | None] | None = None) -> int:
        """Mark items done and store their predictions in the same transaction.

        Items this worker no longer holds (requeued after a stale heartbeat) are skipped, as are
        their predictions; returns how many items were completed. ``read_bytes``: image id -> the content hash the
        answers were made for (the item's at its claim); an image whose stored hash differs now was re-indexed
        as changed meanwhile, so its answers describe pixels the file no longer holds: its item goes back to the
        queue (no attempt counted) and nothing of it is stored. Found by a session-43 probe: such an answer was
        stored after the re-index had dropped the old one, and nothing ever redid it.
        """
        with self.db.session(write=True) as s:
            rows, settle_too = _give_back_changed(s, self._held(s, worker_id, item_ids), read_bytes)
            images = {r.image_id for r in rows}
            written = upsert_predictions(s, [p for p in predictions if p.image_id in images])
            now = utcnow()
            per_job: dict[int, int] = {}
            for r in rows:
                r.status, r.finished_at, r.error = ItemStatus.DONE.value, now, None
                per_job[r.job_id] = per_job.get(r.job_id, 0) + 1
            s.flush()
            for job_id in sorted(settle_too - set(per_job)):
                _settle(s, job_id)
            for job_id, n in sorted(per_job.items()):
                _settle(s, job_id, done=n)
            if per_job:  # a worker got on with them: a note that none sees their folder is past (a probe: it read
                # "waiting for a worker that sees …" over a job stalled long after the folder came back)
                s.execute(update(Job).where(Job.id.in_(sorted(per_job)), Job.has_items.is_(True),
                                            Job.message.is_not(None)).values(message=None))
            _touch_worker(s, worker_id)
        self.db.predictions.written(written)  # committed: statistics after a model's bulk of rows
        return len(rows)

    def fail_items(self, worker_id: str, errors: Mapping[int, str],
                   read_bytes: Mapping[int, str | None] | None = None, *, image_error: bool = False) -> int:
        """Mark items failed with their reasons (e.g. an unreadable image); not retried.

        Only items this worker still holds fail. ``read_bytes`` (image id -> the hash the claim read): an image
        re-indexed as changed since goes back to the queue, as in ``complete_items`` (a file still being written
        when decoded failed "damaged PNG" for good, and automatic pre-labelling never took its finished bytes).
        ``image_error``: the reason is the file's own (it cannot be read), stored on the image in the same
        transaction, so a worker that lost its claim never marks "Cannot load" an image another worker has since
        pre-labelled (both found by session-45 probes)."""
        with self.db.session(write=True) as s:
            rows, settle_too = _give_back_changed(s, self._held(s, worker_id, list(errors)), read_bytes)
            now = utcnow()
            per_job: dict[int, int] = {}
            for r in rows:
                r.status, r.finished_at, r.error = ItemStatus.FAILED.value, now, errors[r.id]
                per_job[r.job_id] = per_job.get(r.job_id, 0) + 1
                if image_error and r.image_id is not None:
                    s.execute(update(Image).where(Image.id == r.image_id).values(error=errors[r.id],
                                                                                 updated_at=now))
            s.flush()
            for job_id in sorted(settle_too - set(per_job)):
                _settle(s, job_id)
            for job_id, n in sorted(per_job.items()):
                _settle(s, job_id, failed=n)
            return len(rows)

    def release_items(self, worker_id: str, item_ids: Sequence[int]) -> int:
        """Give back unprocessed items: requeued, or cancelled if their job's cancel was asked."""
        with self.db.session(write=True) as s:
            return self._release(s, self._held(s, worker_id, item_ids))

    def retry_items(self, worker_id: str, errors: Mapping[int, str], max_attempts: int = MAX_ATTEMPTS) -> builtins.list[int]:
        """Give back items whose processing raised (a poison image, a model bug): the attempt counts.

        Each goes back to the queue with its reason kept in the item's ``error``, or is failed
        with that reason once it has been claimed ``max_attempts`` times, so an item that breaks
        every worker ends the job instead of looping. Returns the ids of the items failed.
        """
        with self.db.session(write=True) as s:
            rows = self._held(s, worker_id, list(errors))
            self._release(s, rows, errors, max_attempts)
            return [r.id for r in rows if r.status == ItemStatus.FAILED.value]

    def _release(self, s: Session, rows: Sequence[JobItem], errors: Mapping[int, str] | None = None,
                 max_attempts: int = MAX_ATTEMPTS) -> int:
        """Requeue (or cancel) held items; with ``errors`` they were tried, and may fail for good."""
        jobs = {j.id: j for j in s.scalars(select(Job).where(Job.id.in_({r.job_id for r in rows})))} if rows else {}
        failed: dict[int, int] = {}
        for r in rows:
            cancel = jobs[r.job_id].cancel_requested
            r.status = ItemStatus.CANCELLED.value if cancel else QUEUED
            r.claimed_by, r.claimed_at = None, None
            if errors is None:
                if not cancel:
                    r.attempts = max(0, r.attempts - 1)  # giving back untried is not a failed attempt
                continue
            r.error = errors[r.id]
            if not cancel and r.attempts >= max_attempts:
                r.status, r.finished_at = ItemStatus.FAILED.value, utcnow()
                r.error = f"{errors[r.id]} (failed on all {r.attempts} attempts)"
                failed[r.job_id] = failed.get(r.job_id, 0) + 1
        s.flush()
        for job_id in sorted(jobs):
            _settle(s, job_id, failed=failed.get(job_id, 0))
            _pause_if_idle(s, job_id)
        return len(rows)

    # --- whole jobs (train, export) ------------------------------------------------------------
    def claim_job(self, worker_id: str, kinds: Iterable[str]) -> JobInfo | None:
        """Take the most urgent queued job without items whose kind is in ``kinds``."""
        with self.db.session(write=True) as s:
            row = s.scalars(select(Job).where(Job.has_items.is_(False), Job.status == JobStatus.QUEUED.value,
                                              Job.cancel_requested.is_(False), Job.kind.in_(list(kinds)))
                            .order_by(Job.priority.desc(), Job.id).limit(1)
                            .with_for_update(skip_locked=True)).first()
            if row is None:
                return None
            now = db_now(s)
            row.status, row.claimed_by, row.heartbeat_at = JobStatus.RUNNING.value, worker_id, now
            row.started_at = row.started_at or now
            row.attempts += 1
            _touch_worker(s, worker_id, row.id)
            s.flush()
            return job_dto(row)

    def retarget(self, job_id: int, moved: Mapping[str, tuple[int, int]]) -> bool:
        """The job runs another version of some families from now on: ``moved`` maps a family to (the version it
        names, the one it names instead); a family whose job names another version by now (a worker beside this
        one moved it first) is left. Its items not yet done run, and are filed, under the new version. True when
        the job's parameters changed. For a bundled version an update of the install replaced (ADR 0079)."""
        with self.db.session(write=True) as s:
            row = s.get(Job, job_id, with_for_update=True)
            if row is None:
                return False
            params = dict(row.params or {})
            versions = dict(params.get("model_versions") or {})
            changed = False
            for family, (old, new) in moved.items():
                if str(versions.get(family)) == str(old):
                    versions[family], changed = new, True
            if changed:
                row.params = {**params, "model_versions": versions}   # a new object: the JSON column is rewritten
            return changed

    def note(self, job_id: int, message: str) -> None:
        """Say something about an open job that its counts do not (the Jobs dock shows it while the job waits)."""
        with self.db.session(write=True) as s:
            s.execute(update(Job).where(Job.id == job_id).values(message=message[:1000]))

    def set_progress(self, job_id: int, done: int, total: int | None = None, message: str | None = None) -> None:
        values: dict[str, Any] = {"progress_done": done}
        if total is not None:
            values["progress_total"] = total
        if message is not None:
            values["message"] = message
        with self.db.session(write=True) as s:
            s.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=db_now(s), **values))

    def finish_job(self, job_id: int, worker_id: str, result: Mapping[str, Any] | None = None,
                   cancelled: bool = False) -> bool:
        """Close a claimed whole job as done (or cancelled). False if the worker no longer holds it."""
        status = JobStatus.CANCELLED if cancelled else JobStatus.DONE
        return self._close(job_id, worker_id, status, result=dict(result) if result is not None else None)

    def fail_job(self, job_id: int, worker_id: str, error: str) -> bool:
        return self._close(job_id, worker_id, JobStatus.FAILED, error=error)

    def _close(self, job_id: int, worker_id: str, status: JobStatus, **values: Any) -> bool:
        with self.db.session(write=True) as s:
            res = s.execute(update(Job).where(Job.id == job_id, Job.claimed_by == worker_id,
                                              Job.status == RUNNING)
                            .values(status=status.value, finished_at=utcnow(), claimed_by=None, **values))
            return cast("CursorResult[Any]", res).rowcount == 1  # an UPDATE's result has a rowcount

    # --- cancel and recovery -----------------------------------------------------------------
    def request_cancel(self, job_id: int) -> JobInfo:
        """Stop a job: queued items are cancelled now; running ones end when their worker reports
        (``heartbeat`` tells it). A job nobody is working on is cancelled at once."""
        with self.db.session(write=True) as s:
            s.execute(update(JobItem).where(JobItem.job_id == job_id, JobItem.status == QUEUED)
                      .values(status=ItemStatus.CANCELLED.value, finished_at=utcnow()))
            job = s.get(Job, job_id, with_for_update=True)
            if job is None:
                raise ConflictError(f"job {job_id} does not exist.")
            if job.status in OPEN_JOB:
                job.cancel_requested = True
                s.flush()
                if job.has_items:
                    _settle(s, job_id)
                elif job.status == JobStatus.QUEUED.value:
                    job.status, job.finished_at = JobStatus.CANCELLED.value, utcnow()
                s.flush()
            s.refresh(job)
            return job_dto(job)

    def requeue_stale(self, timeout_s: float = STALE_AFTER_S, max_attempts: int = MAX_ATTEMPTS,
                      dead_workers: Iterable[str] = ()) -> int:
        """Recover work of workers whose heartbeat is older than ``timeout_s`` (crashed or hung),
        and of ``dead_workers`` (known dead, e.g. their process is gone from this host).

        Their items go back to the queue, or fail after ``max_attempts`` claims (an image that
        crashes every worker must not loop forever); whole jobs likewise. Rows another transaction
        still locks (a worker frozen mid-commit, PostgreSQL) are left for a later pass, and their
        worker's row with them. Returns how many items and jobs were recovered.
        """
        with self.db.session(write=True) as s:
            cutoff = db_now(s) - timedelta(seconds=timeout_s)
            stale = set(s.scalars(select(Worker.id).where(Worker.heartbeat_at < cutoff))) | set(dead_workers)
            known = select(Worker.id)
            rows = s.scalars(select(JobItem).where(
                JobItem.status == RUNNING,
                JobItem.claimed_by.in_(stale) | (JobItem.claimed_by.not_in(known) & (JobItem.claimed_at < cutoff)))
                .order_by(JobItem.id).with_for_update(skip_locked=True)).all()
            cancelling = set(s.scalars(select(Job.id).where(Job.id.in_({r.job_id for r in rows}),
                                                            Job.cancel_requested.is_(True)))) if rows else set()
            # A worker has one batch on the models and may hold the next, claimed ahead and decoding: only its
            # earliest claim was tried. Counted too, the batch claimed ahead failed for good as "stopped responding
            # 3 times" beside the one image that killed the worker, never having reached the models (a session-45
            # probe); it goes back with its claim not counted. The earliest claim is read over all of the worker's
            # running items, locked or not: read over the rows the SKIP LOCKED select returned, a worker frozen inside
            # complete_items (its batch's rows locked) had the batch claimed ahead taken for its earliest, counted on
            # each freeze, and failed after three as "stopped responding" (a session-51 review).
            owners = {r.claimed_by for r in rows if r.claimed_by is not None}
            first: dict[str | None, Any] = dict(s.execute(
                select(JobItem.claimed_by, func.min(JobItem.claimed_at))
                .where(JobItem.status == RUNNING, JobItem.claimed_by.in_(sorted(owners)))
                .group_by(JobItem.claimed_by)).tuples().all()) if owners else {}
            failed: dict[int, int] = {}
            for r in rows:
                ahead = r.claimed_at is not None and r.claimed_at > first.get(r.claimed_by, r.claimed_at)
                if r.job_id in cancelling:
                    r.status, r.finished_at = ItemStatus.CANCELLED.value, utcnow()
                elif ahead:
                    r.status, r.attempts = QUEUED, max(0, r.attempts - 1)
                elif r.attempts >= max_attempts:
                    r.status, r.finished_at = ItemStatus.FAILED.value, utcnow()
                    r.error = f"the worker stopped responding {r.attempts} times while processing it"
                    failed[r.job_id] = failed.get(r.job_id, 0) + 1
                else:
                    r.status = QUEUED
                r.claimed_by, r.claimed_at = None, None
            s.flush()
            for job_id in sorted({r.job_id for r in rows}):
                _settle(s, job_id, failed=failed.get(job_id, 0))
                # nobody on it now: queued, not "running" with nothing running (a killed prelabel left its job so for
                # good, its ETA counting down; a session-47 audit)
                _pause_if_idle(s, job_id)
            jobs = s.scalars(select(Job).where(
                Job.has_items.is_(False), Job.status == RUNNING,
                Job.claimed_by.in_(stale) | (Job.claimed_by.not_in(known) & (Job.heartbeat_at < cutoff)))
                .with_for_update(skip_locked=True)).all()
            for j in jobs:
                j.claimed_by = None
                if j.cancel_requested:
                    j.status, j.finished_at = JobStatus.CANCELLED.value, utcnow()
                elif j.attempts >= max_attempts:
                    j.status, j.finished_at = JobStatus.FAILED.value, utcnow()
                    j.error = f"the worker stopped responding {j.attempts} times while running it"
                else:
                    j.status = JobStatus.QUEUED.value
            # A stale worker's row stays while anything it claimed is left, to be recovered on a later pass: the
            # rows above skip what another transaction still locks, as a frozen worker's own does until the server
            # ends it (``Database.end_idle_writes_after``). Deleted anyway, the worker was gone from the workers list
            # while its images sat "running" with nobody on them (a session-51 audit: "running: 502/504").
            s.flush()
            stale_list = sorted(stale)
            left = set(s.scalars(select(JobItem.claimed_by).where(
                JobItem.status == RUNNING, JobItem.claimed_by.in_(stale_list)).distinct())) if stale_list else set()
            left |= set(s.scalars(select(Job.claimed_by).where(
                Job.has_items.is_(False), Job.status == RUNNING, Job.claimed_by.in_(stale_list)))) \
                if stale_list else set()
            for wid in stale - left:
                w = s.get(Worker, wid)
                if w is not None:
                    s.delete(w)
            s.flush()
            return len(rows) + len(jobs)
