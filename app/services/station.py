"""Opening the station's database for the GUI: migrate, and one clear sentence if it fails."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from database.engine import Database


class StationError(Exception):
    """The station cannot start on this database; ``str()`` is one sentence for the user."""


def open_station(url: str) -> "Database":
    from database.engine import open_database
    from database.errors import DatabaseError
    try:
        return open_database(url, migrate=True)
    except DatabaseError as exc:
        raise StationError(str(exc)) from None


def database_problem(url: str) -> str | None:
    """Why ``url`` cannot be opened now (one sentence), or None: a connection and a look at its schema, nothing
    written, nothing migrated. A SQLite file that does not exist yet is no problem (the next start creates it) and is
    not created here. Run off the GUI thread: a server may take its connect timeout to answer."""
    from database.engine import open_database, sqlite_file
    from database.errors import DatabaseError

    path = sqlite_file(url)
    if path is not None and not path.exists():
        return None
    try:
        open_database(url, migrate=False).close()
    except DatabaseError as exc:
        return str(exc)
    return None


def shown_url(url: str) -> str:
    """The database URL as a window may show it: any password masked (``database.errors.mask_url``)."""
    from database.errors import mask_url
    return mask_url(url)


def holds_password(url: str) -> bool:
    """Whether ``url`` carries a password (in its user part or as a ``password=`` parameter)."""
    return shown_url(url) != url


def path_map_problem(text: str) -> str | None:
    """Why a path map (``STORED=LOCAL; …``, ``database.path_map``, ADR 0065) cannot be used, or None."""
    from database.path_map import PathMap, PathMapError
    try:
        PathMap.parse(text)
    except PathMapError as exc:
        return str(exc)
    return None


def use_path_map(saved: str) -> str | None:
    """Take this computer's saved path map for this process and the workers it starts, unless the environment
    sets one (it wins); returns why a saved map was left out, or None."""
    import os

    from database.path_map import ENV
    if os.environ.get(ENV) or not saved.strip():
        return None
    problem = path_map_problem(saved)
    if problem is None:
        os.environ[ENV] = saved
    return problem
