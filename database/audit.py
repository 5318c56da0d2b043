"""The audit trail read back: every label revision with its image, folder and the model version
of the prediction it was saved from, in (image, revision) order, a page at a time; and every inspector's flag
decision (``flag_decisions``) with its image and folder, in the order they were written.

Why pages by key: an audit of a year's work is millions of revisions; each page is one index
walk from where the last ended, so memory stays bounded and no page is read twice.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, tuple_

from database.models import FlagDecisionEntry, Folder, Image, LabelRevision, ModelVersion, Prediction

if TYPE_CHECKING:
    from database.engine import Database


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One saved decision, plain data (no masks: the audit says a mask changed, not its pixels)."""

    image_id: int
    revision: int
    author: str
    created_at: datetime
    folder_id: int
    folder: str
    rel_path: str
    review_state: str
    class_name: str | None
    anomaly_verdict: str | None
    changed: tuple[str, ...]
    note: str | None
    trace: dict[str, Any] | None
    model_version_id: int | None
    model_family: str | None
    model_version: str | None
    model_card: dict[str, Any] | None
    source: str | None = None  # how the image came to be labelled (LabelSource value), when known


_COLUMNS = (LabelRevision.image_id, LabelRevision.revision, LabelRevision.author, LabelRevision.created_at,
            Image.folder_id, Folder.name, Image.rel_path, LabelRevision.review_state, LabelRevision.class_name,
            LabelRevision.anomaly_verdict, LabelRevision.changed, LabelRevision.note, LabelRevision.trace,
            ModelVersion.id, ModelVersion.family, ModelVersion.name, ModelVersion.card, LabelRevision.source)


def audit_records(db: Database, folder_id: int | None = None, page: int = 2000) -> Iterator[AuditRecord]:
    """Every label revision (of one folder, or all), oldest revision of each image first."""
    after: tuple[int, int] | None = None
    while True:
        stmt = (select(*_COLUMNS).join(Image, Image.id == LabelRevision.image_id)
                .join(Folder, Folder.id == Image.folder_id)
                .outerjoin(Prediction, Prediction.id == LabelRevision.from_prediction_id)
                # the model as the revision recorded it when its prediction row has gone (migration 0018)
                .outerjoin(ModelVersion, ModelVersion.id == func.coalesce(Prediction.model_version_id,
                                                                          LabelRevision.from_model_version_id))
                .order_by(LabelRevision.image_id, LabelRevision.revision).limit(page))
        if folder_id is not None:
            stmt = stmt.where(Image.folder_id == folder_id)
        if after is not None:
            stmt = stmt.where(tuple_(LabelRevision.image_id, LabelRevision.revision) > after)
        with db.session() as s:
            rows = s.execute(stmt).all()
        if not rows:
            return
        for r in rows:
            values = list(r)
            values[10] = tuple(x for x in (values[10] or "").split(",") if x)  # the changed names
            yield AuditRecord(*values)
        after = (rows[-1][0], rows[-1][1])


@dataclass(frozen=True, slots=True)
class FlagAuditRecord:
    """One inspector's flag decision as written: ``flagged`` None handed the flag back to the models."""

    id: int
    author: str | None
    created_at: datetime
    flagged: bool | None
    folder_id: int
    folder: str
    rel_path: str


def flag_audit_records(db: Database, folder_id: int | None = None, page: int = 2000) -> Iterator[FlagAuditRecord]:
    """Every inspector's flag decision (of one folder, or all), oldest first, a page at a time by id: each image's
    flag kept only its latest decision, so the audit could not say who flagged a part or cleared it (a session-51
    audit)."""
    after = 0
    while True:
        stmt = (select(FlagDecisionEntry.id, FlagDecisionEntry.author, FlagDecisionEntry.created_at,
                       FlagDecisionEntry.flagged, Image.folder_id, Folder.name, Image.rel_path)
                .join(Image, Image.id == FlagDecisionEntry.image_id).join(Folder, Folder.id == Image.folder_id)
                .where(FlagDecisionEntry.id > after).order_by(FlagDecisionEntry.id).limit(page))
        if folder_id is not None:
            stmt = stmt.where(Image.folder_id == folder_id)
        with db.session() as s:
            rows = s.execute(stmt).all()
        if not rows:
            return
        for r in rows:
            yield FlagAuditRecord(*r)
        after = rows[-1][0]
