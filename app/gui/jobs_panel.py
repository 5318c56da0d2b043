"""The jobs dock: pre-label the folder, the selection or what is new; every job's progress as
the database holds it, its recent rate and ETA, its failed images (file, reason, Retry), cancel,
and the worker process's crashes and restarts.

The panel follows the database, not its own memory: each poll (off the GUI thread) reads the
newest pre-label jobs, whoever queued them (this window, an earlier session, the CLI, another
station), so the history survives restarts and the counts are the database's. Rates come from
the progress seen in the last minute (``app.services.job_pace``); a job that stopped moving is
shown as stalled, and one waiting on a worker that crashed as "worker restarting", never with
an ETA that grows. When predictions land, the queue's badges and the open image are re-read on
helper threads (``PredictionRefresher``). Submitting, cancelling, retrying and listing the jobs an
earlier session left write or read the database too: they run in order on one helper thread
(``BackgroundCalls``) and answer in the dock, so a locked or slow database never holds the window.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.gui.background import BackgroundCalls
from app.gui.flow_layout import FlowLayout
from app.gui.style import icon
from app.gui.text_fit import ElidedLabel
from app.services.job_pace import JobPace, PaceTracker
from app.services.review_jobs import folder_scope
from app.services.wording import plural

log = logging.getLogger(__name__)

WARN = "#d14343"
AUTOMATIC_TITLE = "Pre-label new images (automatic)"  # what a followed folder's new files queue
EARLIER = " (from an earlier session)"  # a job resumed from an earlier session's unfinished ones


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA …"
    return f"ETA {format_duration(seconds)}"


def format_duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def progress_text(p, pace: JobPace | None = None, worker_note: str = "") -> str:
    """One job's line: state and counts as stored; rate and ETA only while it really moves and is not being
    cancelled. A job being cancelled still says what holds it (a stall, a message): a session-51 review found one
    whose worker hung reading "cancelling: 10/120 · the images in flight finish first" for good."""
    fails = f" · {p.failed} failed" if p.failed else ""
    if p.finished:
        tail = f" · {p.error}" if p.error else ""
        return f"{p.state}: {p.done}/{p.total}{fails}{tail}"
    state = "cancelling" if p.cancel_requested else p.state
    head = f"{state}: {p.done + p.failed}/{p.total}{fails}"
    if worker_note:
        return f"{head} · {worker_note}"
    # e.g. no worker here sees its folder; while cancelling no rate is shown, so the message is
    if p.message and (pace is None or pace.stalled or not pace.rate or p.cancel_requested):
        return f"{head} · {p.message}"
    if pace is not None and pace.stalled:
        if not p.done + p.failed:  # e.g. a worker loading large models on a busy machine
            return f"{head} · no image finished yet ({format_duration(pace.idle_s)})"
        return f"{head} · stalled: no progress for {format_duration(pace.idle_s)}"
    if p.cancel_requested:
        # No rate or ETA: what is left is the images in flight, not the total; counted against the total, the dock
        # said "cancelling: 10/120 · 3.6 img/s · ETA 0:30" with 108 images cancelled and 2 running (a session-51 audit)
        return f"{head} · the images in flight finish first"
    rate = f" · {pace.rate:.1f} img/s" if pace is not None and pace.rate else ""
    return f"{head}{rate} · {format_eta(pace.eta_s if pace is not None else None)}"


class JobRow(QWidget):
    cancel_requested = Signal(int)
    retry_requested = Signal(int)

    def __init__(self, job_id: int, title: str, parent=None) -> None:
        super().__init__(parent)
        self.job_id = job_id
        lay = QHBoxLayout(self)
        lay.setContentsMargins(2, 1, 2, 1)
        self.title = ElidedLabel(title)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.info = QLabel("queued")
        self.info.setMinimumWidth(260)
        self.info.setWordWrap(True)  # a long status wraps instead of pushing Retry and Cancel out of sight
        self.retry = QToolButton()
        self.retry.setIcon(icon("mdi6.refresh"))
        self.retry.setText("Retry")
        self.retry.setToolTip("Pre-label this job's failed images again")
        self.retry.setVisible(False)
        self.retry.clicked.connect(lambda: self.retry_requested.emit(self.job_id))
        self.cancel = QToolButton()
        self.cancel.setIcon(icon("mdi6.cancel"))
        self.cancel.setToolTip("Cancel this job (images in flight finish first)")
        self.cancel.clicked.connect(lambda: self.cancel_requested.emit(self.job_id))
        lay.addWidget(self.title)   # its whole width when there is room, shortened when there is not
        lay.addWidget(self.bar, 1)
        lay.addWidget(self.info)
        lay.addWidget(self.retry)
        lay.addWidget(self.cancel)
        self.progress = None   # the JobProgress shown

    def show_progress(self, p, pace: JobPace | None = None, worker_note: str = "") -> None:
        self.progress = p
        self.bar.setValue(int(p.fraction * 1000))
        self.info.setText(progress_text(p, pace, worker_note))
        self.cancel.setEnabled(not p.finished)
        self.retry.setVisible(p.failed > 0)


class JobsPanel(QWidget):
    cancel_requested = Signal(int)
    retry_requested = Signal(int)
    image_chosen = Signal(int)   # a failed image double-clicked

    def __init__(self, actions, parent=None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        buttons = QHBoxLayout()
        flow = FlowLayout()   # onto a second row where the dock is narrow, so the window fits a 1280-px screen
        for key in ("prelabel_folder", "prelabel_selection", "prelabel_new"):
            b = QPushButton(actions[key].icon(), actions[key].text())
            b.clicked.connect(actions[key].trigger)
            b.setToolTip(actions[key].toolTip())
            b.setEnabled(actions[key].isEnabled())
            actions[key].enabledChanged.connect(b.setEnabled)   # a button of an action that cannot act is off too
            flow.addWidget(b)
        buttons.addLayout(flow)
        buttons.addStretch(1)
        self.summary = ElidedLabel("No job yet.")   # a long "cannot read the jobs: …" widened the window past the screen
        buttons.addWidget(self.summary)
        lay.addLayout(buttons)
        self.worker_line = QLabel("")
        self.worker_line.setWordWrap(True)
        self.worker_line.setVisible(False)
        lay.addWidget(self.worker_line)
        rows = QWidget()
        self.rows_box = QVBoxLayout(rows)
        self.rows_box.setContentsMargins(0, 0, 0, 0)
        self.rows_box.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(rows)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        lay.addWidget(scroll, 1)
        self.failures = QTreeWidget()
        self.failures.setHeaderLabels(["Job", "Failed image", "Reason"])
        self.failures.setRootIsDecorated(False)
        self.failures.setVisible(False)
        self.failures.setToolTip("Images a job could not pre-label; double-click one to open it, "
                                 "Retry on its job's row runs them again")
        self.failures.itemDoubleClicked.connect(self._failure_chosen)
        lay.addWidget(self.failures)
        self.rows: dict[int, JobRow] = {}
        self._failure_key: tuple = ()

    def event(self, event: QEvent) -> bool:
        """As high as its lines need at this width (after a resize or a change of what it shows): a dock takes no
        height for width from its widget, so buttons wrapped onto a second row lay over the next line."""
        done = super().event(event)
        lay = self.layout()
        if lay is not None and event.type() in (QEvent.Type.Resize, QEvent.Type.LayoutRequest):
            need = lay.heightForWidth(self.width())
            if need > 0 and need != self.minimumHeight():
                self.setMinimumHeight(need)
        return done

    def add_job(self, job_id: int, title: str) -> JobRow:
        row = self.rows.get(job_id)
        if row is not None:  # the poll showed it first, named by its parameters: the one who queued it knows better
            row.title.setText(f"#{job_id} {title}")
            return row
        row = JobRow(job_id, f"#{job_id} {title}")
        row.cancel_requested.connect(self.cancel_requested)
        row.retry_requested.connect(self.retry_requested)
        self.rows[job_id] = row
        newer = sum(1 for j in self.rows if j > job_id)  # newest on top
        self.rows_box.insertWidget(newer, row)
        return row

    def drop_rows(self, keep: set[int]) -> None:
        """Rows of jobs no longer among those shown (older than the history) go."""
        for job_id in [j for j in self.rows if j not in keep]:
            self.rows.pop(job_id).deleteLater()

    def show_progress(self, p, pace: JobPace | None = None, worker_note: str = "") -> None:
        row = self.rows.get(p.job_id)
        if row is not None:
            row.show_progress(p, pace, worker_note)

    def show_summary(self, jobs) -> None:
        if not jobs:
            self.summary.setText("No job yet.")
            return
        running = sum(1 for p in jobs if p.state == "running")
        queued = sum(1 for p in jobs if p.state == "queued")
        ended = len(jobs) - running - queued
        parts = ([f"{running} running"] * bool(running) + [f"{queued} queued"] * bool(queued)
                 + [f"{ended} finished"] * bool(ended))
        self.summary.setText(" · ".join(parts))

    def show_worker(self, text: str, warning: bool) -> None:
        self.worker_line.setVisible(bool(text))
        self.worker_line.setText(f"<span style='color:{WARN}'>⚠ {text}</span>" if warning else text)

    def show_failures(self, failures: dict) -> None:
        key = tuple((j, len(f)) for j, f in sorted(failures.items()))
        if key == self._failure_key:
            return
        self._failure_key = key
        self.failures.clear()
        for job_id in sorted(failures, reverse=True):
            for f in failures[job_id]:
                item = QTreeWidgetItem([f"#{job_id}", f.path, f.reason])
                item.setToolTip(1, f.path)
                item.setToolTip(2, f.reason)
                item.setData(0, Qt.ItemDataRole.UserRole, f.image_id)
                self.failures.addTopLevelItem(item)
        self.failures.setVisible(bool(failures))

    def _failure_chosen(self, item: QTreeWidgetItem) -> None:
        image_id = item.data(0, Qt.ItemDataRole.UserRole)
        if image_id is not None:
            self.image_chosen.emit(int(image_id))


class JobsController(QObject):
    """Submits jobs; follows every recent pre-label job through one off-thread poll of the
    database (``ReviewJobs.snapshot``) and shows each answer whole; re-reads the window's
    predictions when they land; announces worker crashes and restarts."""

    progress = Signal(object)      # JobProgress, for every job shown, on every poll
    finished = Signal(object)      # JobProgress, once, when a job seen open is done / failed / cancelled
    failed = Signal(str)
    submitted = Signal(list)       # the job ids a pre-label action queued (on the helper thread), once followed
    worker_event = Signal(str)     # a worker crash / restart, in one sentence
    snapshot = Signal(object)      # JobsSnapshot, after the panel shows it

    POLL_MS = 500
    REFRESH_S = 3.0
    SLOW_READ_S = 10.0

    def __init__(self, jobs, window, parent: QObject | None = None) -> None:
        super().__init__(parent)
        from app.gui.job_monitor import BackgroundPoller
        from app.gui.prediction_refresh import PredictionRefresher
        self.jobs = jobs
        self.window = window
        self.pace = PaceTracker()
        self.calls = BackgroundCalls("jobs-submit", self)   # submit, cancel, retry: the database, off this thread
        self.refresher = PredictionRefresher(window, self)
        self._open: set[int] = set()        # jobs submitted, resumed or seen open, not seen finished
        self._include: tuple[int, ...] = ()  # followed even when older than the history
        self._earlier: set[int] = set()  # unfinished jobs an earlier session left (resume_unfinished)
        self._titles: dict[int, str] = {}
        self._counts: dict[int, tuple[int, int]] = {}
        self._event_id = 0
        self._restart_at: float | None = None
        self._restart_counts: dict[int, int] = {}  # each job's processed count when the worker restarted
        self._last_refresh = 0.0
        self._dirty = False
        self.last_snapshot = None
        self.poller = BackgroundPoller(lambda: jobs.snapshot(self._include), self.POLL_MS, self, "jobs-poll")
        self.poller.result.connect(self._on_snapshot)
        self.poller.error.connect(self._on_poll_error)
        self.poller.start()
        # A read that never returns would freeze the panel silently: say so after a while.
        self._watchdog = QTimer(self)
        self._watchdog.timeout.connect(self._check_read)
        self._watchdog.start(1000)

    @property
    def active(self) -> frozenset[int]:
        return frozenset(self._open)

    def _follow(self, job_id: int, title: str | None = None) -> None:
        """Watch ``job_id`` until it is seen finished, even if it is older than the history."""
        if title is not None:
            self._titles[job_id] = title
            self.window.jobs_panel.add_job(job_id, title)
        self._open.add(job_id)
        self._include = tuple(sorted(set(self._include) | {job_id}))

    def _submit(self, make: Callable[[], list[int]], title: str) -> None:
        """Queue through ``make`` (-> job ids, one per family set of the project's routing) on the helper
        thread; follow them when it answers (``submitted``), or say why not (``failed``)."""
        jobs = self.jobs
        self.calls.call(lambda: jobs.with_families(make()),
                        lambda queued: self.submitted.emit(self.follow(queued, title)),
                        lambda text: self.failed.emit(f"Cannot pre-label: {text}"))

    def follow(self, queued: list[tuple[int, list[str]]], title: str) -> list[int]:
        """Show and watch jobs already queued (by ``_submit`` or on a helper thread), each with the
        families it runs (read where it was queued: this is the GUI thread)."""
        for job_id, families in queued:
            label = f"{title} · {', '.join(families)}" if families else title
            self._follow(job_id, label)
        self.poller.poll()
        return [j for j, _ in queued]

    def prelabel_folder(self, folder_id: int | None = None, only_new: bool = False) -> None:
        folder_id = folder_id if folder_id is not None else self.window.current_folder
        if folder_id is None:   # nothing went wrong: a word in the status bar, not a box (see ``enable_when_they_can_act``)
            self.window._say("Nothing to pre-label: open a folder first (Project ▸ Open folder…, Ctrl+O).")
            return
        self._submit(lambda: self.jobs.prelabel_folder(folder_id, only_new=only_new), f"Pre-label {folder_scope(only_new)}")

    def resume_unfinished(self) -> None:
        """Follow the jobs an earlier session left unfinished (a worker is started for them)."""
        jobs = self.jobs

        def work() -> list[int]:
            pending = jobs.unfinished()
            if pending:
                jobs.ensure_worker()   # thread-safe: the poll starts workers from its own thread too
            return pending

        def done(pending: list[int]) -> None:
            self._earlier.update(pending)  # named when the poll shows them: automatic or not, their families
            snap, rows = self.last_snapshot, self.window.jobs_panel.rows
            for job_id in pending:
                self._follow(job_id)
                if snap is not None and job_id in rows and job_id not in self._titles:  # the poll named it first
                    self.window.jobs_panel.add_job(job_id, self._poll_title(job_id, snap))
            if pending:
                self.poller.poll()

        def failed(text: str) -> None:   # start-up goes on (no box); the next poll still shows the newest jobs
            log.warning("cannot resume unfinished jobs: %s", text)
            self.window._say(f"The jobs an earlier session left could not be resumed: {text}")
        self.calls.call(work, done, failed)

    def prelabel_selection(self) -> None:
        self.window.queue.with_selection(self._prelabel_ids)

    def _prelabel_ids(self, ids: list[int]) -> None:
        if not ids:
            self.window._say("Nothing to pre-label: no image is selected in the gallery.")
            return
        self._submit(lambda: self.jobs.prelabel_images(ids), f"Pre-label {len(ids)} selected")

    def enable_when_they_can_act(self) -> None:
        """Pre-label folder and Pre-label new only while a folder with images is open (its counts known), Pre-label
        selection only while images are selected. A session-52 audit: all three were enabled with no folder open, on
        an empty folder and with nothing selected, and each answered its key with a modal box ("Open a folder
        first.", "Cannot pre-label: no image selected")."""
        window, actions = self.window, self.window.actions

        def folder(counts: dict[str, int]) -> None:
            can = window.current_folder is not None and sum(counts.values()) > 0
            for key in ("prelabel_folder", "prelabel_new"):
                actions[key].setEnabled(can)

        def selection(*_args: object) -> None:
            gallery = window.gallery
            actions["prelabel_selection"].setEnabled(bool(gallery.selected_ids()) or gallery.unread_selected() > 0)
        window.queue.counts_changed.connect(folder)
        window.gallery.selectionModel().selectionChanged.connect(selection)
        window.gallery_model.modelReset.connect(selection)
        folder({})
        selection()

    def cancel(self, job_id: int) -> None:
        def done(p) -> None:
            self.window.jobs_panel.show_progress(p)
            self.poller.poll()
        self.calls.call(lambda: self.jobs.cancel(job_id), done,
                        lambda text: self.failed.emit(f"Cannot cancel job {job_id}: {text}"))

    def retry(self, job_id: int) -> None:
        """Run a job's failed images again (the row's Retry)."""
        def done(n: int) -> None:
            if n:
                self._follow(job_id)
                self.window._say(f"Job #{job_id}: {plural(n, 'failed image')} queued again.")
            self.poller.poll()
        self.calls.call(lambda: self.jobs.retry_failed(job_id), done,
                        lambda text: self.failed.emit(f"Cannot retry job {job_id}: {text}"))

    # -- each poll ------------------------------------------------------------------------
    def _on_snapshot(self, snap) -> None:
        self.last_snapshot = snap
        panel = self.window.jobs_panel
        worker = snap.worker
        if worker.event_id > self._event_id:
            self._event_id = worker.event_id
            self._restart_at = time.monotonic() if worker.alive else None
            # The snapshot that reports a restart was read after the stopped worker's last write
            # (``ReviewJobs.snapshot``): counts above these are the new worker's progress.
            self._restart_counts = {p.job_id: p.done + p.failed for p in snap.jobs}
            log.warning("%s", worker.event)
            self.worker_event.emit(worker.event)
        shown = {p.job_id for p in snap.jobs} | (set(self._titles) & self._open)
        changed = False
        for p in snap.jobs:
            if p.job_id not in panel.rows:
                panel.add_job(p.job_id, self._titles.get(p.job_id) or self._poll_title(p.job_id, snap))
            pace = self.pace.update(p.job_id, p.done + p.failed, p.total, p.finished)
            panel.show_progress(p, pace, self._worker_note(p, pace, worker))
            self.progress.emit(p)
            counts = (p.done, p.failed)
            if self._counts.get(p.job_id, counts) != counts:
                changed = True
            self._counts[p.job_id] = counts
            if not p.finished:
                self._open.add(p.job_id)
            elif p.job_id in self._open:
                self._open.discard(p.job_id)
                self._include = tuple(i for i in self._include if i != p.job_id)  # now history like any other
                self.finished.emit(p)
                changed = True
                self._dirty = True
                self._last_refresh = 0.0  # a job that ends refreshes at once
        panel.drop_rows(shown)
        self.pace.forget(shown)
        panel.show_summary(snap.jobs)
        panel.show_failures(snap.failures)
        self._show_worker(worker, any(not p.finished for p in snap.jobs))
        self._dirty = self._dirty or changed
        if self._dirty and time.monotonic() - self._last_refresh >= self.REFRESH_S:
            self._dirty = False
            self._last_refresh = time.monotonic()
            self.refresher.refresh()
        self.snapshot.emit(snap)

    def _poll_title(self, job_id: int, snap) -> str:
        """A job this window did not queue (an earlier session, another station) is named by what it is."""
        families = ", ".join(snap.families.get(job_id, ())) or "?"
        scope = snap.scopes.get(job_id)
        kind = AUTOMATIC_TITLE if job_id in snap.automatic else f"Pre-label {scope}" if scope else "Pre-label"
        return f"{kind} · {families}" + (EARLIER if job_id in self._earlier else "")

    def _worker_note(self, p, pace: JobPace, worker) -> str:
        """Why an open job does not move, when the worker is the reason."""
        if p.finished:
            return ""
        if not worker.alive:
            return "no worker running" if p.state == "running" or pace.idle_s > 5 else "waiting for a worker"
        since = None if self._restart_at is None else time.monotonic() - self._restart_at
        at_restart = self._restart_counts.get(p.job_id)
        if (since is not None and at_restart is not None and p.done + p.failed <= at_restart
                and since < self.pace.stall_s):
            return f"worker restarting ({format_duration(since)})"  # then "stalled" if it stays so
        return ""

    def _show_worker(self, worker, open_jobs: bool) -> None:
        if worker.event:
            self.window.jobs_panel.show_worker(worker.event, warning=True)
        elif open_jobs and not worker.alive:
            self.window.jobs_panel.show_worker("No worker process is running on this station.", warning=True)
        else:
            self.window.jobs_panel.show_worker("", warning=False)

    def _check_read(self) -> None:
        waited = self.poller.busy_for
        if waited >= self.SLOW_READ_S:
            self.window.jobs_panel.summary.setText(
                f"⚠ the database has not answered for {format_duration(waited)}; the rows may be out of date")

    def _on_poll_error(self, message: str) -> None:
        log.debug("jobs poll: %s", message)
        self.window.jobs_panel.summary.setText(f"⚠ cannot read the jobs: {message}")

    def wait(self, timeout_s: float = 60.0) -> bool:
        """Process events until every job finished; for tests and scripts."""
        from PySide6.QtCore import QCoreApplication
        end = time.monotonic() + timeout_s
        while self.active and time.monotonic() < end:
            QCoreApplication.processEvents()
            time.sleep(0.02)
        return not self.active

    def close(self) -> None:
        self._watchdog.stop()
        self.calls.close()
        self.poller.close()
        self.refresher.close()


def install(window) -> None:
    """Add the jobs dock and wire the pre-label actions (needs ``ctx.jobs``)."""
    jobs = window.ctx.jobs
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
    ctl.failed.connect(window._warn)
    ctl.worker_event.connect(lambda text: window.statusBar().showMessage(text, 15000))
    ctl.finished.connect(lambda p: window._say(f"Pre-label job #{p.job_id} {p.state}: {p.done}/{p.total} images"
                                               + (f", {p.failed} failed" if p.failed else "")))
    window.actions["prelabel_folder"].triggered.connect(lambda: ctl.prelabel_folder())
    window.actions["prelabel_new"].triggered.connect(lambda: ctl.prelabel_folder(only_new=True))
    window.actions["prelabel_selection"].triggered.connect(ctl.prelabel_selection)
    ctl.enable_when_they_can_act()
    ctl.resume_unfinished()
    if jobs is not None:  # else returned above: no worker, nothing to stop
        window.ctx.closers.append(jobs.stop_worker)
    window.ctx.closers.append(ctl.close)
    window.jobs_panel.cancel_requested.connect(ctl.cancel)
    window.jobs_panel.retry_requested.connect(ctl.retry)
    window.jobs_panel.image_chosen.connect(window.queue.select)
