"""A station command run as a child process, with the database URL in its environment.

A PostgreSQL URL may carry a password, and a process's command line is readable by every local
user (``ps``); the environment is not. The child's ``main.py`` reads the URL from
``INSPECTION_STATION_DB`` when no ``--db`` is given (``app.paths.default_database_url``).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from app.paths import REPO_ROOT
from database.processes import pid_alive

DB_ENV = "INSPECTION_STATION_DB"
HOME_ENV = "INSPECTION_STATION_HOME"


@dataclass(frozen=True)
class ChildCommand:
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)  # added to the parent's environment

    def environment(self) -> dict[str, str]:
        """The child's environment: the parent's, with this command's additions, and every folder the station names
        by a relative path made absolute, since the child runs in the repository's folder: a relative data folder
        would be another one there, and a relative ``INSPECTION_STATION_ARTIFACTS`` or local side of
        ``INSPECTION_PATH_MAP`` sent the station and its worker to two folders (a session-51 audit: the worker wrote
        anomaly maps where the station never looked)."""
        from app.services.artifacts import ENV_OVERRIDE as ARTIFACTS_ENV
        from database.path_map import ENV as PATH_MAP_ENV

        env = {**os.environ, **self.env}
        for name in (HOME_ENV, ARTIFACTS_ENV):
            if env.get(name):
                env[name] = absolute_path(env[name])
        if env.get(PATH_MAP_ENV):
            env[PATH_MAP_ENV] = absolute_path_map(env[PATH_MAP_ENV])
        return env


def absolute_path(path: str) -> str:
    """``path`` (``~`` spelt out) as a full path from this process's working folder."""
    return str(Path(path).expanduser().resolve())


def absolute_path_map(text: str) -> str:
    """A path map (``STORED=LOCAL; …``) with each relative local side made absolute; one that cannot be read, or whose
    local sides are all absolute, as it is (the child says why a broken one is not used). A side with a drive or a
    root is not relative: a drive's root ``D:/``, which the map keeps as ``D:``, is not absolute to
    ``PureWindowsPath`` and was resolved against the working folder (a session-51 review: ``/mnt/parts=D:/`` reached
    the child as ``/repo/D:``)."""
    from pathlib import PurePosixPath, PureWindowsPath

    from database.path_map import PathMap, PathMapError
    try:
        pairs = PathMap.parse(text).pairs
    except PathMapError:
        return text
    relative = [not (PurePosixPath(local).is_absolute() or PureWindowsPath(local).drive or PureWindowsPath(local).root)
                for _, local in pairs]
    if not any(relative):
        return text
    return "; ".join(f"{stored}={absolute_path(local) if rel else local}" for (stored, local), rel in zip(pairs, relative))


def station_command(db_url: str, *args: str) -> ChildCommand:
    """``python main.py ARGS`` against ``db_url``, the URL kept off the command line. A SQLite file named by a
    relative path is named by its full path: the child runs in the repository's folder, so a session-44 probe's
    ``--db sqlite:///line3.sqlite`` had the station on ./line3.sqlite and its worker on a new, empty database in the
    repository (pre-labels never came)."""
    return ChildCommand((sys.executable, str(REPO_ROOT / "main.py"), *args), {DB_ENV: absolute_sqlite(db_url)})


def absolute_sqlite(db_url: str) -> str:
    """``db_url`` with a relative SQLite file path made absolute (from this process's working folder); any other URL
    as it is."""
    from sqlalchemy.engine import make_url

    from database.engine import sqlite_file
    path = sqlite_file(db_url)
    if path is None or path.is_absolute() and not (make_url(db_url).database or "").startswith("~"):
        return db_url  # (a path from ~ is spelt out: a child started in another folder read ./~/…)
    return make_url(db_url).set(database=str(path.resolve())).render_as_string(hide_password=False)


def owner_tag() -> str:
    """"host pid" of this process, written where a run leaves work that only it may remove (``owner_gone``)."""
    import socket
    return f"{socket.gethostname()} {os.getpid()}"


def owner_gone(tag: str) -> bool | None:
    """Whether the process an ``owner_tag`` names has ended: True or False for one of this machine, None where that
    cannot be told (another machine's on a shared disk, or a text that is no tag)."""
    import socket
    parts = tag.split()
    if len(parts) != 2 or not parts[1].isdigit() or parts[0] != socket.gethostname():
        return None
    return not pid_alive(int(parts[1]))


def abandoned(folder: Path, owner_file: str, stale_s: float) -> bool:
    """Whether ``folder``, left by a run that names itself in ``folder/owner_file`` (``owner_tag``), belongs to no
    living run: its owner was a process of this machine that has ended, or it has no owner file (an older version's)
    and was untouched for ``stale_s``. Another machine's, and a living run's, are never abandoned. The one rule of the
    export's and the retraining's sweeps of what killed runs left."""
    import time
    try:
        owner = (folder / owner_file).read_text(encoding="utf-8")
    except OSError:
        owner = ""
    gone = owner_gone(owner)
    if gone is not None:
        return gone
    try:
        return not owner.strip() and time.time() - folder.stat().st_mtime >= stale_s
    except OSError:
        return False
