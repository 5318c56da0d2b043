"""MVTec AD metrics: image AUROC, pixel AUROC, and PRO integrated to 30 % FPR.

PRO (per-region overlap, Bergmann et al. 2021) weighs every connected defect region equally,
so one large defect cannot hide many missed small ones. The curve is evaluated at the
distinct anomaly scores of the defect-free pixels (all of them for small inputs, an even
subsample of ``max_thresholds`` otherwise), each giving the points just above and at the
threshold so ties are handled, then integrated with the trapezoid rule up to ``max_fpr`` and
divided by ``max_fpr`` (1.0 = perfect).
"""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.all() or not labels.any():
        return math.nan
    return float(roc_auc_score(labels, scores))


def pixel_auroc(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]) -> float:
    _check_pairs(masks, maps)
    return auroc(np.concatenate([m.ravel() for m in masks]), np.concatenate([a.ravel() for a in maps]))


def _check_pairs(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]) -> None:
    if len(masks) != len(maps):
        raise ValueError(f"{len(masks)} masks but {len(maps)} maps")
    for i, (m, a) in enumerate(zip(masks, maps)):
        if m.shape != a.shape:
            raise ValueError(f"pair {i}: mask {m.shape} and map {a.shape} differ in shape")


def pro_curve(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray], max_fpr: float = 0.3,
              max_thresholds: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, pro) points, fpr ascending, covering [0, max_fpr] and one point past it."""
    _check_pairs(masks, maps)
    regions: list[np.ndarray] = []
    normal_parts = []
    for m, a in zip(masks, maps):
        m = np.asarray(m).astype(bool)
        a = np.asarray(a, dtype=np.float64)
        normal_parts.append(a[~m])
        if m.any():
            n, lab = cv2.connectedComponents(m.astype(np.uint8), connectivity=8)
            regions.extend(np.sort(a[lab == k]) for k in range(1, n))
    normal = np.sort(np.concatenate(normal_parts))[::-1]  # descending
    if not regions or normal.size == 0:
        raise ValueError("PRO needs at least one defect region and some defect-free pixels")
    n = normal.size
    distinct, first = np.unique(-normal, return_index=True)  # ascending in -score = descending score
    thr = -distinct
    count_ge = np.append(first[1:], n)  # pixels with score >= thr[i]
    fpr_ge = count_ge / n
    last = int(np.searchsorted(fpr_ge, max_fpr, side="left"))  # first threshold reaching max_fpr
    keep = np.arange(min(last + 1, thr.size))
    if keep.size > max_thresholds:
        keep = np.unique(np.concatenate([np.linspace(0, keep[-1], max_thresholds).round().astype(int), keep[-1:]]))
    thr, fpr_ge = thr[keep], fpr_ge[keep]
    fpr_gt = first[keep] / n
    pro_ge = np.mean([1.0 - np.searchsorted(r, thr, side="left") / r.size for r in regions], axis=0)
    pro_gt = np.mean([1.0 - np.searchsorted(r, thr, side="right") / r.size for r in regions], axis=0)
    fpr = np.stack([fpr_gt, fpr_ge], 1).ravel()
    pro = np.stack([pro_gt, pro_ge], 1).ravel()
    fpr = np.concatenate([[0.0], fpr])
    pro = np.concatenate([[0.0], pro])
    if fpr[-1] < max_fpr:  # every normal pixel counted before max_fpr: curve is flat at its end
        fpr = np.append(fpr, 1.0)
        pro = np.append(pro, 1.0)
    order = np.lexsort((pro, fpr))
    return fpr[order], pro[order]


def pro_score(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray], max_fpr: float = 0.3,
              max_thresholds: int = 4000) -> float:
    """Normalised area under the PRO curve up to ``max_fpr``."""
    fpr, pro = pro_curve(masks, maps, max_fpr, max_thresholds)
    cut = int(np.searchsorted(fpr, max_fpr, side="right"))
    xs, ys = fpr[:cut], pro[:cut]
    if cut < fpr.size and xs[-1] < max_fpr:
        x0, x1, y0, y1 = fpr[cut - 1], fpr[cut], pro[cut - 1], pro[cut]
        y = y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)
        xs, ys = np.append(xs, max_fpr), np.append(ys, y)
    return float(np.trapezoid(ys, xs) / max_fpr) if hasattr(np, "trapezoid") else float(np.trapz(ys, xs) / max_fpr)  # type: ignore[attr-defined]  # numpy < 2
