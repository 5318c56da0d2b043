"""``main.py db upgrade|current``: schema maintenance from the command line."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from app.commands import refuse_missing_project
from app.services.station import in_use_refusal, upgrade_note
from app.services.wording import plural
from database import DatabaseError, open_database
from database.engine import sqlite_file, sqlite_revision
from database.errors import UpgradeDeclinedError
from database.migrate import head_revision


def _fail(exc: DatabaseError) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 2


def upgrade(args: argparse.Namespace) -> int:
    """Migrate the database at ``--db`` to this version's schema (creating it if needed)."""
    file = sqlite_file(args.db)
    new = file is not None and not file.exists()  # a mistyped path made a new database and said only "(head)"
    try:
        db = open_database(args.db, migrate=True, upgrade_ok=lambda pending: args.force or not pending.users)
        try:
            upgraded = upgrade_note(db.migration)
            print(f"{db.url}: schema at revision {db.revision()} (head)"
                  + (f"; a new, empty database was created at {file.resolve()}" if file is not None and new else "")
                  + (f". {upgraded}" if upgraded else ""))
        finally:
            db.close()
    except UpgradeDeclinedError as exc:   # others use it now: said with who, upgraded only with --force
        print(f"error: {in_use_refusal(exc, 'pass --force to upgrade anyway')}", file=sys.stderr)
        return 2
    except DatabaseError as exc:
        return _fail(exc)
    return 0


def current(args: argparse.Namespace) -> int:
    """Print the schema revision without changing anything: a SQLite file that does not exist is said, not created
    (a session-44 probe: a mistyped path answered "revision (none) (empty …)", exit 0, and left a new folder and an
    empty database file there)."""
    refuse_missing_project(args.db)  # a command that only reads or tidies creates none
    missing = sqlite_file(args.db)
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
    """Remove (or count) the map files no answer of this database refers to, in the folders only it writes: the
    project's maps folder where its marker names this project (another project may share a folder), and this
    station's folder beside a SQLite file where no other database file shares its name's stem. The folder in the user
    cache and ``INSPECTION_STATION_ARTIFACTS`` are shared by every database opened here: left alone, and said."""
    from app.services.artifacts import ENV_OVERRIDE, maps_folder_project, station_root
    from app.services.artifacts import sweep_maps as sweep
    from app.services.project_settings import load_project_settings, project_id
    from database import path_map

    if not args.older_than_days >= 0:
        print("error: --older-than-days must be 0 or more", file=sys.stderr)
        return 2
    refuse_missing_project(args.db)  # a command that only reads or tidies creates none
    try:
        db = open_database(args.db, migrate=False)
    except DatabaseError as exc:
        return _fail(exc)
    try:
        try:
            maps_folder, project = load_project_settings(db).maps_folder, project_id(db)
        except (DatabaseError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        roots: list[Path] = []
        if maps_folder:
            shared = Path(path_map.local(maps_folder))
            if maps_folder_project(shared) == project:
                roots.append(shared)
            else:
                print(f"{shared}: not swept (its marker does not name this project: another project's maps may be "
                      "there too; save the maps folder again in Settings if only this project writes there)",
                      file=sys.stderr)
        own, file = station_root(args.db), sqlite_file(args.db)
        if os.environ.get(ENV_OVERRIDE):
            print(f"{os.environ[ENV_OVERRIDE]}: not swept ({ENV_OVERRIDE}: every database opened here writes there)",
                  file=sys.stderr)
        elif file is None:
            print(f"{own}: not swept (this station's folder in the user cache: every database opened here without a "
                  "maps folder shares it)", file=sys.stderr)
        elif _shares_stem(file):
            print(f"{own}: not swept (another database file beside {file.name} has the same name's stem and the same "
                  "maps folder)", file=sys.stderr)
        else:
            roots.append(own)
        days = args.older_than_days   # may be a fraction ("0.5 days"): ``plural`` words whole counts
        days_said = plural(int(days), "day") if float(days).is_integer() else f"{days:g} days"
        for root in roots:
            done = sweep(root, db.predictions.map_refs, args.older_than_days * 86400, remove=not args.dry_run)
            verb = "would remove" if args.dry_run else "removed"
            print(f"{root}: {verb} {plural(done.files, 'map file')}, {done.bytes / 2**20:.1f} MiB, that no answer "
                  f"refers to (untouched for {days_said} or more)")
    finally:
        db.close()
    return 0


def _shares_stem(file: Path) -> bool:
    """Whether another SQLite file beside ``file`` has its name's stem (``station.sqlite`` and ``station.db`` both keep
    their maps in ``station-artifacts``)."""
    try:
        others = [p for p in file.parent.iterdir() if p != file and p.is_file() and p.stem == file.stem]
    except OSError:
        return True
    for other in others:
        try:
            with other.open("rb") as fh:
                if fh.read(16) == b"SQLite format 3\x00":
                    return True
        except OSError:
            return True
    return False
