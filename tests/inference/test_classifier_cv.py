"""``train classifier --cv-folds/--group-by``: group-aware folds, the choices they make, and the card that reports them."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from app.cli import main
from inference.checkpoints import load_model
from inference.classifier_predict import TTA_MODES, tta_logits
from inference.models.memory_mamba import MemoryMamba, preset
from inference.training.classifier_cv import (
    VIEW_INDEX,
    checkpoints,
    choose,
    mode_logits,
    plan_folds,
    view_logits,
)
from inference.training.classifier_data import AUGMENTATIONS, AugmentConfig, Preloaded, augment_batch
from inference.training.groups import group_key
from tests.inference.test_classifier_pipeline import CLASSES, _texture


def _session_tree(root: Path, sessions: int = 4, per_session: int = 3, val: bool = True) -> Path:
    """train/<class>/exp<s>_num_<i>.png (magnetic tile's naming), and a small val/ when asked."""
    rng = np.random.default_rng(0)
    for c in CLASSES:
        for s in range(sessions):
            for i in range(per_session):
                d = root / "train" / c
                d.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(d / f"exp{s}_num_{s * 100 + i}.png"), _texture(c, rng))
        if val:
            (root / "val" / c).mkdir(parents=True, exist_ok=True)
            for i in range(2):
                cv2.imwrite(str(root / "val" / c / f"exp9_num_{i}.png"), _texture(c, rng))
    return root


def test_folds_never_split_a_capture_session(tmp_path):
    paths, labels = [], []
    for c in range(2):
        for s in range(7):
            for i in range(3 + s % 3):
                paths.append(tmp_path / CLASSES[c] / f"exp{s}_num_{c}{s}{i}.png")
                labels.append(c)
    y = np.asarray(labels)
    plan = plan_folds(paths, tmp_path, y, CLASSES, folds=3, rule="auto", seed=0)
    assert plan.rule == "prefix"  # no sub-folders: auto falls through to the file-name prefix
    session = [p.name.split("_")[0] for p in paths]
    seen = np.zeros(len(paths), dtype=int)
    for train, left_out in plan.folds:
        assert not set(train) & set(left_out)
        assert not {session[i] for i in train} & {session[i] for i in left_out}  # no session on both sides
        seen[left_out] += 1
    assert (seen == 1).all()  # every image is left out exactly once
    assert plan.describe()["groups"] == 7 and plan.describe()["folds"] == 3


def test_group_key_gives_the_folder_rule_the_sub_folders(tmp_path):
    paths = [tmp_path / "crack" / f"lot{k}" / f"part{i}.png" for k in range(3) for i in range(2)]
    assert group_key(paths[0], tmp_path) == "crack__lot0__part0.png"
    plan = plan_folds(paths, tmp_path, np.zeros(6, dtype=np.int64), ["crack", "free"], folds=3, rule="folder")
    assert sorted(set(plan.groups)) == ["lot0", "lot1", "lot2"]


def test_checkpoints_end_at_the_last_epoch():
    assert checkpoints(15, 5) == [5, 10, 15]
    assert checkpoints(7, 3) == [3, 6, 7]
    assert checkpoints(12) == [2, 4, 6, 8, 10, 12]


def test_view_modes_average_the_same_views_as_the_application():
    cfg = preset("test_tiny", num_classes=2)
    torch.manual_seed(0)
    model = MemoryMamba(cfg).eval()
    images = np.random.default_rng(0).integers(0, 256, (5, 1, 32, 32), dtype=np.uint8)
    views = view_logits(model, Preloaded(images, np.zeros(5, dtype=np.int64), []), torch.device("cpu"), batch_size=2)
    x = torch.from_numpy(images).float() / 255.0
    for mode in TTA_MODES:
        with torch.no_grad():
            expected = tta_logits(model, x, mode).numpy()
        assert np.allclose(mode_logits(views, mode), expected, atol=1e-5), mode
    assert len(VIEW_INDEX["none"]) == 1 and len(VIEW_INDEX["flips"]) == 4 and len(VIEW_INDEX["d4"]) == 8


def test_choice_takes_the_best_f1_and_breaks_ties_towards_less():
    labels = np.array([0, 0, 1, 1])
    right = np.tile(np.eye(2, dtype=np.float32)[labels], (8, 1, 1))  # every view right
    wrong = right[:, :, ::-1].copy()
    # epoch 5 and 10 both perfect: the earlier stop and the single view win the tie
    chosen = choose({5: right, 10: right, 15: wrong}, labels, CLASSES)
    assert (chosen.epochs, chosen.tta) == (5, "none") and chosen.report["f1"] == 1.0
    # only averaging all eight views corrects epoch 15: views 1..7 right, view 0 wrong -> d4 wins
    mixed = right.copy()
    mixed[0] = wrong[0] * 3
    chosen = choose({15: mixed}, labels, CLASSES)
    assert chosen.tta == "d4"
    assert {(r["epochs"], r["test_time_augmentation"]) for r in chosen.table} == {(15, m) for m in TTA_MODES}


def test_session_augmentation_keeps_range_and_changes_tone():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 24, 24)
    session = AugmentConfig(flips=False, rot90=False, max_shift=0.0, **{k: v for k, v in AUGMENTATIONS["session"].items()})
    y = augment_batch(x, session, gen)
    assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert not torch.allclose(y, x, atol=1e-3)
    blur_only = AugmentConfig(flips=False, rot90=False, max_shift=0.0, brightness=0.0, contrast=0.0, blur_prob=1.0, max_blur=1.5)
    blurred = augment_batch(x, blur_only, gen)
    assert float(blurred.diff(dim=-1).abs().mean()) < 0.8 * float(x.diff(dim=-1).abs().mean())
    assert AUGMENTATIONS["session_upright"]["rot90"] is False


def _train_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "classifier", "--data", str(root), "--out", str(out), "--preset", "test_tiny", "--epochs", "2",
            "--batch-size", "4", "--threads", "1", "--quiet", "--device", "cpu", *extra]


def test_cli_card_holds_the_cv_estimate_beside_the_held_out_figure(tmp_path, capsys):
    root = _session_tree(tmp_path / "t")
    out = tmp_path / "run"
    assert main(_train_args(root, out, "--cv-folds", "2", "--group-by", "prefix", "--cv-every", "1")) == 0
    card = json.loads((out / "card.json").read_text())
    cv = card["protocol"]["cross_validation"]
    assert cv["rule"] == "prefix" and cv["groups"] == 4 and cv["folds"] == 2 and sum(cv["fold_sizes"]) == 24
    assert cv["classes"] == list(CLASSES) and len(cv["confusion_matrix"]) == 2
    assert {c["epochs"] for c in cv["candidates"]} == {1, 2}
    assert card["training"]["epochs"] == cv["chosen_epochs"] and card["training"]["schedule_epochs"] == 2
    assert card["test_time_augmentation"] == cv["chosen_test_time_augmentation"]
    assert card["metrics"]["cv"]["count"] == 24 and card["metrics"]["cv"]["f1"] == cv["f1"]
    assert card["metrics"]["val"]["count"] == 4  # the held-out split, scored once at the end
    assert "frozen test" in card["protocol"]["held_out"]
    history = [json.loads(line) for line in (out / "training" / "history.jsonl").read_text().splitlines()]
    assert len(history) == 2 and not any("val_acc" in r for r in history)  # the whole schedule; val never scored per epoch
    assert sorted(p.name for p in (out / "training" / "snapshots").iterdir()) == ["epoch1.safetensors", "epoch2.safetensors"]

    chosen = load_file(str(out / "training" / "snapshots" / f"epoch{cv['chosen_epochs']}.safetensors"))
    saved = load_model(out).model.state_dict()
    assert all(torch.equal(saved[k], chosen[k]) for k in chosen)  # the model is the chosen epoch's weights

    # --resume reuses the finished folds instead of training them again
    folds = sorted((out / "training" / "cv").glob("fold*.npz"))
    stamps = [f.stat().st_mtime_ns for f in folds]
    assert main(_train_args(root, out, "--cv-folds", "2", "--group-by", "prefix", "--cv-every", "1", "--resume")) == 0
    assert [f.stat().st_mtime_ns for f in folds] == stamps
    # a resumed run that lacks the chosen epoch's weights says so instead of failing with a traceback
    for snap in (out / "training" / "snapshots").iterdir():
        snap.unlink()
    capsys.readouterr()
    assert main(_train_args(root, out, "--cv-folds", "2", "--group-by", "prefix", "--cv-every", "1", "--resume")) == 2
    assert "were not kept" in capsys.readouterr().err


def test_cli_class_tree_trains_on_every_image_and_cv_only_writes_no_model(tmp_path):
    root = _session_tree(tmp_path / "t", val=False) / "train"
    out = tmp_path / "cvonly"
    assert main(_train_args(root, out, "--cv-folds", "2", "--cv-only")) == 0
    report = json.loads((out / "training" / "cv" / "report.json").read_text())
    assert report["rule"] == "prefix" and sum(report["fold_sizes"]) == 24 and "command" in report
    assert not (out / "card.json").exists()
    full = tmp_path / "full"
    assert main(_train_args(root, full, "--cv-folds", "2")) == 0
    card = json.loads((full / "card.json").read_text())
    assert card["data"]["train_images"] == 24 and card["data"]["val_images"] == 0  # nothing held back
    assert "val" not in card["metrics"] and card["metrics"]["cv"]["count"] == 24


@pytest.mark.parametrize("extra, message", [(("--cv-folds", "1"), "--cv-folds"), (("--augment", "wild"), "--augment")])
def test_cli_bad_protocol_options_are_one_line_errors(tmp_path, capsys, extra, message):
    root = _session_tree(tmp_path / "t", sessions=2, per_session=2)
    assert main(_train_args(root, tmp_path / "o", *extra)) == 2
    assert message in capsys.readouterr().err


def test_cli_evaluate_record_puts_the_test_figure_beside_the_cv_estimate(tmp_path, capsys):
    root = _session_tree(tmp_path / "t", val=False) / "train"
    out = tmp_path / "m"
    assert main(_train_args(root, out, "--cv-folds", "2")) == 0
    test_tree = _session_tree(tmp_path / "test", sessions=1, per_session=2, val=False) / "train"
    args = ["evaluate", "classifier", "--data", str(test_tree), "--model", str(out), "--device", "cpu", "--record"]
    assert main(args) == 0
    assert "add a copy of the folder as a new version" in capsys.readouterr().out  # a registered copy keeps its card
    metrics = json.loads((out / "card.json").read_text())["metrics"]
    assert metrics["test"]["count"] == 4 and metrics["test"]["times_recorded"] == 1
    assert metrics["cv"]["count"] == 24  # the CV estimate is kept beside it
    assert main(args) == 0  # a second look at the test split is counted, not hidden
    assert json.loads((out / "card.json").read_text())["metrics"]["test"]["times_recorded"] == 2


def test_cli_evaluate_record_refuses_the_images_the_model_was_trained_on(tmp_path, capsys):
    """Found by a session-45 probe: ``evaluate --record`` on the model's own training folder wrote its figure as
    metrics.test, and the station then showed "test acc" for images the model had learnt."""
    root = _session_tree(tmp_path / "t", val=False)
    out = tmp_path / "m"
    assert main(_train_args(root / "train", out, "--cv-folds", "2")) == 0
    before = (out / "card.json").read_text()
    capsys.readouterr()
    args = ["evaluate", "classifier", "--data", str(root / "train"), "--model", str(out), "--device", "cpu", "--record"]
    assert main(args) == 2
    assert "is the folder it was trained from" in capsys.readouterr().err
    assert (out / "card.json").read_text() == before

