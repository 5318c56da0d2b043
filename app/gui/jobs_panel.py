"""The jobs dock: pre-label the folder, the selection or what is new; progress, ETA, cancel.

Jobs run in the worker process; this panel only polls their rows (a quick read on a timer),
so the window stays responsive whatever the models do. While a job runs the review queue is
refreshed every few seconds so new badges appear as predictions land.
"""
from __future__ import annotations

import logging
import time

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QProgressBar, QPushButton, QToolButton, QVBoxLayout, QWidget)

from app.gui.style import icon

log = logging.getLogger(__name__)


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA …"
    s = int(round(seconds))
    return f"ETA {s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"ETA {s // 60}:{s % 60:02d}"


class JobRow(QWidget):
    cancel_requested = Signal(int)

    def __init__(self, job_id: int, title: str, parent=None) -> None:
        super().__init__(parent)
        self.job_id = job_id
        lay = QHBoxLayout(self)
        lay.setContentsMargins(2, 1, 2, 1)
        self.title = QLabel(title)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.info = QLabel("queued")
        self.info.setMinimumWidth(260)
        self.cancel = QToolButton()
        self.cancel.setIcon(icon("mdi6.cancel"))
        self.cancel.setToolTip("Cancel this job (images in flight finish first)")
        self.cancel.clicked.connect(lambda: self.cancel_requested.emit(self.job_id))
        lay.addWidget(self.title)
        lay.addWidget(self.bar, 1)
        lay.addWidget(self.info)
        lay.addWidget(self.cancel)

    def show_progress(self, p) -> None:
        self.bar.setValue(int(p.fraction * 1000))
        rate = f" · {p.images_per_second:.1f} img/s" if p.images_per_second else ""
        fails = f" · {p.failed} failed" if p.failed else ""
        if p.finished:
            tail = f" · {p.error}" if p.error else ""
            self.info.setText(f"{p.state}: {p.done}/{p.total}{fails}{tail}")
            self.cancel.setEnabled(False)
        else:
            state = "cancelling" if p.cancel_requested else p.state
            self.info.setText(f"{state}: {p.done + p.failed}/{p.total}{rate}{fails} · {format_eta(p.eta_seconds)}")


class JobsController(QObject):
    """Submits jobs and follows them through the worker helper's ``JobMonitor`` (reads off-thread);
    refreshes the window while predictions land and when a job ends."""

    progress = Signal(object)   # JobProgress
    finished = Signal(object)   # JobProgress
    failed = Signal(str)

    POLL_MS = 500
    REFRESH_S = 3.0

    def __init__(self, jobs, window, parent: QObject | None = None) -> None:
        super().__init__(parent)
        from app.gui.job_monitor import JobMonitor
        self.jobs = jobs
        self.window = window
        self.monitor = JobMonitor(jobs.status, interval_ms=self.POLL_MS, parent=self)
        self.monitor.progress.connect(self._on_progress)
        self.monitor.finished.connect(self._on_finished)
        self._last_refresh = 0.0

    @property
    def active(self) -> frozenset[int]:
        return self.monitor.watched

    def _submit(self, make, title: str) -> list[int]:
        """Queue through ``make`` (-> job ids, one per family set of the project's routing) and follow them."""
        try:
            job_ids = make()
        except Exception as exc:
            self.failed.emit(f"Cannot pre-label: {exc}")
            return []
        return self.follow(job_ids, title)

    def follow(self, job_ids: list[int], title: str) -> list[int]:
        """Show and watch jobs already queued (by ``_submit`` or on a helper thread)."""
        for job_id in job_ids:
            label = title
            if len(job_ids) > 1:
                label = f"{title} · {', '.join(self.jobs.families_of(job_id)) or '?'}"
            self.window.jobs_panel.add_job(job_id, label)
            self.monitor.watch(job_id)
        return job_ids

    def prelabel_folder(self, folder_id: int | None = None, only_new: bool = False) -> list[int]:
        folder_id = folder_id if folder_id is not None else getattr(self.window, "current_folder", None)
        if folder_id is None:
            self.failed.emit("Open a folder first.")
            return []
        title = "new images" if only_new else "folder"
        return self._submit(lambda: self.jobs.prelabel_folder(folder_id, only_new=only_new), f"Pre-label {title}")

    def resume_unfinished(self) -> list[int]:
        """Follow the jobs an earlier session left unfinished (a worker is started for them)."""
        try:
            pending = self.jobs.unfinished()
        except Exception as exc:
            log.warning("cannot list unfinished jobs: %s", exc)
            return []
        for job_id in pending:
            self.window.jobs_panel.add_job(job_id, "Pre-label (from an earlier session)")
            self.monitor.watch(job_id)
        if pending:
            try:
                self.jobs.ensure_worker()
            except Exception as exc:
                self.failed.emit(f"The worker process could not be started: {exc}")
        return pending

    def prelabel_selection(self) -> list[int]:
        ids = self.window.queue.selected_ids()
        return self._submit(lambda: self.jobs.prelabel_images(ids), f"Pre-label {len(ids)} selected")

    def cancel(self, job_id: int) -> None:
        try:
            self.progress.emit(self.jobs.cancel(job_id))
        except Exception as exc:
            self.failed.emit(f"Cannot cancel job {job_id}: {exc}")

    def _on_progress(self, p) -> None:
        self.progress.emit(p)
        if not self.jobs.worker_alive():
            try:
                self.jobs.ensure_worker()
            except Exception as exc:
                self.failed.emit(f"The worker process could not be started: {exc}")
        now = time.monotonic()
        if now - self._last_refresh > self.REFRESH_S:
            self._last_refresh = now
            self.window.refresh_models(background=True)

    def _on_finished(self, p) -> None:
        self.finished.emit(p)
        self._last_refresh = time.monotonic()
        self.window.refresh_models()

    def wait(self, timeout_s: float = 60.0) -> bool:
        """Process events until every job finished; for tests and scripts."""
        from PySide6.QtCore import QCoreApplication
        end = time.monotonic() + timeout_s
        while self.active and time.monotonic() < end:
            QCoreApplication.processEvents()
            time.sleep(0.02)
        return not self.active

    def close(self) -> None:
        self.monitor.close()


class JobsPanel(QWidget):
    cancel_requested = Signal(int)

    def __init__(self, actions, parent=None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        buttons = QHBoxLayout()
        for key in ("prelabel_folder", "prelabel_selection", "prelabel_new"):
            b = QPushButton(actions[key].icon(), actions[key].text())
            b.clicked.connect(actions[key].trigger)
            b.setToolTip(actions[key].toolTip())
            buttons.addWidget(b)
        buttons.addStretch(1)
        self.summary = QLabel("No job yet.")
        buttons.addWidget(self.summary)
        lay.addLayout(buttons)
        self.rows_box = QVBoxLayout()
        lay.addLayout(self.rows_box)
        lay.addStretch(1)
        self.rows: dict[int, JobRow] = {}

    def add_job(self, job_id: int, title: str) -> JobRow:
        row = JobRow(job_id, f"#{job_id} {title}")
        row.cancel_requested.connect(self.cancel_requested)
        self.rows[job_id] = row
        self.rows_box.insertWidget(0, row)
        while len(self.rows) > 5:  # keep the dock short: the five newest jobs
            old = min(self.rows)
            self.rows.pop(old).deleteLater()
        return row

    def show_progress(self, p) -> None:
        row = self.rows.get(p.job_id)
        if row is not None:
            row.show_progress(p)
        self.summary.setText(f"Job #{p.job_id}: {p.state}")


def install(window) -> None:
    """Add the jobs dock and wire the pre-label actions (needs ``ctx.jobs``)."""
    jobs = getattr(window.ctx, "jobs", None)
    reason = "no worker configured" if jobs is None else None
    try:
        import app.gui.job_monitor  # noqa: F401  (the worker's Qt adapter)
        import app.services.prelabel  # noqa: F401
    except ImportError as exc:
        reason = f"pre-labelling is not in this build ({exc})"
    if reason is not None:
        for key in ("prelabel_folder", "prelabel_selection", "prelabel_new"):
            window.actions[key].setEnabled(False)
            window.actions[key].setToolTip(f"{window.actions[key].toolTip()} — {reason}")
        return
    from PySide6.QtWidgets import QDockWidget
    window.jobs_panel = JobsPanel(window.actions)
    dock = QDockWidget("Jobs", window)
    dock.setObjectName("jobsDock")
    dock.setWidget(window.jobs_panel)
    window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
    window.resizeDocks([dock], [120], Qt.Orientation.Vertical)
    window.jobs_dock = dock
    window.menus["View"].addAction(dock.toggleViewAction())
    ctl = JobsController(jobs, window, window)
    window.jobs = ctl
    ctl.progress.connect(window.jobs_panel.show_progress)
    ctl.failed.connect(window._warn)
    ctl.finished.connect(lambda p: window._say(f"Pre-label job #{p.job_id} {p.state}: {p.done}/{p.total} images"))
    window.actions["prelabel_folder"].triggered.connect(lambda: ctl.prelabel_folder())
    window.actions["prelabel_new"].triggered.connect(lambda: ctl.prelabel_folder(only_new=True))
    window.actions["prelabel_selection"].triggered.connect(ctl.prelabel_selection)
    ctl.resume_unfinished()
    window.ctx.closers.append(jobs.stop_worker)
    window.ctx.closers.append(ctl.close)
    for row_owner in (window.jobs_panel,):
        row_owner.cancel_requested.connect(ctl.cancel)
