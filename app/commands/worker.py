"""``python main.py worker --db URL``: a standing worker that claims pre-label jobs."""
from __future__ import annotations

import argparse
import logging

from app.cli import CommandError

log = logging.getLogger("station.worker")


def run(args: argparse.Namespace) -> int:
    from app.worker import Worker, WorkerOptions
    from database.engine import open_database
    from database.errors import DatabaseError

    try:
        db = open_database(args.db)
    except DatabaseError as exc:
        raise CommandError(str(exc)) from None
    options = WorkerOptions(device=args.device, batch_size=getattr(args, "batch_size", 8),
                            stale_after_s=getattr(args, "stale_after", 60.0))
    try:
        worker = Worker(db, options)
        worker.install_signal_handlers()
        log.info("worker %s on %s (device %s)", worker.id, db.url, args.device)
        stats = worker.run(once=args.once)
        log.info("worker %s leaving: %d images predicted, %d failed, %d already done",
                 worker.id, stats.predicted, stats.failed, stats.skipped)
    except DatabaseError as exc:
        raise CommandError(str(exc)) from None
    finally:
        db.close()
    return 0
