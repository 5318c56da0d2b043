"""``main.py routing show|propose``: the project's model routing, headless.

Why: a line station may run without a window (a standing worker on PostgreSQL); its routing is a
project setting like any other, and the proposal the routing dialog makes from a folder's in-domain
scores (``app.services.routing_proposal``) is as useful there. ``propose`` prints the evidence and the
rules; ``--save`` stores them (merged into the rules in force, as the dialog does) and
``--remove-unrouted`` then removes the folder's answers of models the saved rules no longer run on its
images (``app.services.routing_answers``). ``set FILE`` replaces the rules with a JSON file's (rules
may name the version a family runs, ADR 0059); ``show --json`` prints them in that form.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from app.cli import CommandError
from app.commands import open_database_or_fail, project_to_start
from app.services.wording import agree, plural
from inference.shell_words import shell_join


def _show(routing) -> None:
    if not routing.rules:
        print("no model routing: every family runs on every image")
    for i, rule in enumerate(routing.rules, 1):
        named = rule.named
        runs = ", ".join(f"{f} ({named[f]})" if f in named else f for f in rule.families)
        print(f"  {i}. {rule.pattern} → {runs or '(skipped)'}")


def run(args: argparse.Namespace) -> int:
    from app.services.export_source import FolderNotFound, resolve_folder
    from app.services.project_settings import load_project_settings, save_routing
    from app.services.routing_answers import remove_unrouted_answers
    from app.services.routing_proposal import propose_routing
    from database import DatabaseError

    if args.routing_command == "set":  # the file said before the database is opened (or refused)
        path = Path(args.file)
        if path.is_dir():
            raise CommandError(f"{path} is a folder; give the rules' JSON file (`python main.py routing show --json "
                               "> routing.json` writes one to edit)")
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        from app.services.routing import load_routing
        try:   # read before any database is opened (or made): a file that is no routing leaves nothing behind
            rules = load_routing(path)
        except (ValueError, OSError) as exc:
            raise CommandError(str(exc)) from None
        with project_to_start(args.db) as db:   # rules written start a project; refused after all, none is left
            try:
                changed = save_routing(db, rules)
            except (ValueError, DatabaseError) as exc:  # a rule naming a version the project lacks (RoutingError)
                raise CommandError(str(exc)) from None
        _show(rules)
        print(f"saved: they apply to the next pre-label job; {plural(changed, 'answer')} re-marked as the "
              f"{agree(changed, 'one that counts', 'ones that count')}")
        return 0
    db = open_database_or_fail(args.db)
    try:
        current = load_project_settings(db).routing
        if args.routing_command == "show":
            if args.json:
                print(json.dumps(current.to_dict(), indent=2))
            else:
                _show(current)
            return 0
        folder = resolve_folder(db, args.folder)
        if folder is None:
            raise CommandError("name a folder")
        proposal = propose_routing(db, folder.id, current)
        print(proposal.text())
        merged = proposal.merged_into(current)
        print("rules with the proposal:")
        _show(merged)
        if not args.save:
            print("nothing saved (--save stores these rules)")
            return 0
        save_routing(db, merged)
        print("saved: they apply to the next pre-label job (`python main.py prelabel "
              f"{shell_join([folder.root_path])}` runs the models they name where they have not answered yet)")
        if args.remove_unrouted:
            gone = remove_unrouted_answers(db, folder.id, merged)
            print(f"{plural(gone, 'answer')} of models these rules do not run on the folder's images removed; "
                  "the folder re-flagged")
        return 0
    except (FolderNotFound, ValueError, DatabaseError) as exc:  # broken stored rules (RoutingError is a ValueError), storage
        raise CommandError(str(exc)) from None
    finally:
        db.close()
