"""Label revisions: every save appends one; the newest is the image's label; none is ever removed.

Appending also sets the image's review state in the same transaction, so the gallery's state
filter and the label history can never disagree.
"""
from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import ColumnElement, func, insert, select
from sqlalchemy.orm import Session

from database.convert import to_dto
from database.dto import UNCHANGED, LabelChange, LabelRevisionInfo, RevisionSummary, StateMove
from database.errors import ConflictError, RowGoneError, StaleLabelError
from database.images import chunks, label_keys_update, raise_label_watermark, set_label_keys
from database.locks import lock_image_folders
from database.models import Image, LabelRevision, LabelWatermark, Prediction, db_now, table_of
from database.states import AnomalyVerdict, LabelSource, ReviewState

if TYPE_CHECKING:
    from database.engine import Database

LABEL_FIELDS = ("class_name", "mask_png", "anomaly_verdict", "anomaly_mask_png", "object_classes")
# Names recorded in a revision's ``changed`` list (short: all of them fit the column).
CHANGE_NAMES = {"class_name": "class", "mask_png": "mask", "anomaly_verdict": "verdict",
                "anomaly_mask_png": "anomaly_mask", "object_classes": "objects", "review_state": "state"}


def revision_dto(row: Any) -> LabelRevisionInfo:
    """A revision (ORM object, row or the values just inserted) as its DTO."""
    return to_dto(row, LabelRevisionInfo, **_decoded(row))


def _decoded(row: Any) -> dict[str, Any]:
    """A revision row's values stored as text that its DTOs hold as a tuple or enums."""
    return {"changed": tuple(x for x in row.changed.split(",") if x), "review_state": ReviewState(row.review_state),
            "anomaly_verdict": AnomalyVerdict(row.anomaly_verdict) if row.anomaly_verdict else None}


_REVISIONS = table_of(LabelRevision)
_IMAGES = table_of(Image)
_MARK = table_of(LabelWatermark)


def _latest(s: Session, image_id: int) -> Any:
    """The image's newest revision as a plain row (its columns by name), or None."""
    return s.execute(select(_REVISIONS).where(_REVISIONS.c.image_id == image_id)
                     .order_by(_REVISIONS.c.revision.desc()).limit(1)).first()


TRACE_FIELDS = ("serial", "lot", "station")


def trace_of(serial: str | None, lot: str | None, station: str | None) -> dict[str, str] | None:
    """An image's trace as a revision records it: the fields that are known (None: none is)."""
    trace = {k: v for k, v in zip(TRACE_FIELDS, (serial, lot, station)) if v}
    return trace or None


def _revision_values(image_id: int, prev: LabelRevision | None, label: dict[str, Any], state: ReviewState,
                     author: str, from_prediction_id: int | None, note: str | None,
                     trace: dict[str, str] | None, source: str | None = None,
                     from_model_version_id: int | None = None) -> dict[str, Any]:
    """The columns of the revision that follows ``prev``, with what changed from it."""
    before = {f: getattr(prev, f) if prev else None for f in LABEL_FIELDS}
    before["review_state"] = prev.review_state if prev else ReviewState.UNREVIEWED.value
    after = {**label, "review_state": state.value}
    changed = [CHANGE_NAMES[f] for f in (*LABEL_FIELDS, "review_state") if after[f] != before[f]]
    return dict(image_id=image_id, revision=(prev.revision + 1) if prev else 1, author=author,
                changed=",".join(changed), from_prediction_id=from_prediction_id, note=note, trace=trace,
                source=source, from_model_version_id=from_model_version_id, **after)


def _lock_image(s: Session, image_id: int) -> tuple[dict[str, str] | None, tuple[int, str, bool], datetime]:
    """Lock the image row (on PostgreSQL: two saves of one image get consecutive numbers; read
    the newest revision only after this) and return its trace, and its folder, review state and
    ``missing`` as they are before this save (the counts' move: ``StateMove``), and now by the database's clock
    (``db_now``; on PostgreSQL read in the same statement, no round trip more: a revision is stamped by one clock
    whichever station saves it, a session-47 audit)."""
    server = s.get_bind().dialect.name == "postgresql"
    row = s.execute(select(_IMAGES.c.trace_serial, _IMAGES.c.trace_lot, _IMAGES.c.trace_station,
                           _IMAGES.c.folder_id, _IMAGES.c.review_state, _IMAGES.c.missing,
                           *([func.now()] if server else []))
                    .where(_IMAGES.c.id == image_id).with_for_update()).first()
    if row is None:
        raise RowGoneError(f"image {image_id} does not exist.", image_gone=True)
    if server:   # kept as ``db_now``'s: a later stamp in this transaction reads it, not the server again
        s.info.setdefault("db_now", cast(datetime, row[6]).astimezone(timezone.utc))
    return trace_of(*row[:3]), (int(row[3]), str(row[4]), bool(row[5])), db_now(s)


def _append(s: Session, image_id: int, locked: tuple[dict[str, str] | None, tuple[int, str, bool], datetime], prev: Any,
            author: str, label: dict[str, Any], state: ReviewState, from_prediction_id: int | None,
            note: str | None, source: str | None = None, model_version_id: int | None = None) -> LabelRevisionInfo:
    """Insert the revision after ``prev`` (read under ``_lock_image``, whose answer is
    ``locked``) and set the image's keys. ``model_version_id``: the model the label was taken from when no prediction
    row says it any more (a revert to a revision whose prediction has gone)."""
    trace, (folder_id, before, missing), now = locked
    if from_prediction_id is not None:
        pred = s.get(Prediction, from_prediction_id)
        if pred is None:
            raise RowGoneError(f"prediction {from_prediction_id} does not exist.", image_gone=False)
        model_version_id = pred.model_version_id
    values = {**_revision_values(image_id, prev, label, state, author, from_prediction_id, note, trace, source,
                                 model_version_id),
              "created_at": now}
    keys = label_keys_update([image_id], state, values["class_name"])
    if s.get_bind().dialect.name == "postgresql":
        # One statement, not three: the INSERT and the watermark's raise ride along the UPDATE as data-modifying CTEs
        # (a round trip less each for every save to wait for on a busy station; ADR 0034). The raise is this
        # transaction's last write, as ``raise_label_watermark`` wants.
        new = insert(_REVISIONS).values(values).returning(_REVISIONS.c.id).cte("new_revision")
        mark = raise_label_watermark().returning(_MARK.c.mark).cte("label_watermark_raised")
        new_id = s.scalar(keys.add_cte(new).add_cte(mark).returning(select(new.c.id).scalar_subquery()))
    else:
        new_id = cast(Any, s.execute(insert(_REVISIONS).values(values))).inserted_primary_key[0]
        s.execute(keys)
        s.execute(raise_label_watermark())
    moved = StateMove(image_id, folder_id, ReviewState(before), state, not missing)
    return revision_dto(SimpleNamespace(id=new_id, moved=moved, **values))


def _resolve(change: LabelChange, prev: LabelRevision | None) -> dict[str, Any]:
    """The whole label after ``change``: fields left UNCHANGED carry over from ``prev``."""
    verdict = change.anomaly_verdict
    if verdict is not UNCHANGED and verdict is not None:
        verdict = AnomalyVerdict(verdict)
    label = {}
    for f in LABEL_FIELDS:
        value = verdict if f == "anomaly_verdict" else getattr(change, f)
        label[f] = (getattr(prev, f) if prev else None) if value is UNCHANGED else value
    if label["anomaly_verdict"] is not None:
        label["anomaly_verdict"] = AnomalyVerdict(label["anomaly_verdict"]).value
    label["object_classes"] = label["object_classes"] or None  # no entry: the image's class, as before
    return label


def _check_change(change: LabelChange) -> None:
    """A caller's value the station cannot store raises the caller's ``ValueError`` before the
    transaction opens (inside it, a ValueError reads as a tampered row of the database)."""
    ReviewState(change.review_state)
    objects = change.object_classes
    if objects is not UNCHANGED and objects is not None and not (
            isinstance(objects, list) and all(isinstance(o, dict) for o in objects)):
        raise ValueError("object classes must be a list of objects (or None)")
    if change.anomaly_verdict is not UNCHANGED and change.anomaly_verdict is not None:
        AnomalyVerdict(change.anomaly_verdict)
    if change.source is not None:
        LabelSource(change.source)


def _newest(s: Session, image_ids: Sequence[int]) -> dict[int, LabelRevision]:
    newest = (select(LabelRevision.image_id, func.max(LabelRevision.revision).label("rev"))
              .where(LabelRevision.image_id.in_(image_ids)).group_by(LabelRevision.image_id).subquery())
    rows = s.scalars(select(LabelRevision).join(
        newest, (LabelRevision.image_id == newest.c.image_id) & (LabelRevision.revision == newest.c.rev)))
    return {r.image_id: r for r in rows}


class LabelRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def append(self, image_id: int, change: LabelChange, author: str,
               expected_revision: int | None = None) -> LabelRevisionInfo:
        """Save an edit as a new revision (fields left UNCHANGED carry over) and set the state.

        ``expected_revision``: the revision the edit was made on (0: none); when another one was
        saved since, the save is refused with ``StaleLabelError`` (checked under the image's lock)."""
        _check_change(change)
        with self.db.session(write=True) as s:
            locked = _lock_image(s, image_id)
            prev = _latest(s, image_id)
            current = prev.revision if prev else 0
            if expected_revision is not None and current != expected_revision:
                raise StaleLabelError(image_id, expected_revision, current, prev.author if prev else None)
            return _append(s, image_id, locked, prev, author, _resolve(change, prev),
                           ReviewState(change.review_state), change.from_prediction_id, change.note,
                           None if change.source is None else LabelSource(change.source).value,
                           model_version_id=change.from_model_version_id)

    def append_many(self, changes: Sequence[tuple[int, LabelChange, int]], author: str) -> int:
        """Save many edits in ONE transaction (an import): every revision is written, or none.

        Each change carries the revision number its caller saw as current (0: none). When another
        revision was saved since, the whole batch is refused with ``ConflictError``, so a label a
        person saved after the preview is never overwritten unseen.
        """
        ids = [image_id for image_id, _, _ in changes]
        for _, change, _ in changes:
            _check_change(change)
        if len(set(ids)) != len(ids):
            raise ConflictError("a batch of label changes names an image twice.")
        with self.db.session(write=True) as s:
            # the folders' index first, as a re-scan takes it, then the rows (``lock_folder_indexes``: on PostgreSQL
            # an import and a re-scan of a folder locked its rows in other orders and deadlocked, a session-51 review)
            lock_image_folders(s, ids)
            latest: dict[int, LabelRevision] = {}
            traces: dict[int, dict[str, str] | None] = {}
            for part in chunks(ids):
                # Locks the image rows on PostgreSQL, as a single save does.
                traces.update((i, trace_of(serial, lot, station)) for i, serial, lot, station in s.execute(
                    select(Image.id, Image.trace_serial, Image.trace_lot, Image.trace_station)
                    .where(Image.id.in_(part)).with_for_update()))
                found = set(traces).intersection(part)
                if len(found) != len(part):
                    raise RowGoneError(f"image {min(set(part) - found)} does not exist.", image_gone=True)
                latest.update(_newest(s, part))
            rows: list[dict[str, Any]] = []
            by_keys: dict[tuple[ReviewState, str | None], list[int]] = {}
            now = db_now(s)
            for image_id, change, expected in changes:
                prev = latest.get(image_id)
                if (prev.revision if prev else 0) != expected:
                    raise ConflictError(f"image {image_id} got label revision {prev.revision if prev else 0} "
                                        f"since revision {expected} was read.")
                pred = None if change.from_prediction_id is None else s.get(Prediction, change.from_prediction_id)
                if change.from_prediction_id is not None and pred is None:
                    raise RowGoneError(f"prediction {change.from_prediction_id} does not exist.", image_gone=False)
                state = ReviewState(change.review_state)
                label = _resolve(change, prev)
                rows.append({**_revision_values(image_id, prev, label, state, author, change.from_prediction_id,
                                                change.note, traces[image_id],
                                                None if change.source is None else LabelSource(change.source).value,
                                                change.from_model_version_id if pred is None else pred.model_version_id),
                             "created_at": now})
                by_keys.setdefault((state, label["class_name"]), []).append(image_id)
            if rows:
                s.execute(insert(LabelRevision), rows)
            for (state, label_class), image_ids in by_keys.items():
                set_label_keys(s, image_ids, state, label_class)
            if rows:
                s.execute(raise_label_watermark())   # last: see its docstring
        return len(rows)

    def revert(self, image_id: int, to_revision: int, author: str) -> LabelRevisionInfo:
        """Undo: append a copy of an earlier revision (0 means "no label, unreviewed")."""
        with self.db.session(write=True) as s:
            if to_revision == 0:
                label = {f: None for f in LABEL_FIELDS}
                state, pred, model = ReviewState.UNREVIEWED, None, None
            else:
                old = s.scalar(select(LabelRevision).where(LabelRevision.image_id == image_id,
                                                           LabelRevision.revision == to_revision))
                if old is None:
                    raise ConflictError(f"image {image_id} has no label revision {to_revision}.")
                label = {f: getattr(old, f) for f in LABEL_FIELDS}
                state, pred = ReviewState(old.review_state), old.from_prediction_id
                model = old.from_model_version_id
            locked = _lock_image(s, image_id)
            return _append(s, image_id, locked, _latest(s, image_id), author, label, state, pred,
                           f"reverted to revision {to_revision}", model_version_id=model)

    def watermark(self) -> int:
        """A number that moves, in commit order, with every change of labels anywhere (a save, an undo, an import, a
        folder removed): a window polls it to learn that labels changed (one primary-key read). It was the newest
        revision's id, which on PostgreSQL an import committing after a later single save left unmoved, so windows
        missed the import (a session-51 audit; ``LabelWatermark``)."""
        with self.db.session() as s:
            return int(s.scalar(select(_MARK.c.mark).where(_MARK.c.id == 1)) or 0)

    def current(self, image_id: int) -> LabelRevisionInfo | None:
        with self.db.session() as s:
            row = _latest(s, image_id)
            return None if row is None else revision_dto(row)

    def chosen_by_label_next(self, folder_id: int | None = None,
                             within: AbstractSet[int] | None = None) -> dict[str, int]:
        """Per class: the reviewed (accepted or corrected), present images whose label has that class and any of
        whose revisions was saved as a "label next" proposal (``LabelSource.LABEL_NEXT``); ``folder_id``: one
        folder's; ``within``: only these images (the ones a retrained version serves). The retrain command's
        class-mix estimate reads these labels as chosen, not drawn (ADR 0049)."""
        chosen = (select(LabelRevision.image_id).where(LabelRevision.source == LabelSource.LABEL_NEXT.value)
                  .distinct().subquery())
        where: list[ColumnElement[bool]] = [Image.review_state.in_((ReviewState.ACCEPTED.value, ReviewState.CORRECTED.value)),
                 Image.label_class.is_not(None), Image.missing.is_(False)]
        if folder_id is not None:
            where.append(Image.folder_id == folder_id)
        out: dict[str, int] = {}
        with self.db.session() as s:
            if within is None:   # counted by the database
                query = (select(Image.label_class, func.count()).join(chosen, chosen.c.image_id == Image.id)
                         .where(*where).group_by(Image.label_class))
                return {str(name): int(n) for name, n in s.execute(query)}
            rows = select(Image.id, Image.label_class).join(chosen, chosen.c.image_id == Image.id).where(*where)
            for image_id, name in s.execute(rows):   # reviewed label-next images: hundreds, not millions
                if image_id in within:
                    out[str(name)] = out.get(str(name), 0) + 1
        return out

    def history(self, image_id: int) -> list[LabelRevisionInfo]:
        """All revisions, oldest first."""
        with self.db.session() as s:
            rows = s.scalars(select(LabelRevision).where(LabelRevision.image_id == image_id)
                             .order_by(LabelRevision.revision))
            return [revision_dto(r) for r in rows]

    def history_summary(self, image_id: int) -> list[RevisionSummary]:
        """All revisions, oldest first, without their masks' bytes (``RevisionSummary``): what the history list
        shows, read again after each save of the image on screen."""
        masks = (_REVISIONS.c.mask_png, _REVISIONS.c.anomaly_mask_png)
        stmt = (select(*(c for c in _REVISIONS.c if c not in masks),
                       masks[0].is_not(None).label("has_mask"), masks[1].is_not(None).label("has_anomaly_mask"))
                .where(_REVISIONS.c.image_id == image_id).order_by(_REVISIONS.c.revision))
        with self.db.session() as s:
            return [to_dto(r, RevisionSummary, **_decoded(r), has_mask=bool(r.has_mask),
                           has_anomaly_mask=bool(r.has_anomaly_mask)) for r in s.execute(stmt)]

    def current_many(self, image_ids: Sequence[int]) -> dict[int, LabelRevisionInfo]:
        out: dict[int, LabelRevisionInfo] = {}
        with self.db.session() as s:
            for part in chunks(list(image_ids)):
                out.update((i, revision_dto(r)) for i, r in _newest(s, part).items())
        return out

    def current_labels(self, folder_id: int | None = None,
                       states: Sequence[ReviewState] = (ReviewState.ACCEPTED, ReviewState.CORRECTED),
                       ) -> list[LabelRevisionInfo]:
        """Current labels of images in these review states (export and retraining read these)."""
        newest = (select(LabelRevision.image_id, func.max(LabelRevision.revision).label("rev"))
                  .group_by(LabelRevision.image_id).subquery())
        stmt = (select(LabelRevision)
                .join(newest, (LabelRevision.image_id == newest.c.image_id) & (LabelRevision.revision == newest.c.rev))
                .join(Image, Image.id == LabelRevision.image_id)
                .where(LabelRevision.review_state.in_([ReviewState(x).value for x in states]))
                .order_by(LabelRevision.image_id))
        if folder_id is not None:
            stmt = stmt.where(Image.folder_id == folder_id)
        with self.db.session() as s:
            return [revision_dto(r) for r in s.scalars(stmt)]
