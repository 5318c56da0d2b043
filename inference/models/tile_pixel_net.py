"""A small fully-convolutional pixel head for the tile defect model (brief U, issue 19).

The shipped pixel head (``tile_defect.pixel_features`` -> one logistic regression per cell) weighs
each hand-made plane the same everywhere. This head reads the *same* planes and may combine them
non-linearly and over a neighbourhood: a 3-level encoder-decoder plus a 1x1 linear path (what
the linear head can say), all at half the map size (the pixel figures read every 2nd cell; one
core must train it 24 times in the benchmark's budget), bilinear back to the map size. Its output logit takes the linear head's place in
``combined_map``. Adopted by benchmarks/results/tile-pixel-net.md's rule; ``TileDefect`` holds
one when its config's ``pixel_head`` is "net" (brief W).

Pure torch; no Qt, no training code.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class PixelNetConfig:
    in_channels: int  # = TileDefectConfig.pixel_dim (60 for the "tile" preset)
    widths: tuple[int, int, int] = (16, 32, 64)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def three_widths(widths: Sequence[int]) -> tuple[int, int, int]:
    """A config's widths (JSON gives a list) as the three encoder widths the net takes."""
    c1, c2, c3 = (int(w) for w in widths)
    return c1, c2, c3


class TilePixelNet(nn.Module):
    """(b, in_channels, m, m) standardised pixel features -> (b, m, m) defect logits.

    Input standardisation (per channel, from the training tiles) is held in buffers so a saved
    net is self-contained.
    """

    in_mean: torch.Tensor   # buffers (typed for mypy: register_buffer makes them attributes)
    in_scale: torch.Tensor

    def __init__(self, cfg: PixelNetConfig) -> None:
        super().__init__()
        self.config = cfg
        c1, c2, c3 = cfg.widths
        self.register_buffer("in_mean", torch.zeros(cfg.in_channels))
        self.register_buffer("in_scale", torch.ones(cfg.in_channels))
        self.stem = nn.Sequential(nn.Conv2d(cfg.in_channels, c1, 1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(inplace=True))
        self.enc1 = _block(c1, c1)
        self.enc2 = nn.Sequential(_block(c1, c2), _block(c2, c2))
        self.enc3 = nn.Sequential(_block(c2, c3), _block(c3, c3))
        self.dec2 = _block(c3 + c2, c2)
        self.dec1 = _block(c2 + c1, c1)
        self.out = nn.Conv2d(c1, 1, 1)
        self.linear = nn.Conv2d(cfg.in_channels, 1, 1)  # a linear path beside the conv path

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """Full-size features (b, c, m, m) -> logits (b, m, m): the net runs at half size (the
        pixel figures read every 2nd cell, and the planes are smooth), bilinear back up."""
        half = self.forward_half(F.avg_pool2d(f, 2))
        return F.interpolate(half[:, None], size=f.shape[-2:], mode="bilinear", align_corners=False)[:, 0]

    def forward_half(self, h: torch.Tensor) -> torch.Tensor:
        """Features average-pooled to half size (b, c, m/2, m/2) -> logits at that size (training)."""
        x = (h - self.in_mean[:, None, None]) / self.in_scale[:, None, None]
        e1 = self.enc1(self.stem(x))
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([F.interpolate(e3, size=e2.shape[-2:], mode="bilinear", align_corners=False), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, size=e1.shape[-2:], mode="bilinear", align_corners=False), e1], 1))
        return (self.out(d1) + self.linear(x))[:, 0]


def n_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
