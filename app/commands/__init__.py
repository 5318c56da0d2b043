"""Handlers of the command-line subcommands (composition of services per command)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from app.cli import CommandError

if TYPE_CHECKING:
    from database import Database


def _new_sqlite_file(url: str) -> "Path | None":
    """The SQLite file ``url`` names where it is not there yet (opening it makes it), else None."""
    from database.engine import sqlite_file
    file = sqlite_file(url)
    return file if file is not None and not file.exists() else None


def open_database_or_fail(url: str, starts: bool = False, say_new: bool = True) -> "Database":
    """The database a command works on, or ``CommandError`` with the reason (the CLI says it, exit 2). A SQLite file
    that does not exist is refused where ``--db`` names it (``refuse_missing_project``: a mistyped path answered
    "0 classes" or a fresh list of bundled models and left an empty project there, the review of a session-49 fix),
    unless the command ``starts`` a project (it writes one: ``classes set``, ``routing set``): made then; the station's
    own database in its data folder is made as a fresh station makes it. A new file is said.

    An older database is upgraded as ``db upgrade`` upgrades it: refused, in its words, while others use it now (the
    window asks then), else upgraded and said on stderr. Why: ``worker``, ``prelabel``, ``retrain`` and the rest upgraded
    it without a word under an older station still writing to it (a session-52 audit). The station's own worker is not
    refused for its window's connection: the window upgraded the database first, after asking."""
    from app.paths import station_database_url
    from app.services.station import in_use_refusal, upgrade_note
    from database import DatabaseError, open_database
    from database.errors import UpgradeDeclinedError
    if url != station_database_url() and not starts:   # INSPECTION_STATION_DB is named as --db is
        refuse_missing_project(url)
    new_file = _new_sqlite_file(url)
    try:
        db = open_database(url, upgrade_ok=lambda pending: not pending.users)
    except UpgradeDeclinedError as exc:
        raise CommandError(in_use_refusal(exc, upgrade_anyway(url))) from None
    except DatabaseError as exc:
        raise CommandError(str(exc)) from None
    upgraded = upgrade_note(db.migration)
    if upgraded:   # as the window and ``db upgrade`` say it (stderr: a command's output may be read by a script)
        print(f"note: {upgraded}", file=sys.stderr)
    if new_file is not None and say_new:  # a mistyped --db starts a project here: said, not only logged as a migration
        print(f"a new, empty project database was created at {new_file.resolve()}")
    return db


def upgrade_anyway(url: str) -> str:
    """How a command refused an upgrade of the database at ``url`` (others use it) may go ahead all the same: the
    ``db upgrade --force`` to run, with ``--db`` where ``url`` is not the default database, its password hidden,
    quoted for this machine's shell (``shell_join``). Why: the advice left the ``--db`` out, so followed as written
    ``db upgrade`` upgraded the default database (or made an empty one there) and the refused one stayed as it was (a
    session-52 audit)."""
    from app.paths import default_database_url
    from app.services.station import holds_password, shown_url
    from inference.shell_words import shell_join

    argv = ["db", "upgrade", "--force"]
    if url != default_database_url():
        argv += ["--db", shown_url(url)]
    secret = " (with its password where *** stands)" if holds_password(url) else ""
    return f"run `python main.py {shell_join(argv)}`{secret} to upgrade it anyway, then this command again"


@contextlib.contextmanager
def project_to_start(url: str) -> "Iterator[Database]":
    """``open_database_or_fail(url, starts=True)`` for a command that writes a project's list or rules: a SQLite file it
    made is said once the command succeeds, and removed when the command is refused after all (a name clashing with
    the bundled classifier's classes, a rule naming a version the project lacks: a new empty project was left behind,
    the review of a session-49 fix). The database is closed here as the block ends, whatever its end: the file is
    removed only once closed, and the callers close nothing."""
    import os

    new_file = _new_sqlite_file(url)
    new_folders = [] if new_file is None else [f for f in new_file.parents if not f.exists()]  # made for it, inner first
    db = open_database_or_fail(url, starts=True, say_new=False)
    try:
        with db:
            yield db
    except BaseException:
        if new_file is not None:
            for leftover in (new_file, new_file.with_name(new_file.name + "-wal"),
                             new_file.with_name(new_file.name + "-shm"), new_file.with_name(new_file.name + "-journal")):
                with contextlib.suppress(OSError):
                    os.remove(leftover)
            for folder in new_folders:
                with contextlib.suppress(OSError):
                    folder.rmdir()   # only when empty
        raise
    if new_file is not None:
        print(f"a new, empty project database was created at {new_file.resolve()}")


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
