"""Export as a database job: queued by the GUI (or any client), run whole by a worker.

The job row carries plain JSON parameters, so the GUI that queues it and the worker that runs it
(maybe on another machine sharing the database) agree without sharing objects; progress and the
cancel request travel through the row, and the outcome lands in it as done, cancelled or failed
with the reason.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from app.services.export import ExportCancelled, ExportError, ExportOptions, export_database, parse_formats
from app.services.export_split import SplitSpec

if TYPE_CHECKING:
    from database import Database, JobInfo

EXPORT_KIND = "export"


def job_params(out: str | Path, options: ExportOptions, folder: str | int | None = None) -> dict[str, Any]:
    split = options.split
    return {
        "out": str(Path(out).expanduser().absolute()),
        "formats": list(options.formats),
        "split": None if split is None else {"train": split.train, "val": split.val, "test": split.test,
                                             "seed": split.seed},
        "overwrite": options.overwrite,
        "folder": folder,
    }


def options_from_params(params: Mapping[str, Any]) -> tuple[str, ExportOptions, str | int | None]:
    """Inverse of ``job_params``; a malformed row is an ExportError, not a crash of the worker."""
    try:
        split = params.get("split")
        options = ExportOptions(
            formats=parse_formats(params.get("formats") or "all"),
            split=None if not split else SplitSpec(float(split["train"]), float(split["val"]),
                                                   float(split["test"]), int(split.get("seed", 0))),
            overwrite=bool(params.get("overwrite", False)),
        )
        out = str(params["out"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"malformed export job parameters ({exc})") from None
    return out, options, params.get("folder")


def queue_export(db: Database, out: str | Path, options: ExportOptions,
                 folder: str | int | None = None) -> JobInfo:
    return db.jobs.create(EXPORT_KIND, job_params(out, options, folder))


def run_export_job(db: Database, job: JobInfo, worker_id: str, *, report_every_s: float = 1.0,
                   clock: Callable[[], float] = time.monotonic) -> str:
    """Run a claimed export job to its end; returns the status it was closed with."""
    last = {"progress": -float("inf"), "cancel": -float("inf")}

    def progress(done: int, total: int) -> None:
        now = clock()
        if done in (0, total) or now - last["progress"] >= report_every_s:
            db.jobs.set_progress(job.id, done, total)
            last["progress"] = now

    def cancelled() -> bool:
        now = clock()
        if now - last["cancel"] < report_every_s:
            return False
        last["cancel"] = now
        current = db.jobs.get(job.id)
        return current is None or current.cancel_requested

    try:
        out, options, folder = options_from_params(job.params)
        result = export_database(db, out, options, folder=folder, progress=progress, cancel=cancelled)
    except ExportCancelled:
        db.jobs.finish_job(job.id, worker_id, cancelled=True)
        return "cancelled"
    except ExportError as exc:
        db.jobs.fail_job(job.id, worker_id, str(exc))
        return "failed"
    db.jobs.finish_job(job.id, worker_id, result={
        "out": str(result.out), "exported": result.exported, "skipped": list(result.skipped),
        "split_counts": result.split_counts, "per_format": result.formats,
    })
    return "done"
