"""Answers of models a folder's routing no longer runs on its images: counted, and removed on request.

Why: routing is usually set after a first run without it (a new user's folder of several lines, or
*Propose from this folder*), and that run's answers stay: an infrared frame routed to the segmenter
alone still showed the steel classifier's "out of domain", stayed flagged, filled the out-of-domain
filter and came first in "label next". The saved rules only change the next job. Removing those
answers (the routing dialog asks; pre-labelling brings them back) and re-flagging the folder from the
answers that remain makes the gallery, the filters and "label next" say what the routed models say.
Only the active versions' answers are touched; labels never are.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from app.services.routing import Routing
from database.dto import ImageQuery

if TYPE_CHECKING:
    from database import Database


def unrouted_answers(db: "Database", folder_id: int, routing: Routing) -> dict[int, list[int]]:
    """Active model version id -> the folder's images it answered that ``routing`` gives not to its family."""
    folder = db.folders.get(folder_id)
    if folder is None:
        raise ValueError(f"folder {folder_id} is not indexed")
    active = db.model_versions.active_ids()
    family_of = {v: f for f, v in active.items()}
    families: dict[str, tuple[str, ...]] = {}
    out: dict[int, list[int]] = {}
    paths = {im.rel_path: im.id for im in db.images.query(ImageQuery(folder_id=folder_id, sort="id"))}
    for rel_path, version, _score in db.predictions.in_domain_in_folder(folder_id, list(family_of)):
        image_id = paths.get(rel_path)
        if image_id is None:
            continue
        routed = families.get(rel_path)
        if routed is None:
            routed = families[rel_path] = routing.families_for(rel_path, folder.name)
        if family_of[version] not in routed:
            out.setdefault(version, []).append(image_id)
    return out


def remove_unrouted_answers(db: "Database", folder_id: int, routing: Routing) -> int:
    """Remove them and re-flag the folder from what remains (the project's flag settings); how many went."""
    from app.services.project_settings import load_project_settings
    from app.services.reflag import reflag_folder

    gone = 0
    touched: set[int] = set()
    for version, image_ids in unrouted_answers(db, folder_id, routing).items():
        gone += db.predictions.delete_for_images(version, image_ids)
        touched.update(image_ids)
    if not gone:
        return 0
    reflag_folder(db, folder_id, load_project_settings(db).flags)
    # An image left with no answer at all has no model flag to keep (reflag passes over it).
    paths = {im.rel_path: im.id for im in db.images.query(ImageQuery(folder_id=folder_id, sort="id"))}
    left = db.predictions.in_domain_in_folder(folder_id, list(db.model_versions.active_ids().values()))
    bare = sorted(touched - {paths[p] for p, _v, _d in left if p in paths})
    if bare:
        db.images.set_flagged(bare, False)
        db.images.set_priorities({i: 0.0 for i in bare})
    return gone
