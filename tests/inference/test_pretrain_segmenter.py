"""Station pretraining of the segmenter (``pretrain --family segmenter``): masked-patch prediction,
resume, cancel, hostile files, and ``train segmenter --init`` from the result."""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from app.cli import main
from inference.checkpoints import load_model
from inference.models.mim_istd import MiMISTD, preset
from inference.training.common import load_training_state, progress_listener
from inference.training.pretrain import KIND, STATE_FILE, PretrainCancelled, PretrainOptions, pretrain
from inference.training.pretrain_masked import MaskConfig, masked_l1, random_crops, random_mask
from tests.inference.test_segmenter_data import write_tree


def _frames(root: Path, n: int = 6, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    for i in range(n):
        img = (rng.random((40, 48)) * 60 + 40).astype(np.uint8)
        img[10 + i:12 + i, 20:23] = 250  # a small bright target
        cv2.imwrite(str(root / f"frame{i}.png"), img)
    return root


def _opts(folder: Path, out: Path, **kw) -> PretrainOptions:
    base = dict(folder=folder, out=out, family="segmenter", preset="test_tiny", img_size=32, crop=32, mask_patch=4,
                epochs=2, batch_size=3, threads=1, device="cpu", quiet=True, save_every=1)
    return PretrainOptions(**{**base, **kw})


def test_masks_hide_the_asked_share_in_whole_patches_and_the_loss_reads_only_them():
    gen = torch.Generator().manual_seed(0)
    cfg = MaskConfig(ratio=0.5, patch=4, crop=16)
    m = random_mask(3, 16, cfg, gen)
    assert m.shape == (3, 1, 16, 16)
    assert torch.equal(m.sum(dim=(1, 2, 3)), torch.full((3,), 8 * 16.0))  # 8 of 16 patches of 16 pixels
    blocks = m.view(3, 4, 4, 4, 4)
    assert torch.equal(blocks.amin(dim=(2, 4)), blocks.amax(dim=(2, 4)))  # each 4x4 patch all hidden or all seen
    assert not torch.equal(m[0], m[1])
    target = torch.randn(3, 1, 16, 16)
    assert masked_l1(target + 5.0 * (1 - m), target, m) == 0  # errors on visible pixels do not count
    assert masked_l1(target + m, target, m) == pytest.approx(1.0)
    crops = random_crops(torch.randn(3, 1, 24, 40), 16, gen)
    assert crops.shape == (3, 1, 16, 16)
    with pytest.raises(ValueError, match="larger than the frames"):
        random_crops(torch.randn(1, 1, 8, 8), 16, gen)


def test_cli_writes_a_segmenter_without_threshold_and_skips_hostile_files(tmp_path, capsys, caplog):
    folder = _frames(tmp_path / "frames")
    (folder / "damaged.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (folder / "noise.jpg").write_bytes(os.urandom(300))
    (folder / "empty.png").write_bytes(b"")
    out = tmp_path / "pre"
    assert main(["pretrain", "--family", "segmenter", "--folder", str(folder), "--out", str(out), "--preset", "test_tiny",
                 "--img-size", "32", "--crop", "32", "--mask-patch", "4", "--epochs", "1", "--batch-size", "3",
                 "--threads", "1", "--device", "cpu", "--progress-json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert any(e["event"] == "progress" and e["done"] == e["total"] == 2 for e in lines)
    assert lines[-1]["event"] == "done" and lines[-1]["path"] == str(out)
    loaded = load_model(out, family="segmenter")
    card = loaded.card
    assert card["kind"] == KIND and card["family"] == "segmenter"
    assert "threshold" not in card and "classes" not in card
    assert "masked-patch" in card["pretraining"]["objective"] and card["data"]["images"] == 6
    for name in ("damaged.png", "noise.jpg", "empty.png"):
        assert name in "\n".join(card["data"]["skipped"]) and name in caplog.text
    # the thrown-away layer is not in the model directory: exactly the segmenter's own weights
    fresh = MiMISTD(preset("test_tiny")).state_dict()
    assert set(loaded.model.state_dict()) == set(fresh)
    # the objective never reads the segmenter's head: it keeps its initial "background" bias
    assert torch.equal(loaded.model.state_dict()["head.bias"], fresh["head.bias"])


def test_refuses_options_it_cannot_honour(tmp_path):
    folder = _frames(tmp_path / "frames", n=3)
    with pytest.raises(ValueError, match="multiple of the network's stride"):
        pretrain(_opts(folder, tmp_path / "o", crop=24))
    with pytest.raises(ValueError, match="--input-norm"):
        pretrain(_opts(folder, tmp_path / "o", input_norm="per_image"))
    with pytest.raises(ValueError, match="mask-ratio"):
        pretrain(_opts(folder, tmp_path / "o", mask_ratio=1.0))


def test_cancel_keeps_state_and_resume_matches_an_uninterrupted_run(tmp_path):
    folder = _frames(tmp_path / "frames")
    whole = pretrain(_opts(folder, tmp_path / "whole"))  # 2 epochs x 2 steps
    out = tmp_path / "cut"
    steps: list[int] = []
    with progress_listener(lambda task, done, total: steps.append(done)):
        with pytest.raises(PretrainCancelled, match="--resume"):
            pretrain(_opts(folder, out), should_stop=lambda: bool(steps) and steps[-1] >= 3)  # stop after step 3
    assert not (out / "model.safetensors").exists() and not (out / "card.json").exists()
    state = load_training_state(out / "training" / STATE_FILE)
    assert state["step"] == 3 and len(json.loads(state["losses"])) == 3
    resumed = pretrain(_opts(folder, out, resume=True, command="again"))
    a, b = load_model(whole), load_model(resumed)
    assert b.card["commands"][-1] == "again" and len(b.card["commands"]) == 2
    assert a.card["pretraining"]["loss_last_epoch"] == pytest.approx(b.card["pretraining"]["loss_last_epoch"], abs=1e-4)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.allclose(sa[k].float(), sb[k].float(), atol=1e-5) for k in sa)  # same crops, masks, order
    with pytest.raises(ValueError, match="configuration"):
        pretrain(_opts(folder, out, resume=True, mask_ratio=0.3))  # another objective setting: not the same run


def test_train_segmenter_init_takes_every_weight_of_the_pretrained_network(tmp_path, capsys):
    pre = pretrain(_opts(_frames(tmp_path / "frames"), tmp_path / "pre", epochs=1))
    data = write_tree(tmp_path / "tree", n=6, sizes=((40, 48),))
    out = tmp_path / "run"
    assert main(["train", "segmenter", "--data", str(data), "--out", str(out), "--preset", "test_tiny",
                 "--init", str(pre), "--epochs", "1", "--batch-size", "2", "--crop", "32", "--lr", "1e-12",
                 "--held-out-fraction", "0", "--threads", "1", "--device", "cpu", "--quiet", "--seed", "5"]) == 0
    a, b = load_model(pre), load_model(out / "final", family="segmenter")
    pa, pb = dict(a.model.named_parameters()), dict(b.model.named_parameters())
    assert set(pa) == set(pb)
    assert all(torch.allclose(pa[k], pb[k], atol=1e-6) for k in pa)  # lr ~0: every weight is the pretrained one
    fresh = dict(MiMISTD(preset("test_tiny")).named_parameters())
    assert not all(torch.allclose(fresh[k], pb[k], atol=1e-3) for k in pb)  # and not a fresh network's
    assert b.card["init_model"]["kind"] == KIND and "masked-patch" in b.card["init_model"]["pretraining"]["objective"]
    capsys.readouterr()
    # another architecture than the pretrained one is refused with the reason
    assert main(["train", "segmenter", "--data", str(data), "--out", str(tmp_path / "bad"), "--preset", "cpu",
                 "--init", str(pre), "--epochs", "1", "--threads", "1", "--device", "cpu", "--quiet"]) == 2
    assert "not the one asked for" in capsys.readouterr().err
