"""Issue 21's faster inference paths give the bundled models' numbers of the previous paths.

The switch ``inference.ssm.speed`` exists so benchmarks can time both paths side by side; here both
run on the same inputs and must agree within float32 rounding (the decisions downstream, masks
and classes, are then the same).
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest

from inference.bundled import bundled_model_dir
from inference.checkpoints import load_model
from inference.ssm import speed


@contextmanager
def previous_paths():
    speed.set_enabled(False)
    try:
        yield
    finally:
        speed.set_enabled(True)


def _loaded(family: str):
    d = bundled_model_dir(family)
    if not (d / "config.json").is_file():
        pytest.skip(f"no bundled {family} model in this checkout")
    return load_model(d, family=family)


def _frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 0.4 + 0.1 * np.sin(xx / 5.0) + 0.05 * rng.standard_normal((h, w))
    img[h // 3, w // 2] = 1.0  # one bright point target
    return np.clip(img, 0, 1).astype(np.float32)


def test_segmenter_maps_and_masks_agree():
    from inference.segmenter_predict import model_flips, model_members, predict_masks, predict_probabilities

    loaded = _loaded("segmenter")
    frames = [_frame(64, 80), _frame(40, 40, seed=1)]
    members = model_members(loaded)
    fast = predict_probabilities(members, frames, flips=model_flips(loaded))
    with previous_paths():
        before = predict_probabilities(members, frames, flips=model_flips(loaded))
        masks_before = predict_masks(loaded, frames)
    for a, b in zip(fast, before):
        assert np.abs(a - b).max() < 1e-5
    for a, b in zip(predict_masks(loaded, frames), masks_before):
        assert np.array_equal(a.mask, b.mask) and a.count == b.count


def test_classifier_scores_agree():
    from inference.classifier_predict import predict_images

    loaded = _loaded("classifier")
    images = [np.repeat(_frame(96, 96, seed=s)[:, :, None], 3, axis=2) for s in range(3)]
    fast = predict_images(loaded, images)
    with previous_paths():
        before = predict_images(loaded, images)
    for a, b in zip(fast, before):
        assert np.abs(a.scores - b.scores).max() < 1e-5 and a.label == b.label


def test_anomaly_maps_agree():
    from inference.anomaly_predict import predict_images

    loaded = _loaded("anomaly")
    images = [_frame(128, 128, seed=s) for s in range(2)]
    fast = predict_images(loaded, images)
    with previous_paths():
        before = predict_images(loaded, images)
    for a, b in zip(fast, before):
        span = float(b.anomaly_map.max() - b.anomaly_map.min()) or 1.0
        assert np.abs(a.anomaly_map - b.anomaly_map).max() / span < 1e-4
        assert abs(a.score - b.score) < 1e-4 * max(1.0, abs(b.score))


@pytest.mark.parametrize("shape, sigma", [((2, 64, 80), 2.0), ((1, 256, 256), 16.0), ((3, 20, 30), 12.0)])
def test_gaussian_smoothing_by_opencv_agrees_with_the_convolution(shape, sigma):
    """The OpenCV blur (issue 21) against torch's: same taps, same reflect border, also where the
    radius is clamped to a small map."""
    import torch

    from inference.models.anomaly_maps import gaussian_smooth

    maps = torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    fast = gaussian_smooth(maps, sigma)
    with previous_paths():
        before = gaussian_smooth(maps, sigma)
    assert fast.shape == before.shape and fast.dtype == before.dtype
    assert torch.allclose(fast, before, atol=1e-6)


def test_the_fused_nearest_row_search_agrees_with_addmm_and_min():
    import torch

    from inference.models.memory_bank import nearest_rows

    rng = np.random.default_rng(1)
    bank = torch.from_numpy(rng.standard_normal((500, 16)).astype(np.float32))
    queries = torch.from_numpy(rng.standard_normal((77, 16)).astype(np.float32))
    b2 = (bank * bank).sum(1)
    best, arg = nearest_rows(queries, bank, b2)
    with previous_paths():
        want, want_arg = nearest_rows(queries, bank, b2)
    assert torch.allclose(best, want, atol=1e-5)
    assert torch.equal(arg, want_arg)
    true = torch.cdist(queries.double(), bank.double()).argmin(1)
    assert torch.equal(arg, true)
