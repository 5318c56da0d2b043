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
