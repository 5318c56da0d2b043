"""Masked-patch prediction: the segmenter's (MiM-ISTD) station pretraining objective (ADR 0037).

A batch of frames, standardised over the whole frame as the segmenter sees them, is cut into
random crops (random position, random flips); a random half of each crop's ``patch`` x ``patch``
squares is set to the frame mean (0 after standardisation), and the whole network — encoder and
decoder — must predict the standardised intensity of the hidden pixels from what it still sees
(SimMIM's L1 on the masked pixels only). The prediction comes from a temporary output layer on
the decoder's last feature map (``MiMISTD.decode``, the map the segmenter's 1x1 head reads): a
1x1 convolution to ``word_px``² values per feature pixel, rearranged to full resolution. That
layer is thrown away; the segmenter's own head is never trained here.

Every random choice (crops, flips, masks) is drawn from the step's generator, so a resumed run
draws the same ones as an uninterrupted run.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from inference.models.mim_istd import MiMISTD, standardise


@dataclass(frozen=True)
class MaskConfig:
    ratio: float = 0.5   # share of each crop's patches hidden
    patch: int = 8       # side of a hidden square, pixels
    crop: int = 128      # training crop side (the segmenter trains on crops of this side too)

    def __post_init__(self) -> None:
        if not 0.0 < self.ratio < 1.0:
            raise ValueError(f"--mask-ratio must be in (0, 1), not {self.ratio}")
        if self.patch < 1 or self.crop < self.patch or self.crop % self.patch:
            raise ValueError(f"--crop {self.crop} must be a positive multiple of --mask-patch {self.patch}")

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "flips": True, "fill": "frame mean (0 after standardisation)",
                "loss": "L1 on the masked pixels' standardised intensity"}


def random_crops(x: torch.Tensor, side: int, gen: torch.Generator) -> torch.Tensor:
    """One random ``side`` x ``side`` crop of each frame, each flipped left-right / up-down at random."""
    b, _, h, w = x.shape
    if side > min(h, w):
        raise ValueError(f"--crop {side} is larger than the frames ({h}x{w}); lower --crop or raise --img-size")
    tops = torch.randint(0, h - side + 1, (b,), generator=gen).tolist()
    lefts = torch.randint(0, w - side + 1, (b,), generator=gen).tolist()
    flips = torch.rand(b, 2, generator=gen).lt(0.5).tolist()
    out = []
    for i in range(b):
        c = x[i, :, tops[i]:tops[i] + side, lefts[i]:lefts[i] + side]
        dims = [d for d, f in zip((-1, -2), flips[i]) if f]
        out.append(c.flip(dims) if dims else c)
    return torch.stack(out)


def random_mask(b: int, side: int, cfg: MaskConfig, gen: torch.Generator) -> torch.Tensor:
    """(b, 1, side, side) float mask, 1 on hidden pixels: exactly round(ratio x patches) squares per crop."""
    g = side // cfg.patch
    k = min(g * g - 1, max(1, round(cfg.ratio * g * g)))
    order = torch.rand(b, g * g, generator=gen).argsort(dim=1)[:, :k]
    m = torch.zeros(b, g * g).scatter_(1, order, 1.0).view(b, 1, g, g)
    return m.repeat_interleave(cfg.patch, dim=2).repeat_interleave(cfg.patch, dim=3)


class PixelPredictor(nn.Module):
    """The temporary output layer: decoder features at 1/r resolution -> one value per input pixel."""

    def __init__(self, in_dim: int, channels: int, r: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_dim, channels * r * r, 1)
        self.shuffle = nn.PixelShuffle(r)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.proj(features))


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the hidden pixels (every channel) only."""
    hidden = mask.expand_as(target)
    return ((pred - target).abs() * hidden).sum() / hidden.sum().clamp_min(1.0)


def masked_prediction_loss(model: MiMISTD, predictor: PixelPredictor, frames: torch.Tensor, cfg: MaskConfig,
                           gen: torch.Generator, device: torch.device | str) -> torch.Tensor:
    """One step's loss: ``frames`` (b, c, h, w) in [0, 1] -> standardise, crop, hide patches, predict them."""
    target = random_crops(standardise(frames), cfg.crop, gen)  # over the whole frame, as the segmenter
    mask = random_mask(target.shape[0], cfg.crop, cfg, gen)
    target, mask = target.to(device), mask.to(device)
    pred = predictor(model.decode(target * (1.0 - mask)))
    return masked_l1(pred, target, mask)
