"""Windows sized within the screen they open on (``app.gui.screen_fit``), with two screens side by side."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# A QApplication's screens are fixed when it starts: the two-screen desk runs in a process of its own.
DESK = """
from PySide6.QtWidgets import QApplication, QDialog, QMainWindow
from app.gui.screen_fit import fit_to_screen
app = QApplication([])
win = QMainWindow()
win.setGeometry(2600, 40, 1200, 700)   # on the laptop, right of the large screen
win.show()
app.processEvents()
dialog = QDialog(win)
fit_to_screen(dialog, 1280, 880)       # as a dialog's constructor does, before it is shown
print(win.screen().name(), dialog.width(), dialog.height())
"""


def test_a_dialog_is_sized_for_the_screen_its_window_is_on(tmp_path: Path) -> None:
    """The review of a session-49 fix: the main window on a 1366×768 laptop beside a 2560×1440 screen at the origin,
    the Models dialog opened at 1280×880 on the laptop, its buttons below the edge as before the fix: sized in its
    constructor, not shown yet, it was held to the screen at 0,0 (its own place then), not to the window's. Now it
    fits the laptop's free area."""
    screens = {"screens": [{"name": "big", "x": 0, "y": 0, "width": 2560, "height": 1440},
                           {"name": "laptop", "x": 2560, "y": 0, "width": 1366, "height": 768}]}
    config = tmp_path / "screens.json"
    config.write_text(json.dumps(screens), encoding="utf-8")
    env = {**os.environ, "QT_QPA_PLATFORM": f"offscreen:configfile={config}"}
    done = subprocess.run([sys.executable, "-c", DESK], cwd=Path(__file__).resolve().parents[2], env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    screen, width, height = done.stdout.split()[-3:]
    assert screen == "laptop"
    assert int(width) <= 1366 and int(height) <= 768


class _Screen:
    """A screen as ``screen_fit`` reads it: its available geometry."""

    def __init__(self, name: str, x: int, y: int, width: int, height: int) -> None:
        from PySide6.QtCore import QRect
        self.name, self.rect = name, QRect(x, y, width, height)

    def availableGeometry(self):  # noqa: N802 - QScreen's name
        return self.rect


def test_the_main_window_is_sized_and_placed_for_the_screen_it_opens_on(service, qtbot, monkeypatch) -> None:
    """A session-52 audit: with no saved layout, the main window's first size was taken from the screen at the origin
    (its place before it is shown), not the one it opens on: on a desk with a 1366×768 laptop screen at the origin and
    a 2560×1440 monitor beside it, the window opened on the monitor held to the laptop's size. Now the screen under the
    mouse (else the primary) sizes it, and it is placed on that screen."""
    from PySide6.QtGui import QCursor

    import app.gui.screen_fit as screen_fit
    from tests.gui.conftest import build_window

    laptop, big = _Screen("laptop", 0, 0, 1366, 768), _Screen("big", 1366, 0, 2560, 1440)

    class Desk:   # the two screens, in place of the application's one offscreen screen
        @staticmethod
        def screenAt(point):  # noqa: N802 - QGuiApplication's name
            return next((s for s in (laptop, big) if s.rect.contains(point)), None)

        @staticmethod
        def primaryScreen():  # noqa: N802 - QGuiApplication's name
            return laptop

    monkeypatch.setattr(screen_fit, "QGuiApplication", Desk)
    QCursor.setPos(2600, 700)   # the inspector works on the large monitor
    win = build_window(service, qtbot)
    try:
        assert (win.width(), win.height()) == (1500, 920)
        assert big.rect.contains(win.geometry()), win.geometry()
    finally:
        win.close()
