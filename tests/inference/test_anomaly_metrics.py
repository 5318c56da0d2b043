"""AUROC and PRO against cases computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from inference.training.anomaly_metrics import auroc, pixel_auroc, pro_curve, pro_score


def test_auroc_hand_case():
    # Positive/negative pairs: (0.35 vs 0.1) win, (0.35 vs 0.4) lose, 0.8 wins both -> 3/4.
    assert auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)


def test_auroc_ties_count_half_and_single_class_is_nan():
    assert auroc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert math.isnan(auroc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_pixel_auroc_pools_pixels_and_checks_shapes():
    masks = [np.array([[0, 1]], bool), np.array([[0, 0]], bool)]
    maps = [np.array([[0.2, 0.9]]), np.array([[0.1, 0.95]])]
    # positive 0.9 beats 0.2 and 0.1, loses to 0.95 -> 2/3
    assert pixel_auroc(masks, maps) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="differ in shape"):
        pixel_auroc([np.zeros((2, 2), bool)], [np.zeros((2, 3))])


def _one_region_case():
    mask = np.zeros((2, 7), bool)
    mask[0, :4] = True
    amap = np.zeros((2, 7))
    amap[0, :4] = [0.9, 0.9, 0.1, 0.1]
    amap[1, 0] = 0.95  # one of the 10 normal pixels outranks the whole region
    return mask, amap


def test_pro_hand_case():
    # Normal pixels: one at 0.95, nine at 0. Region of 4: two at 0.9, two at 0.1.
    # FPR 0 -> 0.1 while PRO stays 0 (threshold above the region); at FPR 0.1 every region
    # pixel is above the nine zeros -> PRO 1 until FPR jumps to 1. Area to 0.3 = 0.2 -> 0.2/0.3.
    mask, amap = _one_region_case()
    assert pro_score([mask], [amap]) == pytest.approx(2 / 3)
    fpr, pro = pro_curve([mask], [amap])
    assert np.all(np.diff(fpr) >= 0) and fpr[0] == 0.0


def test_pro_perfect_constant_and_per_region_weighting():
    mask, _ = _one_region_case()
    assert pro_score([mask], [mask.astype(float)]) == pytest.approx(1.0)
    # A constant map: PRO = FPR along the diagonal, area 0.3^2/2 normalised by 0.3.
    assert pro_score([mask], [np.ones(mask.shape)]) == pytest.approx(0.15)
    # Two regions (big and 1-pixel); only the big one found: per-region mean -> 0.5, not ~0.9.
    m = np.zeros((5, 12), bool)
    m[0, :9] = True
    m[4, 11] = True
    a = np.where(m, 0.0, 0.5)
    a[0, :9] = 1.0
    assert pro_score([m], [a]) == pytest.approx(0.5)


def test_pro_needs_a_region():
    with pytest.raises(ValueError, match="defect region"):
        pro_score([np.zeros((3, 3), bool)], [np.zeros((3, 3))])


def _regions_8(mask: np.ndarray) -> list[np.ndarray]:
    """Connected defect regions (8-neighbourhood) by a plain flood fill: the slow reference's own."""
    seen = np.zeros(mask.shape, bool)
    out = []
    for y, x in zip(*np.nonzero(mask)):
        if seen[y, x]:
            continue
        region, stack = np.zeros(mask.shape, bool), [(y, x)]
        seen[y, x] = True
        while stack:
            cy, cx = stack.pop()
            region[cy, cx] = True
            for ny in range(cy - 1, cy + 2):
                for nx in range(cx - 1, cx + 2):
                    if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
        out.append(region)
    return out


def _slow_pro(masks, maps, max_fpr=0.3) -> float:
    """PRO the way its definition reads: binarise at every value any pixel takes, measure the
    false-positive rate and each region's overlap, then integrate the curve up to ``max_fpr``."""
    regions = [(i, r) for i, m in enumerate(masks) for r in _regions_8(m)]
    normal = sum(int((~m).sum()) for m in masks)
    points = {(0.0, 0.0)}
    for t in np.unique(np.concatenate([a.ravel() for a in maps])):
        fp = sum(int(((a >= t) & ~m).sum()) for m, a in zip(masks, maps))
        overlap = np.mean([((maps[i] >= t) & r).sum() / r.sum() for i, r in regions])
        points.add((fp / normal, float(overlap)))
    fpr, pro = map(np.array, zip(*sorted(points)))
    keep = fpr <= max_fpr
    xs, ys = list(fpr[keep]), list(pro[keep])
    if xs[-1] < max_fpr:
        j = int(np.argmax(fpr > max_fpr))
        ys.append(pro[j - 1] + (pro[j] - pro[j - 1]) * (max_fpr - fpr[j - 1]) / (fpr[j] - fpr[j - 1]))
        xs.append(max_fpr)
    return sum((xs[k + 1] - xs[k]) * (ys[k + 1] + ys[k]) / 2 for k in range(len(xs) - 1)) / max_fpr


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("levels", [None, 6])  # continuous maps, and maps with many ties
def test_pro_matches_a_slow_reference(seed, levels):
    rng = np.random.default_rng(seed)
    masks, maps = [], []
    for _ in range(3):
        m = np.zeros((12, 14), bool)
        for _ in range(rng.integers(0, 3)):
            y, x = rng.integers(0, 10), rng.integers(0, 12)
            m[y:y + rng.integers(1, 4), x:x + rng.integers(1, 4)] = True
        a = rng.random(m.shape) + 0.6 * m  # defects tend to score higher, not always
        masks.append(m)
        maps.append(np.round(a * levels) / levels if levels else a)
    masks[0][0:2, 0:2] = False
    masks[0][0, 0] = masks[0][1, 1] = True  # touching at a corner only: one region (8-neighbourhood)
    maps[0][0, 0], maps[0][1, 1] = maps[0].max(), maps[0].min()
    assert pro_score(masks, maps) == pytest.approx(_slow_pro(masks, maps), abs=1e-9)
