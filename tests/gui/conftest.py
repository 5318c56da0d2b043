"""Fixtures for the review station's tests: a temporary database, service and main window."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("PySide6")


@pytest.fixture(autouse=True)
def _no_folder_following(monkeypatch):
    """Windows in tests do not re-scan their folder every few seconds (tests that change files on disk
    would race it); tests/gui/test_folder_follow.py turns it on for its own windows."""
    monkeypatch.setattr("app.gui.folder_follow.FOLLOW_MS", 0)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{(tmp_path / 'station.sqlite').as_posix()}"


@pytest.fixture
def db(db_url):
    from database.engine import open_database
    database = open_database(db_url)
    yield database
    database.close()


@pytest.fixture
def artifacts(tmp_path: Path):
    from app.services.artifacts import ArtifactStore
    return ArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def service(db, artifacts):
    from app.services.review import ReviewService, ReviewSettings
    return ReviewService(db, ReviewSettings(reviewer="tester"), artifacts=artifacts)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    from tests.gui.fixtures import make_folder
    return make_folder(tmp_path / "parts")


def build_window(service, qtbot, **settings):
    from app.gui.context import StationContext
    from app.gui.extensions import default_extensions
    from app.gui.main_window import MainWindow
    from app.gui.settings_store import StationSettings

    ctx = StationContext(review=service, settings=StationSettings(**settings), interactive=False,
                         extensions=default_extensions())
    win = MainWindow(ctx)
    qtbot.addWidget(win)
    win.show()
    return win


def wait_shown(win, qtbot, image_id: int | None = None, timeout: int = 5000) -> None:
    """Wait until the viewer shows ``image_id`` (or the current image) with its pixels, and the
    folder's per-state counts have come (they are read on a helper thread)."""
    def ready():
        target = win.review.image_id if image_id is None else image_id
        assert target is not None and win.viewer_ctl._shown_id == target
        assert win.queue.counts_known()
    qtbot.waitUntil(ready, timeout=timeout)


def wait_listed(win, qtbot, timeout: int = 10000) -> None:
    """Wait until the queue has read the view asked last (a folder, filter or order is read on the view thread)."""
    qtbot.waitUntil(lambda: not win.queue.reading(), timeout=timeout)


def wait_saved(win, qtbot, timeout: int = 10000) -> None:
    """Wait until the labels this window made have reached the database (they are written on the
    label-writes thread; the window shows them at once). Labels the database refused and keeps for a
    retry are not waited for."""
    qtbot.waitUntil(win.review.writes_idle, timeout=timeout)


def slow_saves(service, monkeypatch, seconds: float) -> None:
    """Every label save takes ``seconds`` longer (a slow server), on whichever thread it runs."""
    import time
    real_save = service.save

    def slow_save(*a, **k):
        time.sleep(seconds)
        return real_save(*a, **k)
    monkeypatch.setattr(service, "save", slow_save)


def wait_prediction_shown(win, qtbot, timeout: int = 10000) -> None:
    """Wait until the open image's prediction has reached the review panel.

    The gallery's badges and the open image's detail are re-read on different helper threads
    after a job writes predictions, so the badges can arrive first. Accept ("as is") takes what
    the review panel holds; a key pressed before the prediction arrived accepts an empty label,
    which is what the screen showed at that moment, not what a test that waited on the badges
    expects."""
    def ready():
        detail = win.review.detail
        assert detail is not None and detail.item.image_id == win.review.image_id
        assert detail.prediction is not None
    qtbot.waitUntil(ready, timeout=timeout)


@pytest.fixture
def window(service, folder, qtbot):
    win = open_window(service, qtbot, folder)
    yield win
    win.close()


def open_window(service, qtbot, folder, **settings):
    """A window on ``folder``, its first image shown (the ``window`` fixture's, for another service or settings)."""
    win = build_window(service, qtbot, **settings)
    win.open_folder(str(folder))
    wait_shown(win, qtbot)
    return win


def open_bottles_without_classifier(service, db, tmp_path: Path, qtbot, n: int = 6,
                                    families: tuple[str, ...] = ("segmenter", "anomaly")):
    """A window on a folder of "bottles" whose routing runs ``families``, no classifier (the case seen under Xvfb
    with MVTec bottles), its first image shown."""
    from app.services.project_settings import save_routing
    from app.services.routing import Routing, RoutingRule
    from tests.gui.fixtures import make_folder

    root = tmp_path / "bottles"
    make_folder(root / "good", n=n)
    save_routing(db, Routing((RoutingRule("good/*", families),)))
    win = build_window(service, qtbot)
    win.open_folder(str(root))
    wait_shown(win, qtbot)
    return win


class HeldDetails:
    """Wraps ``service.detail``: notes each caller's thread; reads off the GUI thread of the images in ``hold``
    (or of every image, ``everything``) wait for ``gate`` (a slow server's reads)."""

    def __init__(self, service, monkeypatch, everything: bool = False) -> None:
        import threading
        self.real = service.detail
        self.threads: list[str] = []
        self.hold: set[int] = set()
        self.everything = everything
        self.gate = threading.Event()
        monkeypatch.setattr(service, "detail", self)

    def __call__(self, image_id: int):
        import threading
        name = threading.current_thread().name
        self.threads.append(name)
        if (self.everything or image_id in self.hold) and name != "MainThread":
            self.gate.wait(10)
        return self.real(image_id)


def tab_leaves(qtbot, view) -> bool:
    """Tab pressed on ``view``'s first cell moves the focus on to the dialog's next field, not to the next cell (a table
    that took Tab kept it for good: a session-49 audit)."""
    from PySide6.QtCore import Qt
    view.window().show()
    qtbot.waitUntil(view.isVisible)
    view.setFocus()
    view.setCurrentIndex(view.model().index(0, 0))
    assert view.window().focusWidget() is view and view.model().rowCount() * view.model().columnCount() > 1
    qtbot.keyClick(view, Qt.Key.Key_Tab)
    return view.window().focusWidget() is not view
