"""MemoryMamba: shapes per preset and ablation, gradients, losses, save/load, broken checkpoints."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from inference.checkpoints import CheckpointError, load_model, save_model
from inference.models import registry
from inference.models.memory_mamba import ABLATIONS, PRESETS, MemoryMamba, preset
from inference.training.classifier_losses import (
    coarse_contrastive_loss,
    info_nce_loss,
    memory_mamba_loss,
)


def _tiny(ablation: str = "full", **kw) -> MemoryMamba:
    torch.manual_seed(0)
    return MemoryMamba(preset("test_tiny", ablation, **kw))


def test_registered_as_classifier():
    s = registry.spec("memory_mamba")
    assert s.family == "classifier" and s.model_cls is MemoryMamba


@pytest.mark.parametrize("ablation", sorted(ABLATIONS))
def test_shapes_for_every_ablation(ablation):
    model = _tiny(ablation)
    cfg = model.cfg
    out = model.forward_with_aux(torch.rand(3, cfg.in_chans, 32, 32))
    assert out.logits.shape == (3, cfg.num_classes)
    assert len(out.aux) == sum(cfg.depths)
    for a in out.aux:
        assert (a.coarse_query is not None) == cfg.use_coarse_memory
        assert (a.fine_feature is not None) == cfg.use_fine_memory
        if a.coarse_query is not None:
            assert a.coarse_query.shape == (3, cfg.coarse_slots)
        if a.fine_readout is not None:
            assert a.fine_readout.shape == a.fine_feature.shape


def test_no_memory_ablation_has_no_memory_parameters():
    names = [n for n, _ in _tiny("no_memory").named_parameters()]
    assert not any(k in n for n in names for k in ("coarse", "fine", "nce_proj", "memory_conv"))


def test_fusion_switch_and_similarity_change_the_output():
    x = torch.rand(2, 1, 32, 32)
    base = _tiny(memory_scale=1.0)
    outs = {}
    for name, kw in {"cosine": {}, "l1": {"similarity": "l1"}, "no_fusion": {"use_fusion": False}}.items():
        m = MemoryMamba(dataclasses.replace(base.cfg, **kw))
        m.load_state_dict(base.state_dict())
        outs[name] = m.eval()(x)
    assert not torch.allclose(outs["cosine"], outs["l1"])
    assert not torch.allclose(outs["cosine"], outs["no_fusion"])


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_forward_shape(name):
    cfg = PRESETS[name]
    if name == "paper":  # full scale: check the structure on a small input only
        cfg = dataclasses.replace(cfg, depths=(1, 1, 1, 1))
        size = 32
    else:
        size = cfg.img_size
    model = MemoryMamba(cfg).eval()
    with torch.no_grad():
        y = model(torch.rand(1, cfg.in_chans, size, size))
    assert y.shape == (1, cfg.num_classes)


def test_paper_preset_scale():
    cfg = PRESETS["paper"]
    assert (cfg.embed_dim, cfg.depths, cfg.in_chans, cfg.img_size) == (96, (2, 2, 2, 2), 3, 224)
    assert cfg.stage_dims == [96, 192, 384, 768]


@pytest.mark.parametrize("size", [(29, 37), (7, 5), (64, 48)])
def test_odd_input_sizes(size):
    model = _tiny().eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, *size)).shape == (2, model.cfg.num_classes)


def test_every_parameter_gets_a_gradient():
    model = _tiny()
    x = torch.rand(4, 1, 32, 32)
    y = torch.tensor([0, 1, 2, 0])
    memory_mamba_loss(model.forward_with_aux(x), y, model.cfg).total.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert missing == []


def test_losses_finite_and_fall_on_a_tiny_overfit():
    model = _tiny(lambda_coarse=1.0, lambda_fine=1.0)
    torch.manual_seed(1)
    x = torch.rand(8, 1, 32, 32)
    y = torch.arange(8) % 3
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = last = None
    for _ in range(25):
        parts = memory_mamba_loss(model.forward_with_aux(x), y, model.cfg)
        vals = parts.as_floats()
        assert all(torch.isfinite(torch.tensor(v)) for v in vals.values())
        first = first or vals
        last = vals
        opt.zero_grad()
        parts.total.backward()
        opt.step()
    for k in ("total", "cls", "coarse", "fine"):
        assert last[k] < first[k], (k, first[k], last[k])


def test_contrastive_reading_penalises_close_different_classes_only():
    labels = torch.tensor([0, 1])
    same_dir = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    opposite = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert coarse_contrastive_loss(same_dir, labels, margin=1.0).item() == pytest.approx(1.0)
    assert coarse_contrastive_loss(opposite, labels, margin=1.0).item() == pytest.approx(0.0)
    # one class only: nothing to push apart
    assert coarse_contrastive_loss(same_dir, torch.tensor([1, 1]), margin=1.0).item() == 0.0


def test_info_nce_prefers_matching_pairs():
    f = torch.eye(4)
    assert info_nce_loss(f, f, 0.5) < info_nce_loss(f, f.roll(1, 0), 0.5)
    # perfect alignment: loss = -log(e^2 / (e^2 + 3 e^0))
    expected = -torch.log(torch.exp(torch.tensor(2.0)) / (torch.exp(torch.tensor(2.0)) + 3))
    assert info_nce_loss(f, f, 0.5).item() == pytest.approx(expected.item(), rel=1e-5)


def test_save_load_gives_identical_outputs(tmp_path):
    model = _tiny().eval()
    x = torch.rand(2, 1, 32, 32)
    save_model(tmp_path / "m", "memory_mamba", model, model.cfg, {"classes": list("abcdef")})
    loaded = load_model(tmp_path / "m")
    assert loaded.family == "classifier" and loaded.config == model.cfg
    with torch.no_grad():
        assert torch.equal(model(x), loaded.model(x))


def _saved(tmp_path):
    model = _tiny()
    d = save_model(tmp_path / "m", "memory_mamba", model, model.cfg)
    return d, load_file(str(d / "model.safetensors"))


def test_checkpoint_missing_tensor_is_a_clear_error(tmp_path):
    d, state = _saved(tmp_path)
    key = next(k for k in state if "coarse.memory" in k)
    del state[key]
    save_file(state, str(d / "model.safetensors"))
    with pytest.raises(CheckpointError, match="missing tensors: .*coarse.memory"):
        load_model(d)


def test_checkpoint_wrong_shape_is_a_clear_error(tmp_path):
    d, _ = _saved(tmp_path)
    meta = json.loads((d / "config.json").read_text())
    meta["config"]["coarse_slots"] = 5  # config now disagrees with the stored memory bank
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="wrong shapes"):
        load_model(d)


def test_untrained_logits_depend_on_the_image():
    """Regression: with two std-0.02 head layers and unit-gain scan branches the untrained logits
    hardly depended on the image (spread 0.0005 here), and training on magnetic tiles, whose
    class signal is weak and local, never left the class prior."""
    torch.manual_seed(0)
    model = MemoryMamba(preset("test_tiny")).eval()
    with torch.no_grad():
        logits = model(torch.rand(8, 1, 32, 32))
    assert float(logits.std(dim=0).mean()) > 0.01
    assert all(float(b.norm.weight.mean()) < 0.5 for stage in model.stages for b in stage)


def test_per_image_input_norm_ignores_exposure_and_gain():
    """Dark, low-contrast images (magnetic tiles) differ mostly in exposure; with per-image
    standardisation the network sees the same input whatever the exposure and gain."""
    torch.manual_seed(1)
    x = 0.05 * torch.rand(2, 1, 32, 32) + 0.2  # dark and flat-ish, like the tiles
    brighter = 1.8 * x + 0.15
    per_image = _tiny(input_norm="per_image").eval()
    assert torch.allclose(per_image(x), per_image(brighter), atol=1e-5)
    fixed = MemoryMamba(dataclasses.replace(per_image.cfg, input_norm="fixed")).eval()
    fixed.load_state_dict(per_image.state_dict())
    assert not torch.allclose(fixed(x), fixed(brighter), atol=1e-3)
    flat = per_image(torch.full((1, 1, 32, 32), 0.3))  # std 0: mapped to zeros, not to NaN
    assert torch.isfinite(flat).all()


def test_config_validation():
    with pytest.raises(ValueError, match="input_norm"):
        preset("test_tiny", input_norm="batch")
    with pytest.raises(ValueError, match="similarity"):
        preset("test_tiny", similarity="dot")
    with pytest.raises(KeyError, match="preset"):
        preset("huge")


def test_paper_block_has_no_feed_forward_and_cpu_preset_has_one():
    assert PRESETS["paper"].mlp_ratio == 0 and PRESETS["test_tiny"].mlp_ratio == 0
    assert not any(".mlp." in n for n, _ in _tiny().named_parameters())
    with_mlp = _tiny(mlp_ratio=2.0, stem="conv3")
    assert any(".mlp." in n for n, _ in with_mlp.named_parameters())
    y = torch.tensor([0, 1, 2])
    memory_mamba_loss(with_mlp.forward_with_aux(torch.rand(3, 1, 32, 32)), y, with_mlp.cfg).total.backward()
    assert all(p.grad is not None for p in with_mlp.parameters())
