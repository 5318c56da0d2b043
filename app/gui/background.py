"""Storage calls the window must not wait for, run in order on one helper thread.

Why a queue of one thread: saving settings, re-flagging a project and reading what a folder
routes where touch the database (a server may be slow or gone), and the GUI thread never waits
on storage; one thread keeps the calls in the order the user made them (a save, then the read
that shows it). Answers come back to the GUI thread through a queued signal.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from PySide6.QtCore import QCoreApplication, QObject, Signal, Slot

log = logging.getLogger(__name__)


def process_events_until(done: Callable[[], bool], timeout_s: float) -> bool:
    """Let the GUI thread's queued signals arrive until ``done()`` (tests and scripts only)."""
    end = time.monotonic() + timeout_s
    while not done() and time.monotonic() < end:
        QCoreApplication.processEvents()
        time.sleep(0.01)
    return done()


class BackgroundCalls(QObject):
    _answered = Signal(object)   # (on_done, on_error, result, error text)

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending = 0
        self._closed = False
        self._answered.connect(self._deliver)

    def call(self, work: Callable[[], Any], on_done: Callable[[Any], None],
             on_error: Callable[[str], None] | None = None) -> None:
        """Run ``work()`` on the helper thread; ``on_done(result)`` or ``on_error(text)`` on this one."""
        self._pending += 1

        def run() -> None:
            try:
                self._answered.emit((on_done, on_error, work(), None))
            except Exception as exc:  # noqa: BLE001 - the reason goes to the GUI thread as one sentence
                self._answered.emit((on_done, on_error, None, str(exc) or type(exc).__name__))
        try:
            self._pool.submit(run)
        except RuntimeError:  # closed: the window is going away
            self._pending -= 1

    @property
    def busy(self) -> bool:
        return self._pending > 0

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Process events until every call so far has answered; for tests and scripts."""
        return process_events_until(lambda: not self._pending, timeout_s)

    @Slot(object)
    def _deliver(self, answer: tuple) -> None:
        self._pending -= 1
        if self._closed:  # the window is closing: its widgets and services are going away
            return
        on_done, on_error, result, error = answer
        if error is None:
            on_done(result)
        elif on_error is not None:
            on_error(error)
        else:
            log.warning("background call failed: %s", error)

    def close(self, finish: bool = False) -> None:
        """No answer is delivered after this. ``finish``: the calls already asked for still run, and this waits
        for them (writes a person made, e.g. a flag, as the window closes); otherwise those not started are dropped."""
        self._closed = True
        self._pool.shutdown(wait=finish, cancel_futures=not finish)
