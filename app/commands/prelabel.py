"""``python main.py prelabel FOLDER``: index a folder and pre-label it headless, with a progress bar.

Runs the job in this process through the same ``Worker`` code a standing worker uses, so the
CLI, the GUI's worker process and a GPU server all store identical results.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from app.cli import FAMILIES, CommandError
from app.commands import open_database_or_fail
from app.services.wording import agree, plural

if TYPE_CHECKING:
    from app.services.routing import Routing
    from database.dto import ImageInfo


def _families(text: str) -> list[str]:
    chosen = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in FAMILIES]
    if unknown or not chosen:
        raise CommandError(f"--families: unknown {', '.join(unknown) or 'empty list'}; "
                           f"choose from {', '.join(FAMILIES)}")
    return chosen


def routed_images(db, images: Sequence[ImageInfo], families: list[str], routing: Routing) -> dict[str, list[int]]:
    """Per family asked for (in the catalogue's order): the images ``routing`` (the project's) gives it."""
    from app.services.prelabel import routed_groups

    out: dict[str, list[int]] = {f: [] for f in FAMILIES if f in families}
    for (fams, _named), ids in routed_groups(db, images, families, routing).items():
        for family in fams:
            out[family].extend(ids)
    return out


def known_failures_only(db, job_id: int, known_bad: set[int]) -> bool:
    """Whether every image the job failed on had already failed before this run (a re-run of a
    folder whose only unlabelled images are broken files is not a failure of this run)."""
    from database.states import ItemStatus

    failed = {it.image_id for it in db.jobs.items(job_id, status=ItemStatus.FAILED)}
    return bool(failed) and failed <= known_bad


OUT_OF_DOMAIN_SHOWN = 5  # example lines printed per run; the report lists every one


def print_out_of_domain(counts: dict[str, int], images: list[dict[str, Any]]) -> None:
    """Say on stderr how many images each family calls out of domain, and why for the first few: the report's
    counts alone left a headless run saying "4 images pre-labelled" over answers the station withholds."""
    if not any(counts.values()):
        return
    print("out of domain (their answers are withheld; the report's out_of_domain_images says why for each): "
          + ", ".join(f"{f} {n}" for f, n in counts.items() if n), file=sys.stderr)
    for item in images[:OUT_OF_DOMAIN_SHOWN]:
        print(f"  {item['path']} ({item['family']}): {item['why'] or 'no reason stored'}", file=sys.stderr)
    if len(images) > OUT_OF_DOMAIN_SHOWN:
        print(f"  … and {len(images) - OUT_OF_DOMAIN_SHOWN} more", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from app.services.artifacts import MapsUnwritable
    from app.services.flags import OUT_OF_DOMAIN_BELOW
    from app.services.indexing import FolderIndexError, index_folder, renamed_away_note, renamed_note
    from app.services.prelabel import (
        NEWER_SCHEMA_EXIT,
        PRELABEL,
        PrelabelError,
        failed_images,
        job_status,
        project_routing,
        submit_routed_prelabel,
        why_nothing_to_run,
    )
    from app.worker import Worker, WorkerOptions
    from database.dto import ImageQuery
    from database.errors import DatabaseError, SchemaChangedError
    from inference.device import prepare_inference_process
    from inference.training.common import Progress

    families = _families(args.families)
    if args.batch_size < 1:
        raise CommandError("--batch-size must be at least 1")
    report_path = Path(args.report).expanduser() if args.report else None  # one path for the check and the write
    if report_path is not None:  # said before the run (a session-44 probe: a traceback once every image had run)
        if report_path.is_dir() or not report_path.parent.is_dir() or not os.access(report_path.parent, os.W_OK):
            raise CommandError(f"--report {args.report}: cannot be written there (give a file in a folder that "
                               "exists and this account may write to)")
    asked = Path(args.folder).expanduser()
    if not asked.exists():  # said before the database is opened: a refused run made or migrated one first
        raise CommandError(f"{args.folder}: folder not found")
    if not asked.is_dir():
        raise CommandError(f"{args.folder}: not a folder")
    prepare_inference_process(getattr(args, "threads", 1))
    start = time.monotonic()
    db = open_database_or_fail(args.db, starts=True)
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
        print(f"indexed {plural(report.files, 'image')} in {report.root} ({len(report.added)} new, "
              f"{len(report.changed)} changed, {report.missing} missing"
              + (f", {len(report.moved)} moved or renamed with their labels" if report.moved else "")
              + (f"; {plural(len(report.set_aside), 'reviewed image')} whose file changed "
                 + agree(len(report.set_aside), "is unreviewed again, its label",
                         "are unreviewed again, their labels") + " kept in the history" if report.set_aside else "")
              + f") in {report.seconds:.1f} s",
              file=sys.stderr)
        if report.renamed_from is not None:
            folder = db.folders.get(report.folder_id)
            print(f"note: {renamed_note(folder.name if folder else report.root, report.renamed_from)}", file=sys.stderr)
        if report.renamed_away is not None:
            print(f"note: {renamed_away_note(report.renamed_away)}", file=sys.stderr)
        if report.trace is not None:
            print(report.trace.summary(), file=sys.stderr)
        # Open jobs already holding this folder's images (a run interrupted or killed, a station's automatic job) are
        # taken up, and their images not queued again: a re-run queued them in a new job and left the old one open
        # for good, a later worker claiming each image twice (a session-47 audit).
        rows = db.images.query(ImageQuery(folder_id=report.folder_id))  # the folder's images, read once before the run
        folder_images = {im.id: im.rel_path for im in rows}
        taken = [j for j in db.jobs.open_jobs_holding(PRELABEL, list(folder_images))
                 if set(j.params.get("families", ())) <= set(families)]
        for open_job in taken:
            print(f"taking up job {open_job.id} ({', '.join(open_job.params.get('families', ()))}), still open from an "
                  "earlier run", file=sys.stderr)
        # no job when every image has its answers: a re-run added a job of 0 images per family set, pushing real
        # ones out of the Jobs panel's newest 20 (a session-47 audit)
        # only the jobs taken up count as the images' waiting place: this run's worker runs them (the review)
        # The rules are read once for the run: they queue the jobs, say why none was queued and count the answers
        # (each read them again).
        routing = project_routing(db)
        job_ids = [j.id for j in taken] + submit_routed_prelabel(
            db, folder_id=report.folder_id, families=families, skip_empty=True, skip_waiting=True,
            waiting_in=[j.id for j in taken], routing=routing)
        params = {j: job.params for j in job_ids if (job := db.jobs.get(j)) is not None}  # families and model versions of each job
        if not job_ids:  # no images, none routed, or every answer there (a session-46 probe: said to be the routing's)
            print(why_nothing_to_run(db, report.folder_id, families, routing), file=sys.stderr)
        elif len(job_ids) > 1:
            print("model routing: "
                  + "; ".join(f"job {j}: {', '.join(params[j]['families'])}" for j in job_ids),
                  file=sys.stderr)

        def statuses() -> list:
            return [job_status(db, j) for j in job_ids]

        # a job taken up from a killed run holds images that run did: this run's bar leaves them out, and its count
        # and rate are its worker's own (its rate read 72 images/s for 39 images in 2.2 s: a session-48 probe)
        begun = statuses()
        shown = sum(s.done + s.failed for s in begun)
        bar = Progress(sum(s.total for s in begun) - shown, desc="pre-labelling", disable=not job_ids)

        def on_batch(*_) -> None:
            nonlocal shown
            now = statuses()
            processed = sum(s.done + s.failed for s in now)
            bar.update(processed - shown, failed=sum(s.failed for s in now))
            shown = processed

        # Images that failed in an earlier run are queued again (they have no prediction); if they
        # are all this run had and fail again, nothing went wrong now: see known_failures_only.
        known_bad = {im.id for im in rows if im.error}
        worker = Worker(db, WorkerOptions(device=args.device, batch_size=args.batch_size,
                                          threads=getattr(args, "threads", 1), jobs=tuple(job_ids)))
        worker.install_signal_handlers()
        try:
            stats = worker.run(until=lambda: all(s.finished for s in statuses()), on_batch=on_batch)
        finally:
            bar.close()
        final = statuses()
        seconds = time.monotonic() - start
        failed = [f for j in job_ids for f in failed_images(db, j)]
        folder_ids = list(folder_images)
        # Per family the jobs ran: this folder's images whose answer that counts is there, and those it calls out
        # of domain. Not every answer of the jobs' versions: a version the routing no longer gives an image to kept
        # its old answer there (seen: 10 bottles counted out of domain by the tile anomaly model while the bottle
        # model, which the rules name for them, calls all 10 in domain).
        # Every family asked for, in the catalogue's order, over the images this run's routing gives it: counted over
        # the families this run's jobs ran, an image a rule no longer gives a family kept counting for it, and a
        # family no job ran here lost its key while the station still flagged its answers (a session-46 probe).
        given = routed_images(db, rows, families, routing)
        counting = {f: db.predictions.current_for_images(ids, f) for f, ids in given.items()}
        predicted = {f: len(preds) for f, preds in counting.items()}
        not_routed = len(set(folder_ids) - {i for ids in given.values() for i in ids})
        outside = {f: [p for p in preds.values() if p.in_domain is not None and p.in_domain < OUT_OF_DOMAIN_BELOW]
                   for f, preds in counting.items()}
        # this run's own worker's images, not the jobs' counts since the start: a worker of the station on the same
        # jobs meanwhile had its images counted "in this run" and in the rate (a session-51 audit: "112 in this run"
        # and a rate over 120 images while the station's worker did 80 of them)
        processed = sum(stats.finished.values())
        outside_counts = {f: len(ids) for f, ids in outside.items()}
        # Each of them, with why (inference.domain_notes; null for answers stored before the note existed).
        outside_images = [{"path": folder_images[p.image_id], "family": f, "in_domain": round(p.in_domain, 4),
                           "why": p.domain_note} for f, preds in outside.items() for p in preds if p.in_domain is not None]
        summary = {
            "images": len(folder_ids),
            "not_routed": not_routed,  # images the routing gives none of the families asked for
            "predicted": predicted,
            "out_of_domain": outside_counts,
            "out_of_domain_images": outside_images,
            "failed": [{"path": p, "reason": r} for p, r in failed],
            "seconds": round(seconds, 3),
            # no rate where nothing ran: a run with nothing new read "0.0 images/s" (a session-49 audit)
            "images_per_second": round(processed / seconds, 3) if seconds > 0 and processed else None,
            "jobs": [{"id": s.job_id, "state": s.state, "error": s.error,
                      "families": params[s.job_id]["families"]} for s in final],
        }
        report_lost = False
        if report_path is not None:
            try:
                report_path.write_text(json.dumps(summary, indent=2), encoding="utf-8")
            except OSError as exc:  # gone or full since the check: the run stands, the report is said lost
                print(f"error: the report could not be written to {report_path} ({exc.strerror or exc})",
                      file=sys.stderr)
                report_lost = True
        for path, reason in failed:
            print(f"failed: {path}: {reason}", file=sys.stderr)
        print_out_of_domain(outside_counts, outside_images)
        code = 0
        for status in final:
            job_id = status.job_id
            if status.state == "failed" and known_failures_only(db, job_id, known_bad):
                print(f"job {job_id}: nothing new to pre-label; the {plural(status.failed, 'image')} queued again had "
                      "failed in an earlier run and failed again for the reasons above", file=sys.stderr)
                continue
            mine = stats.finished.get(job_id, 0)
            others = max(0, status.done + status.failed - mine)
            print(f"job {job_id} {status.state}: {plural(status.done, 'image')} pre-labelled, {status.failed} failed"
                  + (f" ({mine} in this run, {others} by earlier runs or other workers)" if others else ""),
                  file=sys.stderr)
            if not status.finished:  # stopped by Ctrl-C / SIGTERM: claims were given back
                print(f"interrupted: job {job_id} keeps its {status.total - status.done - status.failed} "
                      f"remaining images queued; `python main.py worker --once --db …` finishes it",
                      file=sys.stderr)
                code = 130
            elif status.state == "cancelled":
                code = 130
            elif status.state == "failed" and status.done == 0 and status.total and code == 0:
                code = 1
        if summary["images_per_second"] is not None:
            print(f"{summary['images_per_second']} images/s", file=sys.stderr)
        return 2 if report_lost and code == 0 else code  # a script asked for the report: its absence is a failure
    except SchemaChangedError:   # a newer version upgraded the database meanwhile: the worker said so and stopped
        return NEWER_SCHEMA_EXIT
    except (DatabaseError, PrelabelError) as exc:   # a refused request, or routing rules that cannot be read
        raise CommandError(str(exc)) from None
    except MapsUnwritable as exc:
        raise CommandError(f"{exc}; the images stay queued (none was failed for it): "
                           "`python main.py worker --once` finishes them once it can be written") from None
    finally:
        db.close()
