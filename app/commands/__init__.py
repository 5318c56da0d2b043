"""Handlers of the command-line subcommands (composition of services per command)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.cli import CommandError

if TYPE_CHECKING:
    from database import Database


def open_database_or_fail(url: str, starts: bool = False) -> "Database":
    """The database a command works on, or ``CommandError`` with the reason (the CLI says it, exit 2). A SQLite file
    that does not exist is refused where ``--db`` names it (``refuse_missing_project``: a mistyped path answered
    "0 classes" or a fresh list of bundled models and left an empty project there, the review of a session-49 fix),
    unless the command ``starts`` a project (it writes one: ``classes set``, ``routing set``): made then; the station's
    own database in its data folder is made as a fresh station makes it. A new file is said."""
    from app.paths import station_database_url
    from database import DatabaseError, open_database
    from database.engine import sqlite_file
    if url != station_database_url() and not starts:   # INSPECTION_STATION_DB is named as --db is
        refuse_missing_project(url)
    new_file = sqlite_file(url)
    new_file = new_file if new_file is not None and not new_file.exists() else None
    try:
        db = open_database(url)
    except DatabaseError as exc:
        raise CommandError(str(exc)) from None
    if new_file is not None:  # a mistyped --db starts a project here: said, not only logged as a migration
        print(f"a new, empty project database was created at {new_file.resolve()}")
    return db


def refuse_missing_project(url: str) -> None:
    """``CommandError`` where ``url`` names a SQLite file that does not exist, for a command that only works on labels
    or images a project already holds (export, import, audit, retrain, the worker, ``db current``): it made a new,
    empty database there and then said only that nothing was indexed, so a mistyped ``--db`` read as a project that had
    lost its labels, and left a file behind (a session-48 audit). Commands that start a project (``prelabel``, the
    station, ``db upgrade``) create it."""
    from database.engine import sqlite_file
    missing = sqlite_file(url)
    if missing is not None and not missing.exists():
        raise CommandError(f"no database at {missing} (nothing was created; check --db, or start a project there: "
                           "'prelabel FOLDER', the station, or 'db upgrade' creates one)")


def open_project_or_fail(url: str) -> "Database":
    """``open_database_or_fail`` for a command that needs a project that exists (``refuse_missing_project``)."""
    refuse_missing_project(url)
    return open_database_or_fail(url)
