"""The texture nearest-neighbour anomaly model, its group cross-validation and threshold, and the
magnetic-tile converter's split-keeping mode (issue 19, item 4)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from app.cli import main
from inference.anomaly_predict import predict_images
from inference.checkpoints import CheckpointError, load_model, save_model
from inference.models.texture_knn import PRESETS, TextureKnn, TextureKnnConfig, texture_features
from inference.training.anomaly_data import scan_category, scan_validation
from inference.training.convert_magnetic_tile import convert
from inference.training.groups import balanced_folds, name_group_function
from inference.training.texture_knn_fit import choose_threshold, fit_model, group_cv
from tests.tiny_models import one_thread  # noqa: F401  (autouse)

prefix_group = name_group_function("prefix")

TINY = PRESETS["test_tiny"]


def _tiles(n: int, rng: np.random.Generator, s: int = 32, blob: bool = False) -> np.ndarray:
    """Striated gray tiles in [0, 1] (n, 1, s, s) with random exposure; ``blob``: a dark spot each."""
    xx = np.arange(s)[None, :]
    out = []
    for _ in range(n):
        img = 0.3 + 0.05 * np.sin(xx * 2 * np.pi / 3 + rng.uniform(0, 6)) + rng.normal(0, 0.01, (s, s))
        img = img * rng.uniform(0.8, 1.2)
        if blob:
            y, x = rng.integers(8, s - 8, 2)
            img[y - 3:y + 3, x - 3:x + 3] = 0.05
        out.append(np.clip(img, 0, 1)[None])
    return np.stack(out).astype(np.float32)


def test_feature_and_map_shapes():
    cfg = TINY
    x = torch.rand(3, 1, cfg.image_size, cfg.image_size)
    f = texture_features(x, cfg)
    assert f.shape == (3, cfg.image_size // cfg.stride, cfg.image_size // cfg.stride, cfg.feature_dim)
    assert cfg.feature_dim == len(cfg.sigmas) * 4
    model = TextureKnn(cfg)
    maps = model.anomaly_map(x)
    assert maps.shape == (3, cfg.image_size, cfg.image_size)
    assert model.score(maps).shape == (3,)


def test_features_ignore_exposure():
    """Gain and offset of an image do not move its features (each image standardised by itself)."""
    x = torch.rand(1, 1, 32, 32)
    a, b = texture_features(x, TINY), texture_features(0.5 * x + 0.2, TINY)
    assert torch.allclose(a, b, atol=1e-4)


def test_config_checks():
    with pytest.raises(ValueError, match="stride"):
        TextureKnnConfig(image_size=30, stride=4)
    with pytest.raises(ValueError, match="bank_k"):
        TextureKnnConfig(bank_size=4, bank_k=5)
    with pytest.raises(ValueError, match="score_margin"):
        TextureKnnConfig(image_size=32, stride=4, score_margin=16)


def test_fit_predict_round_trip(tmp_path):
    """A bank of good tiles: a tile with a dark blob scores above every good tile it never saw, and
    the saved directory loads and gives the same maps."""
    rng = np.random.default_rng(0)
    model = fit_model(TINY, _tiles(12, rng))
    assert model.config.bank_size == TINY.bank_size
    good, bad = _tiles(6, rng), _tiles(6, rng, blob=True)
    with torch.no_grad():
        sg = model.score(model.anomaly_map(torch.from_numpy((good - 0.5) / 0.25)))
        sb = model.score(model.anomaly_map(torch.from_numpy((bad - 0.5) / 0.25)))
    assert sb.min() > sg.max()
    save_model(tmp_path / "m", "texture_knn", model, model.config, {"threshold": {"image": float(sg.max())}})
    loaded = load_model(tmp_path / "m", family="anomaly")
    images = [bad[0, 0], good[0, 0]]
    a, b = predict_images(loaded, images), predict_images(type("L", (), {"model": model, "card": loaded.card})(), images)
    assert np.allclose(a[0].anomaly_map, b[0].anomaly_map) and a[0].is_anomalous and not a[1].is_anomalous


def test_small_fit_set_shrinks_the_bank():
    model = fit_model(dataclasses.replace(TINY, bank_size=10_000), _tiles(2, np.random.default_rng(1)))
    assert model.config.bank_size == 2 * 8 * 8  # every cell of both images


def test_loading_is_bounded(tmp_path):
    """A config that disagrees with its weights, or asks for a bank beyond the limits, is refused
    before anything of that size is allocated."""
    model = fit_model(TINY, _tiles(4, np.random.default_rng(2)))
    d = save_model(tmp_path / "m", "texture_knn", model, model.config, {})
    meta = json.loads((d / "config.json").read_text())
    for bank_size, message in ((model.config.bank_size * 2, "bank"), (1 << 30, "bank_size")):
        meta["config"]["bank_size"] = bank_size
        (d / "config.json").write_text(json.dumps(meta))
        with pytest.raises(CheckpointError, match=message):
            load_model(d)


def test_group_folds_keep_groups_whole_and_balanced():
    names = [f"exp{g}_num_{i}.png" for g in range(1, 7) for i in range(g + 2)]
    groups = [prefix_group(n) for n in names]
    folds = balanced_folds(groups, 3)
    assert sorted(i for f in folds for i in f) == list(range(len(names)))
    owner = {}
    for k, f in enumerate(folds):
        for i in f:
            assert owner.setdefault(groups[i], k) == k  # a group lives in one fold
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 3
    assert balanced_folds(groups, 3) == folds  # deterministic
    with pytest.raises(ValueError, match="cannot fill"):
        balanced_folds(["a", "a", "b"], 3)
    assert name_group_function("regex:(num)")("exp1_num_3.png") == "num"
    with pytest.raises(ValueError, match="unknown grouping"):
        name_group_function("sessions")


def test_group_cv_never_scores_with_its_own_group():
    """A session unlike every other (horizontal stripes) is flagged in cross-validation: its own
    tiles were never in the bank that scored it."""
    rng = np.random.default_rng(3)
    good = _tiles(12, rng)
    bars = (np.arange(32) // 6 % 2)[:, None] * 0.2  # group exp3: broad horizontal bars
    good[8:] = good[8:] + bars
    names = [f"exp{1 + i // 4}_{i}.png" for i in range(12)]
    bad = _tiles(3, rng, blob=True)
    masks = [np.zeros((32, 32), bool) for _ in range(3)]
    res = group_cv(TINY, names, good, [f"exp{i + 1}_d.png" for i in range(3)], bad, ["blob"] * 3, masks,
                   prefix_group, 3, log=lambda _m: None)
    assert [f["groups"] for f in res["folds"]] == [["exp1"], ["exp2"], ["exp3"]]
    gs = res["_good_scores"]
    assert gs[8:].min() > gs[:8].max()
    assert res["n_defect"] == 3 and res["unscored_defects"] == 0


def test_threshold_from_training_scores():
    thr = choose_threshold(np.array([0.1, 0.2, 0.3, 0.9]), np.array([0.5, 0.8, 1.0]))
    assert thr["image"] == pytest.approx(0.3) and thr["youden_j"] == pytest.approx(0.75)
    only_good = choose_threshold(np.linspace(0, 1, 101), np.array([]))
    assert only_good["image"] == pytest.approx(0.99) and "quantile" in only_good["method"]


def _mt_source(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("free", "crack"):
            for i in range(2):
                img = (_tiles(1, rng)[0, 0] * 255).astype(np.uint8)
                assert cv2.imwrite(str(_mk(root / split / cls / f"exp{i + 1}_num_{i}.png")), img)
                m = np.zeros((32, 32), np.uint8)
                if cls == "crack":
                    m[5:8, 5:9] = 255
                assert cv2.imwrite(str(_mk(root / "masks" / split / cls / f"exp{i + 1}_num_{i}.png")), m)
    return root


def _mk(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def test_convert_keeps_train_defects_out_of_the_test_split(tmp_path):
    src = _mt_source(tmp_path / "mt")
    counts = convert(src, tmp_path / "out", defects_by_split=True)
    assert counts == {"train_good": 2, "test_good": 2, "test_defect": 2, "masks": 4, "no_mask": 0,
                      "validation_defect": 2}
    tree = scan_category(tmp_path / "out", need_test=True)
    assert all(t.path.name.startswith("val_") for t in tree.test if t.is_anomalous)
    val = scan_validation(tmp_path / "out")
    assert sorted(t.path.name for t in val) == ["exp1_num_0.png", "exp2_num_1.png"]  # session prefix kept
    assert all(t.mask_path is not None for t in val)
    assert scan_validation(tmp_path / "mt") == []  # a tree without validation/


def test_train_texture_knn_writes_cv_estimate_and_threshold(tmp_path, capsys):
    src = _mt_source(tmp_path / "mt")
    for i in range(2, 6):  # more sessions of good tiles so that 2 folds have groups to hold out
        img = (_tiles(1, np.random.default_rng(i))[0, 0] * 255).astype(np.uint8)
        assert cv2.imwrite(str(src / "train" / "free" / f"exp{i + 1}_num_{i}.png"), img)
    convert(src, tmp_path / "out", defects_by_split=True)
    out = tmp_path / "model"
    rc = main(["train", "anomaly", "--data", str(tmp_path / "out"), "--out", str(out), "--arch", "texture_knn",
               "--preset", "test_tiny", "--threads", "1", "--cv-folds", "2"])
    assert rc == 0, capsys.readouterr().err
    card = json.loads((out / "card.json").read_text())
    cv = card["cross_validation"]
    assert cv["n_folds"] == 2 and cv["group_by"] == "prefix" and cv["n_defect"] == 2
    assert "Youden" in card["threshold"]["method"] and "cross-validation" in card["threshold"]["method"]
    assert "image_auroc" in card["metrics"]["test"]
    assert load_model(out, family="anomaly").name == "texture_knn"


def test_validation_refuses_good_images(tmp_path):
    """Held-out good images come from train/good by the trainer's own split; a second source of
    them in validation/ could not be kept out of fitting, so it is refused with the reason."""
    from inference.training.anomaly_data import AnomalyDataError

    (tmp_path / "validation" / "good").mkdir(parents=True)
    with pytest.raises(AnomalyDataError, match="defect images only"):
        scan_validation(tmp_path)


def test_train_without_enough_groups_falls_back_to_the_held_out_threshold(tmp_path, capsys):
    """File names without session prefixes form one group: training still succeeds, says why there
    is no cross-validation estimate, and calibrates on the held-out good images."""
    rng = np.random.default_rng(5)
    for i in range(8):
        assert cv2.imwrite(str(_mk(tmp_path / "cat" / "train" / "good" / f"img_{i}.png")),
                           (_tiles(1, rng)[0, 0] * 255).astype(np.uint8))
    out = tmp_path / "model"
    rc = main(["train", "anomaly", "--data", str(tmp_path / "cat"), "--out", str(out), "--arch", "texture_knn",
               "--preset", "test_tiny", "--threads", "1"])
    assert rc == 0, capsys.readouterr().err
    assert "cannot fill 3 folds" in capsys.readouterr().out
    card = json.loads((out / "card.json").read_text())
    assert "cross_validation" not in card and "quantile" in card["threshold"]["method"]


def test_the_coreset_reports_its_picks_for_a_progress_bar():
    """Fitting a full bank takes minutes on a CPU: the trainer's bar (with its ETA) counts the picks."""
    from inference.models.memory_bank import greedy_coreset

    rows = torch.randn(700, 4, generator=torch.Generator().manual_seed(0))
    steps: list[int] = []
    with_bar = greedy_coreset(rows, 600, seed=3, progress=steps.append)
    assert sum(steps) == 600 and steps == [256, 256, 88]
    assert torch.equal(with_bar, greedy_coreset(rows, 600, seed=3))  # the same picks
