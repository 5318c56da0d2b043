"""Fitting a model directory's domain statistics from its training images (``inference.domain``).

One function for every writer: ``python main.py domain fit``, the trainers at the end of a run and
retraining all call ``fit_directory``, so the features (the image descriptor by default, the
backbone embedding on request), the out-of-fold threshold and the files are the same whoever
writes them. It runs the model as the worker does (the engine's decoder and the family adapter's
``domain_features``), so the statistics describe exactly what prediction will score.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .checkpoints import read_json
from .domain import (
    DEFAULT_COMPONENTS,
    DEFAULT_FOLDS,
    MIN_IMAGES,
    PARTS,
    DomainError,
    DomainStats,
    fit_domain,
    group_folds,
    save_domain,
)
from .families import family as family_entry
from .image_descriptor import DESCRIPTOR_VERSION
from .imageio import is_image_file

log = logging.getLogger(__name__)

# Fitting on more images than this adds little to a Gaussian of a few hundred dimensions and
# costs a forward pass each: a larger set is subsampled evenly (with a fixed seed).
MAX_FIT_IMAGES = 4000
# What the statistics describe by default (ADR 0028): the image descriptor as a Gaussian and as a
# per-feature range, chosen over the backbone embedding (alone or beside them) by
# benchmarks/ood_select.py on training and choosing data (benchmarks/results/ood-2.md).
DEFAULT_PARTS: tuple[str, ...] = ("descriptor", "descriptor_range")

EMBEDDING_NOTE = {
    "classifier": "mean and spread over space of the normalised last-stage feature map (MemoryMamba.embedding)",
    "segmenter": "mean and spread over space of the deepest encoder sentence map, frame shrunk to 256 px",
    "anomaly": "mean and spread over the image of the comparer's unit token embeddings",
}


@dataclass(frozen=True)
class DomainFit:
    stats: DomainStats
    images: int
    unreadable: tuple[str, ...]
    directory: Path
    fold_groups: str = "none"  # the grouping rule the folds followed ("none": mixed folds only, and why where groups
    #                            were given)


def images_under(folder: str | os.PathLike, names: Iterable[str] | None = None) -> list[Path]:
    """Every image under ``folder`` (recursive, sorted); with ``names``, only the images whose
    file stem or path relative to ``folder`` is listed (a split file such as SIRST's train.txt)."""
    root = Path(folder)
    # hidden folders are not a trainer's data (a session-46 probe: a model trained on 11 images was described by 14,
    # three of them from .hidden/)
    found = sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p)
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if names is None:
        return found
    wanted = {n.strip() for n in names if n.strip()}
    return [p for p in found if p.stem in wanted or p.relative_to(root).as_posix() in wanted]


def training_images(data: str | os.PathLike) -> list[Path]:
    """The training images of a data folder in any layout the station's trainers read: SIRST-style
    ``images/`` + ``train.txt``; MVTec ``train/good`` (or one category holding it); an image
    folder's ``train/``; otherwise every image under it. Used after training and retraining."""
    root = Path(data)
    if (root / "train.txt").is_file() and (root / "images").is_dir():
        return images_under(root / "images", (root / "train.txt").read_text(encoding="utf-8").splitlines())
    if (root / "images").is_dir() and (root / "masks").is_dir():  # frames and their masks: the frames alone (the
        return images_under(root / "images")                      # masks were described as training images)
    # MVTec: train/ holds only good/ (an image folder whose classes include "good" holds more).
    goods = [root / "train" / "good"] + sorted(root.glob("*/train/good"))
    good = next((g for g in goods if g.is_dir() and [d.name for d in g.parent.iterdir() if d.is_dir()] == ["good"]), None)
    if good is not None:
        return images_under(good)
    return images_under(root / "train" if (root / "train").is_dir() else root)


def forget_domain(model_dir: str | os.PathLike) -> None:
    """Remove a model folder's domain statistics: written by an earlier training into the same folder, they describe
    other data (a session-46 probe: the command said "no domain statistics" while the first run's stayed in force)."""
    from inference.domain import DOMAIN_JSON, DOMAIN_WEIGHTS

    for name in (DOMAIN_JSON, DOMAIN_WEIGHTS):
        try:
            (Path(model_dir) / name).unlink()
        except FileNotFoundError:
            pass


# Capture groups of the training images and the rule that made them (None: no usable groups).
# The rules live in inference.training.groups, which this runtime package never imports: the
# commands hand ``inference.training.groups.path_groups`` in (with the trainer's ``--group-by``).
Grouping = Callable[[Sequence[Path]], "tuple[list[str] | None, str]"]


def fit_after_training(model_dirs: Iterable[str | os.PathLike], data: str | os.PathLike, device: str = "auto",
                       grouping: Grouping | None = None, also: Sequence[Path] = (),
                       images: Sequence[Path] | None = None) -> list[str]:
    """Give each trained model directory its domain statistics from ``data``'s training images (``images``: the
    trainer's own list where it chose them, e.g. the segmenter's split; and ``also``: images the model learnt from
    besides them, e.g. a retraining's held-out share once it was refitted on every label); returns one line per
    directory (what was written, or why not: training never fails here)."""
    images = list(images) if images is not None else training_images(data)
    seen = set(images)
    images += [p for p in also if p not in seen]
    lines = []
    for d in model_dirs:
        try:
            fit = fit_directory(d, images, device=device, source=f"training images of {data}", grouping=grouping)
        except Exception as exc:  # noqa: BLE001 - the model is good without statistics; say why there are none
            forget_domain(d)   # an earlier training's into the same folder would describe other data (a probe)
            lines.append(f"{d}: no domain statistics ({type(exc).__name__}: {exc})")
            continue
        lines.append(f"{d}: domain statistics of {fit.images} training images, out-of-domain threshold "
                     f"{fit.stats.threshold:.3f} ({rate_note(fit.stats)})")
    return lines


def rate_note(stats: DomainStats) -> str:
    """The threshold's quantile and its cross-validated own-image rate, in words, naming the folds as they were: a
    fit whose groups were too few to fold by has mixed folds, whose rate says less of a new session's images."""
    rate = stats.own_rates.get(stats.quantile)
    if stats.capped:
        from .domain import MEDIAN_CAP
        return (f"{MEDIAN_CAP:g} times the median out-of-fold distance, below their {stats.quantile:.3g} quantile: "
                "too few images for the quantile to say much (ADR 0063)")
    how = {True: "held-out groups' own images beyond it in group cross-validation",
           False: "held-out images beyond it in cross-validation over mixed folds (no capture groups kept whole)",
           None: "held-out images beyond it in cross-validation"}[stats.grouped]
    # the 1 quantile is the largest distance: "the 1 quantile" read as a typo for 0.99 beside "10.0 % … beyond it"
    # (a session-52 audit, a segmenter retrained on 10 frames)
    where = ("the largest of the out-of-fold distances" if stats.quantile >= 1
             else f"the {stats.quantile:.3g} quantile of out-of-fold distances")
    return where + (f"; {rate:.1%} of {how}" if rate is not None else "")


def family_parts(family: str) -> tuple[str, ...]:
    """The parts a family's domain description holds by default (the catalogue's ``domain_parts``; empty or an
    unknown family: ``DEFAULT_PARTS``)."""
    try:
        return family_entry(family).domain_parts or DEFAULT_PARTS
    except KeyError:
        return DEFAULT_PARTS


def family_descriptor_features(family: str) -> tuple[str, ...]:
    """The descriptor features a family's domain statistics read (the catalogue's
    ``domain_descriptor_features``; empty: all; an unknown family: all)."""
    try:
        return family_entry(family).domain_descriptor_features
    except KeyError:
        return ()


def _subsample(paths: Sequence[Path], limit: int, seed: int) -> list[Path]:
    if len(paths) <= limit:
        return list(paths)
    keep = np.sort(np.random.default_rng(seed).choice(len(paths), limit, replace=False))
    return [paths[i] for i in keep]


def fit_directory(model_dir: str | os.PathLike, images: Sequence[str | os.PathLike], device: str = "auto",
                  quantile: float | None = None, components: int = DEFAULT_COMPONENTS,
                  folds: int = DEFAULT_FOLDS, seed: int = 0, source: str = "",
                  max_images: int = MAX_FIT_IMAGES, parts: Sequence[str] | None = None,
                  grouping: Grouping | None = None) -> DomainFit:
    """Describe the training ``images`` as the model in ``model_dir`` sees them (the ``parts`` asked for, else its
    family's: ``family_parts``), fit the statistics
    (threshold out-of-fold on these images only; with ``grouping``, folds keep its capture
    groups or scenes whole, and the quantile is chosen by group cross-validation unless
    ``quantile`` is given: ``inference.domain.fit_domain``, ADR 0036), reading the descriptor
    features the model's family names (``inference.families``, ADR 0038), and write
    ``domain.safetensors`` + ``domain.json`` beside it."""
    from .engine import InspectionEngine  # torch: imported only by those who fit

    d = Path(model_dir)
    family = str(read_json(d / "config.json").get("family", ""))
    parts = tuple(parts) if parts is not None else family_parts(family)
    paths = _subsample([Path(p) for p in images], max_images, seed)
    if not paths:
        raise DomainError(f"no training images given for {d}")
    with InspectionEngine({family: d}, device=device, half=False) as engine:
        kinds = tuple(dict.fromkeys(PARTS[p][0] for p in parts if p in PARTS))
        feats, unreadable = engine.domain_features_files(paths, family, kinds)
    if unreadable:
        log.warning("%d of %d training images unreadable, left out (first: %s)", len(unreadable), len(paths), unreadable[0])
        bad = set(unreadable)
        paths = [p for p in paths if str(p) not in bad]
    groups, rule = grouping(paths) if grouping is not None else (None, "none")
    said = rule
    if groups is not None and group_folds(len(paths), folds, seed, groups) is None:   # the folds are mixed: say so
        said = (f"none ({rule} groups: a fold of whole groups would leave fewer than {MIN_IMAGES} images to fit "
                "without it)")
        groups, rule = None, "none"
    stats = fit_domain(feats, quantile=quantile, components=components, folds=folds, seed=seed, groups=groups,
                       embedding=f"{family}: {EMBEDDING_NOTE.get(family, 'pooled backbone embedding')}"
                       if "embedding" in parts else "", descriptor=DESCRIPTOR_VERSION, parts=parts,
                       descriptor_features=family_descriptor_features(family))
    save_domain(d, stats, {"source": source[:200], "folds": folds, "seed": seed, "fold_groups": rule,
                           "fold_group_count": len(set(groups)) if groups is not None else 0,
                           "subsampled_from": len(images) if len(images) > len(paths) else None})
    return DomainFit(stats, len(paths), tuple(unreadable), d, said)
