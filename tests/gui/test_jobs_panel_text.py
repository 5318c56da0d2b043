"""The words of a job's row: the stored counts always; a rate and ETA only while the job moves."""
from __future__ import annotations

from dataclasses import replace

import pytest

pytest.importorskip("PySide6")

from app.gui.jobs_panel import progress_text  # noqa: E402
from app.services.job_pace import JobPace  # noqa: E402
from app.services.prelabel import JobProgress  # noqa: E402


def _p(state="running", done=32, failed=0, total=300, error=None, cancel=False) -> JobProgress:
    return JobProgress(job_id=1, kind="prelabel", state=state, done=done, failed=failed, total=total,
                       cancel_requested=cancel, message=None, error=error, images_per_second=0.01,
                       eta_seconds=5975.0, started_at=None, finished_at=None)


def test_a_moving_job_shows_its_recent_rate_and_eta() -> None:
    assert progress_text(_p(), JobPace(2.0, 134.0, 0.5, False)) == "running: 32/300 · 2.0 img/s · ETA 2:14"


def test_a_job_that_stopped_says_so_instead_of_an_eta() -> None:
    text = progress_text(_p(), JobPace(None, None, 65.0, True))
    assert text == "running: 32/300 · stalled: no progress for 1:05"
    assert "ETA" not in text and "img/s" not in text  # never the average since the start (0.0 img/s · ETA 1:39:35)
    assert progress_text(_p(done=0), JobPace(None, None, 50.0, True)) == "running: 0/300 · no image finished yet (0:50)"
    assert progress_text(_p(), JobPace(None, None, 3.0, False), "worker restarting (0:03)") == \
        "running: 32/300 · worker restarting (0:03)"


def test_finished_jobs_show_their_final_counts_and_failures() -> None:
    assert progress_text(_p("done", 297, 3, error="3 of 300 images failed")) == \
        "done: 297/300 · 3 failed · 3 of 300 images failed"
    assert progress_text(_p("cancelled", 10, 0)) == "cancelled: 10/300"
    assert progress_text(_p(cancel=True), JobPace(None, None, 1.0, False)).startswith("cancelling: 32/300")


def test_a_job_being_cancelled_shows_no_rate_or_eta() -> None:
    """A session-51 audit: right after Cancel the dock said "cancelling: 10/120 · 3.6 img/s · ETA 0:30", 108 images
    cancelled and 2 running: the ETA was counted against the total. What is left is the images in flight."""
    moving = JobPace(3.6, 30.0, 0.5, False)
    assert progress_text(_p(done=10, total=120, cancel=True), moving) == \
        "cancelling: 10/120 · the images in flight finish first"
    assert progress_text(_p(cancel=True), moving, "worker restarting (0:03)") == \
        "cancelling: 32/300 · worker restarting (0:03)"


def test_a_job_being_cancelled_whose_worker_hangs_still_says_it_is_stalled() -> None:
    """A session-51 review: the cancel's words came before the stall's and the message's, so a job whose worker hung
    after Cancel read "cancelling: 10/120 · the images in flight finish first" for good. Only the rate and ETA go."""
    stalled = JobPace(None, None, 600.0, True)
    assert progress_text(_p(done=10, total=120, cancel=True), stalled) == \
        "cancelling: 10/120 · stalled: no progress for 10:00"
    assert progress_text(_p(done=0, total=120, cancel=True), stalled) == \
        "cancelling: 0/120 · no image finished yet (10:00)"
    waiting = replace(_p(done=10, total=120, cancel=True), message="waiting for a worker that sees /mnt/line3")
    assert progress_text(waiting, stalled) == "cancelling: 10/120 · waiting for a worker that sees /mnt/line3"
    assert progress_text(waiting, JobPace(3.6, 30.0, 0.5, False)) == \
        "cancelling: 10/120 · waiting for a worker that sees /mnt/line3"


def test_the_cli_progress_of_a_job_being_cancelled_has_no_eta() -> None:
    """The same audit: ``progress_of`` (the command line's view) counted its ETA to the total after Cancel too."""
    from datetime import datetime, timedelta, timezone

    from app.services.prelabel import progress_of
    from database.dto import JobInfo
    from database.states import JobStatus
    started = datetime.now(timezone.utc) - timedelta(seconds=10)
    job = JobInfo(id=1, kind="prelabel", status=JobStatus.RUNNING, params={}, priority=0, has_items=True,
                  progress_done=10, progress_failed=0, progress_total=120, cancel_requested=False, message=None,
                  error=None, claimed_by="w", attempts=0, created_at=started, started_at=started, finished_at=None,
                  heartbeat_at=started, result=None)
    assert progress_of(job).eta_seconds is not None
    cancelling = progress_of(replace(job, cancel_requested=True))
    assert cancelling.eta_seconds is None and cancelling.images_per_second is not None


def test_a_database_that_stops_answering_is_said_on_the_panel(service, db, folder, qtbot) -> None:
    import threading

    from tests.gui.test_jobs_panel import _window_with_jobs
    win = _window_with_jobs(service, db, folder, qtbot)
    release = threading.Event()
    jobs = win.ctx.jobs
    real = jobs.snapshot
    jobs.snapshot = lambda include=(): (release.wait(30), real(include))[1]  # a server that hangs
    win.jobs.SLOW_READ_S = 1.0
    win.jobs.poller.poll()
    try:
        qtbot.waitUntil(lambda: "has not answered" in win.jobs_panel.summary.text(), timeout=10000)
    finally:
        release.set()
    qtbot.waitUntil(lambda: "has not answered" not in win.jobs_panel.summary.text(), timeout=10000)
    # a long reason never widens the window (seen under Xvfb, session 48: "⚠ cannot read the jobs: the database file
    # … was deleted or replaced …" pushed the window past the screen, the label dock out of sight)
    width = win.width()
    reason = "the database file /tmp/x/station.sqlite was deleted or replaced after this station opened it; " * 4
    win.jobs._on_poll_error(reason)
    qtbot.wait(100)   # the layouts settle
    assert win.jobs_panel.summary.text() == f"⚠ cannot read the jobs: {reason}"   # kept whole (and as its tooltip)
    assert win.jobs_panel.minimumSizeHint().width() < 800 and win.width() == width
    win.close()


def test_a_long_title_never_pushes_progress_retry_and_cancel_out_of_the_row(qtbot):
    """Seen under Xvfb: "#1 Pre-label new images (automatic) · classifier, segmenter, anomaly" widened its
    row past the dock: the status was cut mid-sentence and Retry and Cancel were out of sight."""
    from PySide6.QtWidgets import QLabel

    from app.gui.jobs_panel import JobRow

    title = "#1 Pre-label new images (automatic) · classifier, segmenter, anomaly · from an earlier session"
    row = JobRow(1, title)
    qtbot.addWidget(row)
    row.retry.setVisible(True)
    row.info.setText("done: 32/34 · 2 failed · 2 of 34 images failed")
    row.resize(640, 40)
    row.show()
    qtbot.waitExposed(row)
    assert row.minimumSizeHint().width() <= 640 and row.width() == 640
    assert row.cancel.geometry().right() <= row.width() and row.retry.geometry().right() <= row.width()
    assert row.title.text() == title and row.title.toolTip() == title     # the whole title is kept
    assert QLabel.text(row.title).endswith("…")                           # what is painted is shortened


def test_a_waiting_job_says_what_its_worker_noted() -> None:
    """A worker that does not see the job's folder leaves its images queued and notes why (ADR 0061's
    neighbour, session 33): the row says it while nothing moves, and the rate once it moves again."""
    from dataclasses import replace
    waiting = replace(_p(done=0), message="waiting for a worker that sees /mnt/line3 (the worker on b does not)")
    assert progress_text(waiting, JobPace(None, None, 80.0, True)).endswith("(the worker on b does not)")
    assert progress_text(waiting, None).startswith("running: 0/300 · waiting for a worker that sees /mnt/line3")
    moving = replace(waiting, done=40)
    assert progress_text(moving, JobPace(2.0, 130.0, 0.5, False)) == "running: 40/300 · 2.0 img/s · ETA 2:10"
