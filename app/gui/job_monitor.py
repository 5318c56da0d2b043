"""The Qt side of background jobs: poll job status off the GUI thread, emit progress signals.

Models run in the worker process; the GUI only reads job rows. Even that read goes to a
single background thread, because a database server that stops answering would otherwise
freeze the window for its connect timeout. Results come back to the GUI thread as queued
signals, so widgets connected to ``progress`` / ``finished`` never touch another thread.

``status`` is any callable ``job_id -> JobProgress`` (``app.services.prelabel.job_status``
bound to a database); this module imports no database or model code.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from PySide6.QtCore import QObject, QTimer, Signal, Slot

log = logging.getLogger(__name__)


class JobMonitor(QObject):
    progress = Signal(object)   # JobProgress, on every poll of a job still watched
    finished = Signal(object)   # JobProgress, once, when the job is done / failed / cancelled
    error = Signal(int, str)    # job id, why its status could not be read (retried next tick)
    _polled = Signal(object)    # (results, errors) from the polling thread

    def __init__(self, status: Callable[[int], Any], interval_ms: int = 500, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._status = status
        self._watched: set[int] = set()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="job-monitor")
        self._in_flight = False
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.poll)
        self._polled.connect(self._deliver)

    @property
    def watched(self) -> frozenset[int]:
        return frozenset(self._watched)

    def watch(self, job_id: int) -> None:
        self._watched.add(job_id)
        if not self._timer.isActive():
            self._timer.start()
        self.poll()

    def unwatch(self, job_id: int) -> None:
        self._watched.discard(job_id)
        if not self._watched:
            self._timer.stop()

    @Slot()
    def poll(self) -> None:
        """Start one background read of every watched job (skipped while the last one runs)."""
        if self._in_flight or not self._watched:
            return
        self._in_flight = True
        self._pool.submit(self._read, sorted(self._watched))

    def _read(self, job_ids: list[int]) -> None:
        results, errors = [], []
        for job_id in job_ids:
            try:
                results.append(self._status(job_id))
            except Exception as exc:  # a busy or unreachable database: report, retry next tick
                errors.append((job_id, str(exc)))
        self._polled.emit((results, errors))

    @Slot(object)
    def _deliver(self, payload: tuple[list, list]) -> None:
        self._in_flight = False
        results, errors = payload
        for job_id, message in errors:
            log.debug("job %s status: %s", job_id, message)
            self.error.emit(job_id, message)
        for p in results:
            if p.job_id not in self._watched:
                continue
            self.progress.emit(p)
            if p.finished:
                self.unwatch(p.job_id)
                self.finished.emit(p)

    def close(self) -> None:
        self._timer.stop()
        self._watched.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
