"""IoU / nIoU / Pd / Fa against cases worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest

from inference.segmenter_metrics import SegmentationMeter, evaluate_masks, match_targets


def blank(h=10, w=10):
    return np.zeros((h, w), bool)


def test_missed_target_halves_pd():
    gt = blank()
    gt[1:3, 1:3] = True  # target A (4 px)
    gt[6:8, 6:8] = True  # target B (4 px), missed
    pred = blank()
    pred[1:3, 1:3] = True
    r = evaluate_masks([pred], [gt])
    assert r["targets"] == 2 and r["detected"] == 1
    assert r["pd"] == pytest.approx(0.5)
    assert r["fa"] == 0.0
    assert r["iou"] == pytest.approx(4 / 8)
    assert r["niou"] == pytest.approx(4 / 8)


def test_false_alarm_counts_its_pixels_over_all_pixels():
    gt = blank()
    gt[1, 1] = True
    pred = blank()
    pred[1, 1] = True
    pred[8, 5:8] = True  # 3 false pixels, 6+ px from the target
    r = evaluate_masks([pred], [gt])
    assert r["pd"] == 1.0
    assert r["fa"] == pytest.approx(3 / 100 * 1e6)
    assert r["iou"] == pytest.approx(1 / 4)


def test_two_targets_touching_diagonally_are_one_target():
    gt = blank()
    gt[2:4, 2:4] = True
    gt[4:6, 4:6] = True  # touches the first at a corner: one 8-connected component
    pred = gt.copy()
    r = evaluate_masks([pred], [gt])
    assert r["targets"] == 1 and r["pd"] == 1.0 and r["fa"] == 0.0 and r["iou"] == 1.0


def test_centroid_must_be_closer_than_three_pixels():
    gt = blank(20, 20)
    gt[10, 10] = True
    near = blank(20, 20)
    near[10, 12] = True  # 2 px away: detected, and not a false alarm
    far = blank(20, 20)
    far[10, 13] = True  # exactly 3 px away: missed, and its pixel is a false alarm
    assert match_targets(near, gt) == (1, 1, 0)
    assert match_targets(far, gt) == (1, 0, 1)


def test_one_prediction_cannot_detect_two_targets():
    gt = blank(20, 20)
    gt[10, 9] = True
    gt[10, 11] = True  # two separate targets, both within 3 px of the prediction's centroid
    pred = blank(20, 20)
    pred[10, 10] = True
    assert match_targets(pred, gt) == (2, 1, 0)


def test_set_iou_differs_from_mean_image_iou_and_uses_actual_sizes():
    g1, p1 = blank(10, 10), blank(10, 10)
    g1[0:2, 0:2] = True
    p1[0:2, 0:2] = True  # IoU 1
    g2, p2 = blank(20, 30), blank(20, 30)
    g2[5:9, 5:9] = True  # 16 px
    p2[5:9, 5:7] = True  # 8 px inside: IoU 0.5
    p2[15, 25] = True  # 1 false pixel
    r = evaluate_masks([p1, p2], [g1, g2])
    assert r["iou"] == pytest.approx((4 + 8) / (4 + 17))
    assert r["niou"] == pytest.approx((1 + 8 / 17) / 2)
    assert r["fa"] == pytest.approx(1 / (100 + 600) * 1e6)


def test_target_free_frames_count_for_fa_and_do_not_break_pd():
    empty_gt = blank()
    alarm = blank()
    alarm[4, 4] = True
    r = evaluate_masks([alarm, blank()], [empty_gt, empty_gt])
    assert r["pd"] is None and r["targets"] == 0
    assert r["fa"] == pytest.approx(1 / 200 * 1e6)
    assert r["niou"] == 0.0  # the field's convention: inter / (union + eps)
    assert r["iou"] == 0.0


def test_all_empty_set_has_undefined_iou_not_a_crash():
    r = evaluate_masks([blank()], [blank()])
    assert r["iou"] is None and r["pd"] is None and r["fa"] == 0.0


def test_size_mismatch_is_refused():
    with pytest.raises(ValueError, match="differ in size"):
        SegmentationMeter().update(blank(4, 4), blank(4, 5))
