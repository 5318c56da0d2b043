"""``main.py db upgrade|current``: schema maintenance from the command line."""
from __future__ import annotations

import argparse
import sys

from database import DatabaseError, open_database
from database.engine import sqlite_file, sqlite_revision
from database.migrate import head_revision


def _fail(exc: DatabaseError) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 2


def upgrade(args: argparse.Namespace) -> int:
    """Migrate the database at ``--db`` to this version's schema (creating it if needed)."""
    file = sqlite_file(args.db)
    new = file is not None and not file.exists()  # a mistyped path made a new database and said only "(head)"
    try:
        db = open_database(args.db, migrate=True)
        try:
            print(f"{db.url}: schema at revision {db.revision()} (head)"
                  + (f"; a new, empty database was created at {file.resolve()}" if new and file else ""))
        finally:
            db.close()
    except DatabaseError as exc:
        return _fail(exc)
    return 0


def current(args: argparse.Namespace) -> int:
    """Print the schema revision without changing anything: a SQLite file that does not exist is said, not created
    (a session-44 probe: a mistyped path answered "revision (none) (empty …)", exit 0, and left a new folder and an
    empty database file there)."""
    missing = sqlite_file(args.db)
    if missing is not None and not missing.exists():
        print(f"error: no database at {missing} (nothing was created; 'db upgrade' or starting the station on it "
              "creates one)", file=sys.stderr)
        return 2
    head = head_revision()
    try:
        if missing is not None:  # a file: read as it is, nothing written (read-only media included)
            rev, shown = sqlite_revision(args.db), args.db
        else:
            db = open_database(args.db, migrate=False)
            try:
                rev, shown = db.revision(), db.url
            finally:
                db.close()
    except DatabaseError as exc:
        return _fail(exc)
    if rev is None:
        state = "empty: 'db upgrade' (or starting the station) creates the schema"
    elif rev == head:
        state = "up to date"
    else:
        state = f"older than this version's {head}: run 'db upgrade'"
    print(f"{shown}: revision {rev or '(none)'} ({state})")
    return 0

