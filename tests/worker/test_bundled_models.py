"""The engine on the bundled checkpoints and real images (skips what is not there)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.bundled import bundled_model_dir
from inference.engine import InspectionEngine
from tests.conftest import shared_dataset


def _bundled(family: str) -> Path:
    d = bundled_model_dir(family)
    if not (d / "config.json").is_file():
        pytest.skip(f"no bundled {family} checkpoint at {d}")
    return d


def test_bundled_anomaly_model_scores_defects_above_good_parts() -> None:
    model = _bundled("anomaly")
    test = shared_dataset("mvtec_ad") / "bottle" / "test"
    good = sorted((test / "good").glob("*.png"))[:3]
    bad = sorted((test / "broken_large").glob("*.png"))[:3]
    with InspectionEngine({"anomaly": model}, device="cpu") as engine:
        results = engine.predict_paths(good + bad, batch_size=3)
    assert all(r.ok for r in results)
    scores = np.array([r.anomaly.score for r in results])
    assert scores[3:].mean() > scores[:3].mean()
    assert results[0].anomaly.threshold is not None
