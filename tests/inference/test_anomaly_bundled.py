"""The bundled anomaly models load, carry a calibrated threshold and a licence note, and predict."""
from __future__ import annotations

import math

import numpy as np
import pytest

from inference.anomaly_predict import predict_images
from inference.bundled import bundled_model_dir
from inference.checkpoints import load_model
from tests.tiny_models import one_thread  # noqa: F401  (autouse)

SIZE_LIMIT = 15 * 2**20


@pytest.mark.parametrize("name", ["anomaly-bottle", "anomaly-magnetic_tile"])
def test_bundled_anomaly_model(name):
    d = bundled_model_dir("anomaly", name)
    if not (d / "config.json").is_file():
        pytest.skip(f"{d} not bundled in this checkout")
    assert sum(f.stat().st_size for f in d.iterdir()) <= SIZE_LIMIT
    loaded = load_model(d)
    assert loaded.family == "anomaly"
    card = loaded.card
    assert math.isfinite(card["threshold"]["image"])
    assert card["data"]["licence"]
    if name == "anomaly-bottle":
        assert "CC BY-NC-SA" in card["data"]["licence"] and "non-commercial" in card["data"]["licence"]
    rng = np.random.default_rng(0)
    imgs = [rng.random((150, 200)).astype(np.float32), rng.random((256, 256, 3)).astype(np.float32)]
    preds = predict_images(loaded, imgs)
    assert [p.anomaly_map.shape for p in preds] == [(150, 200), (256, 256)]
    assert all(np.isfinite(p.anomaly_map).all() and math.isfinite(p.score) for p in preds)
