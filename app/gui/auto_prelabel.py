"""Automatic pre-labelling: a folder's new images are queued as soon as it is indexed.

Why: an inspector who opens a folder expects scores, not "No job yet"; only images no active
model has seen are queued (so reopening a folder queues nothing) and the project's routing
decides which families run on which images. The project setting ``auto_prelabel`` (Settings
dialog) turns it off for every station. The submission reads and writes the database, so it
runs on a helper thread; the GUI thread then shows the jobs and keeps the worker running.
"""
from __future__ import annotations

import logging
from typing import Sequence

from app.gui.background import BackgroundCalls
from app.gui.jobs_panel import AUTOMATIC_TITLE
from app.services.project_settings import load_project_settings

log = logging.getLogger(__name__)


class AutoPrelabel:
    def __init__(self, window) -> None:
        self.window = window
        self.jobs = window.ctx.jobs
        self.calls = BackgroundCalls("auto-prelabel", window)
        window.folder_ctl.opened.connect(lambda info: self.folder_opened(info.id))

    def folder_opened(self, folder_id: int, image_ids: Sequence[int] | None = None) -> None:
        """``image_ids``: only these of the folder (new files a re-scan found, app/gui/folder_follow.py)."""
        db, jobs = self.window.ctx.review.db, self.jobs
        ids = None if image_ids is None else list(image_ids)

        def work() -> list[tuple[int, list[str]]]:
            # The database's value, not a cached one: another station may just have turned it off.
            if not load_project_settings(db).auto_prelabel:
                return []
            return jobs.with_families(jobs.prelabel_new_images(folder_id, ids))
        self.calls.call(work, self._queued, self._failed)

    def _queued(self, queued: list[tuple[int, list[str]]]) -> None:
        if not queued:
            return
        self.window.jobs.follow(queued, AUTOMATIC_TITLE)
        try:
            self.jobs.ensure_worker()
        except Exception as exc:  # noqa: BLE001 - GUI slot; the user is warned
            self.window._warn(f"The worker process could not be started: {exc}")

    def _failed(self, error: str) -> None:
        # Not a dialog: the user did not ask for this job; the status bar says why none runs.
        log.warning("automatic pre-labelling: %s", error)
        self.window._say(f"New images were not pre-labelled: {error}")


def install(window) -> None:
    """Needs the jobs dock (``window.jobs``); without a worker there is nothing to start."""
    if window.ctx.jobs is None or window.jobs is None:
        return
    window.auto_prelabel = AutoPrelabel(window)
    window.ctx.closers.append(window.auto_prelabel.calls.close)
