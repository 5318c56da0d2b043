"""Predictions: one row per (image, model version), replaced when the model runs again."""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from database import current_predictions
from database.convert import to_dto
from database.dto import PredictionIn, PredictionInfo
from database.images import ANALYZE_AFTER, chunks, refresh_statistics, write_models_flag, write_priorities
from database.locks import lock_folder_indexes
from database.models import Image, Prediction, db_now, table_of

if TYPE_CHECKING:
    from database.engine import Database

_COLUMNS = ("class_scores", "predicted_class", "confidence", "mask_png", "mask_ref", "target_count",
            "anomaly_score", "anomaly_map_ref", "in_domain", "domain_note")


# A new row copies its image's name key (lower(rel_path), folded by the database as the queue's
# name order folds it): the score orders' tie-break, read from the score indexes (0008_queue_keys);
# and its image's folder: a folder's exact class and score counts (0010_folder_counts).
_INSERT = table_of(Prediction).insert().values(
    image_id=bindparam("b_image_id"),
    name_key=select(func.lower(Image.rel_path)).where(Image.id == bindparam("b_image_id")).scalar_subquery(),
    folder_id=select(Image.folder_id).where(Image.id == bindparam("b_image_id")).scalar_subquery())


# a re-flag's write of a prediction's own flag reasons (``PredictionRepository.reflag``)
_SET_FLAGS = update(table_of(Prediction)).where(table_of(Prediction).c.id == bindparam("b_id")) \
    .values(flags=bindparam("b_flags"))

# What a re-flag writes (``PredictionRepository.reflag``): the images the models flag, those they do not, each
# image's priority, and prediction id -> its flag reasons.
FlagWrites = tuple[Sequence[int], Sequence[int], Mapping[int, float], Mapping[int, Sequence[str]]]


def prediction_dto(row: Prediction) -> PredictionInfo:
    return to_dto(row, PredictionInfo, flags=tuple(row.flags or ()))


def upsert_predictions(s: Session, preds: Sequence[PredictionIn]) -> int:
    """Insert or replace, inside the caller's transaction (so a worker can commit predictions
    together with marking its job items done). Returns the rows written: after the commit, hand
    them to ``PredictionRepository.written``."""
    latest = {(p.image_id, p.model_version_id): p for p in preds}
    if not latest:
        return 0
    by_version: dict[int, list[int]] = {}
    for image_id, version_id in latest:
        by_version.setdefault(version_id, []).append(image_id)
    existing: dict[tuple[int, int], int] = {}
    for version_id, image_ids in by_version.items():
        for part in chunks(image_ids):
            existing.update(((i, version_id), pid) for pid, i in s.execute(
                select(Prediction.id, Prediction.image_id).where(Prediction.model_version_id == version_id,
                                                                 Prediction.image_id.in_(part))))
    now = db_now(s)  # the clock labels are stamped by: "own answers kept" compares the two (the review of session 47)

    def values(p: PredictionIn) -> dict[str, Any]:
        d = {c: getattr(p, c) for c in _COLUMNS}
        d["class_scores"] = dict(p.class_scores) if p.class_scores is not None else None
        d["flags"] = list(p.flags)
        d["created_at"] = now
        return d

    marker = _markers(s, latest, existing)
    updates = [{"id": existing[k], **values(p)} for k, p in latest.items() if k in existing]
    inserts = [{"b_image_id": k[0], "model_version_id": k[1], "current_family": marker.get(k), **values(p)}
               for k, p in latest.items() if k not in existing]
    if updates:
        s.execute(update(Prediction), updates)  # ORM bulk update by primary key
    counting = [{"id": existing[k], "current_family": f} for k, f in marker.items() if k in existing]
    if counting:
        s.execute(update(Prediction), counting)
    if inserts:
        s.execute(_INSERT, inserts)
    return len(latest)


def _markers(s: Session, latest: dict[tuple[int, int], PredictionIn],
             existing: dict[tuple[int, int], int]) -> dict[tuple[int, int], str]:
    """(image, version) -> the family, for the rows about to count (``database/current_predictions``):
    every row a routed job stores with ``counts`` (the family's other rows of its images unmarked
    here), and each new row of an active version where no row of the image counts for its family.
    Existing rows without ``counts`` keep their marker."""
    family = current_predictions.families_of(s, {v for _i, v in latest})
    out: dict[tuple[int, int], str] = {}
    named: dict[tuple[str, int], list[int]] = {}
    for (image_id, version_id), p in latest.items():
        if p.counts and version_id in family:
            named.setdefault((family[version_id][0], version_id), []).append(image_id)
    for (fam, version_id), image_ids in named.items():
        current_predictions.take(s, fam, version_id, image_ids)
        out.update(((i, version_id), fam) for i in image_ids)
    by_active: dict[tuple[str, int], list[int]] = {}
    for (image_id, version_id), p in latest.items():
        fam, active = family.get(version_id, ("", False))
        if active and not p.counts and (image_id, version_id) not in existing:
            by_active.setdefault((fam, version_id), []).append(image_id)
    for (fam, version_id), image_ids in by_active.items():
        taken = current_predictions.counted(s, fam, image_ids)
        out.update(((i, version_id), fam) for i in image_ids if i not in taken)
    return out


class PredictionRepository:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._unanalyzed = 0  # rows this process wrote since it last refreshed the statistics
        self._lock = threading.Lock()

    def map_refs(self) -> set[str]:
        """Every anomaly map reference an answer of an image row holds (``db sweep-maps`` removes the map files no
        such answer refers to). An image marked missing keeps its row, and so its maps: its file may come back. An
        answer whose image row is gone (removed with foreign keys off, as the sqlite3 shell does, or by an older
        version) can never be shown again: counted, it kept its map for good (a session-52 audit)."""
        with self.db.session() as s:
            return {r for r in s.scalars(select(Prediction.anomaly_map_ref).join(Image, Image.id == Prediction.image_id)
                                         .where(Prediction.anomaly_map_ref.is_not(None)).distinct()) if r}

    def written(self, rows: int) -> None:
        """Committed ``rows`` predictions: every ``ANALYZE_AFTER`` rows (however they were batched:
        a job writes a few at a time) PostgreSQL's statistics of the table are refreshed, so the
        queue's pages are planned for the rows a model has just written."""
        with self._lock:
            self._unanalyzed += rows
            due = self._unanalyzed >= ANALYZE_AFTER
            if due:
                self._unanalyzed = 0
        if due:
            refresh_statistics(self.db, "predictions")

    def upsert_many(self, preds: Sequence[PredictionIn]) -> None:
        with self.db.session(write=True) as s:
            rows = upsert_predictions(s, preds)
        self.written(rows)

    def get(self, image_id: int, model_version_id: int) -> PredictionInfo | None:
        with self.db.session() as s:
            row = s.scalar(select(Prediction).where(Prediction.image_id == image_id,
                                                    Prediction.model_version_id == model_version_id))
            return None if row is None else prediction_dto(row)

    def for_image(self, image_id: int) -> list[PredictionInfo]:
        with self.db.session() as s:
            rows = s.scalars(select(Prediction).where(Prediction.image_id == image_id).order_by(Prediction.id))
            return [prediction_dto(r) for r in rows]

    def for_images(self, image_ids: Sequence[int], model_version_id: int) -> dict[int, PredictionInfo]:
        """The version's predictions for a page of images, keyed by image id."""
        out: dict[int, PredictionInfo] = {}
        with self.db.session() as s:
            for part in chunks(list(image_ids)):
                for r in s.scalars(select(Prediction).where(Prediction.model_version_id == model_version_id,
                                                            Prediction.image_id.in_(part))):
                    out[r.image_id] = prediction_dto(r)
        return out

    def current_for_images(self, image_ids: Sequence[int], family: str) -> dict[int, PredictionInfo]:
        """The family's predictions that count for a page of images (``current_predictions``), by image id."""
        out: dict[int, PredictionInfo] = {}
        with self.db.session() as s:
            for part in chunks(list(image_ids)):
                for r in s.scalars(select(Prediction).where(Prediction.image_id.in_(part),
                                                            Prediction.current_family == family)):
                    out[r.image_id] = prediction_dto(r)
        return out

    def flag_inputs(self, image_ids: Sequence[int], family: str | None = None,
                    model_version_id: int | None = None, s: Session | None = None) -> dict[int, PredictionInfo]:
        """What the flag rules read of a page of images' predictions, by image id: the family's that count (or one
        version's), read as plain columns — no mask, no ORM object (re-flagging 100,000 images spent 13 of its 19 s
        building full objects, masks included: benchmarks/results/reflag.md). ``mask_png`` and the references are
        None here: never write these back (``reflag`` changes the flags alone). ``s``: read in that transaction
        (``Database.reading``: a re-flag's own)."""
        cols = (Prediction.id, Prediction.image_id, Prediction.model_version_id, Prediction.class_scores,
                Prediction.predicted_class, Prediction.confidence, Prediction.target_count, Prediction.anomaly_score,
                Prediction.flags, Prediction.created_at, Prediction.in_domain, Prediction.current_family)
        which = Prediction.current_family == family if model_version_id is None \
            else Prediction.model_version_id == model_version_id
        out: dict[int, PredictionInfo] = {}
        with self.db.reading(s) as r:
            for part in chunks(list(image_ids)):
                for (pid, image_id, version_id, scores, cls, conf, targets, score, flags, created, in_domain,
                     current) in r.execute(select(*cols).where(Prediction.image_id.in_(part), which)):
                    out[image_id] = PredictionInfo(
                        id=pid, image_id=image_id, model_version_id=version_id, class_scores=scores,
                        predicted_class=cls, confidence=conf, mask_png=None, mask_ref=None, target_count=targets,
                        anomaly_score=score, anomaly_map_ref=None, flags=tuple(flags or ()), created_at=created,
                        in_domain=in_domain, current_family=current)
        return out

    def reflag(self, folder_id: int, work: Callable[[Session], FlagWrites]) -> tuple[int, int, int]:
        """One re-flag of some of ``folder_id``'s images, in one write transaction: the folder's index lock first
        (``lock_folder_indexes``; on SQLite the write transaction is the lock), then ``work``, given that transaction,
        which reads the thresholds and the answers through it (``Database.reading``: every read under the lock, and an
        in-memory database, whose sessions share one connection, refused a second transaction inside this one, a
        session-52 audit) and returns what to write — the images the models flag, those they do not, each
        image's priority, and prediction id -> its flag reasons, written alone (the answer, its masks and its time
        stay) — then the writes. Why all inside: two re-flags of a folder at once (a threshold change at two
        stations, Settings' OK while the worker re-flags) each read, then wrote, and the one that read first could
        commit last, the older thresholds' flags left stored (a session-52 audit); now the later one waits, and reads
        what the earlier wrote. Returns how many images were given a priority, were flagged by it and were no longer
        flagged."""
        with self.db.session(write=True) as s:
            lock_folder_indexes(s, [folder_id])
            flagged, clear, priorities, flags = work(s)
            now_flagged = write_models_flag(s, flagged, True)
            unflagged = write_models_flag(s, clear, False)
            write_priorities(s, priorities)
            if flags:
                s.execute(_SET_FLAGS, [{"b_id": pid, "b_flags": list(f)} for pid, f in flags.items()])
        self.written(len(flags))
        return len(priorities), now_flagged, unflagged

    def counting_versions(self, folder_id: int, family: str) -> dict[int, int]:
        """Version id -> how many of the folder's images its ``family`` answer counts for (one grouped query)."""
        with self.db.session() as s:
            rows = s.execute(select(Prediction.model_version_id, func.count()).where(
                Prediction.current_family == family, Prediction.folder_id == folder_id)
                .group_by(Prediction.model_version_id))
            return {int(v): int(n) for v, n in rows}

    def counts_in_folder(self, folder_id: int, model_version_id: int) -> bool:
        """Whether an answer of this version counts for an image of the folder (stops at the first)."""
        with self.db.session() as s:
            return s.scalar(select(Prediction.id).where(
                Prediction.current_family.is_not(None), Prediction.folder_id == folder_id,
                Prediction.model_version_id == model_version_id).limit(1)) is not None

    def set_current(self, family: str, wanted: Mapping[int, int | None]) -> int:
        """Make the given version's row count for each image (None: none), in one transaction;
        how many rows changed (``current_predictions.set_current``)."""
        return self.set_current_images(family, wanted)[0]

    def set_current_images(self, family: str, wanted: Mapping[int, int | None]) -> tuple[int, set[int]]:
        """``set_current``, and the images whose marker changed (a re-mark re-flags only those)."""
        with self.db.session(write=True) as s:
            changed, images = current_predictions.set_current_images(s, family, wanted)
        self.written(changed)  # rewritten rows count toward PostgreSQL's statistics refresh
        return changed, images

    def image_ids_with(self, model_version_id: int, among: Sequence[int] | None = None) -> set[int]:
        """Images this version has already predicted (a resumed job skips them); ``among``: only of these, read by the
        (image, version) key in chunks. Why ``among``: what a pre-label submission of a few files lacks read every
        image the version ever answered (a session-51 audit: 690 ms an automatic submission at 1.5M answers)."""
        stmt = select(Prediction.image_id).where(Prediction.model_version_id == model_version_id)
        with self.db.session() as s:
            if among is None:
                return set(s.scalars(stmt))
            out: set[int] = set()
            for part in chunks(list(among)):
                out.update(s.scalars(stmt.where(Prediction.image_id.in_(part))))
            return out

    def in_domain_in_folder(self, folder_id: int) -> list[tuple[int, str, int, str, float | None]]:
        """(image id, path in the folder, model version id, family, in-domain score) of the predictions
        that count for the folder's images that are still there: what routing proposals and clean-ups read."""
        stmt = (select(Prediction.image_id, Image.rel_path, Prediction.model_version_id, Prediction.current_family,
                       Prediction.in_domain)
                .join(Image, Image.id == Prediction.image_id)
                .where(Prediction.folder_id == folder_id, Prediction.current_family.is_not(None),
                       Image.missing.is_(False)))
        with self.db.session() as s:
            return [(int(i), str(p), int(v), str(f), None if d is None else float(d))
                    for i, p, v, f, d in s.execute(stmt)]

    def domain_notes_in_folder(self, folder_id: int, limit: int = 2000) -> list[tuple[str, str, str]]:
        """(path in the folder, family, why it is out of domain) of the answers that count for the folder's present
        images and carry a note (``inference.domain_notes``), by path, at most ``limit``: a proposal's examples."""
        stmt = (select(Image.rel_path, Prediction.current_family, Prediction.domain_note)
                .join(Image, Image.id == Prediction.image_id)
                .where(Prediction.folder_id == folder_id, Prediction.current_family.is_not(None),
                       Prediction.domain_note.is_not(None), Image.missing.is_(False))
                .order_by(Image.rel_path, Prediction.current_family).limit(max(0, int(limit))))
        with self.db.session() as s:
            return [(str(p), str(f), str(n)) for p, f, n in s.execute(stmt)]

    def delete_for_images(self, model_version_id: int, image_ids: Sequence[int]) -> int:
        """Drop this version's predictions of these images; how many rows went."""
        gone = 0
        with self.db.session(write=True) as s:
            for part in chunks(list(image_ids)):
                res = s.execute(delete(Prediction).where(Prediction.model_version_id == model_version_id,
                                                         Prediction.image_id.in_(part)))
                gone += int(getattr(res, "rowcount", 0) or 0)
        return gone

    def delete_for_model_version(self, model_version_id: int) -> None:
        with self.db.session(write=True) as s:
            s.execute(delete(Prediction).where(Prediction.model_version_id == model_version_id))
