"""The image descriptor of out-of-domain statistics (inference.image_descriptor)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from inference.image_descriptor import DESCRIPTOR_DIM, FEATURES, describe, describe_images


def _texture(h: int = 200, w: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(0.5 + 0.1 * cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 1.5) * 5,
                   0, 1).astype(np.float32)


def _feature(x: np.ndarray, name: str) -> float:
    return float(x[FEATURES.index(name)])


def test_shape_and_units() -> None:
    img = _texture()
    d = describe(img)
    assert d.shape == (DESCRIPTOR_DIM,) and d.dtype == np.float32 and np.isfinite(d).all()
    assert describe_images([img, img]).shape == (2, DESCRIPTOR_DIM)
    assert describe_images([]).shape == (0, DESCRIPTOR_DIM)
    # Size in units of 1 %: a frame cropped to 80 % moves its sides by log(0.8) / 0.01 units.
    crop = describe(img[20:180, 20:180])
    assert _feature(crop, "log_long_side") - _feature(d, "log_long_side") == pytest.approx(np.log(0.8) / 0.01, rel=1e-4)
    # Orientation does not matter: a transposed frame has the same long and short side.
    assert describe(img[:, :150].T)[:2] == pytest.approx(describe(img[:, :150])[:2])


def test_grey_and_three_identical_channels_differ_only_in_the_files_channels_and_colour_is_seen() -> None:
    img = _texture()
    rgb = np.repeat(img[:, :, None], 3, axis=2)
    grey, colour = describe(img), describe(rgb)
    k = FEATURES.index("file_channels")
    assert colour[k] - grey[k] == pytest.approx(20.0)  # two channels more, in units of a tenth
    np.testing.assert_allclose(np.delete(colour, k), np.delete(grey, k), rtol=1e-5, atol=1e-3)
    # The file's size and channels, when the decoder shrank or converted the image, are what count.
    shrunk = describe(cv2.resize(img, (100, 100), interpolation=cv2.INTER_AREA), (200, 200, 3))
    assert shrunk[:3] == pytest.approx(colour[:3])
    tinted = rgb.copy()
    tinted[:, :, 0] = np.clip(tinted[:, :, 0] + 0.2, 0, 1)
    assert _feature(describe(tinted), "colour_spread") > 10  # 0.2 of the range is 20 units of 1 %


def test_a_camera_change_moves_the_descriptor() -> None:
    img = _texture()
    base = describe(img)
    blurred = describe(cv2.GaussianBlur(img, (0, 0), 3.0))
    assert _feature(blurred, "log_grad_x_s1") < _feature(base, "log_grad_x_s1") - 10  # detail lost at the finest scale
    dark = describe(img * 0.5)
    assert _feature(dark, "grey_q50") == pytest.approx(_feature(base, "grey_q50") / 2, rel=0.02)
    with pytest.raises(ValueError, match="image"):
        describe(np.zeros((4, 4, 2), np.float32))
