"""The retraining process the Models dialog starts: its environment, and closing over its registration."""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QPushButton, QWidget

from app.gui.retrain_runner import RetrainRunner
from app.services.child_command import ChildCommand


def test_the_retraining_child_gets_the_station_folders_as_full_paths(qtbot, tmp_path: Path, monkeypatch) -> None:
    """A session-51 review: RetrainRunner built the child's environment from the system's and the command's
    additions, not ChildCommand.environment, so a relative INSPECTION_STATION_ARTIFACTS and INSPECTION_STATION_HOME
    reached the retraining as given and it, started in the repository's folder, read other folders than the
    station's. The child gets them as full paths from the station's working folder, with the command's additions."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INSPECTION_STATION_ARTIFACTS", "maps")
    monkeypatch.setenv("INSPECTION_STATION_HOME", "home")
    out = tmp_path / "seen.json"
    names = ["INSPECTION_STATION_ARTIFACTS", "INSPECTION_STATION_HOME", "EXTRA", "PYTHONUNBUFFERED"]
    code = f"import json, os; open({str(out)!r}, 'w').write(json.dumps([os.environ.get(n) for n in {names!r}]))"
    runner = RetrainRunner()
    runner.start(ChildCommand((sys.executable, "-c", code), {"EXTRA": "kept"}))
    qtbot.waitUntil(lambda: not runner.running, timeout=20000)
    assert json.loads(out.read_text()) == [str(tmp_path / "maps"), str(tmp_path / "home"), "kept", "1"]


# A retraining stuck while it registers its version (a PostgreSQL row lock, a hung disk, a stopped process): it defers
# SIGTERM there, as the real command does, and never ends.
STUCK_REGISTERING = r'''
import json, signal, time
signal.signal(signal.SIGTERM, lambda *a: None)
print(json.dumps({"event": "stage", "stage": "register", "message": "registering clf-7", "version": "clf-7"}),
      flush=True)
time.sleep(3600)
'''


def _stuck(qtbot) -> tuple[RetrainRunner, int, threading.Timer]:
    """The runner on a child stuck while registering, and a watchdog that kills the child after 20 s (without the
    bounded wait, stop() returns only then)."""
    runner = RetrainRunner()
    runner.start([sys.executable, "-c", STUCK_REGISTERING])
    qtbot.waitUntil(lambda: runner.registering, timeout=20000)
    pid = runner.pid()
    assert pid is not None
    watchdog = threading.Timer(20.0, lambda: _kill(pid))
    watchdog.start()
    return runner, pid, watchdog


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_closing_over_a_registration_that_hangs_waits_a_bounded_time_with_the_events_going_on(qtbot) -> None:
    """A session-51 review: stop() waited in a loop on the GUI thread for as long as the registration took, never
    killing a registering process, so a child stuck there (a row lock, a hung disk, SIGSTOP) kept the Models window
    and the station from closing for good, the window frozen. The wait is bounded (REGISTER_WAIT_S), the events go on
    meanwhile, and the process is killed then, the runner saying the version may not be registered."""
    runner, pid, watchdog = _stuck(qtbot)
    runner.REGISTER_WAIT_S = 1.5
    failed: list[str] = []
    runner.failed.connect(failed.append)
    ticks: list[float] = []
    tick = QTimer()
    tick.timeout.connect(lambda: ticks.append(time.monotonic()))
    tick.start(100)
    started = time.monotonic()
    try:
        runner.stop()
    finally:
        tick.stop()
        watchdog.cancel()
    assert time.monotonic() - started < 10
    assert len(ticks) >= 5   # the GUI thread went on handling events while it waited
    assert not runner.running and _gone(pid)
    assert failed and "clf-7" in failed[0] and "may not be registered" in failed[0]


def test_close_anyway_ends_the_wait_for_a_registration(qtbot) -> None:
    """A person closing sees whose registration the close waits for, with Close anyway, which kills the process at
    once (a session-51 review: the question offered Yes or No, and nothing showed the wait)."""
    runner, pid, watchdog = _stuck(qtbot)
    parent = QWidget()
    qtbot.addWidget(parent)
    seen: list[str] = []

    def close_anyway() -> None:
        dialog = runner.wait_dialog
        if dialog is None:
            QTimer.singleShot(50, close_anyway)
            return
        seen.append(dialog.labelText())
        button = dialog.findChild(QPushButton)
        seen.append(button.text())
        button.click()
    QTimer.singleShot(300, close_anyway)
    started = time.monotonic()
    try:
        runner.stop(parent)
    finally:
        watchdog.cancel()
    assert time.monotonic() - started < 10   # REGISTER_WAIT_S is 60 s: the button ended it
    assert seen and seen[0].startswith("Waiting for clf-7's registration…") and "may not be registered" in seen[0]
    assert seen[1] == "Close anyway"
    assert not runner.running and _gone(pid) and runner.wait_dialog is None
