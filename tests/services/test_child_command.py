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


def test_a_relative_maps_folder_and_path_map_reach_the_child_as_full_paths(tmp_path: Path, monkeypatch) -> None:
    """A session-51 audit: with a relative INSPECTION_STATION_ARTIFACTS the station (in its start folder) and its
    worker (started in the repository's folder) used two anomaly-maps folders, the worker's maps never shown; a path
    map's relative local side was read from two folders the same way. Both reach the child as full paths."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INSPECTION_STATION_ARTIFACTS", "maps")
    monkeypatch.setenv("INSPECTION_PATH_MAP", "/mnt/parts=parts; /mnt/other=/srv/other")
    env = station_command("postgresql+psycopg://u@h/db", "worker").environment()
    assert env["INSPECTION_STATION_ARTIFACTS"] == str(tmp_path / "maps")
    assert env["INSPECTION_PATH_MAP"] == f"/mnt/parts={tmp_path / 'parts'}; /mnt/other=/srv/other"
    for kept in ("/mnt/parts=/srv/parts", "/mnt/parts=Z:\\parts", "not a map"):   # nothing relative, or unreadable
        monkeypatch.setenv("INSPECTION_PATH_MAP", kept)
        assert station_command("sqlite://", "worker").environment()["INSPECTION_PATH_MAP"] == kept


def test_a_path_map_side_with_a_drive_or_a_root_is_left_as_it_is(tmp_path: Path, monkeypatch) -> None:
    """A session-51 review: a Windows drive's root as the local side (``D:/``, kept as ``D:``) is not absolute to
    PureWindowsPath and was resolved against the working folder. A side with a drive or a root is left alone; only
    a relative one is made absolute."""
    from app.services.child_command import absolute_path_map

    monkeypatch.chdir(tmp_path)
    for kept in ("/mnt/parts=D:/", "/mnt/parts=D:\\", "/mnt/parts=D:", "/mnt/parts=\\\\server\\share",
                 "/mnt/parts=\\parts", "/mnt/parts=/srv/parts"):
        assert absolute_path_map(kept) == kept, kept
    assert absolute_path_map("/mnt/a=D:/; /mnt/b=parts") == f"/mnt/a=D:; /mnt/b={tmp_path / 'parts'}"
