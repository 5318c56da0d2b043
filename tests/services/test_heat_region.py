"""The heatmap → region math: a threshold, and a flood fill grown from a clicked point."""
from __future__ import annotations

import numpy as np

from app.services.heat_region import grow_level, grow_region, heat_bounds, threshold_region


def two_blobs() -> np.ndarray:
    heat = np.full((20, 30), 0.1, np.float32)
    heat[2:6, 2:8] = 0.9      # strong blob
    heat[4, 8:10] = 0.5       # its weaker tail, connected to it
    heat[12:16, 20:26] = 0.6  # a second, separate blob
    return heat


def test_threshold_keeps_pixels_at_or_above_the_level_and_never_nan():
    heat = two_blobs()
    heat[0, 0] = np.nan
    region = threshold_region(heat, 0.6)
    assert region.dtype == bool and region.shape == heat.shape
    assert region.sum() == 4 * 6 + 4 * 6  # both blobs, not the 0.5 tail, not the NaN
    assert not region[0, 0] and not region[4, 8]
    assert not threshold_region(heat, 1.0).any()
    assert threshold_region(heat, 0.0).sum() == heat.size - 1


def test_heat_bounds_ignore_nan_and_handle_an_empty_map():
    heat = two_blobs()
    heat[0, 0] = np.nan
    assert heat_bounds(heat) == (np.float32(0.1), np.float32(0.9))
    assert heat_bounds(np.full((3, 3), np.nan)) == (0.0, 0.0)
    assert heat_bounds(np.array([[1.0, np.inf, -2.0, -np.inf]])) == (-2.0, 1.0)
    assert heat_bounds(np.zeros((0, 0), np.float32)) == (0.0, 0.0)


def test_grow_takes_only_the_connected_area_above_a_fraction_of_the_clicked_value():
    heat = two_blobs()
    blob = grow_region(heat, 3, 3, 0.5)  # level 0.1 + 0.5 * 0.8 = 0.5: the tail joins, blob two does not
    expected = np.zeros(heat.shape, bool)
    expected[2:6, 2:8] = True
    expected[4, 8:10] = True
    np.testing.assert_array_equal(blob, expected)
    strict = grow_region(heat, 3, 3, 0.9)  # level 0.82: the tail is left out
    assert strict.sum() == 24 and not strict[4, 8]
    other = grow_region(heat, 22, 13, 0.5)
    assert other.sum() == 24 and other[12:16, 20:26].all()


def test_grow_is_eight_connected():
    heat = np.zeros((5, 5), np.float32)
    heat[1, 1] = heat[2, 2] = heat[3, 3] = 1.0
    assert grow_region(heat, 1, 1).sum() == 3


def test_grow_from_background_outside_or_nan_adds_nothing():
    heat = two_blobs()
    heat[19, 29] = np.nan
    assert grow_level(heat, 15, 0) is None          # the map's minimum
    assert not grow_region(heat, 15, 0).any()
    assert not grow_region(heat, 30, 0).any()       # outside
    assert not grow_region(heat, -1, 0).any()
    assert not grow_region(heat, 29, 19).any()      # NaN
    assert not grow_region(np.zeros((4, 4), np.float32), 1, 1).any()  # a flat map
