"""Segmentation data trees, the predict helper, and the train/evaluate commands end to end (tiny)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from app.cli import main
from inference import segmenter_predict as segmentation
from inference.checkpoints import LoadedModel, save_model
from inference.models.mim_istd import NAME, MiMISTD, preset
from inference.training.segmenter_data import CropSampler, SegDataError, SegTree, load_frames, load_pair


def write_tree(root: Path, n: int = 6, sizes=((40, 56), (33, 70)), splits: bool = True) -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    stems = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        img = (rng.random((h, w)) * 60).astype(np.uint8)
        mask = np.zeros((h, w), np.uint8)
        y, x = int(rng.integers(3, h - 4)), int(rng.integers(3, w - 4))
        mask[y:y + 2, x:x + 3] = 255
        img[mask > 0] = 250
        stem = f"f{i}"
        cv2.imwrite(str(root / "images" / f"{stem}.png"), img)
        cv2.imwrite(str(root / "masks" / f"{stem}.png"), mask)
        stems.append(stem)
    if splits:
        (root / "train.txt").write_text("\n".join(stems[:4]))
        (root / "val.txt").write_text("\n".join(stems[4:]))
    return root


def test_mask_of_another_size_is_a_clear_error(tmp_path):
    root = write_tree(tmp_path / "d", n=2)
    cv2.imwrite(str(root / "masks" / "f0.png"), np.zeros((12, 13), np.uint8))
    with pytest.raises(SegDataError, match=r"mask is 13x12 but its image f0.png is 56x40"):
        load_pair(root / "images" / "f0.png", root / "masks" / "f0.png", 1)
    frames, problems = load_frames(SegTree.open(root), ["f0", "f1"], 1)
    assert [f.stem for f in frames] == ["f1"] and "mask is 13x12" in problems[0]


def test_tree_without_split_files_is_split_deterministically_and_evaluated_whole(tmp_path):
    root = write_tree(tmp_path / "d", n=10, splits=False)
    tree = SegTree.open(root)
    train, val = tree.stems("train"), tree.stems("val")
    assert sorted(train + val) == sorted(tree.stems("all")) and len(val) == 2
    assert SegTree.open(root).stems("val") == val
    assert tree.eval_split() == "all"
    (root / "val.txt").write_text("f1\n")
    assert tree.eval_split() == "val"
    (root / "test.txt").write_text("f2\n")
    assert tree.eval_split() == "test" and tree.stems("test") == ["f2"]


def test_bad_trees_say_what_is_wrong(tmp_path):
    with pytest.raises(SegDataError, match="not found"):
        SegTree.open(tmp_path / "nope")
    (tmp_path / "x" / "images").mkdir(parents=True)
    with pytest.raises(SegDataError, match="no images/"):
        SegTree.open(tmp_path / "x")


def test_crops_hold_targets_and_pad_small_frames(tmp_path):
    root = write_tree(tmp_path / "d", n=4)
    frames, _ = load_frames(SegTree.open(root), ["f0", "f1", "f2", "f3"], 1)
    sampler = CropSampler(frames, 64, target_prob=1.0, seed=0)
    images, masks = sampler.batch(6)
    assert images.shape == (6, 1, 64, 64) and masks.shape == (6, 1, 64, 64)
    assert (masks.reshape(6, -1).sum(1) > 0).all()


def tiny_loaded(threshold: float = 0.5) -> LoadedModel:
    torch.manual_seed(0)
    model = MiMISTD(preset("test_tiny")).eval()
    return LoadedModel(model, NAME, "segmenter", model.config, {"threshold": threshold})


@pytest.mark.parametrize("image", [
    np.random.default_rng(0).random((37, 51), dtype=np.float32),  # gray
    np.random.default_rng(1).random((20, 90, 3), dtype=np.float32),  # RGB
    (np.random.default_rng(2).random((25, 25)) * 0.01 + 0.2).astype(np.float32),  # dim 16-bit-like
])
def test_predict_masks_gives_image_sized_bool_masks_and_counts(image):
    res = segmentation.predict_masks(tiny_loaded(threshold=0.0), [image])[0]
    h, w = image.shape[:2]
    assert res.mask.shape == (h, w) and res.mask.dtype == bool
    assert res.probability.shape == (h, w) and res.probability.dtype == np.float32
    n = cv2.connectedComponentsWithStats(res.mask.astype(np.uint8), connectivity=8)[0] - 1
    assert res.count == n == len(res.boxes) and res.threshold == 0.0


def test_large_frames_run_in_tiles_that_cover_the_frame(monkeypatch):
    monkeypatch.setattr(segmentation, "MAX_WHOLE_SIDE", 40)
    monkeypatch.setattr(segmentation, "TILE", 32)
    monkeypatch.setattr(segmentation, "TILE_OVERLAP", 8)
    loaded = tiny_loaded()
    image = np.random.default_rng(3).random((50, 75), dtype=np.float32)
    prob = segmentation.predict_probabilities(loaded.model, [image])[0]
    assert prob.shape == (50, 75) and np.isfinite(prob).all()
    assert segmentation._tile_starts(75, 32, 24) == [0, 24, 43]


def test_train_segmenter_runs_the_fine_tune_phase_when_asked(tmp_path):
    """ADR 0052 (amended in session 25): ``--fine-tune-epochs N`` runs a second phase from the first phase's final
    weights at --fine-tune-lr; none by default (it won at two network seeds and lost at a third,
    segmenter-bundle-2stage.md)."""
    import argparse

    from inference.training.segmenter_cli import add_train_arguments, train_options

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    assert train_options(parser.parse_args(["--data", "d", "--out", "o"]), "cmd").fine_tune_epochs == 0
    assert train_options(parser.parse_args(["--data", "d", "--out", "o", "--fine-tune-epochs", "3"]),
                         "cmd").fine_tune_epochs == 3

    root = write_tree(tmp_path / "d", n=8)
    out = tmp_path / "two"
    args = ["train", "segmenter", "--data", str(root), "--out", str(out), "--preset", "test_tiny", "--epochs", "2",
            "--fine-tune-epochs", "1", "--fine-tune-lr", "5e-4", "--batch-size", "2", "--crop", "32", "--quiet",
            "--threads", "1"]
    assert main(args) == 0
    card = json.loads((out / "final" / "card.json").read_text())
    assert [p["epochs"] for p in card["training_phases"]] == [2, 1] and card["training_phases"][1]["lr"] == 5e-4
    assert card["training"]["epochs"] == 2 and card["training"]["fine_tune_epochs"] == 1
    assert len((out / "phase1" / "log.jsonl").read_text().splitlines()) == 2
    assert len((out / "log.jsonl").read_text().splitlines()) == 1
    assert main(args + ["--resume"]) == 0  # both phases done: nothing is trained again
    assert len((out / "log.jsonl").read_text().splitlines()) == 1
    assert main([*args[:-2], "--fine-tune-epochs", "-1", "--threads", "1"]) == 2


def test_train_then_evaluate_commands(tmp_path, capsys):
    root = write_tree(tmp_path / "d", n=8)
    out = tmp_path / "run"
    rc = main(["train", "segmenter", "--data", str(root), "--out", str(out), "--preset", "test_tiny",
               "--epochs", "1", "--batch-size", "2", "--crop", "32", "--eval-every", "1", "--quiet", "--threads", "1",
               "--fine-tune-epochs", "0"])  # one phase: its resume is pinned here (two phases: the test below)
    assert rc == 0
    card = json.loads((out / "final" / "card.json").read_text())
    assert 0.0 < card["threshold"] < 1.0 and card["input"]["pad_to_multiple_of"] == 16
    # the size limit is twice the largest fit-frame target (a 2x3 box; frames are 40x56 or 33x70)
    assert card["max_target_fraction"] == pytest.approx(2 * card["data"]["largest_target_fraction"])
    assert card["data"]["largest_target_fraction"] in (pytest.approx(6 / (40 * 56)), pytest.approx(6 / (33 * 70)))
    assert (out / "state.pt").is_file() and len((out / "log.jsonl").read_text().splitlines()) == 1
    rc = main(["train", "segmenter", "--data", str(root), "--out", str(out), "--preset", "test_tiny",
               "--epochs", "2", "--batch-size", "2", "--crop", "32", "--quiet", "--resume", "--threads", "1",
               "--fine-tune-epochs", "0"])
    assert rc == 0 and len((out / "log.jsonl").read_text().splitlines()) == 2
    rc = main(["train", "segmenter", "--data", str(root), "--out", str(tmp_path / "tuned"), "--preset", "test_tiny",
               "--init", str(out / "final"), "--epochs", "1", "--batch-size", "2", "--crop", "32", "--quiet", "--threads", "1"])
    assert rc == 0 and (tmp_path / "tuned" / "final" / "model.safetensors").is_file()
    report = tmp_path / "r.json"
    rc = main(["evaluate", "segmenter", "--data", str(root), "--model", str(out / "final"), "--json", str(report)])
    assert rc == 0
    r = json.loads(report.read_text())
    assert {"iou", "niou", "pd", "fa", "threshold"} <= set(r) and r["split"] == "val" and r["images"] == 4
    assert r["max_target_fraction"] == pytest.approx(card["max_target_fraction"])
    assert main(["evaluate", "segmenter", "--data", str(root), "--model", str(out / "final"), "--json", str(report),
                 "--max-target-fraction", "0"]) == 0
    assert json.loads(report.read_text())["max_target_fraction"] is None
    assert "Fa (x1e-6)" in capsys.readouterr().out


def test_a_fresh_run_into_an_earlier_runs_out_keeps_neither_its_best_epoch_nor_its_log(tmp_path):
    """A session-49 audit: a second ``train segmenter`` (no --resume) with nothing held out into the --out of a run
    that held frames out kept that run's best/ (its card naming the other data), gave it the new data's domain
    statistics, and appended to its log.jsonl. A fresh run removes them; ``--resume`` keeps them."""
    from inference.checkpoints import read_json

    first, other = write_tree(tmp_path / "a", n=8), write_tree(tmp_path / "b", n=6)
    out = tmp_path / "run"
    args = ["train", "segmenter", "--out", str(out), "--preset", "test_tiny", "--batch-size", "2", "--crop", "32",
            "--quiet", "--threads", "1", "--eval-every", "1"]
    assert main(args + ["--data", str(first), "--epochs", "2"]) == 0
    assert (out / "best" / "card.json").is_file() and len((out / "log.jsonl").read_text().splitlines()) == 2
    assert main(args + ["--data", str(other), "--epochs", "1", "--held-out-fraction", "0"]) == 0
    assert not (out / "best").exists() and len((out / "log.jsonl").read_text().splitlines()) == 1
    assert read_json(out / "final" / "card.json")["data"]["path"] == str(other.resolve())
    assert main(args + ["--data", str(other), "--epochs", "2", "--held-out-fraction", "0", "--resume"]) == 0
    assert len((out / "log.jsonl").read_text().splitlines()) == 2


def test_commands_fail_with_one_line_on_bad_input(tmp_path, capsys):
    assert main(["train", "segmenter", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "data folder not found" in capsys.readouterr().err
    root = write_tree(tmp_path / "d", n=4)
    assert main(["train", "segmenter", "--data", str(root), "--out", str(tmp_path / "o"), "--preset", "test_tiny",
                 "--init", str(tmp_path / "no_model"), "--quiet"]) == 2
    assert "model directory not found" in capsys.readouterr().err
    broken = tmp_path / "broken"
    model = MiMISTD(preset("test_tiny"))
    save_model(broken, NAME, model, model.config)
    (broken / "model.safetensors").write_bytes(b"not a checkpoint")
    assert main(["evaluate", "segmenter", "--data", str(root), "--model", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "safetensors" in err


def test_rgb_input_turns_gray_as_the_reader_does(tmp_path):
    from inference.imageio import read_image
    from inference.training.segmenter_data import to_channels

    rgb = (np.random.default_rng(4).random((9, 11, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "c.png"), rgb[:, :, ::-1])  # stored as BGR, so read back as this RGB
    gray = read_image(tmp_path / "c.png", "gray")
    via_rgb = to_channels(read_image(tmp_path / "c.png", "rgb"), 1)[0]
    assert np.abs(gray - via_rgb).max() < 1.5 / 255
    assert to_channels(gray, 3).shape == (3, 9, 11)


def test_test_time_flips_average_the_four_flipped_runs():
    loaded = tiny_loaded()
    image = np.random.default_rng(5).random((32, 48), dtype=np.float32)  # a stride multiple: no padding
    plain = segmentation.predict_probabilities(loaded.model, [image])[0]
    flipped = segmentation.predict_probabilities(loaded.model, [image[::-1, ::-1].copy()])[0][::-1, ::-1]
    both = segmentation.predict_probabilities(loaded.model, [image], flips=True)[0]
    assert both.shape == plain.shape and not np.allclose(plain, flipped)
    # the flip average is equivariant: a frame turned by 180 degrees gets the turned map
    turned = segmentation.predict_probabilities(loaded.model, [image[::-1, ::-1].copy()], flips=True)[0][::-1, ::-1]
    assert np.allclose(both, turned, atol=1e-5)
    loaded.card["test_time_flips"] = True
    assert segmentation.predict_masks(loaded, [image])[0].probability.shape == (32, 48)


def test_named_flip_views_average_the_frame_and_those_views():
    loaded = tiny_loaded()
    model = loaded.model.eval()
    image = np.random.default_rng(6).random((32, 48), dtype=np.float32)
    frame = segmentation.standardise(segmentation.segmenter_input(image, 1))
    x = torch.from_numpy(frame)[None]
    with torch.no_grad():
        plain = segmentation.segment_logits(model, x)
        mirrored = segmentation.segment_logits(model, x.flip(-1)).flip(-1)
    want = torch.sigmoid((plain + mirrored) / 2)[0, 0].numpy()
    got = segmentation.predict_probabilities(model, [image], flips=["h"])[0]
    assert np.allclose(got, want, atol=1e-6)
    # a mirrored frame gets the mirrored map with the two-view average (not with one view)
    mirror_of = segmentation.predict_probabilities(model, [image[:, ::-1].copy()], flips=["h"])[0][:, ::-1]
    assert np.allclose(got, mirror_of, atol=1e-5)
    # true is all three named views, in whatever order a card lists them
    all_named = segmentation.predict_probabilities(model, [image], flips=["hv", "v", "h"])[0]
    assert np.array_equal(all_named, segmentation.predict_probabilities(model, [image], flips=True)[0])


@pytest.mark.parametrize("bad", ["h", ["x"], ["h", "h"], 3])
def test_a_card_with_unknown_flip_views_fails_at_load(tmp_path, bad):
    from inference.checkpoints import CheckpointError, load_model, save_card
    from inference.engine_families import family_model

    loaded = tiny_loaded()
    d = tmp_path / "seg"
    save_model(d, NAME, loaded.model, loaded.config, {**loaded.card, "family": "segmenter", "test_time_flips": bad})
    with pytest.raises(CheckpointError, match="test_time_flips"):
        family_model(load_model(d, family="segmenter"))
    save_card(d, {**loaded.card, "family": "segmenter", "test_time_flips": ["v"]})
    family_model(load_model(d, family="segmenter"))  # a known view loads


def test_large_components_are_dropped_small_ones_kept():
    mask = np.zeros((100, 100), bool)
    mask[10:13, 10:13] = True  # 9 px target
    mask[50:80, 50:80] = True  # 900 px bright object
    assert segmentation.largest_target_fraction([mask]) == pytest.approx(0.09)
    kept = segmentation.drop_large_components(mask, 0.01)
    assert kept[10:13, 10:13].all() and not kept[50:80, 50:80].any()
    assert segmentation.drop_large_components(mask, None) is mask
    assert segmentation.drop_large_components(mask, 0.5).sum() == 909
    result = segmentation.binarise(mask.astype(np.float32), 0.5, 0.01)
    assert result.count == 1 and result.boxes == ((10, 10, 3, 3),)
    assert segmentation.largest_target_fraction([np.zeros((5, 5), bool)]) == 0.0


def test_recalibration_rewrites_only_the_card(tmp_path):
    from inference.checkpoints import load_model
    from inference.training.segmenter_calibrate import recalibrate

    root = write_tree(tmp_path / "d", n=30)
    (root / "train.txt").write_text("\n".join(f"f{i}" for i in range(26)))
    torch.manual_seed(0)
    model = MiMISTD(preset("test_tiny"))
    save_model(tmp_path / "m", NAME, model, model.config, {"family": "segmenter", "threshold": 0.5})
    card = recalibrate(tmp_path / "m", root)
    assert card["max_target_fraction"] > 0 and 0 < card["threshold"] < 1 and card["held_out_metrics"]["images"] >= 1
    assert card["recalibrations"][0]["before"]["threshold"] == 0.5
    again = load_model(tmp_path / "m")
    theirs = again.model.state_dict()
    assert all(torch.equal(theirs[k], v) for k, v in model.state_dict().items())
    assert again.card["max_target_fraction"] == card["max_target_fraction"]


def test_clutter_points_find_bright_blobs_away_from_targets_and_crops_centre_on_them():
    from inference.training.segmenter_data import Frame, clutter_points

    img = np.zeros((1, 96, 96), np.float32)
    mask = np.zeros((96, 96), bool)
    img[0, 20:23, 20:23] = 5.0  # the target
    mask[20:23, 20:23] = True
    img[0, 70:73, 60:63] = 4.0  # a lamp: bright, small, not a target
    img[0, :, 0:30] = 3.0  # a wide bright wall: larger than the top-hat window
    frame = Frame("f", img, mask)
    pts = clutter_points(frame, quantile=0.99)
    assert len(pts) and all(68 <= y <= 74 and 58 <= x <= 64 for y, x in pts), pts
    sampler = CropSampler([frame], 32, target_prob=0.0, clutter_prob=1.0, seed=0)
    for _ in range(5):
        crop, msk = sampler._crop(frame, sampler.targets[0], sampler.clutter[0])
        assert crop.max() == pytest.approx(4.0) and not msk.any()  # the lamp is in, the target out
    with pytest.raises(SegDataError, match="add up to more than 1"):
        CropSampler([frame], 32, target_prob=0.7, clutter_prob=0.5)


def test_recalibration_command_refuses_bad_input_with_one_line(tmp_path, capsys):
    from inference.models.memory_mamba import MemoryMamba
    from inference.models.memory_mamba import preset as cls_preset
    from inference.training.segmenter_calibrate import main as calibrate_main

    root = write_tree(tmp_path / "d", n=6)
    assert calibrate_main(["--model", str(tmp_path / "missing"), "--data", str(root)]) == 2
    assert "model directory not found" in capsys.readouterr().err
    classifier = MemoryMamba(cls_preset("test_tiny", num_classes=2))
    save_model(tmp_path / "cls", "memory_mamba", classifier, classifier.cfg, {})
    assert calibrate_main(["--model", str(tmp_path / "cls"), "--data", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a segmenter model" in err and len(err.strip().splitlines()) == 1


def test_crop_shares_outside_zero_one_are_refused():
    from inference.training.segmenter_data import Frame

    frame = Frame("f", np.zeros((1, 40, 40), np.float32), np.zeros((40, 40), bool))
    with pytest.raises(SegDataError, match=r"must lie in \[0, 1\]"):
        CropSampler([frame], 32, target_prob=0.5, clutter_prob=-0.1)


def test_evaluate_reports_progress_per_frame(tmp_path):
    """``evaluate segmenter`` printed nothing for 37 minutes on 187 frames (issue 21): it now
    shows a bar with an ETA, and retraining's compare stage hears each frame as JSON progress."""
    from inference.training.common import progress_listener
    from inference.training.segmenter_eval import evaluate_tree

    root = write_tree(tmp_path / "d", n=8)
    heard: list[tuple[str, int, int]] = []
    with progress_listener(lambda task, done, total: heard.append((task, done, total))):
        result = evaluate_tree(tiny_loaded(), root, progress=True)
    assert result["images"] == 4
    assert [(d, t) for _, d, t in heard] == [(i, 4) for i in range(5)]
    assert {task for task, _, _ in heard} == {"evaluate segmenter"}


def test_the_second_phase_can_train_on_larger_crops(tmp_path):
    """Session 27 (segmenter-context2phase.md): ``fine_tune_crop`` / ``fine_tune_batch_size`` give the second phase
    its own crop side and batch; 0 keeps the first phase's."""
    from inference.training.segmenter_train import TrainOptions, train

    root = write_tree(tmp_path / "d", n=8)
    final = train(TrainOptions(data=str(root), out=str(tmp_path / "o"), preset="test_tiny", epochs=1, batch_size=2,
                               crop=32, fine_tune_epochs=1, fine_tune_crop=48, fine_tune_batch_size=1, quiet=True,
                               threads=1, held_out_fraction=0.0))
    card = json.loads((final / "card.json").read_text())
    assert [(p.get("crop"), p.get("batch_size")) for p in card["training_phases"]][1] == (48, 1)
    phase1 = json.loads((tmp_path / "o" / "phase1" / "final" / "card.json").read_text())
    assert (phase1["training"]["crop"], phase1["training"]["batch_size"]) == (32, 2)
    assert (card["training"]["fine_tune_crop"], card["training"]["fine_tune_batch_size"]) == (48, 1)


def test_pasted_targets_carry_their_rise_over_the_background_and_join_the_mask():
    """``paste_prob``: a training target's signal (its frame minus the frame with it painted out) is added
    to a crop at a free place, and its pixels join the crop's mask; ``paste_prob=0`` draws the same crops
    as before the option existed."""
    from inference.training.segmenter_data import Frame, target_patches

    rng = np.random.default_rng(0)
    img = (0.05 * rng.standard_normal((1, 80, 80)) + np.linspace(0, 1, 80)[None, None, :]).astype(np.float32)
    mask = np.zeros((80, 80), bool)
    img[0, 30:33, 40:43] += 3.0  # one 3x3 target, 3 above a sloping background
    mask[30:33, 40:43] = True
    frame = Frame("f", img, mask)
    (patch,) = target_patches([frame])
    assert patch.mask.sum() == 9 and patch.signal.shape[1:] == patch.mask.shape
    assert patch.signal[0][patch.mask].mean() == pytest.approx(3.0, abs=0.15)  # the rise, not the slope under it
    assert abs(patch.signal[0][~patch.mask]).max() < 0.5  # nothing but its edge around it

    empty = Frame("g", np.zeros((1, 40, 40), np.float32), np.zeros((40, 40), bool))
    sampler = CropSampler([frame, empty], 32, target_prob=0.0, seed=0, paste_prob=1.0, paste_gain=(1.0, 1.0))
    sampler.patches = [patch]
    for _ in range(5):
        crop, msk = sampler._crop(empty, sampler.targets[1], sampler.clutter[1])
        assert msk.sum() == 9  # the pasted target is the crop's only one
        assert crop[0][msk].mean() == pytest.approx(3.0, abs=0.15) and abs(crop[0][~msk]).max() < 0.5
    assert not empty.mask.any() and not empty.image.any()  # the frames themselves are untouched

    plain = CropSampler([frame], 32, target_prob=0.5, seed=4)
    off = CropSampler([frame], 32, target_prob=0.5, seed=4, paste_prob=0.0)
    a, b = plain.batch(4), off.batch(4)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(SegDataError, match=r"must lie in \[0, 1\]"):
        CropSampler([frame], 32, paste_prob=1.5)


@pytest.mark.parametrize("value", ["nan", "-1", "1.5"])
def test_evaluate_refuses_a_threshold_outside_0_to_1(tmp_path, capsys, value: str):
    """Found by a session-45 probe: --threshold nan was taken and every figure read 0 as if valid."""
    with pytest.raises(SystemExit) as stop:
        main(["evaluate", "segmenter", "--data", str(tmp_path), f"--threshold={value}"])
    assert stop.value.code == 2 and "threshold" in capsys.readouterr().err


def test_evaluate_scores_a_split_from_its_own_list_and_says_what_it_left_out(tmp_path, capsys):
    """Found by a session-45 probe: --split test with no test.txt scored val.txt's frames and said "test"; with no
    val.txt, --split val scored a hash share of frames train.txt lists; a test list that repeats train.txt was
    scored without a word; and with no split files an image without its mask vanished from the count."""
    from inference.checkpoints import load_model
    from inference.training.segmenter_eval import evaluate_tree
    model = MiMISTD(preset("test_tiny"))
    loaded = load_model(save_model(tmp_path / "m", NAME, model, model.config, {"family": "segmenter", "threshold": 0.5}),
                        family="segmenter")
    root = write_tree(tmp_path / "d", n=6)
    with pytest.raises(ValueError, match="no test.txt"):
        evaluate_tree(loaded, root, "test")
    (root / "test.txt").write_text((root / "train.txt").read_text())
    with pytest.raises(ValueError, match="listed in train.txt too"):
        evaluate_tree(loaded, root, "test")
    for name in ("train.txt", "val.txt", "test.txt"):
        (root / name).unlink()
    cv2.imwrite(str(root / "images" / "lonely.png"), np.zeros((40, 56), np.uint8))
    result = evaluate_tree(loaded, root)
    assert result["split"] == "all" and result["images"] == 6
    assert any("lonely.png: no mask" in s for s in result["skipped"])


def test_training_on_masks_without_a_target_is_refused(tmp_path, capsys):
    """A session-46 probe: twelve frames whose masks were all empty trained, and "model written" registered and
    activated like any other model (the retrain command refuses this case)."""
    root = write_tree(tmp_path / "d", n=6)
    for mask in (root / "masks").glob("*.png"):
        cv2.imwrite(str(mask), np.zeros(cv2.imread(str(mask), 0).shape, np.uint8))
    out = tmp_path / "empty"
    assert main(["train", "segmenter", "--data", str(root), "--out", str(out), "--preset", "test_tiny", "--epochs", "1",
                 "--batch-size", "2", "--crop", "32", "--quiet", "--threads", "1"]) != 0
    assert "no frame the trainer fits on holds a target" in capsys.readouterr().err
    assert not (out / "final" / "model.safetensors").exists()
    # targets only in the tenth the trainer holds out, or on a mask not the size of its frame: refused too (the
    # review of the check's second place)
    from inference.training.segmenter_data import SegTree
    from inference.training.segmenter_train import require_targets, split_stems
    held_tree = write_tree(tmp_path / "held", n=20, splits=False)
    fit, held = split_stems(SegTree.open(held_tree))
    for stem in fit:
        mask = held_tree / "masks" / f"{stem}.png"
        cv2.imwrite(str(mask), np.zeros(cv2.imread(str(mask), 0).shape, np.uint8))
    with pytest.raises(ValueError, match="no frame the trainer fits on holds a target"):
        require_targets(held_tree)
    require_targets(held_tree, 0.0)   # nothing held out (the folds): the held-out frames' targets count
    # targets in one fold only: the data holds targets, its folds train (the review of this check's first place)
    write_tree(tmp_path / "cv", n=6, splits=False)
    for i, mask in enumerate(sorted((tmp_path / "cv" / "masks").glob("*.png"))):
        if i not in (0, 3):
            cv2.imwrite(str(mask), np.zeros(cv2.imread(str(mask), 0).shape, np.uint8))
    assert main(["train", "segmenter", "--data", str(tmp_path / "cv"), "--out", str(tmp_path / "cvout"), "--preset",
                 "test_tiny", "--epochs", "1", "--batch-size", "2", "--crop", "32", "--quiet", "--threads", "1",
                 "--cv-folds", "3", "--group-by", "none"]) == 0


def test_an_empty_train_list_and_masks_all_of_another_size_are_said_as_such(tmp_path):
    """A session-49 audit: ``train segmenter`` with an empty train.txt, or with every mask half the size of its frame,
    said "no frame the trainer fits on holds a target ... its masks hold none", though the masks held targets; the list
    and the first mask of another size (with both sizes) are named now."""
    from inference.training.segmenter_train import require_targets

    root = write_tree(tmp_path / "d", n=6)
    (root / "train.txt").write_text("")
    with pytest.raises(ValueError, match=r"train.txt lists no frames: nothing to train on"):
        require_targets(root)
    (root / "train.txt").write_text("\n".join(f"f{i}" for i in range(4)))
    for mask in (root / "masks").glob("*.png"):
        m = cv2.imread(str(mask), 0)
        cv2.imwrite(str(mask), cv2.resize(m, (m.shape[1] // 2, m.shape[0] // 2), interpolation=cv2.INTER_NEAREST))
    with pytest.raises(ValueError, match=r"none of the 4 masks of frames the trainer fits on is the size of its frame "
                                         r"\(e\.g\. .*f0\.png: mask is 28x20 but its image f0\.png is 56x40\)"):
        require_targets(root, 0.0)
    cv2.imwrite(str(root / "masks" / "f1.png"), np.zeros((33, 70), np.uint8))  # the right size, no target
    with pytest.raises(ValueError, match=r"holds a target \(3 masks not the size of their frame, which the trainer "
                                         r"skips, e\.g\. .*f0\.png: mask is 28x20"):
        require_targets(root, 0.0)


def test_exif_turned_jpeg_frames_with_masks_at_their_stored_size_are_not_refused(tmp_path):
    """A session-49 audit: frames saved as JPEG with an EXIF orientation of 6, their masks at the stored size (what the
    station's own masks export writes, and what the trainer reads), were refused: "no frame the trainer fits on holds
    a target" (the check measured the frame turned by its tag). A mask at the turned size fits nothing it reads."""
    from inference.training.segmenter_train import require_targets
    from tests.inference.test_simple_answer_thumbnails import _jpeg_turned_by_exif

    root = tmp_path / "turned"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(4):
        stored = _jpeg_turned_by_exif(root / "images" / f"f{i}.jpg")
        mask = np.zeros(stored.shape, np.uint8)
        mask[10:14, 30:34] = 255
        cv2.imwrite(str(root / "masks" / f"f{i}.png"), mask)
    require_targets(root)
    for mask_path in (root / "masks").glob("*.png"):   # the same masks at the size the tag turns the frame to
        cv2.imwrite(str(mask_path), np.ascontiguousarray(cv2.imread(str(mask_path), 0).T))
    with pytest.raises(ValueError, match=r"masks of frames the trainer fits on is the size of its frame \(e\.g\. .*: "
                                         r"mask is 48x64 but its image f\d\.jpg is 64x48\)"):
        require_targets(root)
