"""The ``texture_linear`` classifier: texture features -> standardise -> linear, as an ordinary station model."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.checkpoints import CheckpointError, load_model
from inference.engine import InspectionEngine
from inference.imageio import read_image
from inference.texture_features import TEXTURE_DIM, image_texture
from inference.training.classifier_evaluate import evaluate_model
from inference.training.classifier_head import texture_matrix, write_texture_linear
from tests.tiny_models import one_thread  # noqa: F401  (one_thread: autouse)


def _striped(folder: Path, n: int, seed: int) -> tuple[list[Path], np.ndarray]:
    """Tiles whose class is the direction of their stripes (0 horizontal, 1 vertical, 2 none), of varied sizes."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths, labels = [], []
    for i in range(n):
        cls = i % 3
        h, w = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        img = rng.normal(120, 10, (h, w))
        period = int(rng.integers(5, 9))
        if cls == 0:
            img[(np.arange(h) // period) % 2 == 0, :] += 60
        elif cls == 1:
            img[:, (np.arange(w) // period) % 2 == 0] += 60
        paths.append(folder / f"t{i}.png")
        cv2.imwrite(str(paths[-1]), np.clip(img, 0, 255).astype(np.uint8))
        labels.append(cls)
    return paths, np.array(labels, np.int64)


def test_texture_linear_round_trips_and_predicts_through_the_engine(tmp_path: Path) -> None:
    paths, labels = _striped(tmp_path / "train", 30, 0)
    feats = texture_matrix(paths)
    out = write_texture_linear(feats, labels, ["horizontal", "vertical", "plain"], 1.0, tmp_path / "model",
                               {"family": "classifier"})
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "config.json", "card.json"}

    loaded = load_model(out, family="classifier")
    assert loaded.name == "texture_linear" and loaded.card["test_time_augmentation"] == "none"
    state = loaded.model.state_dict()
    np.testing.assert_allclose(state["mean"].numpy(), feats.mean(0), rtol=1e-5, atol=1e-6)
    new, new_labels = _striped(tmp_path / "new", 9, 1)
    with InspectionEngine({"classifier": out}, device="cpu") as engine:
        results = engine.predict_paths(new)
    # what the model computes, by hand: the standardised texture vector of the decoded file, times the layer
    w, b = state["linear.weight"].numpy(), state["linear.bias"].numpy()
    for r, path, label in zip(results, new, new_labels):
        assert r.ok and r.classifier is not None, r.error
        assert r.classifier.classes == ("horizontal", "vertical", "plain")
        z = (image_texture(read_image(path, "gray")) - state["mean"].numpy()) / state["scale"].numpy()
        logits = z @ w.T + b
        p = np.exp(logits - logits.max())
        np.testing.assert_allclose(r.classifier.scores, p / p.sum(), atol=0.02)
        assert r.classifier.label == ("horizontal", "vertical", "plain")[label]  # stripes are easy for it

    # evaluate (the retrain command's scoring of a texture_linear parent) reads it through the same path
    for name, label in zip(new, new_labels):
        (tmp_path / "eval" / ("horizontal", "vertical", "plain")[label]).mkdir(parents=True, exist_ok=True)
        (tmp_path / "eval" / ("horizontal", "vertical", "plain")[label] / name.name).write_bytes(name.read_bytes())
    assert evaluate_model(loaded, tmp_path / "eval").report["accuracy"] == 1.0
    # a session-45 probe: --tta d4 was said and recorded while no view ran (it takes none)
    assert evaluate_model(loaded, tmp_path / "eval", tta="none").report["test_time_augmentation"] == "none"
    with pytest.raises(ValueError, match="takes no test-time views"):
        evaluate_model(loaded, tmp_path / "eval", tta="d4")


def test_texture_linear_config_is_checked_before_loading(tmp_path: Path) -> None:
    paths, labels = _striped(tmp_path / "train", 12, 2)
    out = write_texture_linear(texture_matrix(paths), labels, ["h", "v", "p"], 1.0, tmp_path / "model", {})
    meta = json.loads((out / "config.json").read_text())
    meta["config"]["feature_dim"] = TEXTURE_DIM + 1  # features of another version of the texture vector
    (out / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="feature_dim"):
        load_model(out, family="classifier")
    meta["config"]["feature_dim"] = TEXTURE_DIM
    meta["config"]["num_classes"] = 10**9  # a config asking for a huge layer is refused before allocating it
    (out / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="num_classes"):
        load_model(out, family="classifier")


def _tile(h: int = 180, w: int = 90, seed: int = 0) -> np.ndarray:
    """A long gray tile with vertical striation, like a magnetic tile, as a float image in [0, 1]."""
    rng = np.random.default_rng(seed)
    img = 0.45 + 0.05 * np.sin(np.arange(w) / 1.7)[None, :] + rng.normal(0, 0.01, (h, w))
    return np.clip(img, 0, 1).astype(np.float32)


def test_defect_statistics_see_a_small_blowhole_and_not_the_exposure() -> None:
    from inference.texture_features import DEFECT_DIM, DEFECT_MAPS, DEFECT_SIGMAS, DEFECT_STATS, image_defect

    plain = _tile()
    hole = plain.copy()
    hole[100:103, 40:43] = 0.15  # 3 x 3 pixels of 16,200: a 96 x 96 square resize would average it away
    a, b = image_defect(plain), image_defect(hole)
    assert a.shape == (DEFECT_DIM,)
    dark_spot_max = 4  # first map (dark spots) at sigma 1: percentiles 50/90/99/99.9, then the maximum
    assert b[dark_spot_max] > 3 * a[dark_spot_max]
    # gain and offset (another lighting) leave the local statistics as they were: each image is standardised
    brighter = image_defect(np.clip(plain * 1.3 + 0.05, 0, 1))
    local = len(DEFECT_SIGMAS) * DEFECT_MAPS * DEFECT_STATS
    np.testing.assert_allclose(brighter[:local], a[:local], rtol=0.02, atol=1e-3)  # up to the spread floor
    assert not np.allclose(brighter[local:], a[local:])  # the exposure and thumbnail parts do see it
    # a larger file is shrunk to DEFECT_SIDE first: the cost is bounded, the vector the same length
    assert image_defect(cv2.resize(hole, (360, 720), interpolation=cv2.INTER_LINEAR)).shape == (DEFECT_DIM,)


def test_defect_fine_adds_line_responses_that_tell_a_crack_from_a_blowhole() -> None:
    from inference.texture_features import (
        DEFECT_DIM,
        DEFECT_FINE_DIM,
        DEFECT_STATS,
        FEATURE_SETS,
        image_defect,
        image_defect_fine,
    )

    plain = _tile()
    crack, hole = plain.copy(), plain.copy()
    for i in range(40):  # a 1-px dark diagonal crack, 40 px long
        crack[60 + i, 30 + i // 2] = 0.2
    hole[100:104, 40:44] = 0.2
    fine = {name: image_defect_fine(img) for name, img in (("plain", plain), ("crack", crack), ("hole", hole))}
    assert FEATURE_SETS["defect_fine"][0] == DEFECT_FINE_DIM and fine["plain"].shape == (DEFECT_FINE_DIM,)
    np.testing.assert_array_equal(fine["crack"][:DEFECT_DIM], image_defect(crack))  # the defect vector first
    extra = {k: v[DEFECT_DIM:] for k, v in fine.items()}
    # the last two summaries: at sigma 2, the strongest line direction, then how line-like (strongest - median)
    lineness_max = slice(-DEFECT_STATS, None)
    line_max = 4 - 2 * DEFECT_STATS  # the maximum of the sigma-2 strongest direction
    assert extra["crack"][line_max] > 3 * extra["plain"][line_max]
    assert extra["crack"][lineness_max][4] > 2 * extra["hole"][lineness_max][4]  # a spot is not a line
    # another lighting leaves the local responses as they were (each image is standardised first)
    brighter = image_defect_fine(np.clip(crack * 1.3 + 0.05, 0, 1))[DEFECT_DIM:]
    np.testing.assert_allclose(brighter, extra["crack"], rtol=0.03, atol=2e-3)


def test_unweighted_head_leans_to_the_frequent_class() -> None:
    from inference.training.classifier_head import fit_linear_head

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (180, 2)), rng.normal(1.5, 1, (20, 2))])
    y = np.r_[np.zeros(180, np.int64), np.ones(20, np.int64)]
    grid = rng.normal(0.75, 1.5, (400, 2))
    balanced = fit_linear_head(x, y, 2, 1.0).predict(grid)
    plain = fit_linear_head(x, y, 2, 1.0, balanced=False).predict(grid)
    assert (plain == 0).sum() > (balanced == 0).sum() + 40


def test_defect_linear_round_trips_through_the_engine_and_old_versions_read_texture(tmp_path: Path) -> None:
    from inference.texture_features import DEFECT_DIM, image_defect

    rng = np.random.default_rng(3)
    (tmp_path / "train").mkdir()
    paths, labels = [], []
    for i in range(16):
        img = _tile(int(rng.integers(120, 200)), int(rng.integers(60, 100)), i)
        if i % 2:
            y, x = int(rng.integers(20, img.shape[0] - 20)), int(rng.integers(15, img.shape[1] - 15))
            img[y:y + 3, x:x + 3] = 0.1
        paths.append(tmp_path / "train" / f"t{i}.png")
        cv2.imwrite(str(paths[-1]), (img * 255).astype(np.uint8))
        labels.append(i % 2)
    feats = texture_matrix(paths, "defect")
    assert feats.shape == (16, DEFECT_DIM)
    out = write_texture_linear(feats, np.array(labels), ["free", "blowhole"], 1.0, tmp_path / "model",
                               {"family": "classifier"}, "defect")
    loaded = load_model(out, family="classifier")
    assert loaded.config.features == "defect" and loaded.config.feature_dim == DEFECT_DIM
    assert loaded.config.img_size == 128  # the engine hands it images of at most 256 px, the statistics' side
    state = loaded.model.state_dict()
    with InspectionEngine({"classifier": out}, device="cpu") as engine:
        results = engine.predict_paths(paths[:4])
    for r, path in zip(results, paths[:4]):
        assert r.ok and r.classifier is not None, r.error
        z = (image_defect(read_image(path, "gray")) - state["mean"].numpy()) / state["scale"].numpy()
        logits = z @ state["linear.weight"].numpy().T + state["linear.bias"].numpy()
        p = np.exp(logits - logits.max())
        np.testing.assert_allclose(r.classifier.scores, p / p.sum(), atol=0.02)
    # its out-of-domain statistics describe the features it reads, standardised as its layer reads them
    from inference.engine_families import embed_images

    emb = embed_images(loaded, [read_image(p, "gray") for p in paths[:3]])
    np.testing.assert_allclose(emb, (feats[:3] - state["mean"].numpy()) / state["scale"].numpy(), rtol=1e-4, atol=1e-3)
    # a version written before feature sets had names has no "features" key: it reads texture features
    old = write_texture_linear(texture_matrix(paths), np.array(labels), ["free", "blowhole"], 1.0, tmp_path / "old", {})
    meta = json.loads((old / "config.json").read_text())
    del meta["config"]["features"]
    (old / "config.json").write_text(json.dumps(meta))
    assert load_model(old, family="classifier").config.features == "texture"
    meta["config"]["features"] = "defect"  # the defect set with the texture length: refused before loading
    (old / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="feature_dim"):
        load_model(old, family="classifier")


def test_test_time_views_are_refused_for_a_model_that_reads_features(tmp_path: Path) -> None:
    """A flipped feature vector is not a flipped picture: ``--tta flips`` on a texture model is an error, not noise."""
    from inference.classifier_predict import model_input, predict_logits

    paths, labels = _striped(tmp_path / "train", 12, 3)
    out = write_texture_linear(texture_matrix(paths), labels, ["horizontal", "vertical", "plain"], 1.0,
                               tmp_path / "model", {"family": "classifier"})
    loaded = load_model(out, family="classifier")
    batch = np.stack([model_input(loaded, read_image(p, "gray")) for p in paths[:3]])
    assert predict_logits(loaded, batch).shape == (3, 3) and predict_logits(loaded, batch, "none").shape == (3, 3)
    for mode in ("flips", "d4"):
        with pytest.raises(ValueError, match="feature vector"):
            predict_logits(loaded, batch, mode)
