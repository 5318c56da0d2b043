"""The shipped segmenter: loads, stays small, and finds the targets of the bundled SIRST samples."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from inference.bundled import bundled_model_dir
from inference.checkpoints import load_model
from inference.imageio import read_image, read_mask
from inference.segmenter_metrics import evaluate_masks
from inference.segmenter_predict import (
    model_mask_threshold,
    model_members,
    model_threshold,
    model_verifier,
    predict_masks,
)

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "resources" / "samples"


def test_bundled_segmenter_card_and_size():
    d = bundled_model_dir("segmenter")
    loaded = load_model(d)
    assert loaded.family == "segmenter" and loaded.name == "mim_istd"
    assert 0.0 < loaded.card["threshold"] < 1.0
    assert loaded.card["input"]["pad_to_multiple_of"] == loaded.config.stride
    assert sum(f.stat().st_size for f in d.rglob("*") if f.is_file()) <= 15 * 2**20  # members and verifier included
    # The shipped model is an ensemble with a verifier; both load with it and are used.
    assert len(model_members(loaded)) == 1 + len(loaded.card.get("ensemble", []))
    if "verifier" in loaded.card:
        assert model_verifier(loaded) is not None
    if "mask_threshold" in loaded.card:  # hysteresis (session 4): drawn stricter than found
        assert model_mask_threshold(loaded) > model_threshold(loaded)


def test_bundled_segmenter_detects_the_sample_targets():
    # The demo's infrared frames are SIRST validation frames (never trained on).
    loaded = load_model(bundled_model_dir("segmenter"))
    stems = sorted(p.stem for p in (SAMPLES / "ground_truth" / "infrared").glob("*.png"))
    assert stems
    images = [read_image(SAMPLES / "demo" / "infrared" / f"{s}.png", "rgb") for s in stems]
    masks = [read_mask(SAMPLES / "ground_truth" / "infrared" / f"{s}.png") for s in stems]
    results = predict_masks(loaded, images)
    for img, r in zip(images, results):
        assert r.mask.shape == img.shape[:2] and r.mask.dtype == bool
    metrics = evaluate_masks([r.mask for r in results], masks)
    assert metrics["pd"] >= 0.75
    assert metrics["iou"] >= 0.5


def test_bundled_segmenter_on_a_16_bit_frame_without_target():
    loaded = load_model(bundled_model_dir("segmenter"))
    rng = np.random.default_rng(0)
    frame = (0.30 + 0.002 * rng.standard_normal((300, 420))).astype(np.float32)  # flat, dim 16-bit-like sky
    r = predict_masks(loaded, [frame])[0]
    assert r.mask.shape == (300, 420)
    assert r.mask.mean() < 0.001  # a flat frame is not a field of targets
