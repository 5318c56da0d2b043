"""Train the learned pixel head (models/tile_pixel_net.py) on out-of-fold planes (brief U).

The net is trained like the linear head it would replace (``tile_defect_fit.fit_heads``): on the
same 60 planes of the same tiles (good tiles with empty masks, defect tiles with masks), with the
same class balance (positive and negative pixels carry equal total weight), so its logit has the
same meaning in ``combined_map``. Every setting here was fixed before any run
(benchmarks/results/tile-pixel-net.md); nothing is chosen on a fold.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..models.tile_defect import TileDefectConfig, pixel_features
from ..models.tile_pixel_net import PixelNetConfig, TilePixelNet
from .groups import balanced_folds
from .tile_defect_fit import Planes


@dataclass(frozen=True)
class NetTraining:
    epochs: int = 15
    lr: float = 2e-3  # AdamW, cosine decay to 0 over the run
    weight_decay: float = 1e-4
    batch: int = 16
    widths: tuple[int, int, int] = (16, 32, 64)


def half_inputs(cfg: TileDefectConfig, p: Planes, knn_stats: tuple[float, float]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features (n, c, m/2, m/2), soft targets (n, m/2, m/2), usable (n,)): each tile's pixel
    features average-pooled 2x2 (what the net's conv path reads), its mask pooled alike, and
    whether it can train the net (a good tile, or a defect with a mask), as the linear head."""
    mean, std = knn_stats
    n, m = len(p.images), cfg.map_size
    feats = np.zeros((n, cfg.pixel_dim, m // 2, m // 2), np.float32)
    targets = np.zeros((n, m // 2, m // 2), np.float32)
    for i in range(n):
        f = torch.from_numpy(pixel_features(p.z[i], (p.knn[i] - mean) / std, cfg))
        feats[i] = F.avg_pool2d(f[None], 2)[0].numpy()
        mk = p.masks[i]
        if mk is not None:
            targets[i] = F.avg_pool2d(torch.from_numpy(mk.astype(np.float32))[None, None], 2)[0, 0].numpy()
    return feats, targets, np.array([mk is not None for mk in p.masks])


def train_net(feats: np.ndarray, targets: np.ndarray, good: np.ndarray, idx: Sequence[int] | np.ndarray, seed: int,
              tr: NetTraining = NetTraining()) -> TilePixelNet:
    """A net from the tiles ``idx`` (each usable). Each epoch: every defect tile and as many good
    tiles drawn afresh, good pixels weighted by the inverse draw rate; flips only."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    ids = np.asarray(idx)
    defects, goods = ids[~good[ids]], ids[good[ids]]
    n_draw = min(len(defects), len(goods))
    good_weight = len(goods) / max(n_draw, 1)
    pos = float(targets[ids].sum())
    total = float(len(ids) * targets[0].size)
    w_pos, w_neg = total / (2 * pos), total / (2 * (total - pos))

    net = TilePixelNet(PixelNetConfig(feats.shape[1], tr.widths))
    x = torch.from_numpy(feats[ids])
    net.in_mean.copy_(x.mean((0, 2, 3)))
    net.in_scale.copy_(x.std((0, 2, 3)).clamp_min(1e-6))
    del x
    steps_per_epoch = max(1, (len(defects) + n_draw) // tr.batch)  # a few tiles (a station's refit): one step
    opt = torch.optim.AdamW(net.parameters(), lr=tr.lr, weight_decay=tr.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, tr.epochs * steps_per_epoch) / (tr.epochs * steps_per_epoch))))
    net.train()
    for _ in range(tr.epochs):
        order = rng.permutation(np.r_[defects, rng.choice(goods, n_draw, replace=False)])
        for b in range(steps_per_epoch):
            rows = order[b * tr.batch:(b + 1) * tr.batch]
            fb, tb = feats[rows], targets[rows]
            flip_y, flip_x = rng.random(len(rows)) < 0.5, rng.random(len(rows)) < 0.5
            fb = np.stack([f[:, ::-1] if fy else f for f, fy in zip(fb, flip_y)])
            fb = np.stack([f[:, :, ::-1] if fx else f for f, fx in zip(fb, flip_x)])
            tb = np.stack([t[::-1] if fy else t for t, fy in zip(tb, flip_y)])
            tb = np.stack([t[:, ::-1] if fx else t for t, fx in zip(tb, flip_x)])
            t = torch.from_numpy(np.ascontiguousarray(tb))
            logit = net.forward_half(torch.from_numpy(np.ascontiguousarray(fb)))
            tile_w = torch.from_numpy(np.where(good[rows], good_weight, 1.0).astype(np.float32))[:, None, None]
            w = tile_w * (w_pos * t + w_neg * (1 - t))
            loss = (tile_w * (w_pos * t * F.softplus(-logit) + w_neg * (1 - t) * F.softplus(logit))).sum() / w.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


@torch.no_grad()
def predict(net: TilePixelNet, feats: np.ndarray, idx: Sequence[int], size: int) -> np.ndarray:
    """Logit maps (len(idx), size, size) of the tiles ``idx`` from their half-size features (the
    same as ``net(full features)``: the net pools them first)."""
    out = []
    for b in range(0, len(idx), 32):
        half = net.forward_half(torch.from_numpy(feats[np.asarray(idx[b:b + 32])]))
        out.append(F.interpolate(half[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy())
    return np.concatenate(out)


def out_of_fold_net_maps(p: Planes, feats: np.ndarray, targets: np.ndarray, usable: np.ndarray,
                         groups: Sequence[str], n_folds: int, seed: int, tr: NetTraining = NetTraining(),
                         log: Callable[[str], None] = print) -> np.ndarray:
    """(n, m, m): each tile's map from a net trained without its fold (as ``out_of_fold_heads``)."""
    n, m = len(p.images), p.z.shape[-1]
    maps = np.zeros((n, m, m), np.float32)
    good = ~p.labels
    for k, held in enumerate(balanced_folds(list(groups), n_folds)):
        fit = np.setdiff1d(np.arange(n), held)
        net = train_net(feats, targets, good, fit[usable[fit]], seed * 100 + k, tr)
        maps[held] = predict(net, feats, list(held), m)
        log(f"  fold {k + 1}/{n_folds}: trained on {int(usable[fit].sum())} tiles, mapped {len(held)}")
    return maps
