"""``python main.py models list|compare|promote|rollback``: champion and challenger, headless.

The same services as Project ▸ Models… (``ModelCatalog``, ``app.services.champion``), for stations
without a screen: ``compare ID`` prints the held-out comparison and the disagreement queue (with
``--run`` it first runs the missing predictions in this process, as ``prelabel`` does; without,
a standing worker does), ``promote ID`` makes a version active (or, where routing rules name the
version it was retrained from, names it in those rules: ADR 0060) and ``rollback FAMILY`` returns to
the version the active one replaced; both are recorded with ``--author`` (default: login name).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from app.cli import CommandError
from app.commands import open_database_or_fail
from app.services.wording import plural


def _open(url: str):
    return open_database_or_fail(url)


def run(args: argparse.Namespace) -> int:
    from app.services.artifacts import MapsUnwritable
    from app.services.champion import ComparisonError
    from app.services.model_catalog import ModelCatalog, ModelCatalogError, login_name
    from app.services.routing import RoutingError
    from database import DatabaseError

    db = _open(args.db)
    author = (getattr(args, "author", None) or "").strip()
    catalog = ModelCatalog(db, author=lambda: author or login_name())
    try:
        if args.models_command == "list":
            for r in catalog.rows():
                role = "active" if r.active else "challenger" if r.challenger else ""
                routed = f"  [routing: {', '.join(r.named_by)}]" if r.named_by else ""   # ADR 0059/0060
                note = r.files_note   # ADR 0062
                where = f"  [files missing: {r.path}]" if note == "missing" else f"  [files: {note}]" if note else ""
                print(f"{r.family:<10} {r.id:>4}  {role:<10} {r.name}{routed}{where}  {r.summary}")
        elif args.models_command == "promote":
            done = catalog.promote(args.version, args.note)
            print(f"{done.text} Recorded for {catalog.author()}.")
        elif args.models_command == "rollback":
            row = catalog.rollback(args.family, args.note)
            print(f"rolled back: {row.name} is the active {row.family} model again (recorded for {catalog.author()}).")
        else:
            return _compare(db, args)
    except (ModelCatalogError, ComparisonError, RoutingError, DatabaseError, MapsUnwritable) as exc:  # a locked file, a
        raise CommandError(str(exc)) from None  # maps folder `compare --run` cannot write: one line, exit 2
    finally:
        db.close()
    return 0


def _compare(db, args: argparse.Namespace) -> int:
    from app.services.champion import (
        COMPARE_LIMIT,
        LEARNT,
        LEARNT_NOTE,
        compare_status,
        failures_text,
        find_disagreements,
        held_out,
        submit_compare,
        trained_on_note,
    )

    limit = COMPARE_LIMIT if args.limit is None else args.limit  # --limit 0 was taken for the default
    if limit < 1:
        raise CommandError("--limit must be at least 1")
    version = db.model_versions.get(args.version)
    if version is None:
        raise CommandError(f"model version {args.version} does not exist")
    if args.run:
        jobs = submit_compare(db, version.id, limit)
        if jobs:
            from app.worker import Worker, WorkerOptions
            worker = Worker(db, WorkerOptions(device=args.device))
            worker.install_signal_handlers()
            worker.run(until=lambda: all(p.finished for p in compare_status(db, jobs)))
    result = find_disagreements(db, version.id, limit)
    figures = held_out(version)
    trained = trained_on_note(db.model_versions.get(result.champion_id), version)
    # the images not run by both yet go to a worker, with --json too (a session-44 probe: a script read "waiting": 6
    # for good, since only the printed form queued them)
    queued = submit_compare(db, version.id, limit) if result.waiting and not args.run else []
    if args.json:
        out: dict[str, Any] = {
            "family": result.family, "champion_id": result.champion_id, "challenger_id": result.challenger_id,
            "held_out": {"images": figures.images, "reference": figures.reference, "note": figures.note,
                         "rows": [{"metric": m, "reference": a, "challenger": b} for m, a, b in figures.rows]},
            "images": result.images, "compared": result.compared, "waiting": result.waiting, "failed": result.failed,
            "unreadable": result.unreadable,   # of the failed; the rest were not run as a model cannot be loaded
            "cannot_load": (None if result.cannot_load is None else
                            {"version": result.cannot_load[0], "why": result.cannot_load[1]}),
            "learnt": result.learnt, "trained_on": trained, "queued_jobs": queued,
            "disagreements": [{"image_id": d.image_id, "image": d.rel_path, "why": d.reason, "human": d.human,
                               "champion": d.champion.text, "challenger": d.challenger.text, "iou": d.iou,
                               "learnt": d.learnt}
                              for d in result.disagreements]}
        print(json.dumps(out, indent=1))
        return 0
    champion = db.model_versions.get(result.champion_id)
    print(f"{result.family}: champion {champion.name if champion else result.champion_id} · challenger {version.name}")
    if figures.rows:
        print(f"held out ({plural(figures.images, 'reviewed image')}): "
              + "; ".join(f"{m} {_f(a)} → {_f(b)}" for m, a, b in figures.rows)
              + (f" ({figures.reference} → challenger)" if figures.reference else ""))
    if figures.note:
        print(figures.note)
    if trained:
        print(trained)
    print(f"{plural(len(result.disagreements), 'disagreement')} in {result.compared} of "
          f"{plural(result.images, 'image')}")
    if result.learnt:
        print(f"{LEARNT_NOTE.format(n=result.learnt)}")
    for d in result.disagreements:
        human = f"  [human: {d.human}{', ' + LEARNT if d.learnt else ''}]" if d.human else ""
        print(f"  {d.rel_path}: {d.reason}  (champion {d.champion.text}; challenger {d.challenger.text}){human}")
    if result.waiting:
        print(f"{plural(result.waiting, 'image')} not run by both versions yet"
              + (f": queued for a worker (job {', '.join(map(str, queued))}); or add --run" if queued else ""),
              file=sys.stderr)
    failures = failures_text(result)
    if failures:
        print(failures, file=sys.stderr)
    return 0


def _f(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"
