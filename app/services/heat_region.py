"""Anomaly map → anomaly region: the threshold and click-to-grow math behind the viewer's tools.

Kept Qt-free (numpy + OpenCV) so the review service, the viewer and the tests share one
definition of "the region a heatmap gives": pixels at or above a level. NaN pixels (a map
with holes) are never part of a region. Maps are expected at the image's own size (the viewer
stretches them there), so a region drawn from a map is a label at image resolution.
"""
from __future__ import annotations

import cv2
import numpy as np

DEFAULT_GROW_FRACTION = 0.5
COLD_FLOOD_SHARE = 0.5  # a grow from under the model's threshold that would cover more than this is refused


def heat_bounds(heat: np.ndarray) -> tuple[float, float]:
    """(min, max) of the finite values; (0, 0) for a map without any."""
    if heat.size:
        lo, hi = float(heat.min()), float(heat.max())  # NaN or inf anywhere makes one of them so
        if np.isfinite(lo) and np.isfinite(hi):
            return lo, hi  # the common case, without copying a big map
    finite = heat[np.isfinite(heat)]
    if finite.size == 0:
        return 0.0, 0.0
    return float(finite.min()), float(finite.max())


def threshold_region(heat: np.ndarray, level: float) -> np.ndarray:
    """Pixels whose anomaly value is at least ``level`` (NaN is never in)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(heat) >= level


def grow_level(heat: np.ndarray, x: int, y: int, fraction: float = DEFAULT_GROW_FRACTION) -> float | None:
    """The level a click at (x, y) grows down to: ``fraction`` of the way from the map's minimum
    to the clicked value (a fraction of the value itself would depend on the map's offset).

    None when the click is outside the map, on a NaN, or on the minimum itself (growing from
    the background would flood the whole image)."""
    h, w = heat.shape[:2]
    if not (0 <= x < w and 0 <= y < h) or not np.isfinite(heat[y, x]):
        return None
    lo, _ = heat_bounds(heat)
    value = float(heat[y, x])
    if value <= lo:
        return None
    fraction = min(1.0, max(0.0, float(fraction)))
    return lo + fraction * (value - lo)


def grow_region(heat: np.ndarray, x: int, y: int, fraction: float = DEFAULT_GROW_FRACTION) -> np.ndarray:
    """The connected area (8-connected) around (x, y) whose values reach ``grow_level``.

    Empty when there is no level (see ``grow_level``): a click on plain background adds nothing.
    """
    level = grow_level(heat, x, y, fraction)
    if level is None:
        return np.zeros(heat.shape[:2], bool)
    above = threshold_region(heat, level).view(np.uint8)
    h, w = above.shape
    filled = np.zeros((h + 2, w + 2), np.uint8)  # floodFill's mask has a one-pixel border
    # A flood fill touches only the clicked component (labelling every component of a 4k map
    # costs several times more); equal values (loDiff = upDiff = 0) of the 0/1 image are "above".
    cv2.floodFill(above, filled, (x, y), 0, 0, 0, 8 | cv2.FLOODFILL_MASK_ONLY | (1 << 8))
    return np.ascontiguousarray(filled[1:-1, 1:-1]).view(bool)


def cold_flood(heat: np.ndarray, x: int, y: int, blob: np.ndarray, threshold: float | None) -> float | None:
    """The share of the image ``blob`` (grown from a click at (x, y)) would cover, when the click is under the
    model's region ``threshold`` and that share is over ``COLD_FLOOD_SHARE``; else None (the grow stands).

    Why: seen under Xvfb (session 43) on a normal tile whose whole map lay under the tile model's threshold, one
    grow click (W) on plain surface made nearly the whole tile the anomaly region, and the image anomalous. The
    level is relative to the map's minimum, so on a cold, flat map any click floods it."""
    if threshold is None or blob.size == 0 or not (0 <= y < heat.shape[0] and 0 <= x < heat.shape[1]):
        return None
    share = float(blob.mean())
    return share if float(heat[y, x]) < threshold and share > COLD_FLOOD_SHARE else None
