"""The retraining process the Models dialog starts: its environment."""
from __future__ import annotations

import json
import sys
from pathlib import Path

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
