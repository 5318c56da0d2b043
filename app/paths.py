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
    return station_database_url()


def station_database_url() -> str:
    """The station's own SQLite file in its data folder (what a fresh station makes), whatever
    ``INSPECTION_STATION_DB`` names."""
    # imported here: `main.py --help` imports this module, and SQLAlchemy at the top cost it a tenth of a second
    from sqlalchemy.engine import URL

    # built, not formatted: a data folder named "st?1" or "h%41x" put the database at /…/st or in /…/hAx, outside it
    # (SQLAlchemy reads "?" as the query and decodes "%41"; a session-45 probe)
    return URL.create("sqlite", database=(data_dir() / "station.sqlite").as_posix()).render_as_string(
        hide_password=False)


def cache_dir() -> Path:
    return data_dir() / "cache"
