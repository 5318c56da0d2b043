"""Anomaly data trees, train/evaluate commands, the worker's predict helper, magnetic-tile conversion."""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from app.cli import main
from inference.anomaly_predict import AnomalyPrediction, predict_images
from inference.checkpoints import load_model
from inference.models.pixel_gaussian import PixelGaussian, PixelGaussianConfig
from inference.training.anomaly_data import AnomalyDataError, scan_category, synthesize_defects, to_model_input
from inference.training.convert_magnetic_tile import convert
from tests.tiny_models import one_thread  # noqa: F401  (autouse)


def _stripes(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return np.clip(0.5 + 0.3 * np.sin(xx * 2 * np.pi / 8) + rng.normal(0, 0.02, (h, w)), 0, 1)


def _write(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


def train_tiny(cat: Path, out: Path, *flags: str) -> int:
    """``python main.py train anomaly`` on ``cat`` with the tiny preset, one epoch on one thread."""
    return main(["train", "anomaly", "--data", str(cat), "--out", str(out), "--preset", "test_tiny", "--epochs", "1",
                 "--batch-size", "4", "--threads", "1", *flags])


def train_tiny_card(root: Path, capsys, name: str, *flags: str) -> tuple[Path, Path, dict]:
    """(category, model directory, its card) after ``train_tiny`` on a fresh ``make_tree(root)``."""
    cat = make_tree(root)
    out = root / name
    assert train_tiny(cat, out, *flags) == 0, capsys.readouterr().err
    return cat, out, json.loads((out / "card.json").read_text())


def make_tree(root: Path) -> Path:
    """A messy little MVTec-style category: mixed depths/channels/aspect, a symlinked folder,
    a defect without a mask and a corrupt file."""
    rng = np.random.default_rng(0)
    good = root / "cat" / "train" / "good"
    for i in range(5):
        _write(good / f"{i:03d}.png", (_stripes(30, 40, rng) * 255).astype(np.uint8))
    _write(good / "005.png", (_stripes(40, 30, rng) * 65535).astype(np.uint16))  # 16-bit, other aspect
    rgba = np.dstack([(_stripes(30, 40, rng) * 255).astype(np.uint8)] * 3 + [np.full((30, 40), 255, np.uint8)])
    _write(good / "006.png", rgba)
    other = root / "elsewhere"
    for i in range(2):
        _write(other / f"x{i}.png", (_stripes(30, 40, rng) * 255).astype(np.uint8))
    (good / "linked").symlink_to(other, target_is_directory=True)
    test = root / "cat" / "test"
    for i in range(2):
        _write(test / "good" / f"{i:03d}.png", (_stripes(30, 40, rng) * 255).astype(np.uint8))
    for i in range(3):
        img = _stripes(30, 40, rng)
        img[10:16, 12 + 6 * i:18 + 6 * i] = 1.0
        _write(test / "crack" / f"{i:03d}.png", (img * 255).astype(np.uint8))
        if i < 2:  # 002 has no mask
            m = np.zeros((30, 40), np.uint8)
            m[10:16, 12 + 6 * i:18 + 6 * i] = 255
            _write(root / "cat" / "ground_truth" / "crack" / f"{i:03d}_mask.png", m)
    (test / "crack" / "broken.png").write_bytes(b"not a png")
    return root / "cat"


def test_scan_follows_symlinks_and_lists_missing_masks(tmp_path):
    tree = scan_category(make_tree(tmp_path), need_test=True)
    assert len(tree.train_good) == 9  # 7 files + 2 through the symlinked folder
    assert [p.name for p in tree.missing_masks] == ["002.png", "broken.png"]
    assert sum(t.is_anomalous for t in tree.test) == 4


def test_scan_errors_are_clear(tmp_path):
    with pytest.raises(AnomalyDataError, match="folder not found"):
        scan_category(tmp_path / "nope")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(AnomalyDataError, match="not a folder"):
        scan_category(tmp_path / "file.png")
    (tmp_path / "cat" / "train" / "good").mkdir(parents=True)
    with pytest.raises(AnomalyDataError, match="no good images"):
        scan_category(tmp_path / "cat")
    (tmp_path / "flat").mkdir()
    with pytest.raises(AnomalyDataError, match="no train/good"):
        scan_category(tmp_path / "flat")


def test_to_model_input_takes_any_image():
    for img in [np.zeros((30, 50), np.float32), np.zeros((50, 30, 3), np.float32), np.zeros((20, 20, 4), np.float32)]:
        assert to_model_input(img, 24, 3).shape == (3, 24, 24)
        assert to_model_input(img, 24, 1).shape == (1, 24, 24)


def test_synthetic_defects_mark_what_changed():
    rng = np.random.default_rng(1)
    batch = np.random.default_rng(0).random((6, 3, 32, 32)).astype(np.float32)
    out, masks = synthesize_defects(batch, rng, prob=1.0)
    assert out.shape == batch.shape and masks.shape == (6, 32, 32)
    assert masks.any(axis=(1, 2)).all()
    changed = np.abs(out - batch).max(axis=1) > 0.02
    assert not (changed & ~masks).any()  # nothing changed outside the marked region


def test_baseline_lights_up_a_planted_defect():
    rng = np.random.default_rng(0)
    cfg = PixelGaussianConfig(image_size=32, in_channels=1, mean=(0.5,), std=(0.25,))
    model = PixelGaussian(cfg)
    good = np.stack([_stripes(32, 32, rng)[None] for _ in range(20)]).astype(np.float32)
    model.fit(torch.as_tensor((good - 0.5) / 0.25))
    bad = _stripes(32, 32, rng)
    bad[20:24, 5:9] = 0.0
    amap = model.anomaly_map(torch.as_tensor((bad[None, None] - 0.5) / 0.25, dtype=torch.float32))[0]
    py, px = np.unravel_index(int(amap.argmax()), amap.shape)
    assert 19 <= py <= 24 and 4 <= px <= 9


def test_train_evaluate_predict_end_to_end(tmp_path, capsys):
    cat, out, card = train_tiny_card(tmp_path, capsys, "model", "--seed", "3")
    # z-scored fused maps can put the threshold below 0; calibrated means finite here
    assert math.isfinite(card["threshold"]["image"]) and card["data"]["holdout_good"] >= 1
    assert card["data"]["train_good"] + card["data"]["holdout_good"] == 9
    assert math.isfinite(card["metrics"]["test"]["image_auroc"])
    # the memory bank and the statistics term are on by default; validation decided whether to keep them
    assert {"memory_bank", "appearance_stats"} <= set(card) and "edge_band" not in card

    rc = main(["evaluate", "anomaly", "--data", str(cat), "--model", str(out), "--json", str(tmp_path / "m.json")])
    text = capsys.readouterr().out
    assert rc == 0
    res = json.loads((tmp_path / "m.json").read_text())
    assert set(res) >= {"image_auroc", "pixel_auroc", "pro"}
    assert res["n_images"] == 5 and res["n_pixel_evaluated"] == 4  # broken.png left out, 002 image-only
    assert set(res["pixel_auroc_by_type"]) == {t for t in res["mean_score_by_type"] if t != "good"}
    assert "no ground-truth mask" in text and "broken.png" in text
    # a session-45 probe: a mask that cannot be read left its readable image out of the image AUROC too
    mask = sorted((cat / "ground_truth").rglob("*.png"))[0]
    mask.write_bytes(b"not a png")
    assert main(["evaluate", "anomaly", "--data", str(cat), "--model", str(out), "--json", str(tmp_path / "m.json")]) == 0
    again = json.loads((tmp_path / "m.json").read_text())
    assert again["n_images"] == 5 and again["n_pixel_evaluated"] == 3
    assert "ground-truth mask cannot be read" in capsys.readouterr().out

    loaded = load_model(out)
    imgs = [np.random.default_rng(0).random((45, 70)).astype(np.float32),
            np.random.default_rng(1).random((20, 33, 3)).astype(np.float32)]
    preds = predict_images(loaded, imgs)
    assert [p.anomaly_map.shape for p in preds] == [(45, 70), (20, 33)]
    assert all(isinstance(p, AnomalyPrediction) and p.anomaly_map.dtype == np.float32 for p in preds)
    assert all(p.is_anomalous == (p.score > card["threshold"]["image"]) for p in preds)


def test_commands_fail_with_one_clear_line(tmp_path, capsys):
    (tmp_path / "empty" / "train" / "good").mkdir(parents=True)
    assert main(["train", "anomaly", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no good images to train on" in capsys.readouterr().err
    cat = make_tree(tmp_path)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    assert main(["evaluate", "anomaly", "--data", str(cat), "--model", str(tmp_path / "broken")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["evaluate", "anomaly", "--data", str(tmp_path / "empty"), "--model", str(tmp_path / "broken")]) == 2
    assert "no test images" in capsys.readouterr().err


def test_convert_magnetic_tile(tmp_path):
    src = tmp_path / "mt"
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("free", "crack"):
            for i in range(2):
                img = (_stripes(20, 30, rng) * 255).astype(np.uint8)
                _write(src / split / cls / f"{cls}{i}.png", img)
                m = np.zeros((20, 30), np.uint8)
                if cls == "crack" and i == 0:
                    m[5:8, 5:9] = 255
                _write(src / "masks" / split / cls / f"{cls}{i}.png", m)
    counts = convert(src, tmp_path / "out")
    assert counts == {"train_good": 2, "test_good": 2, "test_defect": 4, "masks": 2, "no_mask": 2}
    tree = scan_category(tmp_path / "out", need_test=True)
    assert len(tree.train_good) == 2 and len(tree.test) == 6
    assert sorted(p.name for p in tree.missing_masks) == ["train_crack1.png", "val_crack1.png"]  # empty masks dropped
    with pytest.raises(ValueError, match="no train/free"):
        convert(tmp_path / "out", tmp_path / "x")


def test_pixel_auroc_by_type_pools_each_type_with_the_good_images():
    from inference.training.anomaly_eval import _pixel_auroc_by_type

    good_mask, defect_mask = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    defect_mask[1:3, 1:3] = True
    hot = defect_mask.astype(float)  # map hot on the defect: perfect
    cold = 1.0 - hot  # map hot everywhere but the defect: fully inverted
    res = _pixel_auroc_by_type([good_mask, defect_mask, defect_mask], [np.full((4, 4), 0.5), hot, cold],
                               ["good", "scratch", "dent"])
    assert res == {"dent": 0.0, "scratch": 1.0}


def test_train_without_the_post_training_terms(tmp_path, capsys):
    _cat, out, card = train_tiny_card(tmp_path, capsys, "plain", "--no-memory-bank", "--no-appearance-stats",
                                      "--no-evaluate")
    assert not {"memory_bank", "appearance_stats"} & set(card)
    assert load_model(out).config.bank_size == 0


def test_few_good_images_skip_a_validation_kind_their_defect_leaves_unchanged(tmp_path, capsys):
    """A session-49 audit: ``train anomaly`` on six good images (one held out) trained, then ended with "error:
    torch.cat(): expected a non-empty list of Tensors", as a synthetic structural defect changed nothing on the held-out
    image and its validation kind was empty. Such a kind is skipped and said; the run saves its model."""
    good = tmp_path / "cat" / "train" / "good"
    for i in range(6):  # flat parts: nothing to remove or move, so "missing" and "shifted" change nothing
        _write(good / f"{i:03d}.png", np.full((30, 40), 90 + i, np.uint8))
    out = tmp_path / "model"
    assert train_tiny(tmp_path / "cat", out, "--no-evaluate") == 0, capsys.readouterr().err
    said = capsys.readouterr().out
    assert "a synthetic 'missing' defect changed none of the 1 held-out good image(s)" in said
    card = json.loads((out / "card.json").read_text())
    assert "missing" not in card["appearance_stats"]["selection_rule"]


def test_a_refused_training_leaves_no_folder_it_created(tmp_path, capsys, monkeypatch):
    """A session-49 audit: a ``train anomaly`` that failed after training left its new --out holding only
    train_state.pt; a folder that was there before is left as it was."""
    import inference.training.anomaly_train as anomaly_train

    def refuse(*_args, **_kwargs):
        raise ValueError("refused after training")

    monkeypatch.setattr(anomaly_train, "choose_term", refuse)
    cat = make_tree(tmp_path)
    assert train_tiny(cat, tmp_path / "new", "--no-evaluate") == 2
    assert "refused after training" in capsys.readouterr().err and not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    assert train_tiny(cat, tmp_path / "old", "--no-evaluate") == 2
    assert (tmp_path / "old").is_dir()


def test_a_group_by_pattern_that_is_no_regular_expression_is_refused_before_fitting(tmp_path, capsys, monkeypatch):
    """A session-49 audit: ``train anomaly --arch texture_knn --group-by 'regex:('`` fitted its memory bank, then
    ended in a traceback (re.error) and left an empty --out; it is one line before any fitting now."""
    import inference.training.texture_knn_fit as texture_knn_fit

    def never(*_args, **_kwargs):
        raise AssertionError("fitted before the grouping was checked")

    monkeypatch.setattr(texture_knn_fit, "fit_model", never)
    cat = make_tree(tmp_path)
    assert train_tiny(cat, tmp_path / "knn", "--arch", "texture_knn", "--group-by", "regex:(") == 2
    err = capsys.readouterr().err
    assert "grouping 'regex:(': '(' is not a regular expression" in err and "Traceback" not in err
    assert not (tmp_path / "knn").exists()


def test_a_path_grouping_the_domain_fit_takes_is_not_refused_for_a_network(tmp_path, capsys):
    """The review of a session-49 fix: checking --group-by before training by the file-name rules refused "scene" for
    the pattern network, whose --group-by feeds only the domain fit's path groups (it trained before)."""
    _cat, _out, card = train_tiny_card(tmp_path, capsys, "net", "--group-by", "scene")
    assert card
