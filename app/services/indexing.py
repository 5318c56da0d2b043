"""Adding a folder to the station: record every image in it, incrementally.

Re-adding a folder hashes only files that are new or whose size or modification time changed;
the database keeps rows for files that disappeared (marked missing, labels kept) and drops
predictions of files whose content changed (``ImageRepository.sync``) and sets their labels aside
into the history (``set_aside_labels``: the label described other pixels). A new file with the bytes of
one row whose file has gone (now or earlier) was moved or renamed inside the folder: that row
follows it (``ImageRepository.move``), so an inspector's labels stay on the image, not on a
missing row beside a new unreviewed one.

A folder can hold a million files (issue 22, ADR 0024), so the index streams: unchanged files
are only stat'ed and counted (re-opening an unchanged folder writes nothing), and new or
changed files are written in chunks of ``CHUNK`` as they are hashed, each chunk one
transaction. An interrupted index leaves the chunks written so far, which the next index
finds unchanged; rows are marked missing only after the whole folder was walked. With
``on_first`` the first ``first_batch`` new files (in name order) are written first and
``on_first`` is called, so the gallery shows a first page while the rest indexes.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from app.services.file_scan import FoundFile, KnownFile, WalkNotes, hash_files, plan_changes, walk_images
from app.services.trace import (
    TraceReport,
    TraceRuleError,
    apply_trace_rule,
    load_trace_rule,
)
from database.dto import FileEntry, FolderInfo, LabelChange
from database.errors import ConflictError, StaleLabelError
from database.states import ReviewState

log = logging.getLogger(__name__)

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
    restored: int = 0   # rows whose file came back after it had gone (unchanged: their flag cleared)
    skipped: tuple[str, ...] = ()  # folders and names the walk could not read, each with its reason (not indexed)
    moved: tuple[int, ...] = ()  # rows whose file was moved or renamed in the folder (same bytes): they followed it
    set_aside: tuple[int, ...] = ()  # reviewed images whose bytes changed: their label moved into the history
    renamed_from: str | None = None  # the folder was registered at this path, renamed on disk: it followed
    renamed_away: str | None = None  # the folder registered here was renamed on disk to this path and followed it;
    # this report is of a new folder at its old name


FIRST_BATCH = 256  # one gallery page
CHUNK = 20_000     # new or changed files per transaction (bounded memory at a million files)


def index_folder(db: "Database", folder: str | Path, progress: ProgressFn | None = None,
                 on_first: Callable[[int], None] | None = None, first_batch: int = FIRST_BATCH,
                 changes_only: bool = False) -> IndexReport:
    """Register ``folder`` (if new) and bring its image rows up to date with the disk;
    ``on_first(folder_id)``: called once the first new files are in the database, while more
    than ``first_batch`` remain to be hashed. ``changes_only``: a folder the disk shows unchanged is
    left as it is (no write, no trace rule): the window re-scans the open folder every few seconds."""
    start = time.monotonic()
    root = Path(folder).expanduser().resolve()
    if not root.exists():
        gone = db.folders.by_path(str(root))
        to = renamed_to(db, gone) if gone is not None else None
        if gone is None or to is None or not relocate_folder(db, gone, to):
            raise FolderIndexError(f"{root}: folder not found")
        # the open folder renamed on disk: the window follows it (it said "cannot be followed: folder not found")
        return replace(index_folder(db, to, progress, on_first, first_batch, changes_only), renamed_from=str(root))
    if not root.is_dir():
        raise FolderIndexError(f"{root}: not a folder")
    try:  # before anything is registered or moved: a folder that cannot be listed is not one whose files all went
        os.scandir(root).close()
        # nor one that can be listed but not entered (mode 644: each file's stat fails; a session-51 review)
        os.stat(os.path.join(root, os.curdir))
    except OSError as exc:
        raise cannot_read(root, exc) from None
    others = [f for f in db.folders.list() if PurePath(f.root_path) != PurePath(root)]
    renamed_from: str | None = None
    if db.folders.by_path(str(root)) is None:
        holder = next((f for f in others if PurePath(root).is_relative_to(f.root_path)), None)
        if holder is not None:  # its images are rows of that folder: a second row each (a session-44 probe)
            raise FolderIndexError(f"{root}: lies inside the indexed folder {holder.root_path} ({holder.name}); open "
                                   "that folder, which holds these images already (indexing this one too would give "
                                   "each image two rows, exported twice with whatever two labels they get)")
        renamed = renamed_folder(db, root, others)
        # its rows follow it (a session-45 probe: it came back as a new, unreviewed folder)
        if renamed is not None and relocate_folder(db, renamed, root):
            renamed_from = renamed.root_path
            others = [f for f in db.folders.list() if PurePath(f.root_path) != PurePath(root)]
    else:
        # a folder registered inside this one renamed in place: followed before the walk, or this folder's re-scan
        # took its files for its own, unreviewed (a session-46 probe)
        followed = False
        for f in others:
            if PurePath(f.root_path).is_relative_to(root) and not Path(f.root_path).exists():
                to = renamed_to(db, f)
                followed = to is not None and relocate_folder(db, f, to) or followed
        if followed:   # (read again only then: the window's re-scan runs every few seconds)
            others = [f for f in db.folders.list() if PurePath(f.root_path) != PurePath(root)]
    info = db.folders.add(str(root))
    inner = {PurePath(f.root_path).relative_to(root).as_posix(): f.name for f in others
             if PurePath(f.root_path).is_relative_to(root)}
    known = {path: KnownFile(*values) for path, values in db.images.known_files(info.id).items()}
    present = sum(1 for k in known.values() if not k.missing)  # before the plan, which takes the files it sees out
    files = 0
    notes = WalkNotes()

    def walk() -> Iterator[FoundFile]:
        nonlocal files
        for files, entry in enumerate(walk_images(root, notes, own_folders=inner), 1):
            if progress is not None and files % 500 == 0:
                progress(files, 0, "scan")
            yield entry
    try:
        plan = plan_changes(walk(), known, notes.unread_dirs)
    except OSError as exc:  # the folder itself stopped being readable since the check above: no row touched
        raise cannot_read(root, exc) from None
    for why in notes.skipped:  # said at an opening; a follower's re-scan every few seconds says it once in the log
        (log.debug if changes_only else log.warning)("%s: not indexed: %s", root, why)
    del known
    # (files still there unchanged are a clean-up's, not a rename's: a backup beside it must not take its row)
    if renamed_from is None and present and len(plan.changed) + len(plan.gone) >= max(3, present // 2 + 1) \
            and plan.unchanged <= present // 10:
        # most of its files changed or went: was it renamed and a new folder made at its name (``mv line3
        # line3_done`` while the line writes on into a new line3)? Its labels were set aside onto the new line's
        # files, and its renamed folder opened unreviewed (a session-46 probe)
        to = renamed_to(db, info)
        if to is not None and relocate_folder(db, info, to):
            if changes_only:  # the window's follower: it follows its folder to the new name
                return replace(index_folder(db, to, changes_only=True), renamed_from=str(root))
            return replace(index_folder(db, root, progress, on_first, first_batch), renamed_away=str(to))
    if changes_only and not (plan.new or plan.changed or plan.restored or plan.gone):
        return IndexReport(folder_id=info.id, root=str(root), files=files, added=(), changed=(),
                           unchanged=plan.unchanged, missing=0, unreadable=(), seconds=time.monotonic() - start,
                           skipped=tuple(notes.skipped))
    stream = on_first is not None and len(plan.new) > first_batch
    to_hash = [*(sorted(plan.new, key=lambda e: e.rel_path.lower()) if stream else plan.new), *plan.changed]
    # Restored rows (unchanged files back from missing) need only their flag cleared.
    pending: list[FileEntry] = [FileEntry(e.rel_path, e.size_bytes, e.mtime_ns) for e in plan.restored]
    unreadable: list[str] = []
    added: list[int] = []
    changed: list[int] = []
    # A new file with the bytes of a row whose file has gone was moved or renamed: the row follows it
    # (labels, history and predictions kept) instead of a new unreviewed row beside a missing one.
    vanished = plan.vanished
    moves: list[tuple[str, FileEntry]] = []
    moved: list[int] = []
    content_changed: list[int] = []
    restored = 0  # as the writes count them: a copy put back has a new mtime and reaches them as "changed"

    def write() -> None:
        nonlocal restored
        still_here(db, info.id, root)
        if moves:
            followed = db.images.move(info.id, moves)
            moved.extend(followed.values())
            pending.extend(e for _, e in moves if e.rel_path not in followed)  # its row went meanwhile: a new one
            moves.clear()
        result = db.images.sync(info.id, pending, complete=False)
        added.extend(result.added_ids)
        changed.extend(result.changed_ids)
        content_changed.extend(result.content_changed_ids)
        restored += result.restored
        pending.clear()
    new_files = set(plan.new) if vanished else frozenset()
    total = len(to_hash)
    on_done = (lambda done: progress(done, total, "hash")) if progress is not None else None
    for done, (entry, digest) in enumerate(hash_files(root, to_hash, on_done), 1):
        if digest is None:
            unreadable.append(entry.rel_path)
            pending.append(FileEntry(entry.rel_path, entry.size_bytes, entry.mtime_ns,
                                     error="file could not be read while indexing"))
        elif entry in new_files and digest in vanished:  # each vanished row follows one file at most
            moves.append((vanished.pop(digest), FileEntry(entry.rel_path, entry.size_bytes, entry.mtime_ns,
                                                          content_hash=digest)))
        else:
            pending.append(FileEntry(entry.rel_path, entry.size_bytes, entry.mtime_ns, content_hash=digest))
        if stream and on_first is not None and done == first_batch:
            write()
            on_first(info.id)
        elif len(pending) + len(moves) >= CHUNK:
            write()
    write()  # also when nothing changed: the folder's indexed_at moves
    still_here(db, info.id, root)
    missing = db.images.mark_missing(info.id, plan.gone)  # a moved row has its new path: not marked
    set_aside = set_aside_labels(db, content_changed)
    return IndexReport(trace=_trace(db, info.id),
        folder_id=info.id, root=str(root), files=files, added=tuple(sorted(added)),
        changed=tuple(sorted(changed)), unchanged=plan.unchanged, missing=missing,
        unreadable=tuple(unreadable), seconds=time.monotonic() - start, restored=restored,
        moved=tuple(sorted(moved)), set_aside=set_aside, skipped=tuple(notes.skipped), renamed_from=renamed_from,
    )


def cannot_read(root: Path, exc: OSError) -> FolderIndexError:
    """The refusal for a folder whose own listing fails (permissions changed, a share remounted): its rows are left
    as they are, since the files cannot be told gone (a session-51 audit: every image was marked missing)."""
    return FolderIndexError(f"{root}: cannot be read ({exc.strerror or exc})")


def renamed_note(name: str, renamed_from: str) -> str:
    """What the window and the commands say of a folder followed to its new name."""
    return (f"the folder '{name}' was registered at {renamed_from}, renamed on disk to this one: it follows, its "
            "images keep their labels and history, and it keeps the name routing rules and exports know it by")


def renamed_away_note(renamed_away: str) -> str:
    """What the window and the commands say where the folder registered at a path was renamed and a new one is there."""
    return (f"the folder registered here was renamed on disk to {renamed_away}: it followed, with its labels and "
            "history; the files here now are a new folder")


def still_here(db: "Database", folder_id: int, root: Path) -> None:
    """``FolderIndexError`` when the folder's row no longer points at ``root``: another station followed it to a new
    name while this scan walked the old one, whose files (a new line's, at the old name) must not be written to its
    rows (the session-46 review: they were, the labels set aside onto other parts)."""
    here = db.folders.by_path(str(root))   # compared as stored (a path map need not read back the same way)
    if here is None or here.id != folder_id:
        now = db.folders.get(folder_id)
        raise FolderIndexError(f"{root}: the folder was followed to {now.root_path if now else 'nowhere'} meanwhile "
                               "(renamed on disk); scan again")


def relocate_folder(db: "Database", folder: FolderInfo, to: Path) -> bool:
    """``folder``'s row, and those of folders registered inside it, to ``to`` (renamed on disk). False when another
    folder is registered there meanwhile (that row is the folder)."""
    old = folder.root_path
    try:
        db.folders.relocate(folder.id, str(to))
    except ConflictError as exc:
        log.warning("%s: not followed from %s: %s", to, old, exc)
        return False
    for f in db.folders.list():
        if f.id != folder.id and PurePath(f.root_path).is_relative_to(old):
            try:
                db.folders.relocate(f.id, str(to / PurePath(f.root_path).relative_to(old)))
            except ConflictError as exc:
                log.warning("%s: not followed: %s", f.root_path, exc)
    return True


def renamed_to(db: "Database", folder: FolderInfo) -> Path | None:
    """The folder beside ``folder``'s path (the same parent), not registered, that holds its files (``_holds``):
    where it was renamed to. Two such: neither."""
    old = Path(folder.root_path)
    registered = {PurePath(f.root_path) for f in db.folders.list()}
    try:
        siblings = sorted(d for d in old.parent.iterdir() if d.is_dir() and PurePath(d) not in registered)
    except OSError:
        return None
    rows = _sample_rows(db, folder)
    found = [d for d in siblings if rows and _holds(d.resolve(), rows)]
    if len(found) > 1:
        log.warning("%s: each of %s holds its files; followed neither", old, ", ".join(map(str, found)))
    return found[0].resolve() if len(found) == 1 else None


def _sample_rows(db: "Database", folder: FolderInfo) -> list[tuple[str, int, int, str | None]]:
    """Up to ``RENAME_SAMPLE`` of the folder's present rows (path, size, mtime, hash), evenly spread by name."""
    rows = sorted((rel, size, mtime, digest) for rel, (size, mtime, digest, missing)
                  in db.images.known_files(folder.id).items() if not missing)
    return rows[::max(1, len(rows) // RENAME_SAMPLE)][:RENAME_SAMPLE]


def _holds(root: Path, looked: list[tuple[str, int, int, str | None]]) -> bool:
    """Whether ``root`` holds these files at the same relative paths with the same sizes and modification times (nine
    in ten: a rename keeps both, a new day's capture of fixed-size frames only the size) and the same bytes (up to
    ``RENAME_HASHES`` hashed, spread over them, every one equal). Stops at the first misses a match cannot afford."""
    from app.services.file_scan import hash_file

    allowed = int((1 - RENAME_SHARE) * len(looked))
    same: list[tuple[str, str | None]] = []
    for i, (rel, size, mtime, digest) in enumerate(looked):
        try:
            st = (root / rel).stat()
            if st.st_size == size and st.st_mtime_ns == mtime:
                same.append((rel, digest))
        except OSError:
            pass
        if i + 1 - len(same) > allowed:
            return False
    with_hash = [(rel, digest) for rel, digest in same if digest]
    hashed = with_hash[::max(1, len(with_hash) // RENAME_HASHES)][:RENAME_HASHES]
    try:
        return bool(hashed) and all(hash_file(root / rel) == digest for rel, digest in hashed)
    except OSError:
        return False


RENAME_SAMPLE = 2000   # rows of a vanished folder looked for under the new one (evenly spread; a stat each)
RENAME_HASHES = 8      # of those found, files whose bytes are compared with the stored hash
RENAME_SHARE = 0.9     # found with the same size, of those looked for


def renamed_folder(db: "Database", root: Path, others: Sequence[FolderInfo]) -> FolderInfo | None:
    """The registered folder ``root`` is, renamed on disk (``mv line3 line3_done``): one whose path is gone, in the
    same parent folder, whose files ``root`` holds (``_holds``: a day's folder beside yesterday's, sharing its
    reference images, is not it, the session-46 review). Only a rename in place is followed: another parent may be another machine's view of a share this one
    does not reach (ADR 0065), whose folder must not be taken from the stations that do. Two such folders: neither
    (which one it is cannot be told)."""
    found = [f for f in others
             if Path(f.root_path).parent == root.parent and Path(f.root_path).name != root.name
             and not Path(f.root_path).exists() and (rows := _sample_rows(db, f)) and _holds(root, rows)]
    if len(found) > 1:
        log.warning("%s: looks like each of %s renamed; followed neither", root, ", ".join(f.name for f in found))
    return found[0] if len(found) == 1 else None


CONTENT_CHANGED_NOTE = "the file's content changed on disk: the label given for its earlier content is kept in the history"
INDEXER = "station"  # the author of those revisions: the station itself, not a person


def set_aside_labels(db: "Database", image_ids: Sequence[int]) -> tuple[int, ...]:
    """Images whose file now holds other bytes lose their label to the history: a revision back to
    unreviewed, with no class, mask or verdict, says why. Why: a line that writes every part to the
    same file name (or a file replaced by hand) left the earlier part's label on the new pixels — on
    screen, in exports and in retraining — a label nobody gave. The earlier label stays one click away
    (the history's restore). An image someone labels meanwhile (a newer revision than the one read)
    is left as that person saved it. Returns the images set aside."""
    if not image_ids:
        return ()
    done: list[int] = []
    for image_id, current in sorted(db.labels.current_many(list(image_ids)).items()):
        if ReviewState(current.review_state) is ReviewState.UNREVIEWED and not current.class_name \
                and current.mask_png is None and current.anomaly_verdict is None:
            continue  # nothing to set aside
        try:
            db.labels.append(image_id, LabelChange(ReviewState.UNREVIEWED, class_name=None, mask_png=None,
                                                   anomaly_verdict=None, anomaly_mask_png=None, object_classes=None,
                                                   note=CONTENT_CHANGED_NOTE),
                             INDEXER, expected_revision=current.revision)
        except StaleLabelError:
            continue
        done.append(image_id)
    return tuple(done)


def _trace(db: Database, folder_id: int) -> TraceReport | None:
    """Apply the project's trace rule to the folder; a broken stored rule is reported, not fatal
    (the images are indexed either way)."""
    try:
        rule = load_trace_rule(db)
    except TraceRuleError as exc:
        return TraceReport(problems=(f"the project's trace rule cannot be used ({exc})",))
    return apply_trace_rule(db, folder_id, rule) if rule.active else None
