"""A child process of the station (its worker, a retraining) opens the database the station opened."""
from __future__ import annotations

from pathlib import Path

from app.services.child_command import DB_ENV, HOME_ENV, station_command


def test_a_relative_sqlite_path_and_data_folder_reach_the_child_as_full_paths(tmp_path: Path, monkeypatch) -> None:
    """Found by a session-44 probe: run from a folder with ``--db sqlite:///line3.sqlite``, the station opened
    ./line3.sqlite while its worker, started in the repository's folder with the same URL, made a new, empty database
    there; pre-labels never came. The same held for a relative INSPECTION_STATION_HOME."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(HOME_ENV, "home")
    env = station_command("sqlite:///line3.sqlite", "worker").environment()
    assert env[DB_ENV] == f"sqlite:///{tmp_path / 'line3.sqlite'}"
    assert env[HOME_ENV] == str(tmp_path / "home")
    for url in ("sqlite:////abs/s.sqlite", "sqlite://", "postgresql+psycopg://u:pw@h/db"):
        assert station_command(url, "worker").environment()[DB_ENV] == url
