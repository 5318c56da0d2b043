"""scripts/setup.sh says what it installs on a first run and stays silent when nothing changed.

A fake ``.venv/bin/python`` stands in for pip, so the test needs no network and no second venv.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(sys.platform == "win32" or shutil.which("bash") is None, reason="needs bash")

FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$(dirname "$0")/../../calls.log"
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
  echo "Collecting torch==2.13.0"
  echo "  Downloading torch-2.13.0-cp311-none-linux_x86_64.whl (180.2 MB)"
  echo "WARNING: file:///x is ignored: it is neither a file nor a directory"
  echo "Requirement already satisfied: numpy in ./.venv/lib/python3.11/site-packages"
  echo "Installing collected packages: torch"
  echo "Successfully installed torch-2.13.0"
  exit "${FAKE_PIP_EXIT:-0}"
fi
exit 0
"""


def _project(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    py = tmp_path / ".venv" / "bin" / "python"
    py.parent.mkdir(parents=True)
    py.write_text(FAKE_PYTHON)
    py.chmod(0o755)
    return tmp_path


def _run(project: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "scripts/setup.sh"], cwd=project, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **env})


def test_a_first_run_says_each_step_and_pips_progress_then_stays_quiet(tmp_path):
    project = _project(tmp_path)
    first = _run(project)
    assert first.returncode == 0, first.stderr
    out = first.stdout
    for step in ("1/3 torch", "2/3 the station", "3/3 checking", "setup: done"):
        assert step in out
    assert "  Downloading torch-2.13.0" in out and "(180.2 MB)" in out and "Successfully installed" in out
    assert "is ignored" not in out and "already satisfied" not in out  # pip's noise stays in the log
    calls = (project / "calls.log").read_text().splitlines()
    assert sum("pip install" in c for c in calls) == 2
    again = _run(project)
    assert again.returncode == 0 and again.stdout == "" and again.stderr == ""
    assert (project / "calls.log").read_text().splitlines() == calls  # nothing run the second time


def test_a_failing_pip_stops_setup_with_the_end_of_its_log(tmp_path):
    project = _project(tmp_path)
    failed = _run(project, FAKE_PIP_EXIT="1")
    assert failed.returncode == 1
    assert "pip failed (1/3 torch" in failed.stderr and "Successfully installed" in failed.stderr
    assert not (project / ".venv" / ".station-installed").exists()
