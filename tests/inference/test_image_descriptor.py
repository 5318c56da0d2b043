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


def _ring_photo(size: int = 256) -> np.ndarray:
    """A part seen from above on a fixture, like an MVTec bottle: bright background, dark rings, colour."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    r = np.hypot(yy - size / 2, xx - size / 2) / (size / 2)
    grey = np.clip(0.9 - 0.7 * np.exp(-((r - 0.7) / 0.12) ** 2) - 0.5 * (r < 0.45) + 0.2 * np.cos(18 * r), 0, 1)
    return np.stack([grey, grey * 0.95, grey * 0.85], axis=2).astype(np.float32)


def _scene(size: int = 256) -> np.ndarray:
    """An infrared-like scene: bright sky above, darker ground with clutter below, a horizon between."""
    rng = np.random.default_rng(3)
    yy = np.mgrid[:size, :size][0].astype(np.float32) / size
    ground = (yy > 0.6) * (0.35 * cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), 3))
    return np.clip(0.8 - 0.4 * yy - ground, 0, 1).astype(np.float32)


def test_symmetry_tells_a_part_seen_from_above_from_a_scene_with_a_direction() -> None:
    from inference.image_descriptor import SYMMETRY_DIM, SYMMETRY_FEATURES, SYMMETRY_UNIT, symmetry, symmetry_images

    ring, scene = symmetry(_ring_photo()) * SYMMETRY_UNIT, symmetry(_scene()) * SYMMETRY_UNIT
    assert ring.shape == (SYMMETRY_DIM,) == (len(SYMMETRY_FEATURES),) and ring.dtype == np.float32
    assert (ring > 0.95).all()                      # the same turned and mirrored every way
    turn_90, turn_180, mirror_lr, mirror_ud = scene
    assert turn_90 < 0.3 and turn_180 < 0 and mirror_ud < 0 and mirror_lr > 0.8   # up differs from down only
    assert np.allclose(symmetry(np.rot90(_scene()).copy())[[1, 2, 3]] * SYMMETRY_UNIT, [turn_180, mirror_ud, mirror_lr],
                       atol=0.02)                   # a turned camera swaps the mirrors
    assert (symmetry(np.full((64, 48), 0.4, np.float32)) == 0).all()   # flat: no arrangement to compare
    assert symmetry(np.zeros((8, 8, 3), np.float32)).shape == (SYMMETRY_DIM,)  # tiny and colour images are read
    assert symmetry_images([]).shape == (0, SYMMETRY_DIM)


def test_the_bundled_segmenters_domain_keeps_out_a_part_seen_from_above() -> None:
    """ood-5.md: every bundled segmenter called 100 % of MVTec bottles in domain; the symmetry part (ADR 0067)
    calls a synthetic top-down photograph of a round part foreign, and the demo's infrared frames stay in."""
    from pathlib import Path

    from inference.checkpoints import read_json
    from inference.domain import DOMAIN_JSON, OUT_OF_DOMAIN_BELOW, load_domain
    from inference.image_descriptor import DESCRIPTOR_VERSION, symmetry_images
    from inference.imageio import decode
    from inference.input_view import input_view

    root = Path(__file__).resolve().parents[2]
    model = root / "resources" / "models" / "segmenter-sirst-v3"
    frames = sorted((root / "resources" / "samples" / "demo" / "infrared").glob("*.png"))
    if not (model / DOMAIN_JSON).is_file() or not frames:
        pytest.skip("the bundled segmenter or the demo's infrared frames are not in this checkout")
    stats = load_domain(model, DESCRIPTOR_VERSION)
    assert stats is not None

    def scores(images: list[np.ndarray], sources: list[tuple[int, int, int]]) -> np.ndarray:
        return stats.scores({"descriptor": describe_images(images, sources), "symmetry": symmetry_images(images)})

    photo = _ring_photo()
    grey_view = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)   # the segmenter is handed the grey view of a colour file
    assert scores([grey_view], [(256, 256, 3)])[0] < OUT_OF_DOMAIN_BELOW
    mode, side = input_view("segmenter", read_json(model / "config.json").get("config", {}))
    views = [decode(p, {mode: side}) for p in frames]
    assert (scores([v.views[mode] for v in views], [v.source for v in views]) >= OUT_OF_DOMAIN_BELOW).all()
