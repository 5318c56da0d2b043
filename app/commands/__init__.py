"""Handlers of the command-line subcommands (composition of services per command)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.cli import CommandError

if TYPE_CHECKING:
    from database import Database


def open_database_or_fail(url: str) -> "Database":
    """The database a command works on, or ``CommandError`` with the reason (the CLI says it, exit 2)."""
    from database import DatabaseError, open_database
    try:
        return open_database(url)
    except DatabaseError as exc:
        raise CommandError(str(exc)) from None


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
