"""InspectionEngine on the three families' tiny presets: batches, odd files, precision, prefetch."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.checkpoints import CheckpointError
from inference.engine import InspectionEngine, decode
from inference.imageio import ImageReadError
from tests.tiny_models import CLASSES, save_tiny_models


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return save_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def engine(models):
    with InspectionEngine(models, device="cpu", max_side={"segmenter": 128}) as e:
        yield e


def _images(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    files = {
        "gray8": ("a.png", rng.integers(0, 255, (40, 50), dtype=np.uint8)),
        "rgb8": ("b.jpg", rng.integers(0, 255, (33, 47, 3), dtype=np.uint8)),
        "gray16": ("c.tif", rng.integers(0, 65535, (36, 36), dtype=np.uint16)),
        "large": ("d.bmp", rng.integers(0, 255, (1500, 1300, 3), dtype=np.uint8)),
    }
    out = {}
    for key, (name, arr) in files.items():
        assert cv2.imwrite(str(folder / name), arr)
        out[key] = folder / name
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.png").write_text("not an image")
    out.update(corrupt=folder / "corrupt.png", empty=folder / "empty.png", text=folder / "text.png")
    return out


def test_every_family_predicts_and_bad_files_fail_alone(engine, tmp_path: Path) -> None:
    files = _images(tmp_path)
    results = {r.key: r for r in engine.predict_paths(list(files.values()), batch_size=3)}
    assert len(results) == len(files)
    for key in ("gray8", "rgb8", "gray16", "large"):
        r = results[str(files[key])]
        assert r.ok, r.error
        assert r.classifier.label in CLASSES and r.classifier.scores.shape == (2,)
        assert abs(float(r.classifier.scores.sum()) - 1) < 1e-4
        assert r.segmenter.mask.shape == (r.height, r.width) and r.segmenter.mask.dtype == bool
        assert r.segmenter.target_count >= 0
        assert r.anomaly.anomaly_map.ndim == 2 and np.isfinite(r.anomaly.score)
        assert r.anomaly.threshold == 0.5
    assert (results[str(files["large"])].height, results[str(files["large"])].width) == (1500, 1300)
    assert "empty" in results[str(files["empty"])].error
    for key in ("corrupt", "text"):
        assert "not a decodable image" in results[str(files[key])].error


def test_batching_and_prefetch_do_not_change_results(engine, tmp_path: Path) -> None:
    f = _images(tmp_path)
    files = [f["gray8"], f["empty"], f["rgb8"]]
    one = engine.predict_paths(files, batch_size=1)
    many = engine.predict_paths(files, batch_size=4)
    for a, b in zip(one, many):
        assert a.key == b.key and a.error == b.error
        if a.ok:
            np.testing.assert_allclose(a.classifier.scores, b.classifier.scores, atol=1e-4)
            np.testing.assert_allclose(a.anomaly.anomaly_map, b.anomaly.anomaly_map, atol=1e-4)
            assert (a.segmenter.mask == b.segmenter.mask).mean() > 0.999


def test_only_requested_families_run(engine, tmp_path: Path) -> None:
    files = _images(tmp_path)
    (r,) = engine.predict_paths([files["gray8"]], families=["anomaly"])
    assert r.anomaly is not None and r.classifier is None and r.segmenter is None


def test_decode_shrinks_large_images_but_keeps_their_size(tmp_path: Path) -> None:
    files = _images(tmp_path)
    d = decode(files["large"], {"gray": 256, "rgb": 64})
    assert (d.height, d.width) == (1500, 1300)
    assert max(d.views["gray"].shape) == 256 and d.views["rgb"].shape[2] == 3
    assert d.views["gray"].dtype == np.float32 and d.views["gray"].max() <= 1
    with pytest.raises(ImageReadError):
        decode(files["text"], {"gray": 64})


def test_a_float_image_outside_0_to_1_is_refused_with_its_range(tmp_path: Path) -> None:
    """Found by a session-43 probe: a 32-bit float TIFF of values 20-80 reached the models as a blank white frame
    (clipped to 0-1) and scored 1.0, while the viewer stretched it; one in 0-1 is read as it is."""
    hot = tmp_path / "f32.tif"
    assert cv2.imwrite(str(hot), np.linspace(20, 80, 64 * 48, dtype=np.float32).reshape(48, 64))
    with pytest.raises(ImageReadError, match="floating-point pixels outside 0-1 .20 to 80"):
        decode(hot, {"gray": 64})
    fine = tmp_path / "unit.tif"
    assert cv2.imwrite(str(fine), np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(48, 64))
    assert decode(fine, {"gray": 64}).views["gray"].max() == pytest.approx(1.0)


def test_a_32_bit_integer_image_is_refused_with_its_depth(tmp_path: Path) -> None:
    """Found by a session-45 probe: an int32 TIFF of counts 0-2,559,000 reached the models as a flat grey frame
    (0.5 to 0.5006, scaled by the whole 32-bit range) and was scored, while the viewer stretched it."""
    deep = tmp_path / "i32.tif"
    assert cv2.imwrite(str(deep), (np.arange(64 * 48, dtype=np.int32) * 833).reshape(48, 64))
    with pytest.raises(ImageReadError, match="32-bit integer pixels"):
        decode(deep, {"gray": 64})


def test_broken_or_mismatched_model_directories_are_refused(models, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError):
        InspectionEngine({"classifier": tmp_path / "nothing"}, device="cpu")
    with pytest.raises(CheckpointError, match="not a segmenter"):
        InspectionEngine({"segmenter": models["classifier"]}, device="cpu")
    with pytest.raises(ValueError, match="unknown families"):
        InspectionEngine({"detector": models["classifier"]}, device="cpu")


def test_a_model_error_costs_only_the_image_that_caused_it(models, tmp_path: Path, monkeypatch) -> None:
    files = _images(tmp_path)
    with InspectionEngine({"anomaly": models["anomaly"]}, device="cpu") as engine:
        model = engine.model("anomaly")
        real = model.predict

        def picky(images, sizes):
            if any(s == (33, 47) for s in sizes):  # the colour JPEG
                raise RuntimeError("CUDA out of memory (simulated)")
            return real(images, sizes)

        monkeypatch.setattr(model, "predict", picky)
        results = engine.predict_paths([files["gray8"], files["rgb8"], files["gray16"]], batch_size=3)
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error == "anomaly model failed: CUDA out of memory (simulated)"
    assert (results[1].height, results[1].width) == (33, 47)


@pytest.mark.parametrize("failure", ["raises", "nan"])
def test_half_precision_probe_that_fails_under_float16_turns_half_off(engine, monkeypatch, failure) -> None:
    """Seen on an H200: the segmenter's scan overflowed float16 inside the probe, the scan refused the
    non-finite result and the engine did not start; a classifier's half logits came back as NaN."""
    model = engine.model("segmenter")
    real = model.predict
    calls = []

    def half_fails(images, sizes):
        calls.append(1)
        if len(calls) == 2:  # the probe's second pass is the float16 one
            if failure == "raises":
                raise ValueError("selective_scan: non-finite output; non-finite values in: none of the inputs")
            monkeypatch.setattr(model, "difference", lambda a, b: float("nan"))
        return real(images, sizes)

    monkeypatch.setattr(model, "predict", half_fails)
    assert engine._half_is_safe("segmenter") is False
    assert len(calls) == 2


def test_half_precision_check_measures_each_familys_own_difference(engine) -> None:
    from inference.engine import HALF_TOLERANCE
    from inference.results import AnomalyResult, ClassResult, SegmentResult

    a = ClassResult(("free", "crack"), np.array([0.7, 0.3], np.float32), "free", 0.7)
    b = ClassResult(("free", "crack"), np.array([0.695, 0.305], np.float32), "free", 0.695)
    assert engine.model("classifier").difference([a], [b]) == pytest.approx(0.005, abs=1e-6)
    m = np.zeros((10, 100), bool)
    m2 = m.copy()
    m2[0, :3] = True
    assert engine.model("segmenter").difference([SegmentResult(m, 0)], [SegmentResult(m2, 1)]) == 0.003
    x = np.linspace(0, 2, 16, dtype=np.float32).reshape(4, 4)
    d = engine.model("anomaly").difference([AnomalyResult(x, 2.0, None)], [AnomalyResult(x + 0.01, 2.01, None)])
    assert d == pytest.approx(0.005, rel=1e-3) and d <= HALF_TOLERANCE["anomaly"]
    # on a CPU engine half precision is never used, whatever was asked
    assert not any(info.half for info in engine.loaded().values())
