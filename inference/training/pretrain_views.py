"""The two random views of one image that station pretraining asks the backbone to match.

Each view models what changes between scenes and cameras on one production line while the
surface stays the same: crop and scale, flips and 90° turns (textures have no canonical
orientation), sensor gain and offset, gamma, focus blur and sensor noise. A backbone whose
pooled features agree across these views describes the surface, not the camera settings —
which is what a class layer trained later on a few labels needs (docs/adr/0018).

Geometry reuses the classifier's own augmentation (``classifier_data.augment_batch``: one
affine resample does crop, flips and turns); the photometric part is here because the
classifier's training deliberately keeps it mild (its labels are few, the views here are free).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from inference.training.classifier_data import AugmentConfig, augment_batch


@dataclass(frozen=True)
class ViewConfig:
    min_scale: float = 0.5      # crop side as a fraction of the image, resampled back to full size
    gain: float = 0.3           # multiply by U(1 - gain, 1 + gain)
    offset: float = 0.1         # add U(-offset, offset)
    gamma: float = 0.4          # raise to exp(U(-gamma, gamma))
    blur_prob: float = 0.3      # Gaussian blur with sigma U(0.3, max_blur) with this probability
    max_blur: float = 1.5
    noise: float = 0.03         # Gaussian noise with std U(0, noise)

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "flips": True, "rot90": True}


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image separable Gaussian blur, 5 taps (sigma <= 1.5 keeps the tails below 4 %)."""
    taps = torch.arange(-2, 3, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (taps[None, :] / sigma[:, None]) ** 2)
    k = k / k.sum(1, keepdim=True)                       # (b, 5)
    b, c, h, w = x.shape
    flat = x.reshape(1, b * c, h, w)
    kernel = k.repeat_interleave(c, 0)                   # (b*c, 5)
    flat = F.conv2d(F.pad(flat, (2, 2, 0, 0), mode="reflect"), kernel[:, None, None, :], groups=b * c)
    flat = F.conv2d(F.pad(flat, (0, 0, 2, 2), mode="reflect"), kernel[:, None, :, None], groups=b * c)
    return flat.reshape(b, c, h, w)


def random_view(x: torch.Tensor, cfg: ViewConfig, gen: torch.Generator) -> torch.Tensor:
    """(b, c, s, s) floats in [0, 1] -> one random view of each image, same shape, in [0, 1]."""
    b = x.shape[0]
    geometry = AugmentConfig(crop="scale", min_scale=cfg.min_scale, brightness=0.0, contrast=0.0)
    out = augment_batch(x, geometry, gen)

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return (lo + (hi - lo) * torch.rand(b, 1, 1, 1, generator=gen)).to(out)

    out = out * uniform(1 - cfg.gain, 1 + cfg.gain) + uniform(-cfg.offset, cfg.offset)
    out = out.clamp(0.0, 1.0).pow(torch.exp(uniform(-cfg.gamma, cfg.gamma)))
    blur = torch.rand(b, generator=gen) < cfg.blur_prob
    if blur.any():
        sigma = (0.3 + (cfg.max_blur - 0.3) * torch.rand(int(blur.sum()), generator=gen)).to(out)
        out[blur.to(out.device)] = _blur(out[blur.to(out.device)], sigma)
    noise = torch.randn(out.shape, generator=gen).to(out) * uniform(0.0, cfg.noise)
    return (out + noise).clamp(0.0, 1.0)
