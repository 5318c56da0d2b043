"""Out-of-fold hard negatives (issue #5): fold splitting, mining on unseen frames, feeding the verifier."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from inference.checkpoints import load_model, save_model
from inference.models.mim_istd import NAME as SEG_NAME
from inference.models.mim_istd import MiMISTD, preset
from inference.training.common import deterministic_split
from inference.training.segmenter_fold_negatives import (
    fit_stems,
    fold_model_dir,
    fold_split,
    mine_negatives,
    write_fold_tree,
)
from inference.training.segmenter_train import HELD_OUT_FRACTION
from inference.training.segmenter_verifier import ExtraNegatives, VerifierOptions, train_verifier
from tests.inference.test_segmenter_data import write_tree
from tests.inference.test_target_verifier import SMALL, clutter_tree
from tests.tiny_models import one_thread  # noqa: F401  (autouse)


def test_fold_split_is_deterministic_disjoint_and_complete():
    stems = [f"Misc_{i}" for i in range(41)]
    folds = fold_split(stems, 2)
    assert fold_split(list(reversed(stems)), 2) == [list(reversed(f)) for f in folds]  # order does not matter
    assert set(folds[0]).isdisjoint(folds[1]) and sorted(folds[0] + folds[1]) == sorted(stems)
    assert abs(len(folds[0]) - len(folds[1])) <= 1
    assert fold_split(stems, 3)[0] != folds[0] and len(fold_split(stems, 3)) == 3
    with pytest.raises(ValueError):
        fold_split(stems, 1)


def test_folds_cover_exactly_the_fit_frames(tmp_path):
    root = write_tree(tmp_path / "d", n=24)
    (root / "train.txt").write_text("\n".join(f"f{i}" for i in range(20)))
    (root / "val.txt").write_text("\n".join(f"f{i}" for i in range(20, 24)))
    fit, held = deterministic_split([f"f{i}" for i in range(20)], HELD_OUT_FRACTION, seed=1)
    assert held and fit_stems(root) == fit  # the training code's own split: held-out and val frames excluded
    tree = write_fold_tree(root, fold_split(fit, 2)[1], tmp_path / "fold0")
    listed = (tree / "train.txt").read_text().split()
    assert listed == fold_split(fit, 2)[1] and not (tree / "val.txt").exists()
    assert sorted(p.stem for p in (tree / "images").iterdir()) == sorted(listed)


def test_mining_keeps_only_unmatched_components_of_out_of_fold_frames(tmp_path):
    root = write_tree(tmp_path / "d", n=12)
    (root / "train.txt").write_text("\n".join(f"f{i}" for i in range(12)))
    torch.manual_seed(0)
    seg = MiMISTD(preset("test_tiny"))
    # threshold 0: the whole frame is one component, a false alarm whose centre is far from the small target
    ref = save_model(tmp_path / "ref", SEG_NAME, seg, seg.config, {"family": "segmenter", "threshold": 0.0})
    work = tmp_path / "work"
    for k in range(2):
        save_model(fold_model_dir(work, k), SEG_NAME, seg, seg.config, {"family": "segmenter"})
    found = mine_negatives(ref, root, work, 2)
    fit = fit_stems(root)
    assert sorted(found["negatives"]) == sorted(fit)
    rows = [r for v in found["negatives"].values() for r in v]
    assert found["summary"]["components"] == len(rows) == len(fit)
    assert all(len(r) == 4 and r[2] >= r[3] > 0 for r in rows)
    path = tmp_path / "neg.json"
    path.write_text(json.dumps(found))
    extra = ExtraNegatives.load(path)
    assert extra.summary(fit)["components"] == len(fit) and extra.summary([])["components"] == 0


def test_extra_negatives_join_the_verifier_pool_and_the_card_says_so(tmp_path):
    root = clutter_tree(tmp_path / "d")
    torch.manual_seed(0)
    seg = MiMISTD(preset("test_tiny"))
    opts = VerifierOptions(steps=5, batch_size=16, folds=2, quiet=True)
    plain = train_verifier(save_model(tmp_path / "a", SEG_NAME, seg, seg.config, {"family": "segmenter", "threshold": 0.5}),
                           root, opts, SMALL)
    fit = fit_stems(root)
    extra = ExtraNegatives({fit[0]: np.array([[5.0, 6.0], [9.0, 12.0]]), fit[1]: np.array([[7.0, 7.0]]),
                            "not_a_fit_frame": np.array([[1.0, 1.0]])},
                           {fit[0]: np.array([3, 4]), fit[1]: np.array([2]), "not_a_fit_frame": np.array([9])}, "test")
    d = save_model(tmp_path / "b", SEG_NAME, seg, seg.config, {"family": "segmenter", "threshold": 0.5})
    entry = train_verifier(d, root, opts, SMALL, extra=extra)
    assert entry["samples"]["non_targets"] == plain["samples"]["non_targets"] + 3
    assert entry["samples"]["targets"] == plain["samples"]["targets"]
    rec = entry["extra_negatives"]
    assert rec["components"] == 3 and rec["pixels"] == 9 and rec["source"] == "test"
    for side in ("with", "without"):
        assert 0 <= rec["out_of_fold"][side]["extra_dropped"] <= 3
    assert "extra_negatives" not in plain
    loaded = load_model(d, family="segmenter")
    assert loaded.card["verifier"]["extra_negatives"]["components"] == 3
    assert "3 extra negatives" in loaded.parts["verifier"].card["negatives"]


def test_a_broken_negatives_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "n.json"
    bad.write_text(json.dumps({"negatives": {"f0": [[1.0, 2.0]]}}))
    with pytest.raises(ValueError, match="not a negatives file"):
        ExtraNegatives.load(bad)
    with pytest.raises(ValueError, match="not a negatives file"):
        ExtraNegatives.load(tmp_path / "missing.json")


def test_near_target_counts_false_centres_close_to_a_real_target():
    from inference.training.segmenter_fold_negatives import near_target

    mask = np.zeros((40, 40), bool)
    mask[10:12, 20:22] = True  # centroid (x, y) = (20.5, 10.5)
    assert near_target(np.array([[22.0, 12.0], [5.0, 35.0]]), mask) == 1
    assert near_target(np.zeros((0, 2)), mask) == 0 and near_target(np.array([[1.0, 1.0]]), np.zeros((9, 9), bool)) == 0
