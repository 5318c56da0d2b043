"""Folders and their images: incremental indexing and the review queue's queries."""
from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import (
    Boolean,
    ColumnElement,
    CursorResult,
    Select,
    String,
    and_,
    bindparam,
    delete,
    false,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Update

from database import path_map
from database.convert import to_dto
from database.dto import FileEntry, FolderInfo, ImageInfo, ImageQuery, IndexResult
from database.errors import ConflictError
from database.locks import lock_folder_indexes, lock_image_folders
from database.models import FlagDecisionEntry, Folder, Image, LabelWatermark, Prediction, table_of, utcnow
from database.states import ReviewState
from database.types import UTCDateTime

if TYPE_CHECKING:
    from database.engine import Database

T = TypeVar("T")

_CHUNK = 500  # rows per IN (...) list: below SQLite's and PostgreSQL's parameter limits
ANALYZE_AFTER = 5000  # new rows after which PostgreSQL's statistics are refreshed at once


def refresh_statistics(db: Database, table: str) -> None:
    """``ANALYZE`` a table on PostgreSQL (its own transaction; nothing on SQLite). PostgreSQL plans
    the queue's pages from table statistics, which autovacuum refreshes only a minute or more
    after a bulk write: until then a freshly filled table looks empty, and a first page that
    takes 3 ms with statistics took 0.3-1.9 s (nested loops over every prediction)."""
    if db.dialect != "postgresql":
        return
    with db.engine.connect() as conn:
        conn.execute(text(f"ANALYZE {table}"))
        conn.commit()


def image_dto(row: Image) -> ImageInfo:
    return to_dto(row, ImageInfo, review_state=ReviewState(row.review_state))


def chunks(seq: Sequence[T], size: int = _CHUNK) -> Iterable[Sequence[T]]:
    for start in range(0, len(seq), size):
        yield seq[start:start + size]


# SQLite's trigram index of the names (FTS5, migration 0008_queue_keys; absent where the library
# lacks the trigram tokenizer). ``sync`` fills it from each chunk's new rows in one statement
# (0009_pg_search dropped its per-row insert trigger: indexing a new folder paid ~60 us a row).
NAME_FTS = "images_name_fts"
_FILL_NAMES = text(f"INSERT INTO {NAME_FTS}(rowid, rel_path) SELECT id, rel_path FROM images "
                   "WHERE id IN :ids").bindparams(bindparam("ids", expanding=True))


class FolderRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, root_path: str, name: str | None = None) -> FolderInfo:
        """Register a folder (by its absolute path on this machine, stored as the path map's canonical one:
        ``database.path_map``); registering it again returns the same row."""
        key = path_map.stored(root_path)
        with self.db.session(write=True) as s:
            row = s.scalar(select(Folder).where(Folder.root_path == key))
            if row is None:
                # Two stations opening a new lot folder at once both found no row; on PostgreSQL the second insert
                # failed with a duplicate key and its station said "Cannot open ..." (a session-51 audit). A row
                # inserted meanwhile is now left alone and read (SQLite: one writer, no conflict to meet).
                values = dict(root_path=key, name=name or PurePath(root_path).name or root_path, added_at=utcnow())
                insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
                s.execute(insert(Folder).values(values).on_conflict_do_nothing(index_elements=["root_path"]))
                row = s.scalar(select(Folder).where(Folder.root_path == key))
                if row is None:   # (removed again between the two statements: as the caller's own removal would)
                    raise ConflictError(f"folder {root_path} was removed while it was being registered.")
            return _folder_dto(row)

    def get(self, folder_id: int) -> FolderInfo | None:
        with self.db.session() as s:
            row = s.get(Folder, folder_id)
            return None if row is None else _folder_dto(row)

    def by_path(self, root_path: str) -> FolderInfo | None:
        with self.db.session() as s:
            row = s.scalar(select(Folder).where(Folder.root_path == path_map.stored(root_path)))
            return None if row is None else _folder_dto(row)

    def list(self) -> list[FolderInfo]:
        with self.db.session() as s:
            return [_folder_dto(r) for r in s.scalars(select(Folder).order_by(Folder.id))]

    def relocate(self, folder_id: int, root_path: str) -> FolderInfo:
        """The folder's files are now at ``root_path`` (renamed on disk): the row, its images, labels, history and
        name stay (routing rules and exports read the name). Raises ``ConflictError`` where another folder is
        registered there."""
        key = path_map.stored(root_path)
        with self.db.session(write=True) as s:
            row = s.get(Folder, folder_id)
            if row is None:
                raise ConflictError(f"folder {folder_id} does not exist")
            if s.scalar(select(Folder.id).where(Folder.root_path == key, Folder.id != folder_id)) is not None:
                raise ConflictError(f"another folder is registered at {root_path}")
            row.root_path = key
            s.flush()
            return _folder_dto(row)

    def remove(self, folder_id: int) -> None:
        """Forget a folder with its images, predictions and labels (an explicit user action)."""
        with self.db.session(write=True) as s:
            lock_folder_indexes(s, [folder_id])   # before its rows go: ``lock_folder_indexes``
            s.execute(delete(Folder).where(Folder.id == folder_id))
            s.execute(raise_label_watermark())   # its images' labels went with it: other windows re-read counts


class ImageRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def sync(self, folder_id: int, entries: Iterable[FileEntry], *, complete: bool = True) -> IndexResult:
        """Bring the folder's rows in line with a scan, in one transaction.

        New paths are inserted in bulk; a path whose size, mtime or hash changed is updated
        and its predictions dropped (they described other pixels); labels are always kept.
        With ``complete`` the scan covered the whole folder, so rows it did not see are
        marked missing (never deleted). Without, only the rows the entries name are read (an
        indexer writes a large folder in chunks: ``app/services/indexing.py``).
        """
        entries = list(entries)
        now = utcnow()
        with self.db.session(write=True) as s:
            # the folder's rows for this transaction's re-read and writes: two stations following one open folder
            # (or opening one new lot) each read the rows before the other's insert committed, both inserted the new
            # files, and PostgreSQL refused the second with a duplicate key, its station saying "The open folder
            # cannot be followed" of files the other had just indexed (a session-51 audit); now the second waits,
            # reads the first's rows and finds them unchanged
            lock_folder_indexes(s, [folder_id])
            if s.get(Folder, folder_id) is None:
                raise ConflictError(f"folder {folder_id} is not registered.")
            columns = (Image.id, Image.rel_path, Image.size_bytes, Image.mtime_ns, Image.content_hash, Image.missing)
            if complete:
                existing = {r.rel_path: r for r in s.execute(select(*columns).where(Image.folder_id == folder_id))}
            else:
                existing = {}
                for part in chunks(sorted({e.rel_path for e in entries})):
                    existing.update((r.rel_path, r) for r in s.execute(
                        select(*columns).where(Image.folder_id == folder_id, Image.rel_path.in_(part))))
            inserts, updates, changed, restored, unchanged = [], [], [], 0, 0
            content_changed: list[int] = []
            seen: set[str] = set()
            for e in entries:
                if e.rel_path in seen:
                    continue
                seen.add(e.rel_path)
                old = existing.get(e.rel_path)
                values = dict(size_bytes=e.size_bytes, mtime_ns=e.mtime_ns, content_hash=e.content_hash,
                              width=e.width, height=e.height, error=e.error, missing=False, updated_at=now)
                if old is None:
                    inserts.append(dict(folder_id=folder_id, rel_path=e.rel_path, added_at=now,
                                        review_state=ReviewState.UNREVIEWED.value, flagged=False,
                                        priority=0.0, **values))
                    continue
                if e.content_hash is None and old.content_hash is not None:
                    # Unreadable now (locked by the writer, gone a moment): the bytes the labels were given for keep
                    # their hash, size and time, so the next readable scan compares the file with them. Stored as
                    # read, a replaced file's new pixels were later taken for the old (their hash had been wiped)
                    # and the old label stayed on them (a session-45 probe).
                    values.update(size_bytes=old.size_bytes, mtime_ns=old.mtime_ns, content_hash=old.content_hash)
                same = (old.size_bytes == e.size_bytes and old.mtime_ns == e.mtime_ns
                        and (e.content_hash is None or old.content_hash in (None, e.content_hash)))
                if same and not old.missing:
                    unchanged += 1
                    if old.content_hash is None and e.content_hash is not None:
                        # read at last (it was unreadable when indexed): its hash stored and its error cleared; the
                        # error stood for good, the file re-hashed at every scan (found by a session-43 probe)
                        updates.append({"id": old.id, **values})
                    continue
                if same:
                    restored += 1
                    updates.append({"id": old.id, "missing": False, "updated_at": now})
                    continue
                updates.append({"id": old.id, **values})
                if e.content_hash is None or old.content_hash != e.content_hash:
                    changed.append(old.id)  # back with other bytes counts as changed, not as back
                    if e.content_hash is not None and old.content_hash is not None:
                        content_changed.append(old.id)
                elif old.missing:  # the same bytes back under a new mtime (a copy put back)
                    restored += 1
            if updates:
                s.execute(update(Image), updates)
            for part in chunks(changed):
                s.execute(delete(Prediction).where(Prediction.image_id.in_(part)))
            for ids in chunks(content_changed):  # an inspector's flag was about the earlier pixels (ADR 0056)
                s.execute(update(Image).where(Image.id.in_(ids)).values(flag_override=None, flag_by=None))
            for ids in chunks(changed):  # no model answer counts for them now: no models' flag either (the flagged
                # filter and chip kept a replaced file until a worker answered, a session-46 probe)
                s.execute(update(Image).where(Image.id.in_(ids)).values(
                    flagged=func.coalesce(Image.flag_override, false()), priority=0.0))
            gone = [r.id for p, r in existing.items() if complete and p not in seen and not r.missing]
            for part in chunks(gone):
                s.execute(update(Image).where(Image.id.in_(part)).values(missing=True, updated_at=now))
            added: list[int] = []
            if inserts:
                s.execute(table_of(Image).insert(), inserts)
                for names in chunks([str(d["rel_path"]) for d in inserts]):
                    added.extend(s.scalars(select(Image.id).where(Image.folder_id == folder_id,
                                                                  Image.rel_path.in_(names))))
                added.sort()
                if self.db.dialect == "sqlite" and s.execute(
                        text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :n"),
                        {"n": NAME_FTS}).first() is not None:
                    for new in chunks(added):
                        s.execute(_FILL_NAMES, {"ids": list(new)})
            s.execute(update(Folder).where(Folder.id == folder_id).values(indexed_at=now))
            result = IndexResult(added_ids=tuple(added), changed_ids=tuple(sorted(changed)),
                                 unchanged=unchanged, missing=len(gone), restored=restored,
                                 content_changed_ids=tuple(sorted(content_changed)))
        if len(inserts) >= ANALYZE_AFTER:  # (without statistics a first paint took 15 s instead of 0.1)
            refresh_statistics(self.db, "images")
        return result

    def move(self, folder_id: int, moves: Sequence[tuple[str, FileEntry]]) -> dict[str, int]:
        """Rows whose file was moved or renamed inside the folder follow it, in one transaction:
        ``(old path, entry at the new path)`` with the same bytes. The row keeps its id, labels,
        history and predictions (they describe the same pixels); its path, size and time change and
        it is no longer missing. A pair whose old row is gone, or whose new path has a row of its
        own meanwhile, is skipped (its file is then a new row: the caller's). Returns new path -> id
        of the rows moved."""
        now, moved = utcnow(), {}
        with self.db.session(write=True) as s:
            lock_folder_indexes(s, [folder_id])   # a new row at the new path, inserted meanwhile by another station's sync
            for old_path, e in moves:
                row_id = s.scalar(select(Image.id).where(Image.folder_id == folder_id, Image.rel_path == old_path))
                if row_id is None or s.scalar(select(Image.id).where(Image.folder_id == folder_id,
                                                                     Image.rel_path == e.rel_path)) is not None:
                    continue
                s.execute(update(Image).where(Image.id == row_id).values(
                    rel_path=e.rel_path, size_bytes=e.size_bytes, mtime_ns=e.mtime_ns, missing=False, updated_at=now))
                # the queue's name order reads the prediction's own copy of the lower-cased name
                s.execute(update(Prediction).where(Prediction.image_id == row_id)
                          .values(name_key=select(func.lower(Image.rel_path)).where(Image.id == row_id).scalar_subquery()))
                moved[e.rel_path] = row_id
        return moved

    def known_files(self, folder_id: int) -> dict[str, tuple[int, int, str | None, bool]]:
        """rel_path -> (size, mtime_ns, content hash, missing) of every row of the folder, missing
        ones included: what re-indexing compares the disk with (plain tuples: a million rows fit)."""
        with self.db.session() as s:
            return {p: (size, mtime, digest, bool(missing)) for p, size, mtime, digest, missing in s.execute(
                select(Image.rel_path, Image.size_bytes, Image.mtime_ns, Image.content_hash, Image.missing)
                .where(Image.folder_id == folder_id))}

    def mark_missing(self, folder_id: int, rel_paths: Sequence[str]) -> int:
        """Rows of the folder whose files have gone (kept, labels and all, marked missing);
        returns how many were not marked already."""
        now, marked = utcnow(), 0
        with self.db.session(write=True) as s:
            for part in chunks(list(rel_paths)):
                ids = list(s.scalars(select(Image.id).where(Image.folder_id == folder_id, Image.rel_path.in_(part),
                                                            Image.missing == false())))
                if ids:
                    s.execute(update(Image).where(Image.id.in_(ids)).values(missing=True, updated_at=now))
                marked += len(ids)
        return marked

    def get(self, image_id: int) -> ImageInfo | None:
        with self.db.session() as s:
            row = s.get(Image, image_id)
            return None if row is None else image_dto(row)

    def get_many(self, image_ids: Sequence[int]) -> list[ImageInfo]:
        """The images with these ids, in the order asked (unknown ids are left out)."""
        with self.db.session() as s:
            rows: dict[int, Image] = {}
            for part in chunks(list(image_ids)):
                rows.update((r.id, r) for r in s.scalars(select(Image).where(Image.id.in_(part))))
            return [image_dto(rows[i]) for i in image_ids if i in rows]

    def folders_of(self, image_ids: Sequence[int]) -> dict[int, int]:
        """image id -> its folder's id (two columns read, not whole rows: a re-flag after an activation asks for
        every image either version answered)."""
        out: dict[int, int] = {}
        with self.db.session() as s:
            for part in chunks(sorted(set(image_ids))):
                out.update(s.execute(select(Image.id, Image.folder_id).where(Image.id.in_(part))).tuples().all())
        return out

    def by_path(self, folder_id: int, rel_path: str) -> ImageInfo | None:
        with self.db.session() as s:
            row = s.scalar(select(Image).where(Image.folder_id == folder_id, Image.rel_path == rel_path))
            return None if row is None else image_dto(row)

    def path_of(self, image_id: int) -> str | None:
        """Absolute path of the image's file (folder root + relative path)."""
        with self.db.session() as s:
            row = s.execute(select(Folder.root_path, Image.rel_path)
                            .join(Folder, Folder.id == Image.folder_id).where(Image.id == image_id)).first()
            return None if row is None else join_path(path_map.local(row[0]), row[1])

    def _filtered(self, stmt: Select[Any], q: ImageQuery) -> Select[Any]:
        conds = []
        if q.folder_id is not None:
            conds.append(Image.folder_id == q.folder_id)
        if q.states:
            conds.append(Image.review_state.in_([ReviewState(x).value for x in q.states]))
        if q.flagged is not None:
            conds.append(Image.flagged.is_(q.flagged))
        if not q.include_missing:
            conds.append(Image.missing.is_(False))
        if q.has_error is not None:
            conds.append(Image.error.is_not(None) if q.has_error else Image.error.is_(None))
        if q.path_contains:
            conds.append(Image.rel_path.contains(q.path_contains, autoescape=True))
        needs_prediction = any(v is not None for v in (q.predicted_class, q.min_confidence, q.max_confidence,
                                                        q.min_anomaly_score, q.max_anomaly_score))
        if q.model_version_id is not None:
            stmt = stmt.outerjoin(Prediction, and_(Prediction.image_id == Image.id,
                                                   Prediction.model_version_id == q.model_version_id))
            if q.predicted_class is not None:
                conds.append(Prediction.predicted_class == q.predicted_class)
            if q.min_confidence is not None:
                conds.append(Prediction.confidence >= q.min_confidence)
            if q.max_confidence is not None:
                conds.append(Prediction.confidence <= q.max_confidence)
            if q.min_anomaly_score is not None:
                conds.append(Prediction.anomaly_score >= q.min_anomaly_score)
            if q.max_anomaly_score is not None:
                conds.append(Prediction.anomaly_score <= q.max_anomaly_score)
        elif needs_prediction or q.sort in ("confidence", "anomaly_score"):
            raise ValueError("prediction filters and score sorts need model_version_id")
        return stmt.where(*conds)

    def query(self, q: ImageQuery = ImageQuery()) -> list[ImageInfo]:
        """One page of the review queue: filtered, sorted (ties broken by id), limited."""
        stmt = self._filtered(select(Image), q)
        if q.sort in ("confidence", "anomaly_score"):
            col = getattr(Prediction, q.sort)
        else:
            col = getattr(Image, q.sort)
        order = col.desc() if q.descending else col.asc()
        stmt = stmt.order_by(order.nulls_last(), Image.id.desc() if q.descending else Image.id.asc())
        if q.offset:
            stmt = stmt.offset(q.offset)
        if q.limit is not None:
            stmt = stmt.limit(q.limit)
        with self.db.session() as s:
            return [image_dto(r) for r in s.scalars(stmt)]

    def ids(self, q: ImageQuery = ImageQuery()) -> list[int]:
        """The ids of every image the query selects (its limit and order ignored), ascending: a
        retraining scoped to one model version intersects these with the images that version serves."""
        stmt = self._filtered(select(Image.id), replace(q, sort="id", limit=None, offset=0)).order_by(Image.id)
        with self.db.session() as s:
            return [int(i) for i in s.scalars(stmt)]

    def count(self, q: ImageQuery = ImageQuery()) -> int:
        stmt = self._filtered(select(func.count(Image.id)).select_from(Image), replace(q, sort="id"))
        with self.db.session() as s:
            return int(s.scalar(stmt) or 0)

    def classified_count(self, states: Sequence[str], outside_folder: int | None = None) -> int:
        """Images in ``states`` whose label holds a class (what a classifier retraining can read), of every folder but
        ``outside_folder``, missing ones left out."""
        stmt = select(func.count(Image.id)).where(Image.review_state.in_(list(states)), Image.label_class.is_not(None),
                                                  Image.missing == false())
        if outside_folder is not None:
            stmt = stmt.where(Image.folder_id != outside_folder)
        with self.db.session() as s:
            return int(s.scalar(stmt) or 0)

    def state_counts(self, folder_id: int | None = None, include_missing: bool = False) -> dict[ReviewState, int]:
        """Images per review state (every state present, zero included)."""
        stmt = select(Image.review_state, func.count(Image.id)).group_by(Image.review_state)
        if folder_id is not None:
            stmt = stmt.where(Image.folder_id == folder_id)
        if not include_missing:
            stmt = stmt.where(Image.missing.is_(False))
        counts = {state: 0 for state in ReviewState}
        with self.db.session() as s:
            for state, n in s.execute(stmt):
                counts[ReviewState(state)] = int(n)
        return counts

    def label_class_counts(self, folder_id: int | None = None, under: str | None = None) -> dict[str, int]:
        """Current labels per image class over every folder (missing files included: their labels
        still exist), or only ``folder_id``'s images whose path starts with ``under`` (a subfolder,
        "dir/"). Read from the partial index ``ix_images_label_class``: labelled rows only."""
        stmt = select(Image.label_class, func.count(Image.id)).where(Image.label_class.is_not(None))
        if folder_id is not None:
            stmt = stmt.where(Image.folder_id == folder_id)
        if under:
            stmt = stmt.where(Image.rel_path.startswith(under, autoescape=True))
        stmt = stmt.group_by(Image.label_class)
        with self.db.session() as s:
            return {str(name): int(n) for name, n in s.execute(stmt)}

    def set_flagged(self, image_ids: Sequence[int], flagged: bool) -> int:
        """The models' flag (pre-labelling, re-flagging): images an inspector flagged or unflagged
        keep that decision. Returns how many images' flag it changed (only those are written): a re-flag says that,
        not how many images it read (a session-49 audit)."""
        with self.db.session(write=True) as s:
            lock_image_folders(s, image_ids)   # before any of their rows: ``lock_folder_indexes``
            return write_models_flag(s, image_ids, flagged)

    def set_inspector_flag(self, image_ids: Sequence[int], flagged: bool, by: str | None,
                           author: str | None = None) -> None:
        """An inspector's flag: it stands over whatever the models say later (``flag_override``), recorded in the
        same transaction (``_record_flag_decisions``). ``by`` is whose decision the image keeps (an undo puts back
        the one F replaced, with its name); ``author`` who wrote it now, for the record (default ``by``)."""
        with self.db.session(write=True) as s:
            for part in chunks(list(image_ids)):
                s.execute(update(Image).where(Image.id.in_(part))
                          .values(flagged=flagged, flag_override=flagged, flag_by=by, updated_at=utcnow()))
                _record_flag_decisions(s, part, flagged, by if author is None else author)

    def clear_inspector_flag(self, image_ids: Sequence[int], models_flag: bool, author: str | None = None) -> None:
        """Hand the images' flag back to the models (F undone where the flag was theirs): no override, no one's name,
        and ``models_flag``, theirs (the flag rules', ``app.services.reflag.models_flag``), in the same write, so no
        reader sees the inspector's flag under the models' name. Recorded as ``author``'s in the same transaction."""
        with self.db.session(write=True) as s:
            for part in chunks(list(image_ids)):
                s.execute(update(Image).where(Image.id.in_(part))
                          .values(flagged=models_flag, flag_override=None, flag_by=None, updated_at=utcnow()))
                _record_flag_decisions(s, part, None, author)

    def set_priorities(self, priorities: dict[int, float]) -> None:
        """Review-queue priorities (e.g. uncertainty or anomaly score), by image id."""
        if not priorities:
            return
        with self.db.session(write=True) as s:
            lock_image_folders(s, priorities)   # before any of their rows: ``lock_folder_indexes``
            write_priorities(s, priorities)

    def set_decoded(self, sizes: dict[int, tuple[int, int]]) -> None:
        """Images a model has just read: their (width, height) as decoded, and no read error.

        Indexing does not decode files (it would double its time), so this is where an image's
        size is first known; an earlier read error is cleared since the file now decodes.
        """
        if not sizes:
            return
        with self.db.session(write=True) as s:
            s.execute(update(Image), [{"id": i, "width": int(w), "height": int(h), "error": None}
                                      for i, (w, h) in sizes.items()])

    def trace_rows(self, folder_id: int, page: int = 5000) -> Iterable[list[tuple[int, str, tuple[str | None, str | None, str | None]]]]:
        """The folder's (id, rel_path, (serial, lot, station)) in pages of ``page`` rows, by id:
        what re-applying a trace rule compares with (bounded memory on a million rows)."""
        after = 0
        while True:
            with self.db.session() as s:
                rows = [(i, p, (a, b, c)) for i, p, a, b, c in s.execute(
                    select(Image.id, Image.rel_path, Image.trace_serial, Image.trace_lot, Image.trace_station)
                    .where(Image.folder_id == folder_id, Image.id > after).order_by(Image.id).limit(page))]
            if not rows:
                return
            yield rows
            after = rows[-1][0]

    def set_traces(self, traces: dict[int, tuple[str | None, str | None, str | None]]) -> None:
        """Store images' (serial, lot, station), by image id (None clears a field)."""
        if not traces:
            return
        with self.db.session(write=True) as s:
            s.execute(update(Image), [{"id": i, "trace_serial": a, "trace_lot": b, "trace_station": c}
                                      for i, (a, b, c) in traces.items()])

    def set_error(self, image_id: int, error: str | None) -> None:
        """Record why a file cannot be read (None clears it)."""
        with self.db.session(write=True) as s:
            s.execute(update(Image).where(Image.id == image_id).values(error=error, updated_at=utcnow()))


def spellings(needle: str) -> tuple[str, ...]:
    """A searched name in both Unicode spellings: macOS writes names decomposed ("e" + accent), a person types them
    precomposed, and "défaut" found no decomposed file (a session-46 probe)."""
    return tuple(dict.fromkeys(unicodedata.normalize(form, needle) for form in ("NFC", "NFD")))


def case_spellings(needle: str) -> tuple[str, ...]:
    """``spellings`` and the precomposed one with its letters beyond ASCII in lower case, in upper case, and the first
    of them upper and the rest lower (a name written "Łódź"): the databases fold ASCII letters alone, so "écaille" found
    no "ÉCAILLE.png" and "DÉFAUT" only the decomposed "défaut" (a session-49 audit). Five patterns at most: every
    combination of cases cost one pattern each, up to 65 and seconds a search at 200,000 images (its review); a name
    mixing the cases of accented letters otherwise is found as typed. The decomposed spelling's letters are ASCII."""
    nfc = unicodedata.normalize("NFC", needle)
    beyond = [i for i, ch in enumerate(nfc) if ord(ch) > 127 and ch.lower() != ch.upper()   # letters with a case
              and len(ch.lower()) == 1 and len(ch.upper()) == 1]

    def cased(first_upper: bool, upper: bool) -> str:
        chars = list(nfc)
        for k, i in enumerate(beyond):
            chars[i] = chars[i].upper() if (upper or (first_upper and k == 0)) else chars[i].lower()
        return "".join(chars)
    return tuple(dict.fromkeys([*spellings(needle), cased(False, False), cased(False, True), cased(True, False)]))


def text_match(needle: str) -> ColumnElement[bool]:
    """The queue's text filter: the name contains the text (ASCII case folded, as SQLite's LIKE),
    or the part's serial or lot is the text (case folded, whole value). The queue indexes carry
    all three folded, so the filter walks an index and never reads the table's rows."""
    # folded by the database as it folds the column: Python's lower() folds every letter and SQLite's ASCII alone, so
    # a lot "Łódź-3" typed as the panel shows it found nothing (a session-44 probe)
    folded = func.lower(literal(needle))
    return or_(*(Image.rel_path.icontains(s, autoescape=True) for s in case_spellings(needle)),
               func.lower(Image.trace_serial) == folded, func.lower(Image.trace_lot) == folded)


def _folder_dto(row: Folder) -> FolderInfo:
    """The folder with its root as this machine reaches it (``database.path_map``)."""
    return replace(to_dto(row, FolderInfo), root_path=path_map.local(row.root_path))


def join_path(root: str, rel_path: str) -> str:
    return str(PurePath(root) / PurePath(rel_path))


def is_confined(rel_path: str) -> bool:
    """Whether a stored relative path stays inside its folder when joined (no root, no '..').

    Indexing only ever stores such paths; a row that breaks this was written by something else
    (a tampered or hand-edited shared database), and whatever reads files for it must refuse it
    rather than reach outside the indexed folder.
    """
    if not rel_path or "\x00" in rel_path:
        return False
    path = PurePath(rel_path)  # the flavour join_path uses on this machine
    return not (path.is_absolute() or path.drive or path.root or ".." in path.parts)


def set_label_keys(s: Session, image_ids: Sequence[int], state: ReviewState, label_class: str | None) -> None:
    """What the image rows cache of their newest label revision (its review state and class),
    written in the transaction that appends the revision (database/labels.py: the only caller)."""
    for part in chunks(list(image_ids)):
        s.execute(label_keys_update(part, state, label_class))


def label_keys_update(image_ids: Sequence[int], state: ReviewState, label_class: str | None) -> Update:
    """The UPDATE of ``set_label_keys`` for these images (one save adds its revision's INSERT to
    it on PostgreSQL: database/labels.py)."""
    images = table_of(Image)
    # Core (not ORM-enabled) UPDATE: no session objects to synchronize (the writers hold none).
    return (update(images).where(images.c.id.in_(image_ids))
            .values(review_state=state.value, label_class=label_class, updated_at=utcnow()))


def write_models_flag(s: Session, image_ids: Sequence[int], flagged: bool) -> int:
    """``ImageRepository.set_flagged`` inside the caller's transaction, which has taken the images' folders' index
    lock (a re-flag writes it with the rest of its work: ``PredictionRepository.reflag``)."""
    changed = 0
    for part in chunks(list(image_ids)):
        res = s.execute(update(Image).where(Image.id.in_(part), Image.flag_override.is_(None),
                                            Image.flagged.is_not(flagged))
                        .values(flagged=flagged, updated_at=utcnow()))
        changed += cast("CursorResult[Any]", res).rowcount
    return changed


def write_priorities(s: Session, priorities: Mapping[int, float]) -> None:
    """``ImageRepository.set_priorities`` inside the caller's transaction (as ``write_models_flag``)."""
    if priorities:
        s.execute(update(Image), [{"id": i, "priority": float(p)} for i, p in priorities.items()])


def _record_flag_decisions(s: Session, image_ids: Sequence[int], flagged: bool | None, author: str | None) -> None:
    """Append one ``flag_decisions`` row per image of ``image_ids`` that exists, in ``s``'s transaction: the image
    kept only its latest flag decision, overwritten in place, so the audit could not say who flagged a part or who
    cleared it, and when (a session-51 audit). One INSERT ... SELECT over the same ids as the UPDATE before it, so a
    decision is recorded exactly when it was written (an image deleted meanwhile gets neither). Stamped by the
    database's clock as label revisions are (``db_now``), with PostgreSQL's ``now()`` inside the statement: no round
    trip more on the save path."""
    now: ColumnElement[Any] = (func.now() if s.get_bind().dialect.name == "postgresql"
                               else literal(utcnow(), UTCDateTime()))
    entries = table_of(FlagDecisionEntry)
    s.execute(entries.insert().from_select(
        ["image_id", "flagged", "author", "created_at"],
        select(Image.id, sql_cast(literal(flagged, Boolean()), Boolean()),
               sql_cast(literal(author, String(255)), String(255)), now).where(Image.id.in_(image_ids))))


def raise_label_watermark() -> Update:
    """The UPDATE that raises the labels' watermark (``LabelWatermark``): the LAST write of every transaction that
    changes labels (appending revisions in database/labels.py, removing a folder with its labels). Last, because on
    PostgreSQL the row stays locked to the commit: raised first, an import would hold every other station's save for
    its whole length; raised last, the lock is held only to the commit that follows, and the marks come out in commit
    order (a session-51 audit: the newest revision's id did not, and a window missed an import)."""
    mark = table_of(LabelWatermark)
    return update(mark).where(mark.c.id == 1).values(mark=mark.c.mark + 1)
