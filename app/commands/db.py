"""``main.py db upgrade|current``: schema maintenance from the command line."""
from __future__ import annotations

import argparse
import os
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



def sweep_maps(args: argparse.Namespace) -> int:
    """Remove (or count) the map files of the project's maps folder and of this station's own folder beside a SQLite
    file that no answer refers to. This station's folder in the user cache is left alone: every database opened
    here without a maps folder shares it, and the answers of only one of them are known here."""
    from app.services.artifacts import ENV_OVERRIDE, station_root, store_for
    from app.services.artifacts import sweep_maps as sweep
    from app.services.project_settings import load_project_settings

    if not args.older_than_days >= 0:
        print("error: --older-than-days must be 0 or more", file=sys.stderr)
        return 2
    try:
        db = open_database(args.db, migrate=False)
        try:
            maps_folder = load_project_settings(db).maps_folder
            referenced = db.predictions.map_refs()
        finally:
            db.close()
    except (DatabaseError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    store = store_for(args.db, maps_folder)
    own = station_root(args.db)
    roots = [r for r in store.roots if r != own or sqlite_file(args.db) is not None or os.environ.get(ENV_OVERRIDE)]
    for left in (r for r in store.roots if r not in roots):
        print(f"{left}: not swept (this station's folder in the user cache: every database opened here without a "
              "maps folder shares it)", file=sys.stderr)
    for root in roots:
        done = sweep(root, referenced, args.older_than_days * 86400, remove=not args.dry_run)
        verb = "would remove" if args.dry_run else "removed"
        print(f"{root}: {verb} {done.files} map file(s), {done.bytes / 2**20:.1f} MiB, that no answer refers to "
              f"(untouched for {args.older_than_days:g} day(s) or more)")
    return 0
