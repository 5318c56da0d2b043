"""``python main.py prelabel FOLDER``: index a folder and pre-label it headless, with a progress bar.

Runs the job in this process through the same ``Worker`` code a standing worker uses, so the
CLI, the GUI's worker process and a GPU server all store identical results.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from app.cli import FAMILIES, CommandError


def _families(text: str) -> list[str]:
    chosen = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in FAMILIES]
    if unknown or not chosen:
        raise CommandError(f"--families: unknown {', '.join(unknown) or 'empty list'}; "
                           f"choose from {', '.join(FAMILIES)}")
    return chosen


def run(args: argparse.Namespace) -> int:
    from app.services.indexing import FolderIndexError, index_folder
    from app.services.prelabel import PrelabelError, failed_images, job_status, submit_prelabel
    from app.worker import Worker, WorkerOptions
    from database.dto import ImageQuery
    from database.engine import open_database
    from database.errors import DatabaseError
    from inference.training.common import Progress

    families = _families(args.families)
    if args.batch_size < 1:
        raise CommandError("--batch-size must be at least 1")
    start = time.monotonic()
    try:
        db = open_database(args.db)
    except DatabaseError as exc:
        raise CommandError(str(exc)) from None
    try:
        hashing: list = []

        def on_index(done: int, total: int, phase: str) -> None:
            if phase != "hash":
                return
            if not hashing:
                hashing.append(Progress(total, desc="indexing"))
            hashing[0].update(1)

        try:
            report = index_folder(db, Path(args.folder), progress=on_index)
        except FolderIndexError as exc:
            raise CommandError(str(exc)) from None
        finally:
            for bar in hashing:
                bar.close()
        print(f"indexed {report.files} images in {report.root} ({len(report.added)} new, "
              f"{len(report.changed)} changed, {report.missing} missing) in {report.seconds:.1f} s",
              file=sys.stderr)
        try:
            job_id = submit_prelabel(db, folder_id=report.folder_id, families=families)
        except PrelabelError as exc:
            raise CommandError(str(exc)) from None
        status = job_status(db, job_id)
        bar = Progress(status.total, desc="pre-labelling")
        shown = 0

        def on_batch(*_) -> None:
            nonlocal shown
            s = job_status(db, job_id)
            bar.update(s.done + s.failed - shown, failed=s.failed)
            shown = s.done + s.failed

        worker = Worker(db, WorkerOptions(device=args.device, batch_size=args.batch_size))
        worker.install_signal_handlers()
        try:
            worker.run(until=lambda: job_status(db, job_id).finished, on_batch=on_batch)
        finally:
            bar.close()
        status = job_status(db, job_id)
        seconds = time.monotonic() - start
        failed = failed_images(db, job_id)
        folder_ids = {im.id for im in db.images.query(ImageQuery(folder_id=report.folder_id))}
        versions = db.jobs.get(job_id).params["model_versions"]
        predicted = {f: len(folder_ids & db.predictions.image_ids_with(int(v))) for f, v in versions.items()}
        summary = {
            "images": len(folder_ids),
            "predicted": predicted,
            "failed": [{"path": p, "reason": r} for p, r in failed],
            "seconds": round(seconds, 3),
            "images_per_second": round((status.done + status.failed) / seconds, 3) if seconds > 0 else None,
            "job": {"id": job_id, "state": status.state, "error": status.error},
        }
        if args.report:
            Path(args.report).write_text(json.dumps(summary, indent=2), encoding="utf-8")
        for path, reason in failed:
            print(f"failed: {path}: {reason}", file=sys.stderr)
        print(f"job {job_id} {status.state}: {status.done} images pre-labelled, {status.failed} failed, "
              f"{summary['images_per_second']} images/s", file=sys.stderr)
        if not status.finished:  # stopped by Ctrl-C / SIGTERM: claims were given back
            print(f"interrupted: job {job_id} keeps its {status.total - status.done - status.failed} remaining "
                  f"images queued; `python main.py worker --once --db …` finishes it", file=sys.stderr)
            return 130
        if status.state == "cancelled":
            return 130
        if status.state == "failed" and status.done == 0 and status.total:
            return 1
        return 0
    except DatabaseError as exc:
        raise CommandError(str(exc)) from None
    finally:
        db.close()
