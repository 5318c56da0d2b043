"""``python main.py worker --db URL``: a standing worker that claims pre-label jobs."""
from __future__ import annotations

import argparse
import logging
import signal
import threading

from app.cli import CommandError

log = logging.getLogger("station.worker")
RETRY_S = 5.0


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
    stopping = threading.Event()
    current: list[Worker] = []

    def stop(*_) -> None:
        stopping.set()
        for w in current:
            w.request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT) + ((signal.SIGBREAK,) if hasattr(signal, "SIGBREAK") else ()):
        signal.signal(sig, stop)
    try:
        while not stopping.is_set():
            worker = Worker(db, options)
            current[:] = [worker]
            log.info("worker %s on %s (device %s)", worker.id, db.url, args.device)
            try:
                stats = worker.run(once=args.once)
            except DatabaseError as exc:
                if args.once:
                    raise CommandError(str(exc)) from None
                # A standing worker outlives a database hiccup (server restart, long lock).
                log.error("database error, retrying in %.0f s: %s", RETRY_S, exc)
                stopping.wait(RETRY_S)
                continue
            log.info("worker %s leaving: %d images predicted, %d failed, %d already done",
                     worker.id, stats.predicted, stats.failed, stats.skipped)
            break
        return 0
    finally:
        db.close()
