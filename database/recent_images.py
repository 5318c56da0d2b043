"""The images a champion/challenger comparison runs on: the most recently reviewed, then the most
recently added (app/services/champion.py). Bounded by the caller, so a comparison is minutes of a
worker's time whatever the size of the project."""
from __future__ import annotations

from collections.abc import Collection
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, func, select

from database.models import Image, LabelRevision
from database.states import ReviewState

if TYPE_CHECKING:
    from database.engine import Database

REVIEWED = (ReviewState.ACCEPTED.value, ReviewState.CORRECTED.value)


def recently_reviewed_ids(db: Database, limit: int, within: AbstractSet[int] | None = None) -> list[int]:
    """Up to ``limit`` images accepted or corrected, the latest decision first (present on disk);
    ``within``: only these (the images a routed version serves), read in pages until enough."""
    newest = func.max(LabelRevision.id)
    stmt = (select(LabelRevision.image_id).join(Image, Image.id == LabelRevision.image_id)
            .where(Image.review_state.in_(REVIEWED), Image.missing.is_(False))
            .group_by(LabelRevision.image_id).order_by(newest.desc()))
    return _first(db, stmt, limit, within)


def recently_added_ids(db: Database, limit: int, exclude: Collection[int] = (),
                       within: AbstractSet[int] | None = None) -> list[int]:
    """Up to ``limit`` images, the newest indexed first, leaving out ``exclude`` (present on disk);
    ``within``: only these."""
    stmt = select(Image.id).where(Image.missing.is_(False)).order_by(Image.added_at.desc(), Image.id.desc())
    skip = set(exclude)
    if within is None:
        with db.session() as s:
            return [i for i in s.scalars(stmt.limit(limit + len(skip))) if i not in skip][:limit]
    return _first(db, stmt, limit, within - skip)


def _first(db: Database, stmt: Select[Any], limit: int, within: AbstractSet[int] | None) -> list[int]:
    """The first ``limit`` ids of ``stmt`` (``within``: of those in it; the ordered ids are streamed until enough
    are found — the rows it holds may lie anywhere in the order, and pages by OFFSET re-read the order from its
    start each time: 10 s for a tenth of 100,000 images, benchmarks/results/current-prediction.md)."""
    if within is None:
        with db.session() as s:
            return list(s.scalars(stmt.limit(limit)))
    out: list[int] = []
    if limit <= 0:
        return out
    with db.session() as s:
        for i in s.scalars(stmt.execution_options(yield_per=2000)):
            if i in within:
                out.append(i)
                if len(out) >= limit:
                    break
    return out
