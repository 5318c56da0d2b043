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
