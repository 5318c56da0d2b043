"""``python main.py worker --db URL``: a standing worker that claims pre-label jobs."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from typing import Callable

from app.cli import CommandError
from app.commands import open_project_or_fail

log = logging.getLogger("station.worker")
RETRY_S = 5.0
PARENT_CHECK_S = 2.0


def watch_parent(pid: int, stop: Callable[[], None], stopping: threading.Event,
                 every_s: float = PARENT_CHECK_S) -> threading.Thread:
    """Call ``stop`` once process ``pid`` (the station that started this worker) is gone.

    A station killed outright (SIGKILL, its X server gone at logout) never runs its close
    handler, and its worker used to go on running, orphaned, holding models in memory and
    claiming work. An orphan is re-parented, so a changed parent pid says the station is gone;
    the worker then stops as on SIGTERM: the batch in hand is finished or given back.
    """
    def run() -> None:
        while not stopping.wait(every_s):
            if os.getppid() != pid:
                log.warning("the station that started this worker (pid %d) is gone: stopping", pid)
                stop()
                return
    thread = threading.Thread(target=run, name="parent-watch", daemon=True)
    thread.start()
    return thread


def lower_priority(by: int) -> None:
    """Lower this process's CPU priority by ``by`` (the model threads it starts afterwards inherit it);
    a platform without ``os.nice`` (Windows) keeps its priority, with a note in the log."""
    if not by:
        return
    if not 0 < by <= 19:
        raise CommandError(f"--nice must be between 0 and 19, not {by}")
    if not hasattr(os, "nice"):
        log.info("--nice %d ignored: this platform has no process niceness", by)
        return
    os.nice(by)


def run(args: argparse.Namespace) -> int:
    from app.services.artifacts import MapsUnwritable
    from app.services.prelabel import NEWER_SCHEMA_EXIT
    from app.worker import Worker, WorkerOptions
    from database.errors import DatabaseError, SchemaChangedError
    from inference.device import prepare_inference_process

    if getattr(args, "batch_size", 8) < 1:   # 0 claimed nothing for good, and exited 0 (a session-48 probe)
        raise CommandError("--batch-size must be at least 1")
    if not getattr(args, "stale_after", 60.0) > 0:   # a negative one took every other worker for stale
        raise CommandError("--stale-after must be more than 0 seconds")
    lower_priority(getattr(args, "nice", 0))  # first: threads started later inherit it
    prepare_inference_process(getattr(args, "threads", 1))
    db = open_project_or_fail(args.db)
    options = WorkerOptions(device=args.device, batch_size=getattr(args, "batch_size", 8),
                            stale_after_s=getattr(args, "stale_after", 60.0), threads=getattr(args, "threads", 1))
    stopping = threading.Event()
    current: list[Worker] = []

    def stop(*_) -> None:
        stopping.set()
        for w in current:
            w.request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT) + ((signal.SIGBREAK,) if hasattr(signal, "SIGBREAK") else ()):
        signal.signal(sig, stop)
    parent = getattr(args, "exit_with_parent", None)
    if parent is not None:
        watch_parent(parent, stop, stopping)
    left: str | None = None  # the id of a worker that stopped on a database error, its claims not given back yet
    try:
        while not stopping.is_set():
            if left is not None:
                # Its claims (the batch on the models, the one decoding) could not be given back while the database
                # was away: given back untried now, not left "running" until they go stale and count an attempt (a
                # session-44 probe: 50-60 s of a false ETA after a server restart, an attempt each).
                try:
                    given = db.jobs.unregister_worker(left)
                except DatabaseError as exc:
                    log.error("database still unreachable, retrying in %.0f s: %s", RETRY_S, exc)
                    stopping.wait(RETRY_S)
                    continue
                log.info("gave back %d image(s) worker %s held when the database went away", given, left)
                left = None
            worker = Worker(db, options)
            current[:] = [worker]
            log.info("worker %s on %s (device %s)", worker.id, db.url, args.device)
            try:
                stats = worker.run(once=args.once)
            except MapsUnwritable as exc:  # its batch was given back untried and the job says why
                if args.once:
                    raise CommandError(str(exc)) from None
                log.error("%s; retrying in %.0f s", exc, RETRY_S)
                stopping.wait(RETRY_S)
                continue
            except SchemaChangedError:   # the worker said why; retrying cannot help (a worker of this version cannot
                return NEWER_SCHEMA_EXIT  # even open the database now), and the station's Jobs dock reads this status
            except DatabaseError as exc:
                if args.once:
                    raise CommandError(str(exc)) from None
                # A standing worker outlives a database hiccup (server restart, long lock).
                left = worker.id
                log.error("database error, retrying in %.0f s: %s", RETRY_S, exc)
                stopping.wait(RETRY_S)
                continue
            log.info("worker %s leaving: %d images predicted, %d failed, %d already done",
                     worker.id, stats.predicted, stats.failed, stats.skipped)
            if stats.seconds:  # where a slow station's time went: the models, or around them
                log.info("time by stage: %s", ", ".join(f"{k} {v:.1f} s" for k, v in stats.seconds.items()))
            break
        return 0
    finally:
        db.close()
