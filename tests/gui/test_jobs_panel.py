"""The jobs dock: a queued job shows in a row, cancel stops it, failures are messages."""
from __future__ import annotations

import pytest
from PySide6.QtWidgets import QPushButton

pytest.importorskip("app.services.prelabel")

from app.gui.jobs_panel import format_eta  # noqa: E402
from app.services.review_jobs import JobsError, ReviewJobs  # noqa: E402
from tests.gui.conftest import wait_shown  # noqa: E402


class NoWorkerJobs(ReviewJobs):
    """The real job service, with the worker process left out: jobs stay queued."""

    def ensure_worker(self) -> None:
        pass

    def worker_alive(self) -> bool:
        return True


def _jobs_window(service, db, qtbot):
    from app.gui.context import StationContext
    from app.gui.extensions import default_extensions
    from app.gui.main_window import MainWindow
    from app.gui.settings_store import StationSettings
    ctx = StationContext(review=service, settings=StationSettings(), interactive=False,
                         extensions=default_extensions())
    ctx.jobs = NoWorkerJobs(db, "sqlite://")
    win = MainWindow(ctx)
    qtbot.addWidget(win)
    win.show()
    return win


def _title_in_the_next_session(service, db, job: int, qtbot) -> str:
    """The job's row title in a new window. Still waiting (no worker): resumed, and said so once the window's facts
    about this session have come (the row can be drawn before them; reading it at its first drawing was flaky)."""
    again = _jobs_window(service, db, qtbot)
    qtbot.waitUntil(lambda: job in again.jobs_panel.rows, timeout=10000)
    qtbot.waitUntil(lambda: again.jobs_panel.rows[job].title.text().endswith("(from an earlier session)"),
                    timeout=10000)
    title = again.jobs_panel.rows[job].title.text()
    again.close()
    return title


def _window_with_jobs(service, db, folder, qtbot):
    for family in ("classifier", "segmenter", "anomaly"):
        db.model_versions.register(family, f"{family}-x", "/nowhere", activate=True)
    win = _jobs_window(service, db, qtbot)
    win.open_folder(str(folder))
    wait_shown(win, qtbot)
    return win


def test_prelabel_selection_queues_a_job_and_cancel_stops_it(service, db, folder, qtbot):
    win = _window_with_jobs(service, db, folder, qtbot)
    win.gallery.selectAll()
    with qtbot.waitSignal(win.jobs.submitted, timeout=10000) as queued:   # written on the helper thread
        win.jobs.prelabel_selection()
    [job] = queued.args[0]
    assert job in win.jobs_panel.rows
    row = win.jobs_panel.rows[job]
    qtbot.waitUntil(lambda: "queued" in row.info.text() and "0/6" in row.info.text())
    with qtbot.waitSignal(win.jobs.finished, timeout=10000) as sig:
        row.cancel.click()
    assert sig.args[0].state == "cancelled"
    qtbot.waitUntil(lambda: row.info.text().startswith("cancelled"))
    assert not row.cancel.isEnabled()
    win.close()


def test_a_job_keeps_its_name_in_the_next_session(service, db, folder, qtbot):
    """Seen under Xvfb: "#4 Pre-label folder · anomaly" came back after a restart as "#4 Pre-label · anomaly";
    the job records what it was queued for and the next window names it so."""
    win = _window_with_jobs(service, db, folder, qtbot)
    qtbot.waitUntil(lambda: len(win.jobs.active) == 1, timeout=10000)  # the folder's automatic job
    with qtbot.waitSignal(win.jobs.submitted, timeout=10000) as queued:
        win.jobs.prelabel_folder()
    [job] = queued.args[0]
    # the families it runs, as in the next session (seen under Xvfb, session 40: one "Pre-label folder" named them,
    # the next one on the same folder did not)
    assert win.jobs_panel.rows[job].title.text().startswith(f"#{job} Pre-label folder · ")
    win.close()
    assert _title_in_the_next_session(service, db, job, qtbot).startswith(f"#{job} Pre-label folder · ")


def test_the_prelabel_actions_act_only_where_they_can_and_nothing_to_do_is_no_box(service, db, folder, tmp_path,
                                                                                    qtbot):
    """A session-52 audit: Pre-label folder (Ctrl+Shift+P) and Pre-label new (Ctrl+P) were enabled with no folder open
    and on an empty folder, Pre-label selection (Ctrl+Alt+P) with nothing selected, and each answered with a modal
    box ("Open a folder first.", "Cannot pre-label: no image selected"). Now they (and the Jobs dock's buttons) are
    enabled only while they can act: a folder with images open; images selected. Asked anyway (a routing dialog's
    call), "nothing to do" is a word in the status bar, not a box."""
    for family in ("classifier", "segmenter", "anomaly"):
        db.model_versions.register(family, f"{family}-x", "/nowhere", activate=True)
    win = _jobs_window(service, db, qtbot)
    keys = ("prelabel_folder", "prelabel_new", "prelabel_selection")
    buttons = {b.text(): b for b in win.jobs_panel.findChildren(QPushButton)}

    def enabled() -> dict[str, bool]:
        assert all(buttons[win.actions[k].text()].isEnabled() == win.actions[k].isEnabled() for k in keys)
        return {k: win.actions[k].isEnabled() for k in keys}
    assert enabled() == dict.fromkeys(keys, False)                # no folder open
    boxes: list[str] = []
    win.jobs.failed.connect(boxes.append)
    win.jobs.prelabel_folder()
    assert win.statusBar().currentMessage().startswith("Nothing to pre-label: open a folder first")

    empty = tmp_path / "empty"
    empty.mkdir()
    win.open_folder(str(empty))
    qtbot.waitUntil(win.queue.counts_known, timeout=10000)
    qtbot.wait(100)
    assert enabled() == dict.fromkeys(keys, False)                # an empty folder

    win.open_folder(str(folder))
    wait_shown(win, qtbot)
    qtbot.waitUntil(lambda: enabled() == dict.fromkeys(keys, True), timeout=10000)   # the image on screen is selected
    win.gallery.clearSelection()
    assert enabled() == {"prelabel_folder": True, "prelabel_new": True, "prelabel_selection": False}
    win.jobs.prelabel_selection()
    assert win.statusBar().currentMessage() == "Nothing to pre-label: no image is selected in the gallery."
    assert boxes == [] and not win.jobs.calls.busy
    with pytest.raises(JobsError):
        win.ctx.jobs.prelabel_images([])
    win.close()


def test_eta_format():
    assert format_eta(None) == "ETA …"
    assert format_eta(65) == "ETA 1:05"
    assert format_eta(3725) == "ETA 1:02:05"


def test_jobs_left_unfinished_are_followed_on_the_next_start(service, db, folder, qtbot):
    win = _window_with_jobs(service, db, folder, qtbot)
    with qtbot.waitSignal(win.jobs.submitted, timeout=10000) as queued:
        win.jobs.prelabel_folder()
    [job] = queued.args[0]
    win.close()
    win2 = _jobs_window(service, db, qtbot)
    qtbot.waitUntil(lambda: job in win2.jobs_panel.rows and job in win2.jobs.active, timeout=10000)
    win2.close()


def test_demo_first_launch_routes_each_subfolder_to_its_own_model(service, db, qtbot):
    from app.commands.gui import DEMO
    from app.services.routing import Routing, RoutingRule
    for family in ("classifier", "segmenter", "anomaly"):
        db.model_versions.register(family, f"{family}-x", "/nowhere", activate=True)
    win = _jobs_window(service, db, qtbot)
    win.ctx.prepare_demo(win)
    win.open_folder(str(DEMO))  # its images are new: pre-labelled automatically, routed per subfolder
    qtbot.waitUntil(lambda: len(win.jobs.active) == 3)
    families = {tuple(win.ctx.jobs.families_of(j)): j for j in win.jobs.active}
    assert set(families) == {("segmenter",), ("classifier",), ("classifier", "anomaly")}
    # the tiles run the tile classifier the demo's rule names, the steel strips the active one
    tile = db.model_versions.by_name("classifier", "classifier-magnetic_tile")
    assert tile is not None and not tile.active
    assert db.jobs.get(families[("classifier", "anomaly")]).params["model_versions"]["classifier"] == tile.id
    assert db.jobs.get(families[("classifier",)]).params["model_versions"]["classifier"] == \
        db.model_versions.active("classifier").id
    assert all(" · " in row.title.text() for row in win.jobs_panel.rows.values())
    assert win.ctx.settings.demo_prelabelled
    # The Jobs dock says the routing at once (it said "No model routing" until the next 20 s poll).
    notice = win.routing_notice.notice
    assert win.routing_notice.calls.wait_idle()
    assert notice.text.text().startswith("Model routing:"), notice.text.text()
    assert "infrared/ → segmenter" in notice.text.text()
    # A project's own rules are never replaced by the demo's.
    own = Routing((RoutingRule("*", ("anomaly",)),))
    win.ctx.jobs.save_routing(own)
    assert not win.ctx.jobs.adopt_routing(Routing((RoutingRule("x/*", ("segmenter",)),)))
    assert win.ctx.jobs.routing() == own
    win.ctx.jobs.save_routing(Routing(()))  # none, on purpose: every model on every image
    assert not win.ctx.jobs.adopt_routing(Routing((RoutingRule("x/*", ("segmenter",)),)))
    win.close()


def test_the_demo_is_routed_on_a_new_database_even_after_it_was_routed_on_another(tmp_path, qtbot):
    """Found by a session-44 probe: settings.ini's "demo routed once" flag, a per-user one, kept a new database (the
    old one deleted, or --db other.sqlite) from getting the demo's routing: the steel classifier ran on infrared
    frames and tiles. Whether a database has its routing is the database's to say."""
    from app.gui.settings_store import StationSettings
    from app.services.project_settings import load_project_settings
    from app.services.review import ReviewService, ReviewSettings
    from database import open_database
    db = open_database(f"sqlite:///{tmp_path / 'other.sqlite'}")
    service = ReviewService(db, ReviewSettings(reviewer="tester"))
    win = _jobs_window(service, db, qtbot)
    win.ctx.settings = StationSettings(demo_prelabelled=True)  # routed once, on another database
    win.ctx.prepare_demo(win)
    assert any(r.pattern == "demo/infrared/*" for r in load_project_settings(db).routing.rules)
    win.close()
    db.close()


def test_opening_a_new_folder_queues_its_new_images_and_shows_the_routing(service, db, folder, qtbot):
    """Item 7: a folder the user opens is pre-labelled without asking; reopening it queues
    nothing more; the Jobs dock says every family runs everywhere and offers the routing dialog."""
    from app.gui.jobs_panel import AUTOMATIC_TITLE as TITLE
    (folder / "infrared").mkdir()
    (folder / "part_00.png").rename(folder / "infrared" / "part_00.png")
    win = _window_with_jobs(service, db, folder, qtbot)
    qtbot.waitUntil(lambda: len(win.jobs.active) == 1, timeout=10000)
    [job] = win.jobs.active
    row = win.jobs_panel.rows[job]
    assert TITLE in row.title.text()
    qtbot.waitUntil(lambda: "0/6" in row.info.text())
    notice = win.routing_notice.notice
    qtbot.waitUntil(lambda: "No model routing" in notice.text.text())
    assert notice.isVisible() and "infrared/" in notice.text.text()
    assert "classifier, segmenter, anomaly" in notice.text.text()
    opened = []
    win.actions["model_routing"].triggered.disconnect()
    win.actions["model_routing"].triggered.connect(lambda: opened.append(True))
    notice.button.click()
    assert opened == [True]
    # Reopening the same folder: nothing new, no second job.
    win.open_folder(str(folder))
    assert win.auto_prelabel.calls.wait_idle()
    assert len(db.jobs.list()) == 1
    win.close()
    # The next session's window names the earlier automatic job by what it is, not by its families.
    assert _title_in_the_next_session(service, db, job, qtbot).startswith(f"#{job} {TITLE} · ")


def test_the_project_setting_off_opens_a_folder_without_a_job(service, db, folder, qtbot):
    from app.services.project_settings import save_auto_prelabel
    save_auto_prelabel(db, False)
    win = _window_with_jobs(service, db, folder, qtbot)
    qtbot.waitUntil(lambda: "No model routing" in win.routing_notice.notice.text.text())
    assert win.auto_prelabel.calls.wait_idle()
    assert db.jobs.list() == [] and not win.jobs.active and not win.jobs_panel.rows
    win.close()


def test_routing_saved_shows_what_runs_on_each_subfolder(service, db, folder, qtbot):
    from app.services.routing import Routing, RoutingRule
    (folder / "steel").mkdir()
    for name in ("part_01.png", "part_02.png"):
        (folder / name).rename(folder / "steel" / name)
    win = _window_with_jobs(service, db, folder, qtbot)
    notice = win.routing_notice.notice
    qtbot.waitUntil(lambda: "No model routing" in notice.text.text())
    win.ctx.jobs.save_routing(Routing((RoutingRule("steel/*", ("classifier",)),)))
    win.project.reload()
    qtbot.waitUntil(lambda: notice.text.text().startswith("Model routing:"))
    assert "steel/ → classifier" in notice.text.text()
    assert "(top level) → classifier, segmenter, anomaly" in notice.text.text()
    win.close()


def test_a_locked_database_never_holds_the_window_when_a_job_is_queued(service, db, folder, qtbot):
    """Pre-label folder, Cancel and Retry write to the database: with another program holding the
    file they used to hold the window for the busy timeout. They run on the helper thread now."""
    import sqlite3
    import time
    win = _window_with_jobs(service, db, folder, qtbot)
    assert db.engine.url.get_backend_name() == "sqlite"
    qtbot.waitUntil(lambda: not win.auto_prelabel.calls.busy and not win.jobs.calls.busy, timeout=10000)
    before = [j.id for j in db.jobs.list()]   # the automatic pre-label of the opened folder
    blocker = sqlite3.connect(db.sa_url.database, timeout=0.1)
    blocker.execute("BEGIN EXCLUSIVE")  # another program holds the write lock
    try:
        t0 = time.monotonic()
        with qtbot.waitSignal(win.jobs.submitted, timeout=15000) as queued:
            win.jobs.prelabel_folder()
            assert time.monotonic() - t0 < 1.0 and win.jobs.calls.busy   # the window went on at once
            assert [j.id for j in db.jobs.list()] == before
            qtbot.wait(300)                      # the window keeps painting meanwhile
            blocker.rollback()                   # the other program lets go
    finally:
        blocker.close()
    [job] = queued.args[0]
    assert job in win.jobs_panel.rows and db.jobs.get(job).progress_total == 6
    with qtbot.waitSignal(win.jobs.finished, timeout=10000) as sig:
        win.jobs.cancel(job)
    assert sig.args[0].state == "cancelled"
    win.close()


def test_the_window_fits_a_1280_screen_and_the_jobs_buttons_wrap(service, db, folder, qtbot):
    """Before (a session-49 audit): the window opened at 1500×920 on any screen (its status bar below a 1366×768
    laptop's edge) and could not be made narrower than 1360 px, wider than a 1280-px screen: the Jobs dock's three
    pre-label buttons stood in one row (539 px). Now it opens within the screen's free area and its buttons wrap onto
    further rows, the lines under them moved down, not overlapped."""
    from PySide6.QtWidgets import QPushButton

    win = _window_with_jobs(service, db, folder, qtbot)
    area = win.screen().availableGeometry()
    assert win.height() <= area.height()
    assert win.minimumSizeHint().width() < 1200
    win.resize(win.minimumSizeHint().width(), win.height())
    panel = win.jobs_panel
    qtbot.waitUntil(lambda: panel.width() < 400)
    buttons = [b for b in panel.findChildren(QPushButton) if b.text().startswith("Pre-label")]
    assert win.routing_notice is not None
    qtbot.waitUntil(lambda: win.routing_notice.notice.isVisible())   # the line under the buttons

    def laid_out() -> None:
        assert len({b.y() for b in buttons}) > 1   # wrapped
        lowest = max(b.mapTo(panel, b.rect().bottomLeft()).y() for b in buttons)
        below = [w for w in (panel.worker_line, win.routing_notice.notice) if w.isVisible()]
        assert all(w.mapTo(panel, w.rect().topLeft()).y() > lowest for w in below)
        assert all(b.mapTo(panel, b.rect().topRight()).x() <= panel.width() for b in buttons)
    qtbot.waitUntil(laid_out)


def test_the_routing_line_shows_every_wrapped_line(service, db, folder, qtbot):
    """Before (a session-49 audit): in a narrow Jobs dock the routing line wrapped to more lines than its row's height
    (47 px shown of the 56 its text needs), its last line cut at the top and bottom, and it had no tooltip. Now the
    dock is as high as its lines need at its width (``JobsPanel.event``) and the whole line is the tooltip too."""
    win = _window_with_jobs(service, db, folder, qtbot)
    win.resize(win.minimumSizeHint().width(), win.height())
    notice = win.routing_notice.notice
    text = ("No model routing: every family (classifier, segmenter, anomaly) runs on every image in "
            "a very long subfolder name for the night shift line 7 camera B/, infrared/, steel/, tiles/.")
    notice.show_text(text)
    line = notice.text
    qtbot.waitUntil(lambda: line.isVisible() and line.width() < 400)
    qtbot.waitUntil(lambda: line.height() >= line.heightForWidth(line.width()))
    assert line.toolTip() == text
