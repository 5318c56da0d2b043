"""Which model version's answer counts for each image: the one its routing rule names, else the active one.

A routing rule may name a version per family (``RoutingRule.versions``, ADR 0059): the tile
classifier on ``tiles/*`` beside the steel one everywhere else. The window shows, reviews, filters
and counts the prediction marked on its row (``database/current_predictions``); this module moves
the marks when the rules change or a version is activated, and resolves the names rules give.

- ``resolve_named``: a named version must exist in the project; a bundled model of that name is
  registered on first use (not activated). Anything else is a ``RoutingError`` with the name.
  ``version_names`` lists what a rule may name.
- ``remark``: every image of the project gets, per family, its rule's named version's row as the
  one that counts, else the active version's; where that version has not run on the image, no row
  counts (the image shows it is not pre-labelled by it, and an "only new" run queues it). Folder
  by folder, a page of images per transaction: the window keeps working (the lock is held for
  one page), and an interrupted re-mark is finished by the next one (it is the same pass). The images
  whose answer that counts changed are re-flagged from the answers that now count.
- ``after_activation``: re-mark after an activation when a rule names a version of that family
  (the activation itself leaves the images a named version holds alone, but an image whose named
  version has not run yet would otherwise show the new active version's answer).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from app.services.routing import FAMILY_ORDER, Routing, RoutingError

if TYPE_CHECKING:
    from app.services.flags import FlagSettings
    from database import Database
    from database.dto import ModelVersionInfo

log = logging.getLogger(__name__)


def version_by_name(db: "Database", family: str, name: str) -> "ModelVersionInfo | None":
    """The project's ``family`` version called ``name``; a bundled model not listed yet gets its row first (as the
    Models dialog gives it). None: the project has no such version."""
    version = db.model_versions.by_name(family, name)
    if version is None:
        from app.services.model_catalog import ModelCatalog
        ModelCatalog(db).rows(family)
        version = db.model_versions.by_name(family, name)
    return version


def rule_version(routing: Routing, family: str, rel_path: str, folder_name: str) -> tuple[bool, str | None]:
    """For one image: whether its rule runs ``family`` (no rule: every family), and the version it names for it
    (None: the active one). Where a version's images are (``served_images``) and "label next"'s lines come from."""
    rule = routing.rule_for(rel_path, folder_name)
    if rule is None:
        return True, None
    return family in rule.families, rule.named.get(family)


def resolve_named(db: "Database", routing: Routing) -> dict[tuple[str, str], "ModelVersionInfo"]:
    """(family, name) -> the version, for every version the rules name."""
    out = {}
    for family, name in sorted(routing.named_versions()):
        version = version_by_name(db, family, name)
        if version is None:
            raise RoutingError(f"the routing names the {family} version {name!r}, which this project does not "
                               f"have (Project ▸ Models lists its versions; add the model folder there first)")
        out[(family, name)] = version
    return out


def version_names(db: "Database") -> dict[str, list[str]]:
    """family -> the names of its versions (bundled ones included), oldest first: what a rule may name."""
    from app.services.model_catalog import ModelCatalog
    out: dict[str, list[str]] = {f: [] for f in FAMILY_ORDER}
    for row in ModelCatalog(db).rows():
        out.setdefault(row.family, []).append(row.name)
    return out


def remark(db: "Database", routing: Routing, families: Iterable[str] = FAMILY_ORDER) -> int:
    """Mark, for every image and each of ``families``, the row of the version that counts there
    (see the module's docstring), and re-flag the folders where that changed (their flags follow
    the answers that count, ``reflag``); how many rows changed."""
    fams = [f for f in FAMILY_ORDER if f in set(families)]
    named = {key: v.id for key, v in resolve_named(db, routing).items()}
    active = db.model_versions.active_ids()
    changed = 0
    flags = _flag_settings(db)
    for folder in db.folders.list():
        moved: set[int] = set()
        for rows in db.images.trace_rows(folder.id):
            wanted: dict[str, dict[int, int | None]] = {f: {} for f in fams}
            for image_id, rel_path, _trace in rows:
                rule = routing.rule_for(rel_path, folder.name)
                names = rule.named if rule is not None else {}
                for family in fams:
                    wanted[family][image_id] = named[(family, names[family])] if family in names \
                        else active.get(family)
            for family in fams:
                rows_changed, images = db.predictions.set_current_images(family, wanted[family])
                changed += rows_changed
                moved |= images
        if moved and flags is not None:
            # only the images whose answer that counts changed: a 100,000-image folder re-flagged whole took 19 s
            # of the routing dialog's save (benchmarks/results/current-prediction.md)
            from app.services.reflag import reflag_images, stored_thresholds
            reflag_images(db, folder.id, sorted(moved), stored_thresholds(db, flags))
    return changed


def served_images(db: "Database", routing: Routing, family: str, name: str | None,
                  active: bool) -> frozenset[int] | None:
    """The images whose ``family`` answers come from the version called ``name``: the ones whose rule names
    it, and, when it is the ``active`` one, the ones whose rule names no version of the family (or that no rule
    matches; ``name`` None: the family has no version yet, those images). None when no rule names a version of
    the family and every rule runs it: the active version serves every image, nothing to narrow. An image whose
    rule does not run the family (an infrared frame, for the classifier) is nobody's. What a retraining of that
    version learns from, and where its challenger is compared (ADR 0060)."""
    if not any(f == family for f, _n in routing.named_versions()) and all(family in r.families for r in routing.rules):
        return None
    out: set[int] = set()
    for folder in db.folders.list():
        for rows in db.images.trace_rows(folder.id):
            for image_id, rel_path, _trace in rows:
                runs, named = rule_version(routing, family, rel_path, folder.name)
                if runs and (named == name if named is not None else active):
                    out.add(image_id)
    return frozenset(out)


def reviewed_by_version(db: "Database", family: str, routing: Routing | None = None) -> dict[str, int]:
    """Reviewed (accepted or corrected) images by the ``family`` version whose retraining learns from them: the one
    their routing rule names, else the active one (its name; "" when the family has none). Images whose rule does
    not run the family are nobody's. Reads the reviewed images only, folder by folder; ``routing``: the project's
    rules when the caller has them."""
    from app.services.project_settings import readable_routing
    from database.dto import ImageQuery
    from database.states import ReviewState

    routing = routing if routing is not None else readable_routing(db)
    active = db.model_versions.active(family)
    out: dict[str, int] = {}
    reviewed = (ReviewState.ACCEPTED, ReviewState.CORRECTED)
    for folder in db.folders.list():
        for im in db.images.query(ImageQuery(folder_id=folder.id, states=reviewed, sort="id")):
            runs, named = rule_version(routing, family, im.rel_path, folder.name)
            if runs:
                key = named or (active.name if active is not None else "")
                out[key] = out.get(key, 0) + 1
    return out


def learning_version(db: "Database", family: str) -> tuple[str | None, str]:
    """Which version a retraining with none chosen should learn for, and why: (None, "") for the active one, as
    before, where its images hold reviewed labels or no other version's do; the one version the rules name whose
    images hold them all where the active one's hold none (seen under Xvfb, session 40: 61 tiles labelled under a
    rule naming the tile classifier, *Retrain* with no row selected retrained the active steel classifier and
    failed with "nothing to export"); where several such versions hold them, (None, a message naming them)."""
    from app.services.project_settings import readable_routing

    routing = readable_routing(db)
    if not any(f == family for f, _n in routing.named_versions()):
        return None, ""   # no rule names a version of the family: the active one learns from every label
    by = reviewed_by_version(db, family, routing)
    active = db.model_versions.active(family)
    mine = by.get(active.name if active is not None else "", 0)
    others = {name: n for name, n in by.items() if n and name != (active.name if active is not None else "")}
    if mine or not others:
        return None, ""
    if len(others) == 1:
        return next(iter(others)), ""
    listed = ", ".join(f"{name} ({n} labelled)" for name, n in sorted(others.items(), key=lambda kv: -kv[1]))
    return None, (f"The reviewed images belong to several {family} versions the model routing names: {listed}. "
                  "Select the one to retrain in the table.")


def named_in(routing: Routing, family: str, name: str) -> list[str]:
    """The patterns of the rules that name ``name`` as their ``family`` version."""
    return [r.pattern for r in routing.rules if r.named.get(family) == name]


def _flag_settings(db: "Database") -> "FlagSettings | None":
    """The project's flag settings for re-flagging (None when they cannot be read: the flags stay
    until they are mended; the settings dialog says why)."""
    from app.services.project_settings import load_project_settings
    try:
        return load_project_settings(db).flags
    except ValueError as exc:
        log.warning("folders are not re-flagged after a re-mark: %s", exc)
        return None


def remark_after_change(db: "Database", before: Routing, after: Routing) -> int:
    """After saving ``after`` over ``before``: re-mark when either names a version (otherwise
    nothing that counts changes: rules without names leave every image to the active versions)."""
    touched = {f for f, _n in before.named_versions() | after.named_versions()}
    return remark(db, after, touched) if touched else 0


def after_activation(db: "Database", family: str, routing: Routing | None = None,
                     versions: tuple[int | None, ...] = ()) -> int:
    """Re-mark ``family`` after one of its versions was activated, when a rule names a version of it; and re-flag
    the images ``versions`` (the new active one and the one it replaced) have answers for: their answer that counts
    changed, and their flags were the replaced version's (found by a session-43 probe: six images stayed flagged,
    and listed by the flagged filter, by a version no longer active)."""
    if versions:
        flags = _flag_settings(db)
        if flags is not None:
            from app.services.reflag import reflag_where, stored_thresholds
            touched: set[int] = set()
            for vid in versions:
                if vid is not None:
                    touched |= db.predictions.image_ids_with(vid)
            reflag_where(db, sorted(touched), stored_thresholds(db, flags))
    if routing is None:  # unreadable rules read as none: the activation's own marks stand
        from app.services.project_settings import readable_routing
        routing = readable_routing(db)
    if not any(f == family for f, _n in routing.named_versions()):
        return 0
    try:
        return remark(db, routing, [family])
    except RoutingError as exc:  # a named version is gone: the activation stands; pre-labelling says why
        log.warning("after activating a %s version, the routing's named versions were not re-marked: %s", family, exc)
        return 0
