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


def test_the_cursor_reads_a_deep_files_own_value_beside_the_stretched_level(tmp_path) -> None:
    """Found by a session-44 probe: on a 16-bit infrared frame the readout gave the stretched display level
    ("rgb (87, 87, 87)"), not the sensor's value the file holds."""
    import cv2

    from app.services.display import load_for_viewer, pixel_readout
    grey = np.zeros((30, 50), np.uint16)
    grey[:, :] = np.linspace(1000, 60000, 50, dtype=np.uint16)[None, :]
    cv2.imwrite(str(tmp_path / "deep.png"), grey)
    pixels = load_for_viewer(tmp_path / "deep.png")
    text = pixel_readout(pixels, 10, 3)
    assert text.startswith(f"value {int(grey[3, 10])} in the file, shown as rgb (")
    colour = np.zeros((4, 5, 3), np.uint16)
    colour[..., 0], colour[..., 2] = 40000, 300  # BGR on disk: blue 40000, red 300
    cv2.imwrite(str(tmp_path / "deep_colour.png"), colour)
    assert pixel_readout(load_for_viewer(tmp_path / "deep_colour.png"), 1, 1).startswith("value (300, 0, 40000) ")
    plain = np.full((4, 5), 77, np.uint8)
    cv2.imwrite(str(tmp_path / "plain.png"), plain)
    assert pixel_readout(load_for_viewer(tmp_path / "plain.png"), 0, 0) == "rgb (77, 77, 77)"
    floats = np.full((4, 5), 0.123456, np.float32)
    cv2.imwrite(str(tmp_path / "f.tiff"), floats)
    assert pixel_readout(load_for_viewer(tmp_path / "f.tiff"), 0, 0).startswith("value 0.1235 in the file")


def test_a_deep_image_past_the_kept_size_says_its_readout_is_the_shown_level(monkeypatch, tmp_path) -> None:
    import cv2

    import app.services.display as display
    cv2.imwrite(str(tmp_path / "deep.png"), np.full((30, 50), 5000, np.uint16))
    monkeypatch.setattr(display, "VALUES_MAX_PIXELS", 100)
    pixels = display.load_for_viewer(tmp_path / "deep.png")
    assert pixels.values is None
    assert "as shown (stretched" in display.pixel_readout(pixels, 0, 0)


def test_a_saturated_deep_frame_is_white_and_a_small_dark_defect_on_it_shows() -> None:
    """A session-47 audit: an all-65535 frame was painted black (the percentiles collapse), and a dark defect on 0.3 %
    of an overexposed frame was black on black, where the 8-bit copy showed it."""
    saturated = np.full((40, 40), 65535, np.uint16)
    assert (_stretch_to_uint8(saturated) == 255).all()
    assert (_stretch_to_uint8(np.full((8, 8), 32768, np.uint16)) == 128).all()  # one value: where it sits
    assert (_stretch_to_uint8(np.full((8, 8), 1.0, np.float32)) == 255).all()
    defect = saturated.copy()
    defect[:2, :2] = 2000
    shown = _stretch_to_uint8(defect)
    assert shown[0, 0] < 40 and shown[20, 20] == 255
