"""Shared test set-up: offscreen Qt, a private data folder, and the shared data sets' location."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# One numba pool size for the whole run, fixed before numba starts: numba re-reads its
# environment at each compilation and refuses a changed NUMBA_NUM_THREADS once its pool runs,
# and tests that start worker processes set 1 for those children.
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATASETS = ROOT.parent / "shared" / "datasets"


@pytest.fixture(autouse=True)
def _private_home(tmp_path_factory, monkeypatch):
    """Never touch the user's real data folder or database."""
    home = tmp_path_factory.mktemp("station_home")
    monkeypatch.setenv("INSPECTION_STATION_HOME", str(home))
    monkeypatch.delenv("INSPECTION_STATION_DB", raising=False)
    return home


def shared_dataset(name: str) -> Path:
    """Path of a shared data set, or skip the test with the reason."""
    path = SHARED_DATASETS / name
    if not path.is_dir():
        pytest.skip(f"needs ../shared/datasets/{name} (not present on this machine)")
    return path
