"""Fit, cross-validate and threshold the texture nearest-neighbour model (texture_knn.py).

Fitting is one pass: feature rows of the good images, a greedy coreset as the bank. What makes
it honest is around it (issue 19's protocol):

- ``group_cv``: folds of whole capture sessions (``groups.balanced_folds``); each fold's bank is built from
  the other sessions' fit images and scores the held-out sessions' good images and validation
  defects. The pooled figures are the model's cross-validation estimate, written to the card
  beside (never mixed with) the test figures.
- ``choose_threshold``: the image threshold from training data only. With validation defects:
  the score that maximises balanced accuracy (Youden's J) between held-out good images and the
  validation defects, both scored by the final model (neither was fitted on). Without them: the
  99 % quantile of the held-out good scores, as the other anomaly models do.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..anomaly_predict import model_maps, normalise_batch
from ..models.texture_knn import TextureKnn, TextureKnnConfig
from .anomaly_metrics import auroc, pixel_auroc
from .common import Progress
from .groups import balanced_folds

if TYPE_CHECKING:
    from ..anomaly_predict import AnomalyNet


ROWS_PER_IMAGE = 256  # candidate rows drawn per good image before the coreset
# Cross-validation pixel AUROC reads every 4th pixel along each axis: hundreds of 256x256 maps
# are tens of millions of pixels, whose sort took minutes; the maps are smooth (sigma >= 2 px).
CV_PIXEL_STEP = 4
THRESHOLD_QUANTILE = 0.99
PIXEL_QUANTILE = 0.999  # a map's region threshold: this quantile of good images' map values


def fit_model(config: TextureKnnConfig, images: np.ndarray, device: torch.device | str = "cpu",
              seed: int = 0, quiet: bool = False) -> TextureKnn:
    """A model whose bank is a coreset of the good ``images`` (n, c, s, s in [0, 1]); a bar with an
    ETA over the coreset's picks (minutes on a CPU for a full bank) unless ``quiet``."""
    probe = TextureKnn(dataclasses.replace(config, bank_size=1, bank_k=1, density=False)).to(device)
    rows = torch.cat([probe.bank_rows(normalise_batch(probe, images[i:i + 16], device), ROWS_PER_IMAGE, seed + i)
                      for i in range(0, len(images), 16)])
    size = min(config.bank_size, len(rows))
    cfg = dataclasses.replace(config, bank_size=size, bank_k=min(config.bank_k, size),
                              density=config.density and size > 1, density_k=max(1, min(config.density_k, size - 1)))
    model = TextureKnn(cfg).to(device)
    bar = Progress(size, "memory bank", disable=quiet)
    try:
        model.set_bank(rows, seed, progress=bar.update)
        if bar.done < size:  # every row kept (no coreset to pick): the stage is done all the same
            bar.update(size - bar.done)
    finally:
        bar.close()
    return model.eval()


def score_images(model: AnomalyNet, images: np.ndarray, device: torch.device | str = "cpu",
                 batch_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Maps (n, s, s) and image scores (n,) at model resolution."""
    maps, scores = [], []
    for i in range(0, len(images), batch_size):
        m, s = model_maps(model, images[i:i + batch_size], device)
        maps.append(m)
        scores.append(s)
    if not maps:
        side = int(images.shape[-1]) if images.ndim == 4 else 0
        return np.zeros((0, side, side), np.float32), np.zeros(0, np.float32)
    return np.concatenate(maps), np.concatenate(scores)


def summary(good_scores: np.ndarray, defect_scores: np.ndarray, defect_types: Sequence[str],
            good_maps: Sequence[np.ndarray] | np.ndarray, defect_maps: Sequence[np.ndarray], defect_masks: Sequence[np.ndarray | None],
            pixel_step: int = 1, pixels: bool = True) -> dict[str, Any]:
    """Image and pixel AUROC (pooled and per defect type) of good vs defect images; pixels read
    every ``pixel_step``-th row and column; ``pixels=False``: image figures only."""
    k = pixel_step
    good_maps = [g[::k, ::k] for g in good_maps] if pixels else []
    defect_maps = [a[::k, ::k] for a in defect_maps] if pixels else []
    defect_masks = [None if m is None else m[::k, ::k] for m in defect_masks] if pixels else []
    labels = np.r_[np.zeros(len(good_scores), bool), np.ones(len(defect_scores), bool)]
    scores = np.r_[good_scores, defect_scores]
    with_mask = [(m, a, t) for m, a, t in zip(defect_masks, defect_maps, defect_types)
                 if m is not None and m.any()]
    goods = [(np.zeros(g.shape, bool), g) for g in good_maps]
    out: dict[str, Any] = {
        "image_auroc": auroc(labels, scores),
        "pixel_auroc": pixel_auroc([m for m, _ in goods] + [m for m, _, _ in with_mask],
                                   [a for _, a in goods] + [a for _, a, _ in with_mask]) if with_mask else math.nan,
        "n_good": int(len(good_scores)), "n_defect": int(len(defect_scores)),
    }
    by_image, by_pixel = {}, {}
    for t in sorted(set(defect_types)):
        sel = np.array([x == t for x in defect_types])
        by_image[t] = auroc(np.r_[np.zeros(len(good_scores), bool), np.ones(int(sel.sum()), bool)],
                            np.r_[good_scores, defect_scores[sel]])
        typed = [(m, a) for m, a, tt in with_mask if tt == t]
        if typed:
            by_pixel[t] = pixel_auroc([m for m, _ in goods] + [m for m, _ in typed],
                                      [a for _, a in goods] + [a for _, a in typed])
    out["image_auroc_by_type"] = by_image
    out["pixel_auroc_by_type"] = by_pixel
    return out


def group_cv(config: TextureKnnConfig, good_names: Sequence[str], good: np.ndarray,
             defect_names: Sequence[str], defects: np.ndarray, defect_types: Sequence[str],
             defect_masks: Sequence[np.ndarray | None], group: Callable[[str], str], n_folds: int,
             device: torch.device | str = "cpu", seed: int = 0,
             log: Callable[[str], None] = print, keep_maps: bool = False) -> dict[str, Any]:
    """Cross-validation estimate over folds of whole groups (good and defect images grouped alike).

    Masks are at model resolution (s, s); a defect without a mask counts for the image score only.
    """
    groups_good = [group(n) for n in good_names]
    folds = balanced_folds(groups_good, n_folds)
    fold_groups = [sorted({groups_good[i] for i in f}) for f in folds]
    g_scores = np.zeros(len(good), np.float32)
    g_maps = np.zeros((len(good),) + good.shape[-2:], np.float32)
    d_scores = np.full(len(defects), np.nan, np.float32)
    d_maps: list[np.ndarray | None] = [None] * len(defects)
    for k, (held, names) in enumerate(zip(folds, fold_groups)):
        fit = np.array([i for i in range(len(good)) if i not in set(held)])
        model = fit_model(config, good[fit], device, seed)
        m, s = score_images(model, good[held], device)
        g_maps[held], g_scores[held] = m, s
        dsel = [i for i, n in enumerate(defect_names) if group(n) in set(names)]
        if dsel:
            m, s = score_images(model, defects[dsel], device)
            d_scores[dsel] = s
            for j, i in enumerate(dsel):
                d_maps[i] = m[j]
        log(f"cv fold {k + 1}/{len(folds)} (groups {', '.join(names)}): {len(held)} good, {len(dsel)} defect images held out")
    scored = [i for i in range(len(defects)) if d_maps[i] is not None]
    res = summary(g_scores, d_scores[scored], [defect_types[i] for i in scored], g_maps,
                  [d_maps[i] for i in scored], [defect_masks[i] for i in scored], CV_PIXEL_STEP)  # type: ignore[misc]
    res["pixel_step"] = CV_PIXEL_STEP
    res["folds"] = [{"groups": names, "good": len(held)} for names, held in zip(fold_groups, folds)]
    res["unscored_defects"] = len(defects) - len(scored)  # in a group without good images
    res["_good_scores"], res["_defect_scores"] = g_scores, d_scores[scored]
    if keep_maps:  # for a benchmark that rescores the same maps (score margins)
        res["_good_maps"], res["_defect_maps"] = g_maps, [d_maps[i] for i in scored]
        res["_defect_types"], res["_defect_masks"] = [defect_types[i] for i in scored], [defect_masks[i] for i in scored]
    return res


def choose_threshold(good_scores: np.ndarray, defect_scores: np.ndarray) -> dict[str, Any]:
    """Image threshold from training data only (see the module docstring)."""
    good_scores, defect_scores = np.asarray(good_scores, float), np.asarray(defect_scores, float)
    if len(defect_scores) == 0:
        return {"image": float(np.quantile(good_scores, THRESHOLD_QUANTILE)),
                "method": f"{THRESHOLD_QUANTILE:.0%} quantile of the image scores of {len(good_scores)} held-out good images"}
    cands = np.unique(np.r_[good_scores, defect_scores])
    best, best_j = float(cands[-1]), -1.0
    for c in cands:
        j = float((defect_scores > c).mean() - (good_scores > c).mean())
        if j > best_j:
            best, best_j = float(c), j
    return {"image": best, "youden_j": best_j,
            "good_flagged": float((good_scores > best).mean()), "defects_flagged": float((defect_scores > best).mean()),
            "method": f"maximum balanced accuracy (Youden's J) between the scores of {len(good_scores)} good images "
                      f"and {len(defect_scores)} validation defect images (train split)"}


def load_validation(root: Any, config: TextureKnnConfig, log: Callable[[str], None] = print
                    ) -> tuple[list[str], np.ndarray, list[str], list[np.ndarray | None]]:
    """The category's validation defects (names, images, types, masks at model resolution)."""
    from ..imageio import ImageReadError
    from .anomaly_data import load_images, read_test_mask, scan_validation

    items = scan_validation(root)
    images, kept, errors = load_images([t.path for t in items], config.image_size, config.in_channels)
    for e in errors:
        log(f"warning: skipped unreadable validation image {e}")
    by_path = {t.path: t for t in items}
    s = config.image_size
    masks: list[np.ndarray | None] = []
    for p in kept:
        try:
            m = read_test_mask(by_path[p], (s, s))
        except ImageReadError as exc:
            log(f"warning: validation mask unreadable, image score only: {exc}")
            m = None
        masks.append(m)
    return [p.name for p in kept], images, [by_path[p].defect_type for p in kept], masks


def protocol(config: TextureKnnConfig, root: Any, good_paths: Sequence[Any], n_folds: int, group_by: str,
             device: torch.device | str = "cpu", seed: int = 0, log: Callable[[str], None] = print
             ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(cross-validation estimate or None, threshold) from the training data of a category.

    With ``n_folds`` >= 2 the threshold is chosen on the cross-validation scores (good images of
    sessions the bank never saw: what the next session looks like); otherwise the caller
    calibrates on its held-out good images.
    """
    from .anomaly_data import load_images
    from .groups import name_group_function

    if n_folds < 2:
        return None, {}
    good, kept, _ = load_images(list(good_paths), config.image_size, config.in_channels)
    names, defects, types, masks = load_validation(root, config, log)
    group = name_group_function(group_by)
    groups = {group(p.name) for p in kept}
    if len(groups) < n_folds:  # e.g. a user's folder whose file names carry no session prefix
        log(f"warning: {len(groups)} {group_by} group(s) among the good images cannot fill {n_folds} folds; "
            "no cross-validation estimate, threshold from the held-out good images (--group-by to change)")
        return None, {}
    cv = group_cv(config, [p.name for p in kept], good, names, defects, types, masks, group, n_folds, device, seed, log)
    good_s, defect_s = cv.pop("_good_scores"), cv.pop("_defect_scores")
    thr = choose_threshold(good_s, defect_s)
    thr["method"] += f", each scored in {n_folds}-fold group cross-validation (groups by {group_by}) by a bank without its group"
    cv |= {"group_by": group_by, "n_folds": n_folds}
    return cv, thr
