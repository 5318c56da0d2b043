"""Answers of models a folder's routing no longer runs on its images: counted, and removed on request.

Why: routing is usually set after a first run without it (a new user's folder of several lines, or
*Propose from this folder*), and that run's answers stay: an infrared frame routed to the segmenter
alone still showed the steel classifier's "out of domain", stayed flagged, filled the out-of-domain
filter and came first in "label next". The saved rules only change the next job. Removing those
answers (the routing dialog asks; pre-labelling brings them back) and re-flagging the folder from the
answers that remain makes the gallery, the filters and "label next" say what the routed models say.
Only the answers that count are touched (``database/current_predictions``); labels never are.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from app.services.routing import Routing

if TYPE_CHECKING:
    from database import Database

# (image id, path in the folder, model version id, in-domain score or None) of an answer that counts
Answer = tuple[int, str, int, "float | None"]


def active_answers(db: "Database", folder_id: int) -> tuple[str, dict[int, str], list[Answer]]:
    """The folder's name, the versions whose answers count there (id -> family) and those answers of
    the folder's present images (one query): what the routing proposal and the clean-up below both read."""
    folder = db.folders.get(folder_id)
    if folder is None:
        raise ValueError(f"folder {folder_id} is not indexed")
    rows = db.predictions.in_domain_in_folder(folder_id)
    family_of = {v: f for _i, _p, v, f, _d in rows}
    return folder.name, family_of, [(i, p, v, d) for i, p, v, _f, d in rows]


def _unrouted(folder_name: str, family_of: dict[int, str], answers: list[Answer],
              routing: Routing) -> dict[int, list[int]]:
    families: dict[str, tuple[str, ...]] = {}  # path -> its routed families (asked once per image)
    out: dict[int, list[int]] = {}
    for image_id, rel_path, version, _score in answers:
        routed = families.get(rel_path)
        if routed is None:
            routed = families[rel_path] = routing.families_for(rel_path, folder_name)
        if family_of[version] not in routed:
            out.setdefault(version, []).append(image_id)
    return {v: sorted(ids) for v, ids in out.items()}


def unrouted_answers(db: "Database", folder_id: int, routing: Routing) -> dict[int, list[int]]:
    """Active model version id -> the folder's images it answered that ``routing`` gives not to its family."""
    return _unrouted(*active_answers(db, folder_id), routing)


def remove_unrouted_answers(db: "Database", folder_id: int, routing: Routing) -> int:
    """Remove them and re-flag the folder from what remains (the project's flag settings); how many went."""
    from app.services.reflag import reflag_folder, stored_thresholds

    name, family_of, answers = active_answers(db, folder_id)
    removed = _unrouted(name, family_of, answers, routing)
    gone = sum(db.predictions.delete_for_images(version, ids) for version, ids in removed.items())
    if not gone:
        return 0
    reflag_folder(db, folder_id, stored_thresholds(db))
    # An image left with no answer at all has no model flag to keep (reflag passes over it).
    dropped = {(version, i) for version, ids in removed.items() for i in ids}
    left = {i for i, _p, version, _d in answers if (version, i) not in dropped}
    bare = sorted({i for _v, i in dropped} - left)
    if bare:
        db.images.set_flagged(bare, False)
        db.images.set_priorities({i: 0.0 for i in bare})
    return gone
