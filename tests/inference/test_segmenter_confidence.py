"""The segmenter's frame confidence ("label next" on a segmenter-only line, ADR 0071): 0 where a blob sits at the
threshold, 1 where every blob is far from it, agreeing with a slow per-component reference."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from inference.segmenter_predict import NEAR_LOG_ODDS, binarise, frame_confidence


def _slow(prob: np.ndarray, threshold: float) -> float:
    """Per 8-connected component of the near band, its peak's log-odds distance from the threshold."""
    def logit(p: float) -> float:
        p = min(max(p, 1e-6), 1 - 1e-6)
        return float(np.log(p / (1 - p)))

    t = logit(threshold)
    low = 1 / (1 + np.exp(-(t - NEAR_LOG_ODDS)))
    labels, n = ndimage.label(prob > low, structure=np.ones((3, 3)))
    if n == 0:
        return 1.0
    margins = [abs(logit(float(prob[labels == k].max())) - t) for k in range(1, n + 1)]
    return min(1.0, min(margins) / NEAR_LOG_ODDS)


def _frame(blobs: list[tuple[int, int, float]], size: int = 48, background: float = 1e-4) -> np.ndarray:
    prob = np.full((size, size), background, np.float32)
    for y, x, peak in blobs:
        prob[y - 1:y + 2, x - 1:x + 2] = peak * 0.8
        prob[y, x] = peak
    return prob


def test_a_blob_at_the_threshold_is_unsure_and_clear_answers_are_sure() -> None:
    assert frame_confidence(_frame([]), 0.5) == 1.0                          # nothing near a target anywhere
    assert frame_confidence(_frame([(10, 10, 0.999)]), 0.5) == 1.0           # a clear target
    assert frame_confidence(_frame([(10, 10, 0.5)]), 0.5) == pytest.approx(0.0, abs=1e-6)
    faint = frame_confidence(_frame([(10, 10, 0.3)]), 0.5)                   # a faint blob just under: a missed one?
    assert 0.15 < faint < 0.3
    # the least sure blob decides, whatever else the frame holds
    assert frame_confidence(_frame([(10, 10, 0.999), (30, 30, 0.55)]), 0.5) < 0.1
    assert frame_confidence(np.zeros((0, 0), np.float32), 0.5) == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frame_confidence_agrees_with_a_slow_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    prob = (1 / (1 + np.exp(-rng.normal(-6, 3, (40, 56))))).astype(np.float32)
    for threshold in (0.3, 0.5, 0.7):
        assert frame_confidence(prob, threshold) == pytest.approx(_slow(prob, threshold), abs=1e-6)


def test_binarise_carries_the_frames_confidence() -> None:
    prob = _frame([(10, 10, 0.999), (30, 30, 0.45)])
    r = binarise(prob, 0.5)
    assert r.count == 1 and r.confidence == pytest.approx(frame_confidence(prob, 0.5))
