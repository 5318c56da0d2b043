"""MiM-ISTD: shapes at odd sizes, the ablation switch, gradients, overfitting, save/load."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from inference.checkpoints import CheckpointError, load_model, save_model
from inference.models import registry
from inference.models.mim_istd import (
    NAME,
    PRESETS,
    MiMISTD,
    MiMISTDConfig,
    from_sentences,
    preset,
    segment_logits,
    standardise,
    to_sentences,
)
from inference.training.segmenter_train import segmentation_loss

TINY = preset("test_tiny")


def tiny(**kw) -> MiMISTD:
    torch.manual_seed(0)
    return MiMISTD(dataclasses.replace(TINY, **kw))


@pytest.mark.parametrize("inner", ["mamba", "conv"])
@pytest.mark.parametrize("size", [(1, 1), (17, 45), (64, 32), (70, 99)])
def test_odd_sizes_come_back_at_full_resolution(inner, size):
    model = tiny(inner=inner).eval()
    x = torch.randn(2, 1, *size)
    with torch.no_grad():
        y = segment_logits(model, x)
    assert y.shape == (2, 1, *size)
    assert torch.isfinite(y).all()


def test_unpadded_input_is_refused_with_the_stride():
    with pytest.raises(ValueError, match="stride 16"):
        tiny()(torch.zeros(1, 1, 20, 16))


def test_presets_geometry():
    paper = PRESETS["paper"]
    assert paper.depths == (2, 2, 2, 2)
    assert paper.outer_dims == (32, 64, 128, 256) and paper.inner_dims == (4, 8, 16, 32)
    assert paper.sentence_px == 8 and paper.word_px == 2 and paper.words_per_side == 4
    assert paper.stride == 64
    model = MiMISTD(paper)
    # the inner block runs in the first block of each stage only
    assert [[b.has_inner for b in s] for s in model.stages] == [[True, False]] * 4
    assert model.stages[0][0].inner.d_model == 4  # one shared inner network over 4-channel words


def test_inner_mamba_scans_sixteen_words_per_sentence():
    seen = []
    model = tiny()
    model.stages[0][0].inner.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape))
    model(torch.zeros(1, 1, 32, 48))
    # 32x48 image -> 4x6 sentences of 8x8 px, each 4x4 words, batched through one network
    assert seen == [torch.Size([24, 4, 4, 2])]


def test_sentence_reshape_round_trip():
    w = torch.randn(2, 3, 8, 12)
    s = to_sentences(w, 4)
    assert s.shape == (2 * 2 * 3, 4, 4, 3)
    assert torch.equal(s[1, :, :, 0], w[0, 0, 0:4, 4:8])
    assert torch.equal(from_sentences(s, 2, 2, 3), w)


def test_conv_ablation_has_no_inner_ssm():
    from inference.ssm import SS2D

    model = tiny(inner="conv")
    inner = [m for b in model.stages for blk in b if blk.has_inner for m in blk.inner.modules()]
    assert not any(isinstance(m, SS2D) for m in inner)
    with pytest.raises(ValueError):
        MiMISTDConfig(inner="attention")


def test_every_parameter_gets_a_gradient():
    model = tiny()
    x = torch.randn(2, 1, 32, 32)
    target = (torch.rand(2, 1, 32, 32) > 0.95).float()
    segmentation_loss(model(x), target, bce_weight=0.5).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert not missing


def test_loss_falls_on_a_tiny_overfit():
    model = tiny()
    torch.manual_seed(1)
    x = torch.randn(1, 1, 32, 32)
    target = torch.zeros(1, 1, 32, 32)
    target[0, 0, 10:13, 20:22] = 1
    target[0, 0, 24:26, 5:8] = 1
    x = x + 3 * target
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    losses = []
    for _ in range(10):
        loss = segmentation_loss(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.7 * losses[0]


def test_standardise_makes_8_and_16_bit_frames_alike():
    a = torch.rand(1, 1, 9, 7)
    b = a * 0.05 + 0.3  # a dim 16-bit frame in [0, 1]
    assert torch.allclose(standardise(a), standardise(b), atol=1e-3)


def test_save_load_identity_and_registry(tmp_path):
    assert registry.spec(NAME).family == "segmenter"
    model = tiny().eval()
    save_model(tmp_path / "m", NAME, model, model.config, {"threshold": 0.4})
    loaded = load_model(tmp_path / "m")
    assert loaded.config == model.config and loaded.card["threshold"] == 0.4
    x = torch.randn(1, 1, 40, 24)
    with torch.no_grad():
        assert torch.equal(segment_logits(model, x), segment_logits(loaded.model, x))


def test_broken_checkpoints_raise_clear_errors(tmp_path):
    model = tiny()
    d = save_model(tmp_path / "m", NAME, model, model.config)
    # a config that no longer matches the weights
    meta = json.loads((d / "config.json").read_text())
    meta["config"]["outer_dims"] = [8, 32]
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="wrong shapes"):
        load_model(d)
    # truncated weights
    d2 = save_model(tmp_path / "m2", NAME, model, model.config)
    (d2 / "model.safetensors").write_bytes((d2 / "model.safetensors").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="safetensors"):
        load_model(d2)
    # an unknown config field
    d3 = save_model(tmp_path / "m3", NAME, model, model.config)
    meta = json.loads((d3 / "config.json").read_text())
    meta["config"]["wordz"] = 3
    (d3 / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="unknown fields"):
        load_model(d3)
