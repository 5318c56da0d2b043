"""Issue 19: scene groups for frames without scene ids, scene augmentation, and the cross-fitted
choice of the segmenter's post-processing additions."""
from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from inference.training.groups import balanced_folds, name_group_function, scene_descriptor, scene_groups
from inference.training.segmenter_cv import ADDITIONS, choose_additions, cross_fitted, cv_parts, frame_groups, wins
from inference.training.segmenter_data import CropSampler, Frame, SceneAugment, SegTree, load_frames, resize_pair
from tests.inference.test_segmenter_data import write_tree


def _scene(seed: int, shape=(60, 80)) -> np.ndarray:
    """A smooth random background (clouds, horizon): what frames of one sequence share."""
    rng = np.random.default_rng(seed)
    return cv2.resize(rng.random((6, 8)).astype(np.float32), shape[::-1], interpolation=cv2.INTER_CUBIC)


def test_frames_of_one_scene_share_a_group_across_gain_offset_and_a_moving_target():
    frames, truth = [], []
    for scene in range(4):
        for shot in range(3):
            img = _scene(scene) * (1 + 0.3 * shot) + 0.1 * shot  # another gain and offset per shot
            img[10 + 5 * shot, 20 + 7 * shot] += 2.0  # the target moves
            frames.append(img)
            truth.append(scene)
    groups = scene_groups(np.stack([scene_descriptor(f) for f in frames]))
    assert len(set(groups)) == 4
    assert all((groups[i] == groups[j]) == (truth[i] == truth[j]) for i in range(12) for j in range(12))
    assert scene_groups(np.stack([scene_descriptor(f) for f in frames])) == groups  # deterministic
    assert scene_groups(np.zeros((1, 256))) == ["scene:0"]


def test_balanced_folds_keep_groups_whole_and_name_rules_live_in_groups():
    groups = ["a"] * 5 + ["b"] * 3 + ["c"] * 3 + ["d"] * 2 + ["e"]
    folds = balanced_folds(groups, 3)
    assert sorted(i for f in folds for i in f) == list(range(len(groups)))
    owner: dict[str, int] = {}
    for k, f in enumerate(folds):
        for i in f:
            assert owner.setdefault(groups[i], k) == k
    assert sorted(len(f) for f in folds) == [4, 5, 5]
    with pytest.raises(ValueError, match="cannot fill"):
        balanced_folds(["a", "b"], 3)
    assert name_group_function("prefix")("exp3_num_12.png") == "exp3"
    assert name_group_function("regex:(num)")("exp1_num_3.png") == "num"
    assert name_group_function("none")("exp1_a.png") != name_group_function("none")("exp1_b.png")
    with pytest.raises(ValueError, match="unknown grouping"):
        name_group_function("sessions")
    with pytest.raises(ValueError, match=r"grouping 'regex:\(': '\(' is not a regular expression"):  # re.error before
        name_group_function("regex:(")


def test_cv_parts_never_split_a_scene_and_never_read_val(tmp_path):
    root = write_tree(tmp_path / "d", n=12)
    for i in (0, 1, 2):  # f0, f1, f2: one scene under three exposures
        img = (_scene(7, (40, 56) if i % 2 == 0 else (33, 70)) * (120 + 40 * i)).astype(np.uint8)
        cv2.imwrite(str(root / "images" / f"f{i}.png"), img)
    (root / "train.txt").write_text("\n".join(f"f{i}" for i in range(9)))
    (root / "val.txt").write_text("\n".join(f"f{i}" for i in range(9, 12)))
    groups = frame_groups(root, [f"f{i}" for i in range(9)])
    assert groups[0] == groups[1] == groups[2] and len(set(groups)) == 7
    parts = cv_parts(root, 3)
    assert sorted(s for p in parts for s in p) == [f"f{i}" for i in range(9)]
    assert any({"f0", "f1", "f2"} <= set(p) for p in parts)
    assert len(cv_parts(root, 3, "frame")) == 3 and frame_groups(root, ["f0", "f1"], "none") == ["image:f0", "image:f1"]
    with pytest.raises(ValueError, match="unknown grouping"):
        frame_groups(root, ["f0"], "lot")


def test_scene_augment_changes_the_image_not_the_mask_and_keeps_targets_through_scale():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(1, 64, 64)).astype(np.float32)
    aug = SceneAugment(p=1.0)
    out = aug(image, rng)
    assert out.shape == image.shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert not np.allclose(out, image)
    assert np.array_equal(aug(image, np.random.default_rng(5)), aug(image, np.random.default_rng(5)))
    mask = np.zeros((80, 80), bool)
    mask[40, 40] = True  # a one-pixel target survives shrinking and enlarging
    for side in (64, 100):
        img, m = resize_pair(np.zeros((1, 80, 80), np.float32), mask, side)
        assert img.shape == (1, side, side) and m.shape == (side, side) and m.any()
    frame = Frame("a", rng.normal(size=(1, 90, 70)).astype(np.float32), np.zeros((90, 70), bool))
    frame.mask[45:47, 30:32] = True
    sampler = CropSampler([frame], 48, target_prob=1.0, seed=1, augment=True)
    images, masks = sampler.batch(32)
    assert images.shape == (32, 1, 48, 48) and masks.shape == (32, 1, 48, 48)
    assert all(m.any() for m in masks)  # target-centred crops keep their target at every scale
    plain = CropSampler([frame], 48, target_prob=1.0, seed=1)
    assert plain.augment is None and plain.batch(4)[0].shape == (4, 1, 48, 48)


def _frames_and_maps(tmp_path, n: int = 12):
    root = write_tree(tmp_path / "d", n=n)
    frames, _ = load_frames(SegTree.open(root), [f"f{i}" for i in range(n)], 1)
    exact = {f.stem: f.mask.astype(np.float32) * 0.9 for f in frames}
    blob = {}
    for f in frames:  # a false alarm far larger than any target: the size limit's case
        m = exact[f.stem].copy()
        m[:2, :] = 0.95  # rows 0-1: targets start at row 3
        blob[f.stem] = m
    folds = [frames[k::3] for k in range(3)]
    return frames, folds, exact, blob


def test_cross_fitted_scores_every_frame_once_and_chooses_only_additions_that_win(tmp_path):
    frames, folds, exact, blob = _frames_and_maps(tmp_path)
    perfect = cross_fitted(folds, {False: exact, True: exact}, set())
    assert perfect["pooled"]["iou"] == 1.0 and perfect["pooled"]["targets"] == len(frames)
    assert sum(f["targets"] for f in perfect["per_fold"]) == len(frames) and len(perfect["settings_per_fold"]) == 3
    got = choose_additions(folds, {False: blob, True: exact})
    assert set(got["variants"]) == {"plain", "size_limit", "flips", "hysteresis", "size_limit+flips",
                                    "size_limit+hysteresis", "flips+hysteresis", "size_limit+flips+hysteresis"}
    # the size limit drops the blob (Fa falls, IoU rises); after it the exact flipped maps only tie: no flips
    assert got["chosen_additions"] == ["size_limit"]
    assert got["variants"]["flips"]["pooled"]["iou"] == 1.0
    assert got["variants"]["plain"]["pooled"]["fa"] > 0 and got["cv_estimate"]["pooled"]["iou"] == 1.0
    assert got["variants"]["size_limit"]["settings_per_fold"][0]["max_fraction"] is not None
    # hysteresis cannot lower Fa on exact maps: it stays out (simpler wins ties)
    assert "hysteresis" not in got["chosen_additions"] and ADDITIONS[-1] == "hysteresis"
    none = choose_additions(folds, {False: exact, True: exact})
    assert none["chosen_additions"] == []


def test_cross_fitted_applies_a_per_fold_adjustment_to_the_chosen_settings(tmp_path):
    from dataclasses import replace

    frames, folds, exact, _ = _frames_and_maps(tmp_path)
    calls: list[int] = []

    def blind_fold_one(k, post):  # e.g. a verifier trained without fold k; here it rejects everything of fold 1
        calls.append(k)
        return replace(post, threshold=1.0) if k == 1 else post

    got = cross_fitted(folds, {False: exact}, set(), adjust=blind_fold_one)
    assert calls == [0, 1, 2]
    assert [f["detected"] for f in got["per_fold"]] == [len(folds[0]), 0, len(folds[2])]
    assert got["pooled"]["detected"] == len(frames) - len(folds[1]) and got["settings_per_fold"][1]["threshold"] == 1.0


def test_the_rule_keeps_an_addition_only_when_it_wins():
    def v(iou, fa, detected=10):
        return {"pooled": {"iou": iou, "fa": fa, "detected": detected}}

    assert wins(v(0.60, 50), v(0.59, 50))
    assert not wins(v(0.593, 50), v(0.59, 50))  # a tie: the simpler one stays
    assert wins(v(0.588, 40), v(0.59, 50))  # fewer false alarms at the same IoU
    assert not wins(v(0.70, 10, detected=9), v(0.59, 50))  # never at the cost of a detection


def test_train_with_cv_folds_writes_settings_and_the_cv_estimate_and_reuses_fold_networks(tmp_path, capsys):
    from app.cli import main as cli_main
    from inference.checkpoints import load_model

    root = write_tree(tmp_path / "d", n=9)
    (root / "train.txt").write_text("\n".join(f"f{i}" for i in range(6)))
    (root / "val.txt").write_text("\n".join(f"f{i}" for i in range(6, 9)))
    out = tmp_path / "run"
    args = ["train", "segmenter", "--data", str(root), "--out", str(out), "--preset", "test_tiny", "--epochs", "1",
            "--batch-size", "2", "--crop", "32", "--quiet", "--threads", "1", "--cv-folds", "2", "--augment"]
    assert cli_main(args) == 0
    card = load_model(out / "final", family="segmenter").card
    cv = card["cross_validation"]
    assert cv["folds"] == 2 and cv["group_by"] == "scene" and sum(cv["fold_frames"]) == 6
    assert card["data"]["fit_frames"] == 6 and card["data"]["held_out_frames"] == 0  # val.txt never read
    assert card["training"]["augment"] is True
    assert card["metrics"]["cv"]["targets"] == 6 and len(cv["per_fold"]) == 2
    chosen = cv["chosen_additions"]
    assert card["test_time_flips"] == (True if "flips" in chosen else ["h"] if "mirror" in chosen else False)
    assert ("max_target_fraction" in card) == ("size_limit" in cv["chosen_additions"])
    for k in (0, 1):
        fold = json.loads((out / "cv" / f"net{k}" / "final" / "card.json").read_text())
        assert fold["data"]["fit_frames"] == cv["fold_frames"][1 - k]
    stamp = (out / "cv" / "net0" / "final" / "model.safetensors").stat().st_mtime_ns
    assert cli_main(args + ["--cv-no-flips"]) == 0
    assert (out / "cv" / "net0" / "final" / "model.safetensors").stat().st_mtime_ns == stamp
    again = load_model(out / "final", family="segmenter").card
    assert again["cross_validation"]["flips_compared"] is False and again["test_time_flips"] is False
    assert not {"flips", "mirror"} & set(again["cross_validation"]["variants"])
    assert cli_main(args[:-3] + ["--cv-folds", "1"]) == 2
    assert "--cv-folds" in capsys.readouterr().err


def test_a_fresh_cv_run_into_an_earlier_runs_out_trains_fold_networks_of_other_data_or_epochs_again(tmp_path):
    """A session-49 audit: ``train segmenter --cv-folds 2`` into the --out of an earlier run on other data with other
    epochs reused that run's fold networks (their cards still said 1 epoch and the other data's frames), so the
    additions and the CV estimate came from networks of another run. A fold network is reused only when its data,
    frames and recipe are this run's (as a finished ``--cv-fold`` process's are); its maps go with it."""
    from app.cli import main as cli_main

    first = write_tree(tmp_path / "a", n=6, splits=False)
    (first / "train.txt").write_text("\n".join(f"f{i}" for i in range(6)))
    other = write_tree(tmp_path / "b", n=8, splits=False)
    (other / "train.txt").write_text("\n".join(f"f{i}" for i in range(8)))
    out = tmp_path / "run"
    base = ["train", "segmenter", "--out", str(out), "--preset", "test_tiny", "--batch-size", "2", "--crop", "32",
            "--quiet", "--threads", "1", "--cv-folds", "2", "--group-by", "none", "--cv-no-flips", "--no-domain-fit"]

    def fold_cards() -> list[dict]:
        return [json.loads((out / "cv" / f"net{k}" / "final" / "card.json").read_text()) for k in (0, 1)]

    assert cli_main(base + ["--data", str(first), "--epochs", "1"]) == 0
    assert [c["data"]["fit_frames"] for c in fold_cards()] == [3, 3]
    assert cli_main(base + ["--data", str(other), "--epochs", "2"]) == 0
    assert [(c["data"]["fit_frames"], c["training"]["epochs"]) for c in fold_cards()] == [(4, 2), (4, 2)]
    links = list((out / "cv" / "data0" / "images").iterdir())
    assert len(links) == 4 and {p.resolve().parent.parent for p in links} == {other.resolve()}  # not the first data's
    stamp = (out / "cv" / "net0" / "final" / "model.safetensors").stat().st_mtime_ns
    assert cli_main(base + ["--data", str(other), "--epochs", "2", "--seed", "3"]) == 0  # another seed: trained again
    assert (out / "cv" / "net0" / "final" / "model.safetensors").stat().st_mtime_ns != stamp
    assert fold_cards()[0]["training"]["seed"] == 3 + 1
    (out / "cv" / "net0" / "signature.json").unlink()  # a fold network from before signatures: --resume keeps it
    stamp = (out / "cv" / "net0" / "final" / "model.safetensors").stat().st_mtime_ns
    assert cli_main(base + ["--data", str(other), "--epochs", "2", "--seed", "3", "--resume"]) == 0
    assert (out / "cv" / "net0" / "final" / "model.safetensors").stat().st_mtime_ns == stamp
    assert cli_main(base + ["--data", str(other), "--epochs", "2", "--seed", "3"]) == 0   # signed again
    stamp = (out / "cv" / "net0" / "final" / "model.safetensors").stat().st_mtime_ns
    assert cli_main(base + ["--data", str(other), "--epochs", "2", "--seed", "3"]) == 0   # the same: reused
    assert (out / "cv" / "net0" / "final" / "model.safetensors").stat().st_mtime_ns == stamp
    mask = sorted((other / "masks").iterdir())[0]   # a mask corrected in place (the review of this fix): trained again
    mask.write_bytes(mask.read_bytes())
    os.utime(mask, ns=(mask.stat().st_atime_ns, mask.stat().st_mtime_ns + 10**9))
    assert cli_main(base + ["--data", str(other), "--epochs", "2", "--seed", "3"]) == 0
    assert (out / "cv" / "net0" / "final" / "model.safetensors").stat().st_mtime_ns != stamp


def test_without_flipped_maps_flips_are_not_compared(tmp_path):
    _, folds, _, blob = _frames_and_maps(tmp_path)
    got = choose_additions(folds, {False: blob})
    assert set(got["variants"]) == {"plain", "size_limit", "hysteresis", "size_limit+hysteresis"}
    assert got["chosen_additions"] == ["size_limit"]


def test_two_views_are_tried_before_four_and_four_must_beat_them(tmp_path):
    """The mirror view (2 passes) joins first when it wins; four views then join only if they beat two:
    when the mirror maps are already exact, four views tie and stay out (simpler wins ties)."""
    from inference.training.segmenter_cv import MIRROR, card_flips

    frames, folds, exact, _ = _frames_and_maps(tmp_path)
    missed = {f.stem: (np.zeros_like(exact[f.stem]) if i % 2 else exact[f.stem]) for i, f in enumerate(frames)}
    got = choose_additions(folds, {False: missed, MIRROR: exact, True: exact})
    assert {"mirror", "flips", "mirror+flips"} <= set(got["variants"])
    assert got["chosen_additions"] == ["mirror"]  # finds the missed targets; four views only tie after it
    assert card_flips(set(got["chosen_additions"])) == ["h"]
    # four views where the mirror alone does not help: the greedy rule takes all four
    four = choose_additions(folds, {False: missed, MIRROR: missed, True: exact})
    assert four["chosen_additions"] == ["flips"] and card_flips(set(four["chosen_additions"])) is True
    assert card_flips(set()) is False


def test_train_with_cv_folds_and_a_pair_of_networks_ships_both_as_one_ensemble(tmp_path, capsys):
    """``--networks pair`` (segmenter-pair.md): each fold and the model are a clutter-rejecting network (a last
    phase on wider crops) and a faint-target one (pasted targets); the views are chosen on their mean maps and the
    model directory holds the second as a member, so the station averages both."""
    from app.cli import main as cli_main
    from inference.checkpoints import load_model
    from inference.segmenter_predict import model_members, predict_masks
    from inference.training.segmenter_data import SegTree, load_frames

    root = write_tree(tmp_path / "d", n=8)
    (root / "train.txt").write_text("\n".join(f"f{i}" for i in range(6)))
    out = tmp_path / "run"
    args = ["train", "segmenter", "--data", str(root), "--out", str(out), "--preset", "test_tiny", "--epochs", "2",
            "--batch-size", "2", "--crop", "32", "--quiet", "--threads", "1", "--cv-folds", "2", "--networks", "pair"]
    assert cli_main(args + ["--cv-fold", "1"]) == 0  # one fold's two networks alone (a parallel process)
    assert (out / "cv" / "pnet1" / "final" / "card.json").is_file() and not (out / "cv" / "net0").exists()
    stamp = (out / "cv" / "pnet1" / "final" / "model.safetensors").stat().st_mtime_ns
    assert not (out / "final").exists()
    assert cli_main(args) == 0
    assert (out / "cv" / "pnet1" / "final" / "model.safetensors").stat().st_mtime_ns == stamp  # reused
    loaded = load_model(out / "final", family="segmenter")
    card = loaded.card
    assert card["cross_validation"]["networks"] == "pair" and card["ensemble"] == ["member1"]
    first, second = card["training_networks"]
    assert (first["fine_tune_crop"], first["fine_tune_batch_size"], first["paste_prob"]) == (48, 1, 0.0)
    assert (second["fine_tune_epochs"], second["paste_prob"]) == (0, 0.5)
    assert len(model_members(loaded)) == 2
    for k in (0, 1):
        assert (out / "cv" / f"net{k}" / "final" / "card.json").is_file()
        assert json.loads((out / "cv" / f"pnet{k}" / "final" / "card.json").read_text())["training"]["paste_prob"] == 0.5
    frames, _ = load_frames(SegTree.open(root), ["f6"], 1)
    from inference.imageio import read_image
    res = predict_masks(loaded, [read_image(root / "images" / "f6.png", "gray")])[0]
    assert res.mask.shape == frames[0].mask.shape
    assert cli_main(args[:-4] + ["--networks", "pair"]) == 2
    assert "--networks pair needs --cv-folds" in capsys.readouterr().err
    assert cli_main(args + ["--cv-fold", "2"]) == 2
    assert "--cv-fold must lie in 0..1" in capsys.readouterr().err
