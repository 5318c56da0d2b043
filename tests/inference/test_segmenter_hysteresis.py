"""Hysteresis: components found at the card's threshold, drawn with their pixels above ``mask_threshold``."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from inference import segmenter_predict as segmentation
from inference.checkpoints import CheckpointError, load_model, save_model
from inference.models.mim_istd import NAME, MiMISTD, preset
from tests.inference.test_target_verifier import clutter_tree
from tests.tiny_models import one_thread  # noqa: F401  (autouse)


def _two_blobs() -> np.ndarray:
    p = np.zeros((30, 30), np.float32)
    p[2:7, 2:7] = 0.7
    p[3:6, 3:6] = 0.9  # a strong core in a weak halo
    p[20:23, 20:23] = 0.7  # weak everywhere: a faint detection
    return p


def test_shrink_keeps_the_strong_core_and_leaves_a_faint_component_whole():
    p = _two_blobs()
    mask = p > 0.5
    out = segmentation.shrink_components(mask, p, 0.8)
    assert np.array_equal(out, (p > 0.8) | ((p > 0.5) & (np.arange(30)[:, None] > 15)))
    assert out[4, 4] and not out[2, 2] and out[20:23, 20:23].all()
    assert np.array_equal(segmentation.shrink_components(mask, p, None), mask)
    r = segmentation.binarise(p, 0.5, None, None, None, 0.8)
    assert r.count == 2 and r.mask.sum() == 9 + 9


def _model(tmp_path, **card) -> MiMISTD:
    torch.manual_seed(0)
    seg = MiMISTD(preset("test_tiny"))
    return save_model(tmp_path / "m", NAME, seg, seg.config, {"family": "segmenter", "threshold": 0.5, **card})


@pytest.mark.parametrize("bad", ["x", True, 0.4, 1.0, [0.8]])
def test_a_broken_mask_threshold_is_a_checkpoint_error(tmp_path, bad):
    d = _model(tmp_path, mask_threshold=bad)
    with pytest.raises(CheckpointError, match="mask_threshold"):
        segmentation.predict_masks(load_model(d, family="segmenter"), [np.zeros((20, 20), np.float32)])


def test_cards_without_a_mask_threshold_are_unchanged(tmp_path):
    image = np.random.default_rng(0).random((33, 41), dtype=np.float32)
    plain = load_model(_model(tmp_path), family="segmenter")
    assert segmentation.model_mask_threshold(plain) is None
    prob = segmentation.predict_probabilities(plain.model, [image])[0]
    assert np.array_equal(segmentation.predict_masks(plain, [image])[0].mask, segmentation.binarise(prob, 0.5).mask)


def _halo_map(models, images, device=None, standardised=False, flips=False):
    """A stand-in segmenter: 0.9 on the bright pixels (targets and clutter), 0.7 on a 1-px halo around them."""
    out = []
    for f in images:
        core = (f[0] > f[0].mean() + 2 * f[0].std()).astype(np.uint8)
        halo = cv2.dilate(core, np.ones((3, 3), np.uint8))
        out.append(np.where(core > 0, 0.9, np.where(halo > 0, 0.7, 0.0)).astype(np.float32))
    return out


def test_calibrate_picks_the_mask_threshold_that_lowers_held_out_fa_and_evaluate_applies_it(tmp_path, monkeypatch, capsys):
    from app.cli import main as cli
    from inference.training import segmenter_calibrate

    monkeypatch.setattr(segmenter_calibrate, "predict_probabilities", _halo_map)
    root = clutter_tree(tmp_path / "d")
    d = _model(tmp_path)
    assert segmenter_calibrate.main(["--model", str(d), "--data", str(root), "--mask-thresholds", "0.3"]) == 2
    assert "above the threshold" in capsys.readouterr().err
    assert segmenter_calibrate.main(["--model", str(d), "--data", str(root), "--mask-thresholds", "0.6,0.8"]) == 0
    card = load_model(d, family="segmenter").card
    entry = card["mask_threshold_calibration"]
    assert card["mask_threshold"] == 0.8 and entry["chosen"] == 0.8  # 0.6 keeps the halo: no Fa gained
    assert entry["held_out_sweep"]["0.8"]["fa"] < entry["held_out_without"]["fa"] == entry["held_out_sweep"]["0.6"]["fa"]
    out = tmp_path / "r.json"
    assert cli(["evaluate", "segmenter", "--data", str(root), "--model", str(d), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["mask_threshold"] == 0.8
    # a recalibration of the threshold drops the mask threshold chosen for the old one
    segmenter_calibrate.recalibrate(d, root)
    assert "mask_threshold" not in load_model(d, family="segmenter").card
