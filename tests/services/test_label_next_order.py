"""The benchmarks' simulated "label next" inspector (``pool_order``, ``retraining_loop --order label-next``):
the retrain measurement rests on it labelling the budget asked, distinct images, the same ones for a
seed, and in the station's tree paths (no Qt)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from benchmarks.label_next import CHOOSERS, pool_order
from benchmarks.retraining_loop import joined_confusion, label_next_picks


def _pool(seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centres = {"a": (0.0, 0.0), "b": (4.0, 0.0), "c": (0.0, 4.0)}
    x = np.concatenate([np.asarray(c) + 0.8 * rng.standard_normal((30, 2)) for c in centres.values()])
    return x, [name for name in centres for _ in range(30)]


def test_the_order_has_the_budget_of_distinct_images_and_is_the_same_for_a_seed() -> None:
    x, names = _pool()
    got = pool_order(CHOOSERS["label_next"], x, names, 45, 20, seed=3)
    assert len(got) == 45 and len(set(got)) == 45
    assert all(0 <= i < len(names) for i in got)
    assert got == pool_order(CHOOSERS["label_next"], x, names, 45, 20, seed=3)


def test_a_shorter_budget_is_the_prefix_of_a_longer_one() -> None:
    """Each batch sees only the labels before it, so 40 labels are the first 40 of 60 (label-next.md's curves)."""
    x, names = _pool()
    assert pool_order(CHOOSERS["label_next"], x, names, 40, 20, seed=1) == \
        pool_order(CHOOSERS["label_next"], x, names, 60, 20, seed=1)[:40]


def test_picks_from_a_class_folder_tree_are_the_stations_relative_paths(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for k, name in enumerate(["dark", "light"]):
        (tmp_path / name).mkdir()
        for i in range(8):
            img = np.clip(60 + 120 * k + 25 * rng.standard_normal((32, 32)), 0, 255).astype(np.uint8)
            cv2.imwrite(str(tmp_path / name / f"s{i}.png"), img)
    got = label_next_picks(tmp_path, per_class=3, seed=0, batch=4)
    assert len(got) == 6 and len(set(got)) == 6                       # 3 per class x 2 classes, in all
    assert all((tmp_path / rel).is_file() and rel.count("/") == 1 for rel in got)
    assert got == label_next_picks(tmp_path, per_class=3, seed=0, batch=4)


def test_a_class_the_command_left_out_still_counts_its_tiles_as_errors() -> None:
    """Two ``evaluate`` reports joined: a/b tiles on the model's classes, then c's tiles filed under a."""
    on_known = {"classes": ["a", "b"], "confusion_matrix": [[8, 2], [1, 9]]}
    on_left_out = {"classes": ["a", "b"], "confusion_matrix": [[3, 2], [0, 0]]}
    classes, cm = joined_confusion(on_known, on_left_out, ["a", "b"], ["c"])
    assert classes == ["a", "b", "c"]
    assert cm.tolist() == [[8, 2, 0], [1, 9, 0], [3, 2, 0]]
    assert cm.trace() / cm.sum() == 17 / 25
