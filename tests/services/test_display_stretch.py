"""Showing a deep image: stretched to its own range (a plain /257 leaves 16-bit sensor images black), read from a
sample and without a full-size float copy (benchmarks/stretch_memory.py: a 4000 x 4000 16-bit colour image)."""
from __future__ import annotations

import numpy as np

from app.services.display import STRETCH_ROWS, _stretch_to_uint8
from benchmarks.stretch_memory import before as _full  # the stretch it replaced, kept once there


def test_a_deep_image_is_stretched_to_its_own_range_row_block_by_row_block() -> None:
    rng = np.random.default_rng(0)
    deep = rng.integers(1000, 3000, (STRETCH_ROWS * 2 + 7, 50, 3), dtype=np.uint16)  # several row blocks
    assert np.array_equal(_stretch_to_uint8(deep), _full(deep))
    heat = (rng.random((STRETCH_ROWS + 3, 40)) * 60 - 10).astype(np.float32)  # a float image beyond 0-1
    assert np.array_equal(_stretch_to_uint8(heat), _full(heat))
    flat = np.full((8, 8), 7, np.uint16)
    assert _stretch_to_uint8(flat).dtype == np.uint8  # no range: no division by zero
    eight = rng.integers(0, 255, (4, 4), dtype=np.uint8)
    assert _stretch_to_uint8(eight) is eight
