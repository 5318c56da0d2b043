"""The Qt side of background jobs: poll job state off the GUI thread, emit the answers as signals.

Models run in the worker process; the GUI only reads job rows. Even that read goes to a
single background thread, because a database server that stops answering would otherwise
freeze the window for its connect timeout. Results come back to the GUI thread as queued
signals, so widgets connected to them never touch another thread.

``BackgroundPoller`` is the mechanism (any callable, read on a timer, one read at a time);
``JobMonitor`` follows given job ids with it (``status`` is any callable ``job_id -> JobProgress``,
e.g. ``app.services.prelabel.job_status`` bound to a database). This module imports no
database or model code.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from PySide6.QtCore import QObject, QTimer, Signal, Slot

log = logging.getLogger(__name__)


class BackgroundPoller(QObject):
    """Calls ``read()`` on its own thread every ``interval_ms`` and hands the answer to the GUI
    thread: ``result(value)``, or ``error(message)`` when the read raised (retried next tick).

    A tick while the previous read still runs is skipped, so a slow database never piles up
    reads; ``busy_for`` says how long the current one has been waiting (for "not answering").
    """

    result = Signal(object)
    error = Signal(str)
    _done = Signal(object, str)   # from the reading thread

    def __init__(self, read: Callable[[], Any], interval_ms: int = 500, parent: QObject | None = None,
                 name: str = "poller") -> None:
        super().__init__(parent)
        self._read = read
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._since: float | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.poll)
        self._done.connect(self._deliver)

    @property
    def running(self) -> bool:
        return self._timer.isActive()

    @property
    def busy_for(self) -> float:
        return 0.0 if self._since is None else time.monotonic() - self._since

    def start(self) -> None:
        if not self._timer.isActive():
            self._timer.start()
        self.poll()

    def stop(self) -> None:
        self._timer.stop()

    @Slot()
    def poll(self) -> None:
        """Start one background read (skipped while the last one runs)."""
        if self._since is not None:
            return
        self._since = time.monotonic()
        try:
            self._pool.submit(self._run)
        except RuntimeError:  # closed
            self._since = None

    def _run(self) -> None:
        try:
            value, message = self._read(), ""
        except Exception as exc:  # noqa: BLE001 - a busy or unreachable database: report, retry next tick
            value, message = None, str(exc) or type(exc).__name__
        self._done.emit(value, message)

    @Slot(object, str)
    def _deliver(self, value: Any, message: str) -> None:
        self._since = None
        if message:
            self.error.emit(message)
        else:
            self.result.emit(value)

    def close(self) -> None:
        self._timer.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)


class JobMonitor(QObject):
    """Follows the given jobs until each is done / failed / cancelled."""

    progress = Signal(object)   # JobProgress, on every poll of a job still watched
    finished = Signal(object)   # JobProgress, once, when the job is done / failed / cancelled
    error = Signal(int, str)    # job id, why its status could not be read (retried next tick)

    def __init__(self, status: Callable[[int], Any], interval_ms: int = 500, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._status = status
        self._watched: frozenset[int] = frozenset()  # replaced, never mutated: read by the poll thread
        self._poller = BackgroundPoller(self._read, interval_ms, self, "job-monitor")
        self._poller.result.connect(self._deliver)

    @property
    def watched(self) -> frozenset[int]:
        return self._watched

    def watch(self, job_id: int) -> None:
        self._watched = self._watched | {job_id}
        self._poller.start()

    def unwatch(self, job_id: int) -> None:
        self._watched = self._watched - {job_id}
        if not self._watched:
            self._poller.stop()

    def poll(self) -> None:
        self._poller.poll()

    def _read(self) -> tuple[list, list]:
        results, errors = [], []
        for job_id in sorted(self._watched):
            try:
                results.append(self._status(job_id))
            except Exception as exc:  # noqa: BLE001 - one job's failure is reported, the others still read
                errors.append((job_id, str(exc)))
        return results, errors

    @Slot(object)
    def _deliver(self, payload: tuple[list, list]) -> None:
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
        self._watched = frozenset()
        self._poller.close()
