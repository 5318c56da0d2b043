"""The fast texture vectors (ADR 0039) give the numbers of the slow ones the bundled models were fitted on.

``tests/inference/texture_reference.py`` is the code as it was (c4f424d). Tolerance rtol 1e-4 /
atol 1e-5: the fast code reorders float32 sums (a Gabor response by one DFT instead of OpenCV's
tiled DFT inside ``filter2D``, means and moments summed in another order, percentiles from one
partition), which moves a value by a few float32 ulps (relative 1e-7 .. 1e-6) or, through the
log of a small energy, by a few 1e-6 absolute; what it must not do is change a pixel's LBP code
or GLCM level (one pixel of a 184 x 184 histogram is 3e-5, above atol), a Hessian's sign or an
order statistic's rank, and a test at 1e-4 / 1e-5 catches those. The largest difference seen on
these images is under 1 % of the tolerance. The bundled ``classifier-neu-texture`` must then
give the same classes and probabilities within 1e-4 on them.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from inference import texture_bank, texture_features
from inference.checkpoints import load_model
from inference.imageio import read_image
from tests.inference import texture_reference as reference

ROOT = Path(__file__).resolve().parents[2]
STEEL = ROOT / "resources" / "samples" / "demo" / "steel"   # NEU val images shipped as demo samples
TEXTURE_MODEL = ROOT / "resources" / "models" / "classifier-neu-texture"
RTOL, ATOL = 1e-4, 1e-5


def _part(seed: int, h: int, w: int) -> np.ndarray:
    """A gray part image quantised to 8 bits like a decoded file: grain, striation, a scratch, spots, a patch."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 1.0 + seed % 3) * 0.08 + 0.5
    img += 0.03 * np.sin(np.arange(w) / (2.0 + seed % 5))[None, :]          # vertical striation
    cv2.line(img, (int(rng.integers(0, w)), 0), (int(rng.integers(0, w)), h - 1), 0.25, 1 + seed % 2)  # scratch
    for _ in range(3):
        cv2.circle(img, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(1, 5)), 0.8, -1)
    y, x = int(rng.integers(0, max(1, h // 2))), int(rng.integers(0, max(1, w // 2)))
    img[y:y + h // 4, x:x + w // 5] -= 0.15                                    # a darker patch
    return np.round(np.clip(img, 0, 1) * 255).astype(np.float32) / 255


SHAPES = [(200, 200), (256, 170), (96, 120), (700, 300), (40, 50), (30, 31), (20, 300), (256, 64), (5, 7)]


def _images() -> list[np.ndarray]:
    images = [_part(i, h, w) for i, (h, w) in enumerate(SHAPES)]
    images.append(np.full((40, 50), 0.3, np.float32))                         # flat: no spread at all
    images.append(np.clip(0.5 + 0.1 * np.random.default_rng(9).standard_normal((120, 96)), 0, 1).astype(np.float32))
    images += [read_image(p, "gray") for p in sorted(STEEL.glob("*.png"))[::3]]
    return images


@pytest.fixture(autouse=True)
def _one_opencv_thread():
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    yield
    cv2.setNumThreads(before)


@pytest.mark.parametrize("index", range(len(SHAPES) + 2))
def test_fast_vectors_equal_the_reference_on_synthetic_parts(index: int) -> None:
    gray = texture_features.gray_of(_images()[index])
    np.testing.assert_allclose(texture_features.defect_vector(gray), reference.defect_vector(gray), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(texture_bank.bank_vector(gray), reference.bank_vector(gray), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(texture_features.image_defect_bank(gray), reference.image_defect_bank(gray),
                               rtol=RTOL, atol=ATOL)


def test_fast_vectors_equal_the_reference_on_the_shipped_neu_samples() -> None:
    files = sorted(STEEL.glob("*.png"))
    assert files, f"no samples in {STEEL}"
    for f in files:
        image = read_image(f, "gray")
        np.testing.assert_allclose(texture_features.image_defect_bank(image), reference.image_defect_bank(image),
                                   rtol=RTOL, atol=ATOL, err_msg=f.name)


def test_the_bundled_texture_classifier_answers_as_before() -> None:
    loaded = load_model(TEXTURE_MODEL, family="classifier")
    assert loaded.name == "texture_linear" and loaded.config.features == "defect_bank"
    images = _images()
    fast = np.stack([loaded.model.image_input(im) for im in images])
    slow = np.stack([reference.image_defect_bank(im) for im in images])
    with torch.inference_mode():
        p_fast = torch.softmax(loaded.model(torch.from_numpy(fast)), -1).numpy()
        p_slow = torch.softmax(loaded.model(torch.from_numpy(slow)), -1).numpy()
    assert (p_fast.argmax(1) == p_slow.argmax(1)).all()
    np.testing.assert_allclose(p_fast, p_slow, atol=1e-4)
    # the shipped samples are NEU val images: the reference got them right, and so does the fast path
    steel = sorted(STEEL.glob("*.png"))[::3]
    truth = [next(c for c in loaded.card["classes"] if f.stem.startswith(c + "_")) for f in steel]
    assert [loaded.card["classes"][i] for i in p_fast.argmax(1)[-len(steel):]] == truth


def test_percentiles_and_median_are_numpys() -> None:
    rng = np.random.default_rng(3)
    for v in (rng.standard_normal(5000).astype(np.float32), np.maximum(rng.standard_normal(4001), 0).astype(np.float32),
              np.round(rng.random(3000) * 8).astype(np.float32), np.zeros(50, np.float32), np.ones(1, np.float32),
              rng.standard_normal(777), -np.abs(rng.standard_normal(300)).astype(np.float32)):
        qs = (1, 5, 25, 50, 75, 90, 99, 99.9)
        cut = bool((v >= 0).all())
        got = texture_bank.percentiles(v, qs, top=max(1, v.size // 1000), nonnegative=cut)
        top = np.sort(v)[::-1][:max(1, v.size // 1000)]
        np.testing.assert_allclose(got, [*np.percentile(v, qs), v.max(), top.mean()], rtol=1e-6, atol=1e-7)
        if v.dtype == np.float32:
            assert texture_bank.median(v) == float(np.median(v))


def test_gabor_by_one_dft_equals_filter2d_with_reflected_borders() -> None:
    """The correlation with each kernel, OpenCV's BORDER_REFLECT_101 included, on a non-square image."""
    z = (_part(4, 70, 110) - 0.5) * 8
    h, w = z.shape
    rows, cols = texture_bank._inner_box(h, w)
    got = texture_bank._gabor_all(z)
    want: list[float] = []
    for lam in texture_bank.GABOR_WAVELENGTHS:
        want += reference._gabor(z, lam)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    assert (rows, cols) == (slice(8, h - 8), slice(8, w - 8))


def test_glcm_levels_are_searchsorted_on_numpys_quantiles_pixel_for_pixel() -> None:
    """A grey level's pixels all share a value, so an edge one ulp off would move a whole level: none may."""
    for image in _images():
        g, med, mad = texture_bank.shrunk_with_spread(texture_features.gray_of(image), texture_bank.BANK_SIDE)
        z = np.clip((g - med) / mad, -20, 20).astype(np.float32)
        edges = np.quantile(z, np.linspace(0, 1, texture_bank.GLCM_LEVELS + 1)[1:-1])
        np.testing.assert_array_equal(texture_bank._levels(z), np.searchsorted(edges, z))
