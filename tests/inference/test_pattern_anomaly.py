"""Pattern generative + contrastive anomaly model: shapes, gradients, heatmap geometry, checkpoints."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.checkpoints import CheckpointError, load_model, save_model
from inference.models import registry
from inference.models.pattern_anomaly import (
    PRESETS,
    PatternAnomaly,
    PatternAnomalyConfig,
    preset,
)
from inference.models.pattern_anomaly_fit import load_pretrained_backbone
from inference.training.anomaly_train import TrainOptions, pattern_step
from tests.tiny_models import one_thread  # noqa: F401  (autouse)


def _tiny(**kw) -> PatternAnomaly:
    torch.manual_seed(0)
    return PatternAnomaly(preset("test_tiny", **kw)).eval()


@pytest.mark.parametrize("kw", [{}, {"mixer": "ss2d"}, {"bidirectional": False}, {"axes": 2},
                                {"in_channels": 1, "mean": (0.5,), "std": (0.25,)}])
def test_shapes_per_switch(kw):
    m = _tiny(**kw)
    c = m.config
    x = torch.randn(2, c.in_channels, c.image_size, c.image_size)
    out = m(x, oy=3, ox=5)  # shifted grid: one more cell per axis
    ny = nx = c.image_size // c.patch_size + 1
    per_row = (nx - 2) * (2 if c.bidirectional else 1)
    k = 2 * ny * per_row
    t = c.tokens_per_side
    assert out["predicted"].shape == out["real"].shape == (k, c.in_channels, c.patch_size, c.patch_size)
    assert out["logits"].shape == (k, t, t)
    assert m.anomaly_map(x).shape == (2, c.image_size, c.image_size)


def test_presets_and_config_validation():
    assert set(PRESETS) >= {"test_tiny", "cpu", "paper"}
    assert registry.spec("pattern_anomaly").family == "anomaly"
    with pytest.raises(ValueError, match="3 cells"):
        PatternAnomalyConfig(image_size=32, patch_size=16)
    with pytest.raises(ValueError, match="mixer"):
        PatternAnomalyConfig(mixer="lstm")
    with pytest.raises(ValueError, match="axes"):
        PatternAnomalyConfig(axes=3)
    with pytest.raises(ValueError, match="score_margin"):
        PatternAnomalyConfig(score_margin=64)


def test_score_margin_leaves_the_border_out_of_the_image_score():
    maps = torch.zeros(2, 24, 24)
    maps[0, 0, 5] = 9.0  # a border peak
    maps[1, 12, 12] = 3.0  # an inner peak
    assert _tiny().score(maps).tolist() == [9.0, 3.0]
    assert _tiny(score_margin=2).score(maps).tolist() == [0.0, 3.0]


def _texture(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Diagonal stripes with a random phase and mild noise: a regular 'good' surface."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for _ in range(n):
        ph = rng.uniform(0, 2 * np.pi)
        img = 0.5 + 0.3 * np.sin((xx + yy) * 2 * np.pi / 6 + ph) + rng.normal(0, 0.02, (size, size))
        out.append(np.repeat(img[None], 3, 0))
    return np.clip(np.stack(out), 0, 1).astype(np.float32)


@pytest.mark.parametrize("mixer", ["attention", "ss2d"])
def test_every_parameter_gets_a_gradient(mixer):
    m = _tiny(mixer=mixer).train()
    opts = TrainOptions(data=Path("."), out=Path("."), defect_prob=1.0, swap_prob=0.25, triples_per_image=64)
    losses = pattern_step(m, _texture(4, 24), np.random.default_rng(0), opts, torch.device("cpu"))
    losses["loss"].backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert not missing, missing


def test_losses_fall_on_a_tiny_overfit():
    m = _tiny().train()
    opts = TrainOptions(data=Path("."), out=Path("."), defect_prob=1.0, triples_per_image=32)
    optim = torch.optim.Adam(m.parameters(), lr=3e-3)
    data = _texture(4, 24)
    hist = []
    for i in range(40):
        losses = pattern_step(m, data, np.random.default_rng(i), opts, torch.device("cpu"))
        optim.zero_grad()
        losses["loss"].backward()
        optim.step()
        hist.append((float(losses["gen"]), float(losses["cmp"])))
    first, last = np.mean(hist[:5], 0), np.mean(hist[-5:], 0)
    assert np.all(np.isfinite(hist))
    assert last[0] < 0.8 * first[0] and last[1] < first[1]


def test_heatmap_is_aligned_with_the_image():
    """With a comparer that reads brightness of the real cell, the map must peak on the bright spot.

    This pins the geometry: shifted grids, both directions, token placement, crop and smoothing.
    """
    check_peaks(_tiny(image_size=32, smoothing_sigma=1.0))


def test_heatmap_is_aligned_with_the_image_along_both_axes():
    """The column pass runs on the transposed image: its map must be transposed back."""
    check_peaks(_tiny(image_size=32, smoothing_sigma=1.0, axes=2))


def check_peaks(m: PatternAnomaly) -> None:
    s = m.config.token_size
    m.compare = lambda predicted, real, pos: torch.nn.functional.avg_pool2d(real.mean(1, keepdim=True), s)[:, 0] * 10.0
    for y, x in [(2, 3), (13, 20), (26, 28)]:
        img = torch.zeros(1, 3, 32, 32)
        img[:, :, y:y + 3, x:x + 3] = 1.0
        amap = m.anomaly_map(img)[0]
        py, px = np.unravel_index(int(amap.argmax()), amap.shape)
        # The map's resolution is one token (s pixels): the peak lies within a token of the spot.
        assert y - s <= py < y + 3 + s and x - s <= px < x + 3 + s, (y, x, py, px)
        far = amap.clone()
        far[max(0, y - 2 * s):y + 3 + 2 * s, max(0, x - 2 * s):x + 3 + 2 * s] = 0.5
        assert float(far.max()) < 0.5 + 1e-4 < 0.8 < float(amap.max())  # dark cells: logit 0


def test_save_load_identity_and_broken_checkpoints(tmp_path):
    m = _tiny()
    x = torch.randn(2, 3, 24, 24)
    save_model(tmp_path / "m", "pattern_anomaly", m, m.config, {"threshold": {"image": 0.5}})
    loaded = load_model(tmp_path / "m")
    assert loaded.family == "anomaly" and loaded.card["threshold"]["image"] == 0.5
    torch.testing.assert_close(loaded.model.anomaly_map(x), m.anomaly_map(x), rtol=0, atol=0)
    # A config that no longer matches the weights must be refused with the tensor named.
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    meta["config"]["dim"] = 32
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="wrong shapes"):
        load_model(tmp_path / "m")


def test_pretrained_backbone_loads_matching_tensors(tmp_path):
    from safetensors.torch import save_file

    m = _tiny()
    donor = _tiny()
    torch.nn.init.constant_(donor.encoder1.blocks[0].attn.qkv.weight, 0.123)
    state = {k: v.contiguous() for k, v in donor.encoder1.state_dict().items()}  # timm-style names
    save_file(state, str(tmp_path / "vit.safetensors"))
    counts = load_pretrained_backbone(m, tmp_path / "vit.safetensors")
    assert counts["encoder1"] == len(state) and counts["comparer"] == len(state)
    assert torch.all(m.comparer.blocks[0].attn.qkv.weight == 0.123)
    save_file({"head.weight": torch.zeros(3, 3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="no tensor matches"):
        load_pretrained_backbone(m, tmp_path / "other.safetensors")


def test_map_statistics_standardise_each_position():
    m = _tiny()
    x = torch.randn(4, 3, 24, 24)
    raw = m.raw_anomaly_map(x)
    torch.testing.assert_close(m.anomaly_map(x), raw)  # identity before fitting
    m.fit_map_statistics([x[:2], x[2:]])
    z = m.anomaly_map(x)
    assert float(z.mean(0).abs().max()) < 1e-4
    assert float(m.map_std.min()) > 0
