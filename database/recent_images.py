"""The images a champion/challenger comparison runs on: the most recently reviewed, then the most
recently added (app/services/champion.py). Bounded by the caller, so a comparison is minutes of a
worker's time whatever the size of the project."""
from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from database.models import Image, LabelRevision
from database.states import ReviewState

if TYPE_CHECKING:
    from database.engine import Database

REVIEWED = (ReviewState.ACCEPTED.value, ReviewState.CORRECTED.value)


def recently_reviewed_ids(db: Database, limit: int) -> list[int]:
    """Up to ``limit`` images accepted or corrected, the latest decision first (present on disk)."""
    newest = func.max(LabelRevision.id)
    stmt = (select(LabelRevision.image_id).join(Image, Image.id == LabelRevision.image_id)
            .where(Image.review_state.in_(REVIEWED), Image.missing.is_(False))
            .group_by(LabelRevision.image_id).order_by(newest.desc()).limit(limit))
    with db.session() as s:
        return list(s.scalars(stmt))


def recently_added_ids(db: Database, limit: int, exclude: Collection[int] = ()) -> list[int]:
    """Up to ``limit`` images, the newest indexed first, leaving out ``exclude`` (present on disk)."""
    stmt = (select(Image.id).where(Image.missing.is_(False))
            .order_by(Image.added_at.desc(), Image.id.desc()).limit(limit + len(exclude)))
    skip = set(exclude)
    with db.session() as s:
        return [i for i in s.scalars(stmt) if i not in skip][:limit]
