"""Which prediction counts for an image and a family: the ``predictions.current_family`` marker.

The review queue, the label panel, flags, counts and "label next" read the marked row of each
family, not "the active version's" (0013_current_prediction, docs/design/routing-versions.md), so
the version that counts can one day differ from folder to folder. Today the rule is the old one,
kept here in one place: **the active version's predictions count**.

- A stored prediction is marked when its version is active (``markers``, read while the rows are
  written, in the same transaction).
- Activating a version moves the family's markers onto its rows (``move_to``), in the
  activation's transaction: the images it has not predicted show nothing for that family, as
  before.

On PostgreSQL the versions are read ``FOR SHARE`` while predictions are written: an activation
(which updates those rows) waits for the writer's commit and the writer for the activation's, so
a row is never marked by a version that stopped being active under it. SQLite has one writer at
a time.
"""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from database.models import ModelVersion, Prediction


def markers(s: Session, version_ids: Iterable[int]) -> dict[int, str | None]:
    """version id -> the marker its new predictions get (its family if active, else None)."""
    ids = sorted(set(version_ids))
    if not ids:
        return {}
    rows = s.execute(select(ModelVersion.id, ModelVersion.family, ModelVersion.active)
                     .where(ModelVersion.id.in_(ids)).order_by(ModelVersion.id).with_for_update(read=True))
    found = {int(i): (str(f) if a else None) for i, f, a in rows}
    return {i: found.get(i) for i in ids}


def move_to(s: Session, family: str, version_id: int) -> None:
    """Make ``version_id``'s predictions the ones that count for ``family`` (unmark the others
    first: at most one marked row per image and family at any time)."""
    s.execute(update(Prediction).where(Prediction.current_family == family)
              .values(current_family=None).execution_options(synchronize_session=False))
    s.execute(update(Prediction).where(Prediction.model_version_id == version_id)
              .values(current_family=family).execution_options(synchronize_session=False))
