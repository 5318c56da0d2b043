"""Where the station keeps its files, by each platform's conventions."""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "inspection-station"
REPO_ROOT = Path(__file__).resolve().parent.parent
RESOURCES = REPO_ROOT / "resources"
BUNDLED_MODELS = RESOURCES / "models"
SAMPLES = RESOURCES / "samples"


def data_dir() -> Path:
    """User data directory; ``INSPECTION_STATION_HOME`` overrides it (tests, portable installs)."""
    override = os.environ.get("INSPECTION_STATION_HOME")
    return Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def default_database_url() -> str:
    env = os.environ.get("INSPECTION_STATION_DB")
    if env:
        return env
    return f"sqlite:///{(data_dir() / 'station.sqlite').as_posix()}"


def cache_dir() -> Path:
    return data_dir() / "cache"
