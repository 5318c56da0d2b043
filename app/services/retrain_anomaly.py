"""Retraining an anomaly model that learns from the reviewed defects, not only from good parts.

Why: the tile model (``tile_defect``, ADR 0032) fits its heads on labelled defects with a drawn
region, which the trainer reads from ``validation/<type>/`` beside their masks in
``validation_ground_truth/<type>/``. The station's MVTec export puts every anomalous image in
``test/`` (the held-out part the new and the old version are compared on), so a refit of such a
model first moves a hashed share of the anomalous images *with a region* into ``validation/``; the
rest stay in ``test/`` for the comparison. Which image goes where depends only on its exported name
(``assign_splits``, the same rule as the other families' held-out part), so a rerun on the same
labels splits the same way.

The folds of the refit's cross-validation (and of the out-of-fold planes its heads learn from)
never split a capture session where the names show one (``fit_grouping``); the trainers read a
file-name rule, so sessions are taken from name prefixes only, and their absence is said in the
notes. Qt- and torch-free.
"""
from __future__ import annotations

from pathlib import Path

from app.services.export_split import SplitSpec, assign_splits
from app.services.retraining import image_files
from inference.training.anomaly_data import MASK_SUFFIXES, VALIDATION, VALIDATION_GT  # torch-free

MASK_SUFFIX = MASK_SUFFIXES[0]       # what the station's MVTec export writes: <stem>_mask.png
MIN_DEFECT_REGIONS = 5               # fewer labelled defects cannot fill the folds the heads are fitted on
MAX_FOLDS = 3


def defects_to_validation(category: Path, spec: SplitSpec) -> tuple[int, int]:
    """Move the ``spec.train`` share of the anomalous test images that have a drawn region (and their
    masks) into ``validation/``; returns (moved, anomalous images left in ``test/``)."""
    test, gt = category / "test", category / "ground_truth"
    with_region: dict[Path, Path] = {}
    left = 0
    for kind_dir in sorted(d for d in test.iterdir() if d.is_dir() and d.name != "good") if test.is_dir() else []:
        for img in image_files(kind_dir):
            mask = gt / kind_dir.name / f"{img.stem}{MASK_SUFFIX}"
            if mask.is_file():
                with_region[img] = mask
            else:
                left += 1
    parts = assign_splits({p: f"{p.parent.name}/{p.name}" for p in with_region},
                          {p: p.parent.name for p in with_region}, spec)
    moved = 0
    for img, mask in with_region.items():
        if parts[img] != "train":
            left += 1
            continue
        kind = img.parent.name
        (category / VALIDATION / kind).mkdir(parents=True, exist_ok=True)
        (category / VALIDATION_GT / kind).mkdir(parents=True, exist_ok=True)
        img.rename(category / VALIDATION / kind / img.name)
        mask.rename(category / VALIDATION_GT / kind / mask.name)
        moved += 1
    return moved, left


def fit_grouping(category: Path) -> tuple[str, int, str | None]:
    """(``--group-by``, ``--cv-folds``, a note or None) for refitting on ``category``'s good and
    validation images: capture sessions by name prefix (magnetic tile's ``exp1_…``) when they give at
    least two groups that each hold more than one kind of image (good and defect); a prefix that is
    the kind itself (``free_…``, ``crack_…``) would put all good images in one fold."""
    from inference.training.groups import class_pure, path_groups

    good = image_files(category / "train" / "good")
    defects: list[Path] = []
    validation = category / VALIDATION
    for kind_dir in sorted(d for d in validation.iterdir() if d.is_dir()) if validation.is_dir() else []:
        defects += image_files(kind_dir)
    groups, _ = path_groups(good + defects, root=category, rule="prefix")
    kinds = ["good"] * len(good) + ["defect"] * len(defects)
    if groups is not None and not class_pure(groups, kinds):
        return "prefix", min(MAX_FOLDS, len(set(groups))), None
    return "none", MAX_FOLDS, ("no capture sessions in the reviewed images' names (a prefix such as exp1_ shared by "
                               "good and defective parts): the refit's folds are of single images, so its "
                               "cross-validation figure may flatter a new session")
