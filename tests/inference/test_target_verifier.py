"""The segmenter's second stage: views, learning, rejection, storage inside the model directory."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from inference import segmenter_predict as segmentation
from inference.checkpoints import CheckpointError, LoadedModel, load_model, save_model
from inference.models.mim_istd import NAME as SEG_NAME
from inference.models.mim_istd import MiMISTD, preset
from inference.models.target_verifier import NAME, TargetVerifier, TargetVerifierConfig, d4, verify, views
from inference.training.segmenter_verifier import VerifierOptions, fit, train_verifier
from tests.inference.test_segmenter_data import write_tree
from tests.tiny_models import one_thread  # noqa: F401  (autouse)

SMALL = TargetVerifierConfig(patch=16, context=2, widths=(8, 16))


def test_views_are_centred_full_size_and_mirror_at_the_border():
    frame = np.arange(30 * 40, dtype=np.float32).reshape(30, 40)
    v = views(frame, np.array([[10.0, 20.0], [0.0, 0.0], [29.0, 39.0]]), SMALL)
    assert v.shape == (3, 2, 16, 16) and v.dtype == np.float32 and np.isfinite(v).all()
    assert v[0, 0, 8, 8] == frame[10, 20]  # the centre pixel sits at (patch/2, patch/2)
    assert np.array_equal(v[0, 0], frame[2:18, 12:28])
    wide = views(frame, np.array([[15.0, 20.0]]), TargetVerifierConfig(patch=16, context=1, widths=(8,)))
    assert np.array_equal(wide[0, 0], wide[0, 1])  # context 1: both views are the same window
    assert views(frame, np.zeros((0, 2)), SMALL).shape == (0, 2, 16, 16)


def test_d4_is_the_eight_symmetries_of_the_square():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    outs = {tuple(d4(x, k).flatten().tolist()) for k in range(8)}
    assert len(outs) == 8 and tuple(x.flatten().tolist()) in outs


def test_shapes_and_gradients():
    model = TargetVerifier(SMALL)
    x = torch.randn(5, 2, 16, 16, requires_grad=True)
    out = model(x)
    assert out.shape == (5,)
    out.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in model.parameters())


def _dot_scene(rng: np.random.Generator, attached: bool) -> tuple[np.ndarray, np.ndarray]:
    """A noisy 48x48 frame with a bright dot at the centre, alone or at the end of a bright bar."""
    f = rng.normal(0, 0.3, (48, 48)).astype(np.float32)
    f[23:25, 23:25] += 4.0
    if attached:
        f[24:26, 25:44] += 2.5  # a structure the dot sits on (a lamp on a crane)
    return f, np.array([[24.0, 24.0]])


def test_the_verifier_learns_context_a_lone_dot_from_a_dot_on_a_structure():
    rng = np.random.default_rng(0)
    scenes = [_dot_scene(rng, attached=bool(i % 2)) for i in range(80)]
    x = np.concatenate([views(f, c, SMALL) for f, c in scenes])
    y = np.array([0.0 if i % 2 else 1.0 for i in range(80)], np.float32)
    model = fit(x, y, SMALL, VerifierOptions(steps=120, batch_size=32, quiet=True), seed=0)
    fresh = [_dot_scene(rng, attached=a) for a in (False, True) * 10]
    scores = np.array([verify(model, f, c)[0] for f, c in fresh])
    lone, attached = scores[0::2], scores[1::2]
    assert lone.min() > attached.max(), (lone, attached)


def test_fit_refuses_one_class_only():
    with pytest.raises(ValueError, match="both"):
        fit(np.zeros((4, 2, 16, 16), np.float32), np.ones(4, np.float32), SMALL, VerifierOptions(steps=1, quiet=True), 0)


def _verifier_with_bias(bias: float) -> TargetVerifier:
    model = TargetVerifier(SMALL)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(bias)
    return model.eval()


def test_rejected_components_leave_the_mask_accepted_ones_stay():
    mask = np.zeros((30, 30), bool)
    mask[3:5, 3:5] = mask[20:23, 20:22] = True
    plane = np.zeros((30, 30), np.float32)
    assert not segmentation.drop_rejected(mask, plane, _verifier_with_bias(-5.0), 0.5).any()
    assert np.array_equal(segmentation.drop_rejected(mask, plane, _verifier_with_bias(5.0), 0.5), mask)
    empty = np.zeros((30, 30), bool)
    assert not segmentation.drop_rejected(empty, plane, _verifier_with_bias(5.0), 0.5).any()


def _segmenter_with_verifier(root: Path, bias: float, threshold: float = 0.5) -> Path:
    torch.manual_seed(0)
    seg = MiMISTD(preset("test_tiny"))
    v = _verifier_with_bias(bias)
    save_model(root / "verifier", NAME, v, v.config, {})
    return save_model(root, SEG_NAME, seg, seg.config, {
        "threshold": 0.0, "parts": {"verifier": "verifier"}, "verifier": {"dir": "verifier", "threshold": threshold}})


def test_a_model_directory_carries_its_verifier_and_the_application_applies_it(tmp_path):
    image = np.random.default_rng(0).random((37, 51), dtype=np.float32)
    rejecting = load_model(_segmenter_with_verifier(tmp_path / "reject", bias=-5.0), family="segmenter")
    keeping = load_model(_segmenter_with_verifier(tmp_path / "keep", bias=5.0), family="segmenter")
    assert isinstance(rejecting.parts["verifier"], LoadedModel) and rejecting.parts["verifier"].name == NAME
    without = LoadedModel(keeping.model, SEG_NAME, "segmenter", keeping.config, {"threshold": 0.0})
    base = segmentation.predict_masks(without, [image])[0]
    assert base.count > 0  # threshold 0 lights up something to verify
    kept = segmentation.predict_masks(keeping, [image])[0]
    dropped = segmentation.predict_masks(rejecting, [image])[0]
    assert np.array_equal(kept.mask, base.mask) and kept.count == base.count
    assert not dropped.mask.any() and dropped.count == 0 and dropped.boxes == ()


def test_a_verifier_given_as_the_segmenter_is_refused(tmp_path):
    d = _segmenter_with_verifier(tmp_path / "m", bias=0.0)
    with pytest.raises(CheckpointError, match="part of a segmenter"):
        load_model(d / "verifier", family="segmenter")
    assert load_model(d, family="segmenter").parts["verifier"].name == NAME


def test_a_card_whose_verifier_or_members_are_missing_is_a_checkpoint_error(tmp_path):
    d = _segmenter_with_verifier(tmp_path / "m", bias=0.0)
    card = json.loads((d / "card.json").read_text())
    for broken in ({**card, "parts": {}}, {**card, "ensemble": ["member9"]}):
        (d / "card.json").write_text(json.dumps(broken))
        with pytest.raises(CheckpointError, match="verifier|member9"):
            segmentation.predict_masks(load_model(d, family="segmenter"), [np.zeros((20, 20), np.float32)])


def test_broken_or_escaping_parts_are_checkpoint_errors(tmp_path):
    d = _segmenter_with_verifier(tmp_path / "m", bias=0.0)
    (d / "verifier" / "model.safetensors").write_bytes(b"not tensors")
    with pytest.raises(CheckpointError, match="verifier"):
        load_model(d)
    d2 = _segmenter_with_verifier(tmp_path / "m2", bias=0.0)
    card = json.loads((d2 / "card.json").read_text())
    card["parts"] = {"verifier": "../m"}
    (d2 / "card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="sub-directory"):
        load_model(d2)


def clutter_tree(root: Path) -> Path:
    """30 small frames, each with a target and a brighter non-target blob (the clutter to reject)."""
    write_tree(root, n=30)
    (root / "train.txt").write_text("\n".join(f"f{i}" for i in range(26)))
    (root / "val.txt").write_text("\n".join(f"f{i}" for i in range(26, 30)))  # apart from train.txt's frames
    for i in range(30):  # a bright non-target blob in every frame: the clutter the verifier learns to reject
        img = cv2.imread(str(root / "images" / f"f{i}.png"), cv2.IMREAD_GRAYSCALE)
        mask = cv2.imread(str(root / "masks" / f"f{i}.png"), cv2.IMREAD_GRAYSCALE)
        y, x = np.argwhere(mask > 0)[0]
        by, bx = (y + img.shape[0] // 2) % (img.shape[0] - 3), (x + img.shape[1] // 2) % (img.shape[1] - 3)
        img[by:by + 2, bx:bx + 2] = 255
        cv2.imwrite(str(root / "images" / f"f{i}.png"), img)
    return root


def test_training_stores_the_verifier_in_the_model_directory_and_evaluate_uses_it(tmp_path, capsys):
    from app.cli import main

    root = clutter_tree(tmp_path / "d")
    torch.manual_seed(0)
    seg = MiMISTD(preset("test_tiny"))
    model_dir = save_model(tmp_path / "m", SEG_NAME, seg, seg.config, {"family": "segmenter", "threshold": 0.5})
    entry = train_verifier(model_dir, root, VerifierOptions(steps=10, batch_size=16, folds=2, quiet=True), SMALL)
    assert 0.0 <= entry["threshold"] <= 1.0 and entry["samples"]["targets"] > 0
    assert {"held_out_with", "held_out_without", "inner_folds"} <= set(entry) and entry["options"]["group_by"] == "scene"
    loaded = load_model(model_dir, family="segmenter")
    assert loaded.card["verifier"]["threshold"] == entry["threshold"] and "verifier" in loaded.parts
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in seg.state_dict().items())  # weights untouched
    assert segmentation.model_verifier(loaded) is not None
    out = tmp_path / "r.json"
    assert main(["evaluate", "segmenter", "--data", str(root), "--model", str(model_dir), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["verifier"] is True
    assert main(["evaluate", "segmenter", "--data", str(root), "--model", str(model_dir), "--no-verifier", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["verifier"] is False


def test_verifier_command_refuses_bad_input_with_one_line(tmp_path, capsys):
    from inference.training.segmenter_verifier import main

    assert main(["--model", str(tmp_path / "nope"), "--data", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error:")
    assert main(["--model", str(tmp_path), "--data", str(tmp_path), "--folds", "1"]) == 2


def test_train_segmenter_with_verifier_flag_ends_with_a_verifier(tmp_path):
    from app.cli import main

    root = clutter_tree(tmp_path / "d")
    out = tmp_path / "run"
    assert main(["train", "segmenter", "--data", str(root), "--out", str(out), "--preset", "test_tiny", "--epochs", "1",
                 "--batch-size", "2", "--crop", "32", "--quiet", "--threads", "1", "--verifier", "--verifier-steps", "5"]) == 0
    loaded = load_model(out / "final", family="segmenter")
    assert "verifier" in loaded.parts and loaded.card["verifier"]["options"]["steps"] == 5


def test_train_segmenter_with_cv_folds_and_the_verifier_flag_ends_with_a_verifier(tmp_path):
    """--verifier with --cv-folds used to be dropped without a word; the verifier's inner folds follow --group-by."""
    from app.cli import main

    root = clutter_tree(tmp_path / "d")
    out = tmp_path / "run"
    assert main(["train", "segmenter", "--data", str(root), "--out", str(out), "--preset", "test_tiny", "--epochs", "1",
                 "--batch-size", "2", "--crop", "32", "--quiet", "--threads", "1", "--cv-folds", "2", "--group-by", "none",
                 "--cv-no-flips", "--verifier", "--verifier-steps", "5"]) == 0
    loaded = load_model(out / "final", family="segmenter")
    assert "verifier" in loaded.parts and "cross_validation" in loaded.card
    assert loaded.card["verifier"]["options"]["group_by"] == "none"
    assert loaded.card["verifier"]["inner_folds"] == "frame index mod 3"


# The pixel-cost rule (issue #5, session 4): keep a component of n pixels iff odds(score) >= lambda * n.

def test_the_size_rule_keeps_a_small_component_and_rejects_a_large_one_scored_higher():
    scores, pixels = np.array([0.7, 0.8, 0.999]), np.array([2, 200, 200])
    # lambda = 0.5: the bars are odds 1 (2 px) and 100 (200 px); the odds are 2.3, 4 and 999
    assert segmentation.rejected_by(scores, pixels, 0.5, float(np.log(0.5))).tolist() == [False, True, False]
    # no flat threshold does the same: whatever rejects the 0.8 one also rejects the 0.7 one
    for thr in np.linspace(0, 1, 101):
        assert segmentation.rejected_by(scores, pixels, thr).tolist() != [False, True, False]


def test_drop_rejected_with_the_size_rule_charges_by_pixels():
    mask = np.zeros((40, 40), bool)
    mask[3:5, 3:5] = True  # 4 px
    mask[20:26, 20:25] = True  # 30 px
    plane = np.zeros((40, 40), np.float32)
    v = _verifier_with_bias(2.0)  # every component scores sigmoid(2): odds e^2 = 7.4
    small = np.zeros_like(mask)
    small[3:5, 3:5] = True
    assert np.array_equal(segmentation.drop_rejected(mask, plane, v, 0.5, 0.0), small)  # lambda 1: 7.4 >= 4, < 30
    assert np.array_equal(segmentation.drop_rejected(mask, plane, v, 0.5), mask)  # the flat threshold keeps both
    rule = segmentation.VerifierRule(v, 0.5, 0.0)
    assert np.array_equal(segmentation.binarise(mask.astype(np.float32), 0.5, None, plane, rule).mask, small)


def test_fit_size_rule_is_the_quantile_of_the_target_margins():
    from inference.training.segmenter_verifier import OperatingComponents, fit_size_rule, rule_summary

    scores = np.array([0.5, 0.9, 0.99, 0.2, 0.95], np.float32)
    pixels = np.array([1, 9, 99, 50, 400])
    target = np.array([True, True, True, False, False])
    margins = np.log(scores[:3].astype(np.float64) / (1 - scores[:3])) - np.log(pixels[:3])
    assert fit_size_rule(scores, pixels, target, 0.0) == pytest.approx(margins.min())
    assert fit_size_rule(scores, pixels, target, 0.5) == pytest.approx(np.median(margins))
    comps = OperatingComponents(np.zeros(5, int), np.zeros((5, 2)), pixels, target)
    s = rule_summary(scores, comps, 0.1, fit_size_rule(scores, pixels, target, 0.0))
    assert s["targets_kept"] == 1.0 and s["targets_lost"] == 0
    assert s["non_targets_dropped"] == 1.0 and s["non_target_pixels_dropped"] == 1.0  # odds 0.25 < 50 λ, 19 < 400 λ
    assert rule_summary(scores, comps, 0.1, None)["non_target_pixels_dropped"] == 0.0  # the flat 0.1 keeps both
    with pytest.raises(ValueError, match="no target"):
        fit_size_rule(scores, pixels, np.zeros(5, bool), 0.01)


def test_cards_without_the_rule_behave_as_before_and_broken_rules_are_checkpoint_errors(tmp_path):
    d = _segmenter_with_verifier(tmp_path / "m", bias=0.0)
    rule = segmentation.model_verifier(load_model(d, family="segmenter"))
    assert rule.log_odds_per_pixel is None and rule.threshold == 0.5
    card = json.loads((d / "card.json").read_text())
    for broken in ("x", {}, {"log_odds_per_pixel": "1"}, {"log_odds_per_pixel": True}, {"log_odds_per_pixel": None},
                   {"log_odds_per_pixel": float("nan")}):
        (d / "card.json").write_text(json.dumps({**card, "verifier": {**card["verifier"], "size_rule": broken}}))
        with pytest.raises(CheckpointError, match="size_rule"):
            segmentation.predict_masks(load_model(d, family="segmenter"), [np.zeros((20, 20), np.float32)])
    (d / "card.json").write_text(json.dumps({**card, "verifier": {**card["verifier"], "size_rule": {"log_odds_per_pixel": -1.5}}}))
    assert segmentation.model_verifier(load_model(d, family="segmenter")).log_odds_per_pixel == -1.5


def _bright_map(models, images, device=None, standardised=False, flips=False):
    """A stand-in segmenter for the tiny tree: the bright pixels (targets and clutter blobs) light up."""
    return [(f[0] > f[0].mean() + 2 * f[0].std()).astype(np.float32) for f in images]


def test_refit_rule_adds_the_size_rule_without_touching_the_verifier_and_evaluate_uses_it(tmp_path, capsys, monkeypatch):
    from app.cli import main as cli
    from inference.training import segmenter_verifier
    from inference.training.segmenter_verifier import main

    monkeypatch.setattr(segmenter_verifier, "predict_probabilities", _bright_map)

    root = clutter_tree(tmp_path / "d")
    torch.manual_seed(0)
    seg = MiMISTD(preset("test_tiny"))
    model_dir = save_model(tmp_path / "m", SEG_NAME, seg, seg.config, {"family": "segmenter", "threshold": 0.5})
    assert main(["--model", str(model_dir), "--data", str(root), "--refit-rule", "--quiet"]) == 2  # no verifier yet
    assert "no target verifier" in capsys.readouterr().err
    train_verifier(model_dir, root, VerifierOptions(steps=10, batch_size=16, folds=2, quiet=True), SMALL)
    before = load_model(model_dir, family="segmenter")
    weights = {k: v.clone() for k, v in before.parts["verifier"].model.state_dict().items()}
    assert main(["--model", str(model_dir), "--data", str(root), "--refit-rule", "--quiet", "--threads", "1"]) == 0
    after = load_model(model_dir, family="segmenter")
    rule = after.card["verifier"]["size_rule"]
    assert np.isfinite(rule["log_odds_per_pixel"]) and rule["out_of_fold"]["components"]["targets"] > 0
    assert rule["flat_threshold_recomputed"] == pytest.approx(before.card["verifier"]["threshold"])  # same folds again
    assert segmentation.model_verifier(after).log_odds_per_pixel == rule["log_odds_per_pixel"]
    assert all(torch.equal(after.parts["verifier"].model.state_dict()[k], v) for k, v in weights.items())
    assert {k: v for k, v in after.card["verifier"].items() if k != "size_rule"} == before.card["verifier"]
    out = tmp_path / "r.json"
    assert cli(["evaluate", "segmenter", "--data", str(root), "--model", str(model_dir), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["verifier_log_odds_per_pixel"] == rule["log_odds_per_pixel"]
    assert main(["--model", str(model_dir), "--data", str(root), "--flat-rule"]) == 0  # back to the flat threshold
    flat = load_model(model_dir, family="segmenter")
    assert segmentation.model_verifier(flat).log_odds_per_pixel is None and flat.card["verifier"]["removed_size_rule"] == rule


def test_a_map_channel_verifier_reads_the_probability_map_in_the_same_two_views():
    frame = np.arange(30 * 40, dtype=np.float32).reshape(30, 40)
    prob = np.random.default_rng(0).random((30, 40)).astype(np.float32)
    config = TargetVerifierConfig(patch=16, context=2, widths=(8, 16), map_channel=True)
    v = views(frame, np.array([[10.0, 20.0]]), config, prob)
    assert v.shape == (1, 4, 16, 16) and config.in_chans == 4
    assert np.array_equal(v[0, :2], views(frame, np.array([[10.0, 20.0]]), SMALL)[0])
    assert np.array_equal(v[0, 2], prob[2:18, 12:28])
    with pytest.raises(ValueError, match="probability map"):
        views(frame, np.array([[10.0, 20.0]]), config)
    model = TargetVerifier(config)
    assert model(torch.from_numpy(v)).shape == (1,)
    mask = np.zeros((30, 40), bool)
    mask[9:12, 19:22] = True
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(-5.0)
    assert not segmentation.binarise(mask.astype(np.float32), 0.5, None, frame, (model, 0.5)).mask.any()


def test_training_a_map_channel_verifier_with_the_size_rule(tmp_path, monkeypatch):
    from inference.training import segmenter_verifier

    monkeypatch.setattr(segmenter_verifier, "predict_probabilities", _bright_map)
    root = clutter_tree(tmp_path / "d")
    seg = MiMISTD(preset("test_tiny"))
    model_dir = save_model(tmp_path / "m", SEG_NAME, seg, seg.config, {"family": "segmenter", "threshold": 0.5})
    config = TargetVerifierConfig(patch=16, context=2, widths=(8, 16), map_channel=True)
    entry = train_verifier(model_dir, root, VerifierOptions(steps=5, batch_size=16, folds=2, quiet=True), config, size_rule=True)
    loaded = load_model(model_dir, family="segmenter")
    assert loaded.parts["verifier"].config.map_channel and loaded.card["verifier"]["size_rule"] == entry["size_rule"]
    assert segmentation.model_verifier(loaded).log_odds_per_pixel == entry["size_rule"]["log_odds_per_pixel"]
    assert len(segmentation.predict_masks(loaded, [np.random.default_rng(0).random((33, 41), dtype=np.float32)])) == 1


def test_inner_folds_by_frame_index_or_given_per_frame_and_each_sample_scored_by_a_verifier_without_its_fold():
    from inference.training import segmenter_verifier as sv

    idx = np.array([0, 0, 1, 2, 3, 4, 5, 5])
    assert sv.sample_folds(idx, 3).tolist() == [0, 0, 1, 2, 0, 1, 2, 2]  # the card's rule: frame index mod 3
    scenes = np.array([1, 1, 0, 0, 2, 2])  # e.g. whole scenes per inner fold (groups.balanced_folds)
    assert sv.sample_folds(idx, 3, scenes).tolist() == [1, 1, 1, 0, 0, 2, 2, 2]
    with pytest.raises(ValueError, match="fold numbers"):
        sv.sample_folds(idx, 2, scenes)
    seen: list[tuple[int, ...]] = []

    def fake_fit(x, y, config, opts, seed, desc=""):
        seen.append(tuple(sorted(set(x[:, 0, 0, 0].astype(int).tolist()))))  # the frames it was fitted on
        return seed

    x = np.zeros((len(idx), 2, 4, 4), np.float32)
    x[:, 0, 0, 0] = idx
    y = np.array([1, 0, 1, 0, 1, 0, 1, 0], np.float32)
    orig = sv.fit
    sv.fit = fake_fit
    try:
        models = sv.fold_verifiers(x, y, idx, TargetVerifierConfig(), VerifierOptions(), scenes)
    finally:
        sv.fit = orig
    assert models == [0, 1, 2]  # seed + fold
    assert seen == [(0, 1, 4, 5), (2, 3, 4, 5), (0, 1, 2, 3)]  # fold k's frames (by scene) left out of model k


def test_inner_folds_keep_each_scene_in_one_fold_and_fall_back_to_frames_when_scenes_are_too_few(monkeypatch):
    from types import SimpleNamespace

    from inference.training import segmenter_cv
    from inference.training import segmenter_verifier as sv

    frames = [SimpleNamespace(stem=f"f{i}") for i in range(7)]
    scenes = {"f0": "a", "f1": "a", "f2": "b", "f3": "b", "f4": "c", "f5": "c", "f6": "a"}
    monkeypatch.setattr(segmenter_cv, "frame_groups", lambda data, stems, by: [scenes[s] for s in stems])
    fold, how = sv.inner_frame_folds(Path("."), frames, VerifierOptions(folds=3))  # type: ignore[arg-type]
    assert how == "3 folds of whole scenes (3 scenes)" and fold is not None
    for a, b in (("f0", "f1"), ("f0", "f6"), ("f2", "f3"), ("f4", "f5")):
        assert fold[int(a[1:])] == fold[int(b[1:])]
    assert len(set(fold.tolist())) == 3
    assert sv.inner_frame_folds(Path("."), frames, VerifierOptions(group_by="none")) == (None, "frame index mod 3")  # type: ignore[arg-type]
    scenes.update(f4="a", f5="b")
    fold, how = sv.inner_frame_folds(Path("."), frames, VerifierOptions(folds=3))  # type: ignore[arg-type]
    assert fold is None and "only 2 scenes" in how
    with pytest.raises(ValueError, match="unknown grouping"):
        sv.inner_frame_folds(Path("."), frames, VerifierOptions(group_by="lot"))  # type: ignore[arg-type]
