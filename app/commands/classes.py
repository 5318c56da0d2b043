"""``main.py classes list|add|remove|set``: the project's classes, headless (``app.services.project_classes``)."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from app.cli import CommandError
from app.commands import open_database_or_fail, project_to_start
from app.services.wording import plural

if TYPE_CHECKING:
    from app.services.project_classes import ClassList


def _show(listing: "ClassList") -> None:
    source = {"project": "the project's own list",
              "model": f"the active classifier's ({listing.model}); the first change saves a copy",
              "none": "no list and no classifier model"}[listing.source]
    # counted with ``plural``: it printed "patches  (1 labels)" and "1 classes" (a session-51 audit)
    print(f"{plural(len(listing.names), 'class', 'classes')}, {source}:")
    for i, name in enumerate(listing.names, 1):
        key = str(i) if i <= 9 else " "
        print(f"  {key}  {name}  ({plural(listing.in_use.get(name, 0), 'label')})")
    if listing.routed:
        print(f"images whose routing rule names {', '.join(listing.routed)} offer its classes first, then those this "
              "list adds beyond the active classifier's")
    extra = {n: c for n, c in listing.in_use.items() if n not in listing.names}
    if extra:
        print("labelled but not on the list: " + ", ".join(f"{n} ({c})" for n, c in sorted(extra.items())))


def run(args: argparse.Namespace) -> int:
    from app.services import project_classes as pc
    from app.services.model_catalog import ensure_bundled
    from database import DatabaseError

    verb = args.classes_command
    try:   # names that cannot be on a list are refused before any database is opened (or made)
        named = pc.validate(args.names) if verb in ("add", "set") else ()
    except pc.ClassListError as exc:
        raise CommandError(str(exc)) from None
    listed: list[str] = []
    # a list written starts a project; refused after all, it leaves none behind. Either closes the database.
    with project_to_start(args.db) if verb in ("add", "set") else open_database_or_fail(args.db) as db:
        try:
            ensure_bundled(db)   # the bundled classifier's classes are the list until the project saves its own
            before = pc.read(db)
            if verb == "list":
                after = before
            elif verb == "add":
                after = pc.add(db, args.names)
                listed = [n for n in named if n in before.names]
            elif verb == "remove":
                after = pc.remove(db, args.names)
            else:
                after = pc.save(db, args.names)
        except (pc.ClassListError, DatabaseError) as exc:
            raise CommandError(str(exc)) from None
    dropped = before.dropped_in_use(after.names) if verb != "list" else {}
    _show(after)
    for name in listed:
        print(f"note: {name!r} is on the list already")
    for name, count in dropped.items():
        print(f"note: {count} labels keep {name!r}; it is no longer offered")
    return 0
