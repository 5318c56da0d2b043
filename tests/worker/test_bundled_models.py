"""The engine on the bundled checkpoints and real images (skips what is not there)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.bundled import bundled_model_dir
from inference.engine import InspectionEngine
from tests.conftest import ROOT, shared_dataset


def _bundled(family: str, name: str | None = None) -> Path:
    d = bundled_model_dir(family, name)
    if not (d / "config.json").is_file():
        pytest.skip(f"no bundled {family} checkpoint at {d}")
    return d


def test_bundled_anomaly_model_scores_defects_above_good_parts() -> None:
    model = _bundled("anomaly", "anomaly-bottle")  # trained on MVTec bottle (not the default model)
    test = shared_dataset("mvtec_ad") / "bottle" / "test"
    good = sorted((test / "good").glob("*.png"))[:3]
    bad = sorted((test / "broken_large").glob("*.png"))[:3]
    with InspectionEngine({"anomaly": model}, device="cpu") as engine:
        results = engine.predict_paths(good + bad, batch_size=3)
    assert all(r.ok for r in results)
    scores = np.array([r.anomaly.score for r in results])
    assert scores[3:].mean() > scores[:3].mean()
    assert results[0].anomaly.threshold is not None


def test_bundled_classifier_names_the_steel_samples_defects() -> None:
    model = _bundled("classifier")
    samples = sorted((ROOT / "resources" / "samples" / "demo" / "steel").glob("*.png"))
    if not samples:
        pytest.skip("no steel sample images")
    with InspectionEngine({"classifier": model}, device="cpu") as engine:
        results = engine.predict_paths(samples, batch_size=8)
    truth = [p.stem.rsplit("_", 1)[0] for p in samples]  # NEU names carry the class
    right = sum(r.classifier.label == t for r, t in zip(results, truth))
    assert right / len(samples) >= 0.7, [(t, r.classifier.label) for r, t in zip(results, truth)]


def test_bundled_segmenter_finds_targets_in_the_infrared_samples() -> None:
    import cv2

    model = _bundled("segmenter")
    frames = sorted((ROOT / "resources" / "samples" / "demo" / "infrared").glob("*.png"))
    truth_dir = ROOT / "resources" / "samples" / "ground_truth" / "infrared"
    if not frames or not truth_dir.is_dir():
        pytest.skip("no infrared sample images with masks")
    with InspectionEngine({"segmenter": model}, device="cpu") as engine:
        results = engine.predict_paths(frames, batch_size=4)
    found = 0
    for frame, r in zip(frames, results):
        truth = cv2.imread(str(truth_dir / frame.name), cv2.IMREAD_GRAYSCALE) > 0
        assert r.segmenter.mask.shape == truth.shape
        found += bool((r.segmenter.mask & truth).any())
    assert found / len(frames) >= 0.6
