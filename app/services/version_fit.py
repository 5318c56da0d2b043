"""Which of a family's other model versions a set of images lies inside, by each version's own domain description.

Why: a new user opens a folder of another product (MVTec bottles) and every active model calls it out of domain,
while the station holds a version made for exactly these images (the bundled ``anomaly-bottle``, or a version
another line retrained). The routing proposal (``app.services.routing_proposal``) asks this module, for each
subfolder a family's answers call foreign, whether another version would call a sample of its images in domain,
and names that version in the rule it proposes (ADR 0066).

No model is loaded: a version's domain description reads the image descriptor (and the frame's symmetry, ADR 0067)
of the image as its model is handed it (``inference.input_view``: channel mode and largest side, from its
``config.json``), so decoding the image that way and describing it gives the score the worker would store. A version whose description also reads its backbone
embedding cannot be scored so and is passed over, as is one with no description, damaged files, or files this
station cannot reach (each logged). Plain data, Qt-free; the routing dialog calls it on a helper thread.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from inference.domain import (
    DOMAIN_JSON,
    DOMAIN_WEIGHTS,
    IMAGE_FEATURE_KINDS,
    OUT_OF_DOMAIN_BELOW,
    DomainError,
    DomainStats,
    load_domain,
)
from inference.image_descriptor import DESCRIPTOR_VERSION, describe, symmetry
from inference.imageio import ImageReadError, decode
from inference.input_view import InputViewError, input_view
from inference.model_limits import read_json_bounded

if TYPE_CHECKING:
    from database.dto import ModelVersionInfo
    from database.engine import Database

log = logging.getLogger(__name__)

DESCRIPTION_FILES = ("config.json", DOMAIN_JSON, DOMAIN_WEIGHTS)  # all a version's description needs (no weights)
SAMPLE = 16  # images of a subfolder each version is tried on: enough for "most", a second or so of decoding


@dataclass(frozen=True)
class VersionFit:
    family: str
    version_id: int
    name: str
    scored: int      # sample images it could describe
    in_domain: int   # of those, inside its domain
    challenger: bool = False  # registered for review and not promoted yet (app/services/champion.py)


def sample(paths: Sequence[str], size: int = SAMPLE) -> list[str]:
    """``size`` of ``paths`` spread evenly over their sorted order (all of them when fewer)."""
    ordered = sorted(paths)
    if len(ordered) <= size:
        return ordered
    return [ordered[round(i * (len(ordered) - 1) / (size - 1))] for i in range(size)]


def _scorable(db: "Database", version: "ModelVersionInfo") -> tuple[DomainStats, str, int] | None:
    """The version's description and how its model is handed an image, or None (why is logged)."""
    from app.services.model_files import ModelFilesError, model_files_here

    try:
        folder = model_files_here(db, version, DESCRIPTION_FILES)
        stats = load_domain(folder, DESCRIPTOR_VERSION)
        if stats is None:
            return None
        if not set(stats.features) <= set(IMAGE_FEATURE_KINDS):
            log.info("%s: its domain description reads its backbone: not scored without loading it", version.name)
            return None
        meta = read_json_bounded(folder / "config.json")  # bounded; torch-free (the window imports this module)
        config = meta.get("config") if isinstance(meta, dict) else None
        mode, side = input_view(version.family, config if isinstance(config, dict) else {})
    except (ModelFilesError, DomainError, InputViewError, OSError, ValueError) as exc:  # ValueError: bad JSON, limits
        log.warning("%s %s: its domain cannot be read here (%s)", version.family, version.name, exc)
        return None
    return stats, mode, side


@dataclass
class FitCache:
    """What one proposal reads once: each image's features per channel mode and size (None: unreadable) and
    each version's description (None: not scorable here). A proposal asks about several subfolders and families."""

    descriptors: dict[tuple[str, str, int], "dict[str, np.ndarray] | None"] = field(default_factory=dict)
    descriptions: dict[int, "tuple[DomainStats, str, int] | None"] = field(default_factory=dict)


def versions_fit(db: "Database", family: str, images: Iterable[Path], leave_out: Iterable[int] = (),
                 cache: FitCache | None = None) -> list[VersionFit]:
    """How many of ``images`` each of ``family``'s versions (but those in ``leave_out``) calls in domain, best
    first (ties: a version that is not a challenger awaiting review, then the newer). Images that cannot be read
    are left out of every count. ``cache``: what an earlier call of the same proposal read."""
    skip = set(leave_out)
    paths = list(images)
    cache = cache if cache is not None else FitCache()
    views: dict[tuple[str, int], dict[str, np.ndarray]] = {}  # one decoding per channel mode and size
    out = []
    for version in sorted(db.model_versions.list(family), key=lambda v: -v.id):
        if version.id in skip:
            continue
        if version.id not in cache.descriptions:
            cache.descriptions[version.id] = _scorable(db, version)
        scorable = cache.descriptions[version.id]
        if scorable is None:
            continue
        stats, mode, side = scorable
        if (mode, side) not in views:
            rows = [r for r in (_described(p, mode, side, cache.descriptors) for p in paths) if r is not None]
            views[(mode, side)] = {k: np.stack([r[k] for r in rows]) for k in IMAGE_FEATURE_KINDS} if rows else {}
        x = views[(mode, side)]
        if not x:
            continue
        inside = int((stats.scores({k: x[k] for k in stats.features}) >= OUT_OF_DOMAIN_BELOW).sum())
        out.append(VersionFit(family, version.id, version.name, int(len(x["descriptor"])), inside,
                              bool(version.challenger)))
    # a challenger after the versions that are not (its review and promotion come first: seen under Xvfb, a
    # classifier retrained minutes before was proposed for its line over the bundled tile model, both in domain)
    return sorted(out, key=lambda f: (-f.in_domain / f.scored, f.challenger))


def _described(path: Path, mode: str, side: int, cache: dict[tuple[str, str, int], "dict[str, np.ndarray] | None"]
               ) -> dict[str, np.ndarray] | None:
    """The image's descriptor and symmetry as a model of this channel mode and size is handed it (None: unreadable)."""
    key = (str(path), mode, side)
    if key not in cache:
        try:
            d = decode(path, {mode: side})
            cache[key] = {"descriptor": describe(d.views[mode], d.source), "symmetry": symmetry(d.views[mode])}
        except (ImageReadError, MemoryError):
            cache[key] = None
    return cache[key]


__all__ = ["VersionFit", "FitCache", "versions_fit", "sample", "SAMPLE"]
