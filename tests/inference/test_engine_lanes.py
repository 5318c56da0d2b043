"""The engine's lanes (ADR 0041): a batch split across threads gives each image the results one lane gives."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from inference.bundled import bundled_model_dir
from inference.engine import InspectionEngine, _lane_parts
from inference.results import ImageResult
from tests.tiny_models import save_tiny_models

SAMPLES = Path(__file__).resolve().parents[2] / "resources" / "samples" / "demo"


def _assert_same(one: list[ImageResult], other: list[ImageResult]) -> None:
    assert [r.key for r in one] == [r.key for r in other]
    for a, b in zip(one, other):
        assert a.error == b.error
        if not a.ok:
            continue
        assert (a.height, a.width) == (b.height, b.width)
        if a.classifier is not None:
            assert a.classifier.label == b.classifier.label
            np.testing.assert_allclose(a.classifier.scores, b.classifier.scores, atol=1e-6)
        if a.segmenter is not None:
            np.testing.assert_array_equal(a.segmenter.mask, b.segmenter.mask)
            assert a.segmenter.target_count == b.segmenter.target_count
        if a.anomaly is not None:
            np.testing.assert_allclose(a.anomaly.anomaly_map, b.anomaly.anomaly_map, rtol=1e-5, atol=1e-5)
            assert a.anomaly.score == pytest.approx(b.anomaly.score, rel=1e-5, abs=1e-6)
        assert a.in_domain.keys() == b.in_domain.keys()
        for f in a.in_domain:
            assert a.in_domain[f] == pytest.approx(b.in_domain[f], rel=1e-5, abs=1e-6)


def _run(engine: InspectionEngine, files: list[Path], lanes: int) -> list[ImageResult]:
    decoded = engine.collect(engine.submit_decode([(str(p), str(p)) for p in files]))
    return engine.predict_decoded(decoded, lanes=lanes)


def test_lane_parts_are_consecutive_near_equal_and_never_empty() -> None:
    items = list(range(7))
    assert _lane_parts(items, 2) == [[0, 1, 2], [3, 4, 5, 6]]  # type: ignore[arg-type]
    assert _lane_parts(items, 3) == [[0, 1], [2, 3], [4, 5, 6]]  # type: ignore[arg-type]
    assert _lane_parts(items[:1], 4) == [[0]]  # type: ignore[arg-type]
    assert _lane_parts([], 2) == [[]]
    assert _lane_parts(items, 0) == [items]


def test_lanes_give_each_image_the_results_of_one_lane(tmp_path: Path) -> None:
    models = save_tiny_models(tmp_path / "models")
    rng = np.random.default_rng(5)
    files = []
    for i in range(7):
        p = tmp_path / f"img{i}.png"
        shape = (48 + 8 * i, 64) if i % 2 else (64, 40 + 4 * i, 3)
        assert cv2.imwrite(str(p), rng.integers(0, 255, shape, dtype=np.uint8))
        files.append(p)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    files.insert(3, broken)
    before = torch.get_num_threads()
    with InspectionEngine(models, device="cpu", max_side={"segmenter": 96}) as engine:
        one = _run(engine, files, lanes=1)
        for lanes in (2, 3, 2):  # the second 2 reuses the lane threads
            _assert_same(one, _run(engine, files, lanes=lanes))
    assert torch.get_num_threads() == before  # the thread count set before is back
    assert "not a decodable image" in one[3].error


def test_bundled_models_in_two_lanes_match_one_lane() -> None:
    """The shipped defaults (texture classifier, accurate segmenter, tile anomaly model) on the demo
    images of all three kinds: per-batch state in any of them would show here."""
    dirs = {f: bundled_model_dir(f) for f in ("classifier", "segmenter", "anomaly")}
    missing = [str(d) for d in dirs.values() if not (d / "config.json").is_file()]
    if missing or not SAMPLES.is_dir():
        pytest.skip(f"bundled models or demo images missing: {missing or SAMPLES}")
    files = [sorted((SAMPLES / kind).glob("*.*"))[i] for kind in ("steel", "infrared", "tiles") for i in (0, 1)]
    with InspectionEngine(dirs, device="cpu", max_side={"segmenter": 256, "anomaly": 256}) as engine:
        _assert_same(_run(engine, files, lanes=1), _run(engine, files, lanes=2))
