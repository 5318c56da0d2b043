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
