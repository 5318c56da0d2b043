"""The retrain command's simple answers, group folds, and the frozen-backbone linear head as a station model."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.checkpoints import load_model, save_model
from inference.engine import InspectionEngine
from inference.models import registry
from inference.training.classifier_head import Comparison, embed, fit_linear_head, write_linear_head
from inference.training.simple_answers import Score, assign_groups, group_folds, image_group
from tests.tiny_models import one_thread, tiny_config  # noqa: F401  (one_thread: autouse)


def test_group_rules_read_the_exported_names() -> None:
    assert image_group("exp1_num_10334.png", "free", "prefix") == "exp1"
    assert image_group("lot3__cam2__part_17.png", "crack", "folder") == "lot3/cam2"
    assert image_group("crack__part_17.png", "crack", "folder") == "image:crack__part_17.png"  # class folder is no group
    assert image_group("part17.png", "crack", "prefix") == "image:part17.png"
    with pytest.raises(ValueError, match="unknown group rule"):
        image_group("a.png", "c", "session")


def test_auto_grouping_falls_back_from_folder_to_prefix_to_single_images() -> None:
    names = [f"exp{i % 6}_num_{i}.png" for i in range(30)]
    groups, rule = assign_groups(names, ["free"] * 30)
    assert rule == "prefix" and len(set(groups)) == 6
    groups, rule = assign_groups([f"part{i}.png" for i in range(30)], ["free"] * 30)
    assert rule == "none" and len(set(groups)) == 30


def test_auto_grouping_skips_file_name_groups_that_are_the_classes() -> None:
    """NEU's ``crazing_12.png``: the prefix is the class, so group folds would hold out whole classes."""
    classes = ["crazing", "inclusion", "patches", "pitted", "rolled", "scratches"] * 10
    names = [f"{c}_{i}.png" for i, c in enumerate(classes)]
    groups, rule = assign_groups(names, classes)
    assert rule == "none" and len(set(groups)) == 60
    mixed = [f"exp{i % 5}_num_{i}.png" for i in range(60)]  # sessions hold several classes: kept
    assert assign_groups(mixed, classes)[1] == "prefix"


def test_series_groups_put_one_tile_photographed_in_several_sessions_together() -> None:
    from inference.training.groups import series_groups

    names = ["exp2_num_3696.png", "exp3_num_3710.png", "exp4_num_3724.png",  # one tile, three lightings
             "exp1_num_4727.png", "exp2_num_4748.png",                       # the next tile
             "exp1_num_4944.png",                                            # session restarts: a new tile
             "exp3_num_9508.png",                                            # a jump in the serial: a new tile
             "scan.png"]                                                     # no serial: alone
    g = series_groups(names)
    assert g[0] == g[1] == g[2] and g[3] == g[4]
    assert len({g[0], g[3], g[5], g[6], g[7]}) == 5 and g[7] == "image:scan.png"


def test_group_folds_never_split_a_group() -> None:
    rng = np.random.default_rng(0)
    groups = [f"session{rng.integers(0, 9)}" for _ in range(120)]
    labels = rng.integers(0, 3, 120)
    folds = group_folds(labels, groups, folds=5, seed=1)
    assert len(folds) == 5
    tested = np.concatenate([te for _, te in folds])
    assert sorted(tested.tolist()) == list(range(120))  # every image tested exactly once
    for tr, te in folds:
        assert not {groups[i] for i in tr} & {groups[i] for i in te}
    assert len(group_folds(labels, groups[:3] + ["a"] * 117, folds=5)) == 4  # fewer groups: one fold each
    with pytest.raises(ValueError, match="at least 2 groups"):
        group_folds(labels, ["one"] * 120)


def test_a_candidate_wins_only_when_it_is_not_worse_in_accuracy_and_f1() -> None:
    comp = Comparison(["a", "b"], {}, {}, "head", "thumbnail_logreg",
                      {"head": Score(0.9, 0.6), "thumbnail_logreg": Score(0.8, 0.7)}, 10)
    assert not comp.wins  # better accuracy, worse macro F1: loses
    comp.held_out["head"] = Score(0.8, 0.7)
    assert comp.wins  # a tie is not a loss


def _tiles(folder: Path, n: int, seed: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        img = rng.integers(0, 80, (40, 40), dtype=np.uint8) + (120 if i % 2 else 0)
        img[rng.integers(0, 30):, :10] = 255 * (i % 3 == 0)
        paths.append(folder / f"t{i}.png")
        cv2.imwrite(str(paths[-1]), img)
    return paths


def test_linear_head_version_predicts_through_the_engine_as_fitted(tmp_path: Path) -> None:
    cfg = dataclasses.replace(tiny_config("memory_mamba"), num_classes=5)
    parent_dir = save_model(tmp_path / "parent", "memory_mamba", registry.build("memory_mamba", cfg), cfg,
                            {"classes": list("vwxyz")})
    parent = load_model(parent_dir, family="classifier")
    paths = _tiles(tmp_path / "tiles", 24, 0)
    labels = np.arange(24) % 3
    feats = embed(parent, paths)
    head = fit_linear_head(feats.mean(0), labels, 3, c=1.0)
    out = write_linear_head(parent, head, feats.mean(0), ["a", "b", "c"], tmp_path / "head", {"classes": ["a", "b", "c"]})

    loaded = load_model(out, family="classifier")
    assert loaded.card["test_time_augmentation"] == "flips"
    backbone = {k: v for k, v in parent.model.state_dict().items() if not k.startswith("head.")}
    for k, v in backbone.items():  # the backbone is the parent's, untouched
        assert np.array_equal(loaded.model.state_dict()[k].numpy(), v.numpy()), k
    new = _tiles(tmp_path / "new", 6, 1)
    expected_logits = embed(parent, new).mean(0) @ head.coef.T + head.intercept
    expected = np.exp(expected_logits - expected_logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    with InspectionEngine({"classifier": out}, device="cpu") as engine:
        results = engine.predict_paths(new)
    for r, p in zip(results, expected):
        assert r.ok, r.error
        assert r.classifier.classes == ("a", "b", "c")
        np.testing.assert_allclose(r.classifier.scores, p, atol=2e-3)


def test_a_few_labels_per_class_cross_validate_in_as_many_folds_as_the_largest_class_has() -> None:
    """Four labels per class (a line's first review, retrained on its own images: ADR 0060) gave sklearn's
    "n_splits=5 cannot be greater than the number of members in each class" and no retraining."""
    y = np.array([0] * 4 + [1] * 4)
    folds = group_folds(y, [f"g{i}" for i in range(8)], 5, 0)
    assert len(folds) == 4 and sorted(int(i) for _, te in folds for i in te) == list(range(8))
    with pytest.raises(ValueError, match="at least 2 groups"):
        group_folds(np.array([0, 1]), ["a", "a"], 5, 0)
