"""Pre-labelling from the review station: queue jobs, watch them, cancel, keep a worker running.

A thin binding of the worker's ``app.services.prelabel`` to one database, so the GUI holds
no database handle of its own. Models never run in the GUI's process: the first job starts a
worker process (``python main.py worker``) that stays until the station closes.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Sequence

from app.paths import data_dir

if TYPE_CHECKING:
    from app.services.prelabel import FailedImage, JobProgress, WorkerHandle
    from app.services.routing import Routing
    from app.services.routing_proposal import RoutingProposal
    from database.engine import Database

log = logging.getLogger(__name__)


class JobsError(Exception):
    """A pre-label request that could not be queued, in one sentence."""


@dataclass(frozen=True)
class WorkerStatus:
    """This station's worker process as the jobs panel shows it; plain data for any thread.

    ``event`` is the latest crash or restart in one sentence (with the time it was noticed), so
    the window can say so instead of leaving it to the terminal log.
    """

    alive: bool
    pid: int | None = None
    restarts: int = 0
    event: str | None = None
    event_id: int = 0          # grows with every new event: the window announces each once


def folder_scope(only_new: bool) -> str:
    """What a folder's pre-label job covers (one of ``prelabel.JOB_SCOPES``): all its images, or only those no active
    model has seen; the job records it and the Jobs dock names the job by it."""
    return "new images" if only_new else "folder"


@dataclass(frozen=True)
class JobsSnapshot:
    """Every pre-label job the panel shows (newest first), exactly as the database holds them,
    the failed images of those with failures, and the worker's state: one read, plain data."""

    jobs: tuple["JobProgress", ...]
    failures: dict[int, tuple["FailedImage", ...]] = field(default_factory=dict)
    families: dict[int, tuple[str, ...]] = field(default_factory=dict)
    worker: WorkerStatus = WorkerStatus(False)
    automatic: frozenset[int] = frozenset()  # jobs a followed folder's new files queued (``params["automatic"]``)
    scopes: dict[int, str] = field(default_factory=dict)  # what each job was queued for (``params["scope"]``)


class ReviewJobs:
    HISTORY = 20            # newest pre-label jobs listed (the history survives restarts: it is the DB)
    FAILED_SHOWN = 200      # failed images listed per job
    RESTART_LIMIT = 3       # crashes within RESTART_WINDOW_S after which no new worker is started
    RESTART_WINDOW_S = 120.0

    def __init__(self, db: "Database", db_url: str, device: str = "auto",
                 model_dirs: dict[str, str] | None = None, worker_args: Sequence[str] = ()) -> None:
        self.db = db
        self.db_url = db_url
        self.device = device
        self.model_dirs = model_dirs
        self.worker_args = tuple(worker_args)
        self._worker: WorkerHandle | None = None
        # The submitting GUI thread and the panel's polling thread both start workers.
        self._lock = threading.RLock()
        self._closed = False
        self._crashes: list[float] = []
        self._replace = False  # a worker died and was not replaced yet
        self._gave_up = False  # it kept stopping and was not restarted: the next start says so
        self._outdated = False  # it stopped on a database a newer version upgraded: never started again here
        self._restarts = 0
        self._event: str | None = None
        self._event_id = 0
        self._failures: dict[int, tuple[tuple[int, datetime | None], tuple[FailedImage, ...]]] = {}  # (count, finished at)

    def available_families(self) -> list[str]:
        """Families with a model to run: given explicitly, active in the database, or bundled."""
        from app.services.prelabel import FAMILIES
        from inference.bundled import bundled_model_dir
        out = []
        for fam in FAMILIES:
            if ((self.model_dirs and fam in self.model_dirs) or self.db.model_versions.active(fam) is not None
                    or (bundled_model_dir(fam) / "config.json").is_file()):
                out.append(fam)
        return out

    def _submit(self, **kw: Any) -> list[int]:
        from app.services.prelabel import PrelabelError, submit_routed_prelabel, why_nothing_to_run
        families = self.available_families()
        if not families:
            raise JobsError("no model is available: no active model version and no bundled checkpoint")
        try:
            job_ids = submit_routed_prelabel(self.db, model_dirs=self.model_dirs, families=families, **kw)
        except PrelabelError as exc:
            raise JobsError(str(exc)) from None
        if not job_ids:
            raise JobsError(why_nothing_to_run(self.db, kw["folder_id"], families) if kw.get("skip_empty") else
                            self._why_no_job(kw.get("image_ids") or ()))
        self.ensure_worker()
        return job_ids

    def _why_no_job(self, image_ids: Sequence[int]) -> str:
        """Why a selection queued nothing: its images gone from the project meanwhile (a session-50 review: that was
        blamed on "the project's model routing", in a project without routing rules), else the routing."""
        if image_ids and not self.db.images.get_many(list(image_ids)):
            return "the selected images are no longer in the project (removed since they were selected)"
        return "the project's model routing gives these images no model to run"

    def prelabel_folder(self, folder_id: int, only_new: bool = False) -> list[int]:
        """Every image of the folder (or only those the active models have not seen); a job per
        set of families the project's routing gives. Nothing to run is said, not stored as a job of 0 images (a
        session-49 audit: "Pre-label job #1 done: 0/0 images" for an empty folder or one every model had
        answered)."""
        return self._submit(folder_id=folder_id, only_missing=only_new, scope=folder_scope(only_new), skip_empty=True)

    def prelabel_new_images(self, folder_id: int, image_ids: Sequence[int] | None = None) -> list[int]:
        """The folder's images no active model has seen yet, routed; no job when there are none.
        ``image_ids``: only these (the files a re-scan of the open folder found new or changed: the
        folder's other rows are not read, which at a million images would cost seconds per re-scan).
        Images already waiting in a job, or that could not be read, are left out (reopening a
        folder queues nothing twice; a failed image is retried from the Jobs dock, not on
        every open). New files join the automatic job still open for the same models, or reopen it
        when it finished a moment ago (one job per stretch of a line's work, not one per re-scan). Starts no worker: it runs on a
        helper thread, and the caller's ``ensure_worker`` (GUI thread) keeps one worker process per
        station."""
        families = self.available_families()
        if not families:
            return []
        from app.services.prelabel import PrelabelError, images_waiting, submit_routed_prelabel
        from database.dto import ImageQuery
        waiting = images_waiting(self.db)
        rows = (self.db.images.query(ImageQuery(folder_id=folder_id, sort="id")) if image_ids is None
                else self.db.images.get_many(sorted(set(image_ids))))
        ids = [im.id for im in rows if im.id not in waiting and not im.error and im.folder_id == folder_id]
        if not ids:
            return []
        try:
            return submit_routed_prelabel(self.db, image_ids=ids, model_dirs=self.model_dirs, families=families,
                                          only_missing=True, skip_empty=True, join_automatic=True)
        except PrelabelError as exc:
            raise JobsError(str(exc)) from None

    def prelabel_images(self, image_ids: Sequence[int]) -> list[int]:
        if not image_ids:
            raise JobsError("no image selected")
        return self._submit(image_ids=list(image_ids), only_missing=False, scope="selection")

    def families_of(self, job_id: int) -> list[str]:
        """The families a pre-label job runs (from its recorded parameters)."""
        job = self.db.jobs.get(job_id)
        return list(job.params.get("families", [])) if job is not None else []

    def with_families(self, job_ids: list[int]) -> list[tuple[int, list[str]]]:
        """Each queued job with the families it runs, for the Jobs dock's titles (storage, so on the submitting
        helper thread). Every job, not only those of a submission the routing split: under Xvfb (session 40) one
        "Pre-label folder" read "· classifier, anomaly" and the next, on the same folder, nothing."""
        return [(j, self.families_of(j)) for j in job_ids]

    def routing(self) -> "Routing":
        """The project's model routing rules (a ValueError when the stored rules are broken)."""
        from app.services.project_settings import load_project_settings
        return load_project_settings(self.db).routing

    def adopt_routing(self, routing: "Routing") -> bool:
        """Use ``routing`` if the project has never saved rules of its own (the demo's first launch on this
        database); True when saved. A project's own rules, broken ones, or none saved on purpose (every model on every
        image) are never replaced."""
        from app.services.project_settings import ROUTING
        try:
            if ROUTING in self.db.project_settings.all() or self.routing().rules:
                return False
        except ValueError as exc:
            log.warning("%s", exc)
            return False
        self.save_routing(routing)
        return True

    def propose_routing(self, folder_id: int, current: "Routing | None" = None) -> "RoutingProposal":
        """Rules for the folder's subfolders read off its pre-label results, beside ``current`` (the rules
        being edited; default the stored ones). Nothing is saved."""
        from app.services.routing_proposal import propose_routing
        return propose_routing(self.db, folder_id, current)

    def remove_unrouted_answers(self, folder_id: int, routing: "Routing") -> int:
        """Remove those answers and re-flag the folder; how many went (app.services.routing_answers)."""
        from app.services.routing_answers import remove_unrouted_answers
        from database.errors import DatabaseError
        try:
            return remove_unrouted_answers(self.db, folder_id, routing)
        except DatabaseError as exc:
            raise JobsError(f"the old answers could not be removed: {exc}") from None

    def version_names(self) -> dict[str, list[str]]:
        """family -> the names of its model versions: what a routing rule may name."""
        from app.services.counting_versions import version_names
        return version_names(self.db)

    def save_routing(self, routing: "Routing", read: "Routing | None" = None) -> int:
        """Save the rules; how many answers were re-marked as the ones that count (rules naming versions). ``read``:
        the rules edited, as ``project_settings.save_routing`` checks them."""
        from app.services.project_settings import save_routing
        from database.errors import DatabaseError
        try:
            return save_routing(self.db, routing, read=read)
        except DatabaseError as exc:
            raise JobsError(f"cannot save the model routing: {exc}") from None

    def unfinished(self) -> list[int]:
        """Pre-label jobs still queued or running (left by an earlier session), oldest first."""
        from app.services.prelabel import PRELABEL
        from database.states import JobStatus
        jobs = self.db.jobs.list(statuses=(JobStatus.QUEUED, JobStatus.RUNNING), kind=PRELABEL)
        return sorted(j.id for j in jobs)

    def status(self, job_id: int) -> "JobProgress":
        from app.services.prelabel import job_status
        return job_status(self.db, job_id)

    def cancel(self, job_id: int) -> "JobProgress":
        from app.services.prelabel import cancel_job
        return cancel_job(self.db, job_id)

    def failures(self, job_id: int) -> list[tuple[str, str]]:
        from app.services.prelabel import failed_images
        return failed_images(self.db, job_id)

    def retry_failed(self, job_id: int) -> int:
        """Queue the job's failed images again (the panel's Retry); a worker is started for them."""
        n = self.db.jobs.requeue_failed(job_id)
        self._failures.pop(job_id, None)
        if n:
            self.ensure_worker()
        return n

    def snapshot(self, include: Sequence[int] = ()) -> JobsSnapshot:
        """The newest pre-label jobs (plus ``include``), their failed images and the worker's state.

        Runs on the panel's polling thread. A worker that died while jobs are open is restarted
        here, and the crash is reported in ``worker.event`` rather than only in a log.
        """
        from app.services.prelabel import JOB_SCOPES, failed_image_list, progress_of
        rows = self._job_rows(include)
        jobs = tuple(progress_of(rows[i]) for i in sorted(rows, reverse=True))
        event_id = self._event_id
        worker = self.check_worker(any(not p.finished for p in jobs) or self._compare_waiting())
        if worker.event_id != event_id:
            # A worker stopped (and maybe a new one started) after the rows above were read: read
            # them again, so this snapshot holds everything the stopped worker wrote and any count
            # that moves after it is the new worker's progress, not a late read of the old one's.
            rows = self._job_rows(include)
            jobs = tuple(progress_of(rows[i]) for i in sorted(rows, reverse=True))
        failures = {}
        for p in jobs:
            if not p.failed:
                self._failures.pop(p.job_id, None)
                continue
            # re-read only when the count moved or the job finished again: a Retry pressed at another station took
            # the count 1 -> 0 -> 1 between reads, and this panel kept the first failure's reason (a session-45 probe)
            key = (p.failed, p.finished_at)
            cached = self._failures.get(p.job_id)
            if cached is None or cached[0] != key:
                cached = (key, tuple(failed_image_list(self.db, p.job_id, self.FAILED_SHOWN)))
                self._failures[p.job_id] = cached
            failures[p.job_id] = cached[1]
        families = {i: tuple(j.params.get("families", ())) for i, j in rows.items()}
        automatic = frozenset(i for i, j in rows.items() if j.params.get("automatic"))
        # Only the known names: a row another program wrote cannot put its text in a job's title.
        scopes = {i: j.params["scope"] for i, j in rows.items() if j.params.get("scope") in JOB_SCOPES}
        return JobsSnapshot(jobs, failures, families, worker, automatic, scopes)

    def _compare_waiting(self) -> bool:
        """Whether a champion/challenger comparison waits for the worker (queued or running). Seen under Xvfb
        (session 41): the worker killed during Find disagreements was never replaced, since only pre-label jobs
        counted as waiting work, and the Models dialog said "The worker runs the challenger: 24/160" for good."""
        from app.services.champion import COMPARE
        from database.states import JobStatus
        return bool(self.db.jobs.list(statuses=(JobStatus.QUEUED, JobStatus.RUNNING), kind=COMPARE, limit=1))

    def _job_rows(self, include: Sequence[int]) -> dict[int, Any]:
        """The newest pre-label jobs' rows by id, plus those in ``include``."""
        from app.services.prelabel import PRELABEL
        rows = {j.id: j for j in self.db.jobs.list(kind=PRELABEL, limit=self.HISTORY)}
        for job_id in include:
            if job_id not in rows:
                job = self.db.jobs.get(job_id)
                if job is not None:
                    rows[job_id] = job
        return rows

    def check_worker(self, work_waiting: bool) -> WorkerStatus:
        """Notice a worker that exited; start one while jobs wait (unless it keeps crashing)."""
        upgraded = self._upgraded_under_worker()   # before the lock: a read, which a submission must not wait on
        with self._lock:
            self._notice_exit(upgraded)
            now = time.monotonic()   # stops older than the window no longer count (the give-up lasted for good)
            self._crashes = [t for t in self._crashes if now - t < self.RESTART_WINDOW_S]
            if work_waiting and self._worker is None and not self._closed:
                if len(self._crashes) < self.RESTART_LIMIT:
                    self.ensure_worker()  # says "a new one was started" after a stop
                    self._replace = False
                elif self._replace:
                    self._replace = False
                    self._gave_up = True
                    self._say(f"The pre-label worker stopped {len(self._crashes)} times within "
                              f"{self.RESTART_WINDOW_S / 60:.0f} min and was not restarted; "
                              f"see {data_dir() / 'worker.log'}")
            alive = self.worker_alive()
            return WorkerStatus(alive, self.worker_pid(), self._restarts, self._event, self._event_id)

    def _upgraded_under_worker(self) -> bool | None:
        """For a worker that exited ``NEWER_SCHEMA_EXIT``: whether the database confirms that a newer version upgraded
        it (``Database.schema_changed``, one small read), else None. A read that fails confirms nothing (False: a crash,
        restarted as any). Why ask: any program may exit with that status, and a worker taken for outdated is never
        started again in this session (a session-52 audit: it was status 3, also the C runtime's abort() on Windows).
        Called on the Jobs panel's polling thread (``snapshot``), never the GUI thread, and outside the lock."""
        from app.services.prelabel import NEWER_SCHEMA_EXIT
        from database.errors import DatabaseError
        w = self._worker
        if w is None or w.alive() or w.process.returncode != NEWER_SCHEMA_EXIT:
            return None
        try:
            return self.db.schema_changed() is not None
        except DatabaseError as exc:
            log.warning("worker exited %s; the database's schema could not be read (%s): taken for a crash",
                        NEWER_SCHEMA_EXIT, exc)
            return False

    def _notice_exit(self, upgraded: bool | None = None) -> None:
        """Record a worker that exited (the crash list, the event line); call with the lock held. One that exited
        ``NEWER_SCHEMA_EXIT`` is left for the poll until ``upgraded`` says what the database answered
        (``_upgraded_under_worker``): outdated when it confirms, else a crash."""
        from app.services.prelabel import NEWER_SCHEMA_EXIT, newer_schema_stop
        w = self._worker
        if w is not None and not w.alive():
            code = w.process.returncode
            if code == NEWER_SCHEMA_EXIT and upgraded is None:
                return   # the poll reads the schema first (not here: a submission calls this on the GUI thread)
            self._worker = None
            if code == NEWER_SCHEMA_EXIT and upgraded:
                # Said, not restarted: a worker of this version cannot open the upgraded database (it failed on each
                # start, three times, and the dock said only "stopped (exit code 2)").
                self._outdated = True
                self._say(f"The pre-label worker stopped at {time.strftime('%H:%M:%S')} and is not restarted: "
                          f"{newer_schema_stop()}")
                log.warning("worker process exited: %s", newer_schema_stop())
                return
            now = time.monotonic()
            self._crashes = [t for t in self._crashes if now - t < self.RESTART_WINDOW_S] + [now]
            self._say(f"The pre-label worker stopped (exit code {code}) at {time.strftime('%H:%M:%S')}")
            log.warning("worker process exited with %s", code)
            self._replace = True

    def _say(self, event: str) -> None:
        self._event = event
        self._event_id += 1

    def ensure_worker(self) -> None:
        from app.services.prelabel import start_worker_process
        with self._lock:
            if self._closed or (self._worker is not None and self._worker.alive()):
                return
            self._notice_exit()  # a worker that died unnoticed (a job submitted before the next poll)
            if self._outdated or self._worker is not None:   # the event line says why no worker runs; or the poll
                return                                       # has yet to ask the database why it stopped
            data_dir().mkdir(parents=True, exist_ok=True)
            # The worker stops by itself if this station dies without closing (killed, X gone).
            self._worker = start_worker_process(self.db_url, self.device, log_path=data_dir() / "worker.log",
                                                extra_args=(*self.worker_args, "--exit-with-parent", str(os.getpid())))
            if self._replace:  # however it was started (a poll, a new job, Retry): the event line says so
                self._restarts += 1
                self._say(f"{self._event}; a new one was started (pid {self._worker.pid})")
                self._replace = False
            elif self._gave_up:   # started again after the give-up (a new job, Retry): the red "was not restarted"
                # stayed while the new worker ran the jobs (a session-48 probe)
                self._restarts += 1
                self._say(f"A new pre-label worker was started (pid {self._worker.pid}) after {len(self._crashes)} "
                          "stops")
            self._gave_up = False

    def worker_alive(self) -> bool:
        return self._worker is not None and self._worker.alive()

    def worker_pid(self) -> int | None:
        """The pid of this station's worker process (None when none runs); for tests and the soak check."""
        w = self._worker
        return w.pid if w is not None and w.alive() else None

    def use_device(self, device: str) -> bool:
        """Run the worker on ``device`` from now on: a worker running on another device is stopped (it gives back what
        it holds, untried) and a new one started on this one. True when one was restarted. Blocks for up to the
        worker's stop: call it off the GUI thread. A session-44 probe: Settings changed cuda to cpu, the worker
        kept running on cuda until the station restarted, and every image (Retry too) failed "no CUDA GPU"."""
        with self._lock:
            if device == self.device:
                return False
            self.device = device
            running = self._worker if self._worker is not None and self._worker.alive() else None
            if running is None or self._closed:
                return False
            self._worker = None
        running.stop()
        self.ensure_worker()
        return True

    def stop_worker(self) -> None:
        with self._lock:
            self._closed = True
            if self._worker is not None:
                self._worker.stop()
                self._worker = None
