"""Which prediction counts for an image and a family: the ``predictions.current_family`` marker.

The review queue, the label panel, flags, counts and "label next" read the marked row of each
family, not "the active version's" (0013_current_prediction, ADR 0058, docs/design/routing-versions.md).
The rule the marker follows, kept by the writes here:

- **a version a routing rule names for the image counts there** (ADR 0059): a routed job stores its
  rows with ``PredictionIn.counts`` and they take the marker from any other row of the family
  (``take``); a saved rule re-marks the images it covers (``app.services.counting_versions``,
  through ``set_current``);
- **elsewhere the active version's predictions count**: a stored row is marked when its version is
  active and no other row of the image counts for the family (``families_of``, ``counted``); an
  activation moves the markers of the version it replaces onto the new one's rows, image by image,
  leaving the images where a named version counts alone (``move_to``).

On PostgreSQL the versions are read ``FOR SHARE`` while predictions are written: an activation
(which updates those rows) waits for the writer's commit and the writer for the activation's, so
a row is never marked by a version that stopped being active under it. SQLite has one writer at
a time.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import and_, exists, select, update
from sqlalchemy.orm import Session, aliased

from database.images import chunks
from database.models import ModelVersion, Prediction


def families_of(s: Session, version_ids: Iterable[int]) -> dict[int, tuple[str, bool]]:
    """version id -> (family, active), read ``FOR SHARE`` (see the module's docstring)."""
    ids = sorted(set(version_ids))
    if not ids:
        return {}
    rows = s.execute(select(ModelVersion.id, ModelVersion.family, ModelVersion.active)
                     .where(ModelVersion.id.in_(ids)).order_by(ModelVersion.id).with_for_update(read=True))
    return {int(i): (str(f), bool(a)) for i, f, a in rows}


def counted(s: Session, family: str, image_ids: Iterable[int]) -> set[int]:
    """The images among ``image_ids`` that have a row counting for ``family``."""
    out: set[int] = set()
    for part in chunks(sorted(set(image_ids))):
        out.update(s.scalars(select(Prediction.image_id).where(Prediction.current_family == family,
                                                               Prediction.image_id.in_(part))))
    return out


def take(s: Session, family: str, version_id: int, image_ids: Iterable[int]) -> None:
    """Unmark the family's other rows of these images: ``version_id``'s rows are about to count there."""
    for part in chunks(sorted(set(image_ids))):
        s.execute(update(Prediction).where(Prediction.current_family == family, Prediction.image_id.in_(part),
                                           Prediction.model_version_id != version_id)
                  .values(current_family=None).execution_options(synchronize_session=False))


def move_to(s: Session, family: str, version_id: int, previous_id: int | None) -> None:
    """An activation: the rows of the version it replaces stop counting, and the new version's rows
    count wherever no other row of the image does (a version a rule names keeps its images)."""
    if previous_id is not None and previous_id != version_id:
        s.execute(update(Prediction).where(Prediction.current_family == family,
                                           Prediction.model_version_id == previous_id)
                  .values(current_family=None).execution_options(synchronize_session=False))
    other = aliased(Prediction)
    s.execute(update(Prediction).where(
        Prediction.model_version_id == version_id, Prediction.current_family.is_(None),
        ~exists().where(and_(other.image_id == Prediction.image_id, other.current_family == family)))
        .values(current_family=family).execution_options(synchronize_session=False))


def set_current(s: Session, family: str, wanted: Mapping[int, int | None]) -> int:
    """image id -> the version whose row must count for ``family`` (None: none counts): the other
    rows unmarked, the wanted ones marked where they exist. Rows already right are not written.
    Returns how many rows changed."""
    return set_current_images(s, family, wanted)[0]


def set_current_images(s: Session, family: str, wanted: Mapping[int, int | None]) -> tuple[int, set[int]]:
    """``set_current``, and the images whose marker changed (what a re-mark re-flags: RETURNING, SQLite 3.35+
    and PostgreSQL)."""
    by_version: dict[int | None, list[int]] = {}
    for image_id, version_id in wanted.items():
        by_version.setdefault(version_id, []).append(image_id)
    changed = 0
    images: set[int] = set()
    for version_id, image_ids in by_version.items():
        for part in chunks(sorted(image_ids)):
            stale = [Prediction.current_family == family, Prediction.image_id.in_(part)]
            if version_id is not None:
                stale.append(Prediction.model_version_id != version_id)
            hit = list(s.scalars(update(Prediction).where(*stale).values(current_family=None)
                                 .returning(Prediction.image_id).execution_options(synchronize_session=False)))
            if version_id is not None:
                hit += s.scalars(update(Prediction).where(Prediction.model_version_id == version_id,
                                                          Prediction.image_id.in_(part),
                                                          Prediction.current_family.is_(None))
                                 .values(current_family=family).returning(Prediction.image_id)
                                 .execution_options(synchronize_session=False))
            changed += len(hit)
            images.update(int(i) for i in hit)
    return changed, images
