"""One channel conversion for every family, in training and prediction (inference.preprocess)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.classifier_predict import resize_to_model_input
from inference.imageio import read_image
from inference.preprocess import LUMA, anomaly_input, shrink_to, to_channels
from inference.texture_features import gray_of
from inference.training.anomaly_data import to_model_input
from inference.training.segmenter_data import SegDataError
from inference.training.segmenter_data import to_channels as segmenter_channels


@pytest.fixture
def colour_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "c.png"
    cv2.imwrite(str(path), rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    return path


def test_anomaly_trainer_turns_rgb_into_the_gray_a_file_read_gives(colour_file: Path):
    """The anomaly trainer used a plain mean; a gray model then saw other values than the
    other families and than the same file read as gray."""
    from_rgb = to_model_input(read_image(colour_file, "rgb"), 16, 1)[0]
    from_gray = to_model_input(read_image(colour_file, "gray"), 16, 1)[0]
    assert np.abs(from_rgb - from_gray).max() < 1.0 / 255


def test_every_family_converts_rgb_to_the_same_gray(colour_file: Path):
    rgb = read_image(colour_file, "rgb")
    luma = rgb @ LUMA
    assert np.allclose(resize_to_model_input(rgb, 16, 1)[0], luma, atol=1e-6)
    assert np.allclose(segmenter_channels(rgb, 1)[0], luma, atol=1e-6)
    assert np.allclose(anomaly_input(rgb, 16, 1)[0], luma, atol=1e-6)
    # the texture features and the out-of-domain descriptor read gray through the same conversion; theirs was a
    # second one (OpenCV's), which refused gray + alpha (a session-47 audit)
    assert np.array_equal(gray_of(rgb), luma)
    assert np.array_equal(gray_of(np.dstack([luma, np.ones_like(luma)])), luma)


def test_one_shrink_to_a_longest_side():
    wide = np.zeros((30, 90, 3), np.uint8)
    assert shrink_to(wide, 90) is wide and shrink_to(wide, 45).shape == (15, 45, 3)
    assert shrink_to(np.zeros((1, 900), np.float32), 30).shape == (1, 30)  # never a side of 0


def test_alpha_dropped_and_gray_repeated():
    rgba = np.random.default_rng(1).random((5, 7, 4), dtype=np.float32)
    assert np.array_equal(to_channels(rgba, 3), rgba[:, :, :3])
    gray = rgba[:, :, 0]
    assert np.array_equal(to_channels(gray, 3), np.repeat(gray[:, :, None], 3, axis=2))


def test_bad_shapes_refused_with_the_shape():
    with pytest.raises(ValueError, match=r"\(5, 7, 6\)"):
        to_channels(np.zeros((5, 7, 6)), 1)
    with pytest.raises(SegDataError, match="expected an image"):
        segmenter_channels(np.zeros((2, 5, 7, 3)), 1)
