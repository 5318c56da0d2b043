"""The learned pixel head candidate (brief U): shapes, full-size = pooled path, and that its
training learns a planted defect plane on synthetic planes."""
from __future__ import annotations

import numpy as np
import torch

from inference.models.tile_pixel_net import PixelNetConfig, TilePixelNet, n_parameters
from inference.training.tile_pixel_net_fit import NetTraining, predict, train_net
from tests.tiny_models import one_thread  # noqa: F401  (autouse)


def test_net_maps_full_size_through_its_half_size_path():
    net = TilePixelNet(PixelNetConfig(6, (4, 8, 8))).eval()
    f = torch.randn(2, 6, 32, 32)
    with torch.no_grad():
        full = net(f)
        half = net.forward_half(torch.nn.functional.avg_pool2d(f, 2))
    assert full.shape == (2, 32, 32) and half.shape == (2, 16, 16)
    up = torch.nn.functional.interpolate(half[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    assert torch.allclose(full, up)  # what the benchmark's predict() does from pooled features
    assert 50_000 < n_parameters(TilePixelNet(PixelNetConfig(60))) < 150_000  # the brief's size


def test_training_finds_a_planted_defect_plane():
    rng = np.random.default_rng(0)
    n, c, s = 24, 4, 16
    feats = rng.normal(size=(n, c, s, s)).astype(np.float32)
    targets = np.zeros((n, s, s), np.float32)
    good = np.arange(n) < 12
    for i in np.flatnonzero(~good):
        y, x = rng.integers(2, s - 6, 2)
        targets[i, y:y + 4, x:x + 4] = 1.0
    feats[:, 2] += 3.0 * targets  # channel 2 carries the defect
    net = train_net(feats, targets, good, np.arange(n), seed=0, tr=NetTraining(epochs=20, batch=8, widths=(4, 8, 8)))
    maps = predict(net, feats, list(range(n)), 2 * s)
    up = np.repeat(np.repeat(targets, 2, 1), 2, 2) > 0.5
    assert maps[up].mean() > maps[~up].mean() + 2.0
