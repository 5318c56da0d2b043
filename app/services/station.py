"""Opening the station's database for the GUI: migrate, and one clear sentence if it fails."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from database.engine import Database, Migration, PendingUpgrade
    from database.errors import UpgradeDeclinedError


class StationError(Exception):
    """The station cannot start on this database; ``str()`` is one sentence for the user. ``retry``: why trying again
    may open it (a lock another program holds, a server not answering yet), empty where it cannot help; ``variable``:
    the environment variable at fault where it is not the database's URL. A start-up box offers Retry and names what
    to change from these (a session-51 audit: it offered Retry for a URL that is no URL and blamed this computer's
    database for a broken ``INSPECTION_PATH_MAP``)."""

    def __init__(self, message: str, retry: str = "", variable: str | None = None) -> None:
        super().__init__(message)
        self.retry, self.variable = retry, variable


class UpgradeDeclined(StationError):
    """The person chose not to upgrade the database's schema (``ask_before_upgrade``): nothing was changed."""


def open_station(url: str, upgrade_ok: "Callable[[PendingUpgrade], bool] | None" = None) -> "Database":
    """The database at ``url``, migrated to this version; ``upgrade_ok`` is asked before an older schema is upgraded
    (``open_database``'s), a no being ``UpgradeDeclined``."""
    from database import path_map
    from database.engine import open_database
    from database.errors import (
        DatabaseError,
        LockedError,
        PathMapUnusableError,
        UnreachableError,
        UpgradeDeclinedError,
    )
    try:
        return open_database(url, migrate=True, upgrade_ok=upgrade_ok)
    except UpgradeDeclinedError as exc:
        raise UpgradeDeclined(str(exc)) from None
    except DatabaseError as exc:
        retry = ("another program may hold it" if isinstance(exc, LockedError) else
                 "the server may be starting, or the network coming back" if isinstance(exc, UnreachableError) else "")
        raise StationError(str(exc), retry, path_map.ENV if isinstance(exc, PathMapUnusableError) else None) from None


def upgrade_note(migration: "Migration | None") -> str | None:
    """What opening the database changed in its schema, in one sentence for the window and the command line, or None
    (nothing, or an empty database given its schema). Why: an older database was upgraded at start-up and said only in
    a log line, so the stations still on the older version were refused at their next start and nobody had been told
    why (a session-52 audit)."""
    if migration is None or migration.from_revision is None:
        return None
    return (f"The database was upgraded from schema {migration.from_revision} to {migration.to_revision}; stations "
            "running an older version must be updated to open it.")


def ask_before_upgrade(pending: "PendingUpgrade") -> bool:
    """Whether the window asks a person before it upgrades the schema: others use the database now (they would go on
    writing without the newer version's bookkeeping, a session-52 audit), or it is a server database (the stations
    sharing it that run an older version cannot open it afterwards). A file nobody else has open is upgraded and said
    (``upgrade_note``)."""
    return bool(pending.users) or pending.server


def in_use_consequence(anyway: str) -> str:
    """What an upgrade does to the older stations and workers using the database now, and what to do first: the one
    wording of the window's question (``upgrade_question``) and of ``db upgrade``'s refusal. ``anyway``: how to go
    ahead all the same there."""
    return ("Stations and workers running an older version would go on writing to it without what the newer version "
            "records, and could not open it again until they are updated. Close or update them first, or "
            f"{anyway}.")


def in_use_refusal(declined: "UpgradeDeclinedError", anyway: str) -> str:
    """An upgrade refused because others use the database now, naming them, in one line: ``db upgrade``'s refusal and
    every other command's (``app.commands.open_database_or_fail``). ``anyway``: how to go ahead all the same."""
    from database.engine import PendingUpgrade

    pending = declined.pending
    assert isinstance(pending, PendingUpgrade)
    return f"{declined} It is in use now by: {'; '.join(pending.users)}. {in_use_consequence(anyway)}"


def upgrade_question(pending: "PendingUpgrade", url: str) -> str:
    """The start-up question before an upgrade the window asks about (``ask_before_upgrade``), in plain words."""
    m = pending.migration
    text = (f"The database {shown_url(url)} has schema {m.from_revision}; this version of the station needs "
            f"{m.to_revision} and would upgrade it.")
    if pending.users:
        text += "\n\nIt is in use now by:\n" + "\n".join(f"• {u}" for u in pending.users)
        text += "\n\n" + in_use_consequence("upgrade anyway")
    else:
        text += ("\n\nIt is a server database: stations sharing it that run an older version could not open it "
                 "afterwards until they are updated.")
    return text + "\n\nQuit leaves the database as it is."


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


def new_database_note(url: str) -> str | None:
    """What a SQLite URL that answers will really be, where that is not an existing project: no file there yet (the next
    start creates a new, empty one: a typo in a shared file's name was reported as "answers", a session-47 audit), a
    relative path (read from wherever the station starts), an in-memory database (nothing kept). None otherwise."""
    from sqlalchemy.engine import make_url

    from database.engine import sqlite_file

    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - not a URL: database_problem says so
        return None
    name = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and (name in ("", ":memory:") or "mode=memory" in name
                                                  or parsed.query.get("mode") == "memory"):
        return "an in-memory database keeps nothing once the station closes"  # sqlite:///:memory: read "answers"
    path = sqlite_file(url)
    if path is None:
        return None
    if not path.is_absolute():
        return f"the path {path} is relative: it is read from the folder the station starts in; give the full path"
    if not path.exists():
        return (f"there is no database at {path} yet: the next start creates a new, empty project there; if you meant "
                "an existing shared file, check its name")
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
