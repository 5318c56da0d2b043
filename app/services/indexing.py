"""Adding a folder to the station: record every image in it, incrementally.

Re-adding a folder hashes only files that are new or whose size or modification time changed;
the database keeps rows for files that disappeared (marked missing, labels kept) and drops
predictions of files whose content changed (``ImageRepository.sync``). Everything is written
in one transaction at the end, so an interrupted index leaves the previous state intact, with
one exception that makes a large new folder usable at once: with ``on_first`` the first
``first_batch`` new files (in name order) are committed as soon as they are hashed and
``on_first`` is called, so the gallery shows a first page while the rest indexes (an
interruption then leaves those new rows, which the next index simply finds unchanged).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from app.services.file_scan import KnownFile, hash_files, plan_changes, walk_images
from app.services.trace import (
    TraceReport,
    TraceRuleError,
    apply_trace_rule,
    load_trace_rule,
)
from database.dto import FileEntry

if TYPE_CHECKING:
    from database.engine import Database

# (done, total, phase) with phase "scan" (total unknown: 0) or "hash".
ProgressFn = Callable[[int, int, str], None]


class FolderIndexError(Exception):
    """A folder that cannot be indexed (missing, not a folder), with the reason."""


@dataclass(frozen=True)
class IndexReport:
    folder_id: int
    root: str
    files: int          # image files found on disk
    added: tuple[int, ...]
    changed: tuple[int, ...]
    unchanged: int
    missing: int        # rows whose file has gone
    unreadable: tuple[str, ...]  # files that vanished or could not be read while hashing
    seconds: float
    trace: TraceReport | None = None  # serial/lot/station read by the project's trace rule (None: no rule)


FIRST_BATCH = 256  # one gallery page


def index_folder(db: "Database", folder: str | Path, progress: ProgressFn | None = None,
                 on_first: Callable[[int], None] | None = None, first_batch: int = FIRST_BATCH) -> IndexReport:
    """Register ``folder`` (if new) and bring its image rows up to date with the disk;
    ``on_first(folder_id)``: called once the first new files are in the database, while more
    than ``first_batch`` remain to be hashed."""
    start = time.monotonic()
    root = Path(folder).expanduser().resolve()
    if not root.exists():
        raise FolderIndexError(f"{root}: folder not found")
    if not root.is_dir():
        raise FolderIndexError(f"{root}: not a folder")
    info = db.folders.add(str(root))
    known = {path: KnownFile(*values) for path, values in db.images.known_files(info.id).items()}
    found = []
    for n, entry in enumerate(walk_images(root), 1):
        found.append(entry)
        if progress is not None and n % 500 == 0:
            progress(n, 0, "scan")
    plan = plan_changes(found, known)
    stream = on_first is not None and len(plan.new) > first_batch
    to_hash = [*(sorted(plan.new, key=lambda e: e.rel_path.lower()) if stream else plan.new), *plan.changed]
    entries: list[FileEntry] = [FileEntry(e.rel_path, e.size_bytes, e.mtime_ns) for e in plan.unchanged]
    unreadable: list[str] = []
    early: tuple[int, ...] = ()  # new rows committed for the first page (the final sync sees them unchanged)
    total = len(to_hash)
    on_done = (lambda done: progress(done, total, "hash")) if progress is not None else None
    for entry, digest in hash_files(root, to_hash, on_done):
        if digest is None:
            unreadable.append(entry.rel_path)
            entries.append(FileEntry(entry.rel_path, entry.size_bytes, entry.mtime_ns,
                                     error="file could not be read while indexing"))
        else:
            entries.append(FileEntry(entry.rel_path, entry.size_bytes, entry.mtime_ns, content_hash=digest))
        if stream and on_first is not None and len(entries) - len(plan.unchanged) == first_batch:
            early = db.images.sync(info.id, entries[len(plan.unchanged):], complete=False).added_ids
            on_first(info.id)
    result = db.images.sync(info.id, entries, complete=True)
    return IndexReport(trace=_trace(db, info.id),
        folder_id=info.id, root=str(root), files=len(found), added=tuple(sorted(early + result.added_ids)),
        changed=result.changed_ids, unchanged=result.unchanged - len(early), missing=result.missing,
        unreadable=tuple(unreadable), seconds=time.monotonic() - start,
    )


def _trace(db: Database, folder_id: int) -> TraceReport | None:
    """Apply the project's trace rule to the folder; a broken stored rule is reported, not fatal
    (the images are indexed either way)."""
    try:
        rule = load_trace_rule(db)
    except TraceRuleError as exc:
        return TraceReport(problems=(f"the project's trace rule cannot be used ({exc})",))
    return apply_trace_rule(db, folder_id, rule) if rule.active else None
