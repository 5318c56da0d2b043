"""The per-target Dice term (issue 19): windows per ground-truth target, equal weight whatever the
target's size, gradients, and the ``--loss`` option wired through to training."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from app.cli import main
from inference.training.segmenter_cli import add_train_arguments
from inference.training.segmenter_train import (
    LOSSES,
    TrainOptions,
    per_target_dice_loss,
    segmentation_loss,
    soft_dice_loss,
    target_windows,
)
from tests.inference.test_segmenter_data import write_tree

BIG, SMALL = 40.0, -40.0  # logits that give probabilities 1 and 0


def _two_targets() -> torch.Tensor:
    """Crop 0: a 3-pixel target and a 300-pixel one (15 x 20); crop 1: one pixel; crop 2: nothing."""
    t = torch.zeros(3, 1, 48, 48)
    t[0, 0, 2, 2:5] = 1
    t[0, 0, 20:35, 20:40] = 1
    t[1, 0, 40, 40] = 1
    return t


def _perfect(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t > 0, torch.tensor(BIG), torch.tensor(SMALL))


def test_windows_number_each_target_across_the_batch_and_reach_margin_pixels_around_it():
    t = _two_targets()
    w = target_windows(t.numpy(), margin=2)
    assert w.shape == t.shape and w.dtype == np.int64
    assert sorted(np.unique(w).tolist()) == [0, 1, 2, 3]
    assert not w[2].any()  # the empty crop has no window
    small = w[0, 0] == w[0, 0, 2, 2]
    assert small.sum() == 5 * 7  # the 1 x 3 target grown by 2 on each side
    assert (w[0, 0][t[0, 0].numpy() > 0] > 0).all()  # every target pixel carries an id
    assert (w[1, 0] > 0).sum() == 5 * 5  # the one-pixel target at (40, 40) grown by 2
    assert not target_windows(t.numpy(), margin=0)[0, 0, 1, 2]  # margin 0: the target pixels alone


def test_target_pixels_keep_their_own_id_where_windows_meet():
    t = torch.zeros(1, 1, 16, 16)
    t[0, 0, 4, 4] = 1
    t[0, 0, 4, 7] = 1  # two targets 3 pixels apart: their margins overlap
    w = target_windows(t.numpy(), margin=4)[0, 0]
    assert w[4, 4] != w[4, 7] and w[4, 4] > 0 and w[4, 7] > 0


def test_a_missed_small_target_costs_as_much_as_a_missed_large_one():
    t = _two_targets()[:1]  # 3-pixel and 300-pixel targets in one crop
    perfect = _perfect(t)
    assert float(per_target_dice_loss(perfect, t)) == pytest.approx(0.0, abs=1e-6)
    miss_small, miss_large = perfect.clone(), perfect.clone()
    miss_small[0, 0, 2, 2:5] = SMALL
    miss_large[0, 0, 20:35, 20:40] = SMALL
    small_cost, large_cost = float(per_target_dice_loss(miss_small, t)), float(per_target_dice_loss(miss_large, t))
    assert small_cost == pytest.approx(0.5, abs=1e-6) and large_cost == pytest.approx(0.5, abs=1e-6)
    # the pooled Dice barely notices the small miss: what the new term is for
    assert float(soft_dice_loss(miss_small, t)) < 0.01 < 0.5 < float(soft_dice_loss(miss_large, t))


def test_spill_around_a_target_costs_inside_its_window_only():
    t = _two_targets()[:1]
    spill, far = _perfect(t), _perfect(t)
    spill[0, 0, 3, 2:5] = BIG  # a row of false pixels right under the small target: inside its window
    far[0, 0, 45, 2:5] = BIG  # the same three pixels far from any target: outside every window
    assert float(per_target_dice_loss(spill, t)) > 0.1
    assert float(per_target_dice_loss(far, t)) == pytest.approx(0.0, abs=1e-6)


def test_shapes_gradients_and_an_empty_batch():
    t = _two_targets()
    logits = torch.zeros_like(t, requires_grad=True)
    loss = per_target_dice_loss(logits, t)
    assert loss.shape == () and 0.0 < float(loss.detach()) < 1.0
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert (logits.grad[0, 0][t[0, 0] > 0] < 0).all()  # raising a missed target's pixels lowers the loss
    assert not logits.grad[2].any()  # the empty crop is outside every window
    empty = torch.zeros(2, 1, 8, 8)
    z = torch.zeros_like(empty, requires_grad=True)
    out = per_target_dice_loss(z, empty)
    out.backward()
    assert float(out.detach()) == 0.0 and z.grad is not None and not z.grad.any()
    precomputed = per_target_dice_loss(logits.detach(), t, target_windows(t.numpy()))
    assert float(precomputed) == pytest.approx(float(loss.detach()))


def test_the_default_loss_is_unchanged_and_unknown_names_are_refused():
    t = _two_targets()
    logits = torch.randn(t.shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(segmentation_loss(logits, t), soft_dice_loss(logits, t))
    both = segmentation_loss(logits, t, loss_name="dice+targets")
    assert float(both) == pytest.approx(float(soft_dice_loss(logits, t) + per_target_dice_loss(logits, t)))
    with pytest.raises(ValueError, match="unknown loss"):
        segmentation_loss(logits, t, loss_name="focal")
    assert TrainOptions(data="d", out="o").loss == "dice"


def test_the_cli_offers_exactly_the_trainer_losses_and_defaults_to_dice():
    p = argparse.ArgumentParser()
    add_train_arguments(p)
    action = next(a for a in p._actions if a.dest == "loss")
    assert tuple(action.choices) == LOSSES and action.default == "dice"


def test_training_with_the_per_target_loss_records_it_on_the_card(tmp_path):
    root = write_tree(tmp_path / "d", n=6)
    out = tmp_path / "run"
    assert main(["train", "segmenter", "--data", str(root), "--out", str(out), "--preset", "test_tiny", "--epochs", "1",
                 "--batch-size", "2", "--crop", "32", "--quiet", "--threads", "1", "--loss", "dice+targets",
                 "--held-out-fraction", "0"]) == 0
    card = json.loads((out / "final" / "card.json").read_text())
    assert card["training"]["loss"] == "dice+targets"
    assert np.isfinite(card["history"][0]["loss"])


def test_scene_cv_recipes_name_only_trainer_options():
    from benchmarks.segmenter_scene_cv import RECIPES

    fields = TrainOptions.__dataclass_fields__
    assert all(set(r) <= set(fields) for r in RECIPES.values())
    assert RECIPES["targets"]["loss"] in LOSSES and RECIPES["targets_clutter"]["clutter_prob"] > 0


def test_the_trainer_and_the_cli_take_the_crop_mix_leave_scene_out_cv_chose():
    """segmenter-clutter.md (session 22): half the crops on targets, a quarter on non-target blobs; the recipes
    recorded before keep their own mix (no clutter crops) so that rerunning them reproduces their figures."""
    from benchmarks.segmenter_scene_cv import RECIPES

    opts = TrainOptions(data="d", out="o")
    assert (opts.target_prob, opts.clutter_prob) == (0.5, 0.25)
    p = argparse.ArgumentParser()
    add_train_arguments(p)
    defaults = {a.dest: a.default for a in p._actions}
    assert (defaults["target_prob"], defaults["clutter_prob"]) == (0.5, 0.25)
    assert RECIPES["clutter"]["clutter_prob"] == 0.25
    # session 27: the adopted crop mix at another crop size (segmenter-context192.md); session 28: with pasted targets
    built_on_clutter = {"ctx192", "ctx2phase", "paste"}
    assert all(RECIPES[name]["clutter_prob"] == 0.25 for name in built_on_clutter)
    assert all(r["clutter_prob"] == 0.0 for name, r in RECIPES.items()
               if "clutter" not in name and name not in built_on_clutter)
