"""Pre-labelling from the review station: queue jobs, watch them, cancel, keep a worker running.

A thin binding of the worker's ``app.services.prelabel`` to one database, so the GUI holds
no database handle of its own. Models never run in the GUI's process: the first job starts a
worker process (``python main.py worker``) that stays until the station closes.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Sequence

from app.paths import data_dir

if TYPE_CHECKING:
    from app.services.prelabel import JobProgress, WorkerHandle
    from app.services.routing import Routing
    from database.engine import Database

log = logging.getLogger(__name__)


class JobsError(Exception):
    """A pre-label request that could not be queued, in one sentence."""


class ReviewJobs:
    def __init__(self, db: "Database", db_url: str, device: str = "auto",
                 model_dirs: dict[str, str] | None = None, worker_args: Sequence[str] = ()) -> None:
        self.db = db
        self.db_url = db_url
        self.device = device
        self.model_dirs = model_dirs
        self.worker_args = tuple(worker_args)
        self._worker: WorkerHandle | None = None

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

    def _submit(self, **kw) -> list[int]:
        from app.services.prelabel import PrelabelError, submit_routed_prelabel
        families = self.available_families()
        if not families:
            raise JobsError("no model is available: no active model version and no bundled checkpoint")
        try:
            job_ids = submit_routed_prelabel(self.db, model_dirs=self.model_dirs, families=families, **kw)
        except PrelabelError as exc:
            raise JobsError(str(exc)) from None
        if not job_ids:
            raise JobsError("the project's model routing gives these images no model to run")
        self.ensure_worker()
        return job_ids

    def prelabel_folder(self, folder_id: int, only_new: bool = False) -> list[int]:
        """Every image of the folder (or only those the active models have not seen); a job per
        set of families the project's routing gives."""
        return self._submit(folder_id=folder_id, only_missing=only_new)

    def prelabel_new_images(self, folder_id: int) -> list[int]:
        """The folder's images no active model has seen yet, routed; no job when there are none.
        Images already waiting in a job, or that could not be read, are left out (reopening a
        folder queues nothing twice; a failed image is retried from the Jobs dock, not on
        every open). Starts no worker: it runs on a helper thread, and the caller's
        ``ensure_worker`` (GUI thread) keeps one worker process per station."""
        families = self.available_families()
        if not families:
            return []
        from app.services.prelabel import PrelabelError, images_waiting, submit_routed_prelabel
        from database.dto import ImageQuery
        waiting = images_waiting(self.db)
        ids = [im.id for im in self.db.images.query(ImageQuery(folder_id=folder_id, sort="id"))
               if im.id not in waiting and not im.error]
        if not ids:
            return []
        try:
            return submit_routed_prelabel(self.db, image_ids=ids, model_dirs=self.model_dirs, families=families,
                                          only_missing=True, skip_empty=True)
        except PrelabelError as exc:
            raise JobsError(str(exc)) from None

    def prelabel_images(self, image_ids: Sequence[int]) -> list[int]:
        if not image_ids:
            raise JobsError("no image selected")
        return self._submit(image_ids=list(image_ids), only_missing=False)

    def families_of(self, job_id: int) -> list[str]:
        """The families a pre-label job runs (from its recorded parameters)."""
        job = self.db.jobs.get(job_id)
        return list(job.params.get("families", [])) if job is not None else []

    def routing(self) -> "Routing":
        """The project's model routing rules (a ValueError when the stored rules are broken)."""
        from app.services.project_settings import load_project_settings
        return load_project_settings(self.db).routing

    def adopt_routing(self, routing: "Routing") -> bool:
        """Use ``routing`` if the project has no rules of its own yet (the demo's first launch);
        True when saved. A project's own rules, or broken ones, are never replaced."""
        try:
            if self.routing().rules:
                return False
        except ValueError as exc:
            log.warning("%s", exc)
            return False
        self.save_routing(routing)
        return True

    def save_routing(self, routing: "Routing") -> None:
        from app.services.project_settings import save_routing
        from database.errors import DatabaseError
        try:
            save_routing(self.db, routing)
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

    def ensure_worker(self) -> None:
        from app.services.prelabel import start_worker_process
        if self._worker is not None and self._worker.alive():
            return
        if self._worker is not None:
            log.warning("worker process exited with %s; starting a new one", self._worker.process.returncode)
        data_dir().mkdir(parents=True, exist_ok=True)
        self._worker = start_worker_process(self.db_url, self.device, log_path=data_dir() / "worker.log",
                                            extra_args=self.worker_args)

    def worker_alive(self) -> bool:
        return self._worker is not None and self._worker.alive()

    def stop_worker(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
