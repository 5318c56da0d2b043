"""Baseline anomaly detector: a per-position Gaussian of simple local features.

Why this baseline: it is what an engineer would try first on aligned parts (a "golden
template" with a tolerance band) and needs no training beyond one pass of statistics, so it
shows what the learned pattern model adds. Features per pixel, computed at the model
resolution: the blurred colour and the local contrast (standard deviation in a small window).
Fitting stores their mean and standard deviation per position over the good images; the map
is the root-mean-square z-score over features, Gaussian-smoothed; the image score its maximum.
It has no notion of texture, so unaligned parts (tiles, fabrics) are its weak spot by design.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .anomaly_maps import appearance_deviation, appearance_features, fit_appearance, gaussian_smooth
from .registry import register


@dataclass(frozen=True)
class PixelGaussianConfig:
    image_size: int = 128
    in_channels: int = 3
    blur_sigma: float = 1.0
    contrast_window: int = 5
    std_floor: float = 0.02
    smoothing_sigma: float = 2.0
    mean: tuple = (0.5, 0.5, 0.5)
    std: tuple = (0.25, 0.25, 0.25)

    def __post_init__(self) -> None:
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ValueError("mean/std need one value per input channel")
        if self.contrast_window % 2 == 0:
            raise ValueError("contrast_window must be odd")


PRESETS = {
    "test_tiny": PixelGaussianConfig(image_size=24),
    "cpu": PixelGaussianConfig(),
}
# What `train anomaly --arch pixel_gaussian` takes without --preset.
DEFAULT_PRESET = "cpu"


@register("pixel_gaussian", "anomaly", PixelGaussianConfig)
class PixelGaussian(nn.Module):
    feat_mean: torch.Tensor  # buffers registered in __init__, typed for mypy
    feat_std: torch.Tensor

    def __init__(self, config: PixelGaussianConfig | None = None) -> None:
        super().__init__()
        cfg = config or PixelGaussianConfig()
        self.config = cfg
        n = 2 * cfg.in_channels
        s = cfg.image_size
        self.register_buffer("feat_mean", torch.zeros(n, s, s))
        self.register_buffer("feat_std", torch.ones(n, s, s))
        # A learnable-free model still exposes one parameter so generic training code can run.
        self.temperature = nn.Parameter(torch.ones(()))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return appearance_features(x, self.config.blur_sigma, self.config.contrast_window)

    @torch.no_grad()
    def fit(self, images: torch.Tensor) -> None:
        """Estimate per-position statistics from normalised good images (n, c, s, s)."""
        mean, std = fit_appearance(self.features(images), self.config.std_floor)
        self.feat_mean.copy_(mean)
        self.feat_std.copy_(std)

    @torch.no_grad()
    def anomaly_map(self, x: torch.Tensor) -> torch.Tensor:
        m = appearance_deviation(self.features(x), self.feat_mean, self.feat_std) * self.temperature
        return gaussian_smooth(m, self.config.smoothing_sigma)

    @torch.no_grad()
    def score(self, maps: torch.Tensor) -> torch.Tensor:
        return maps.flatten(1).amax(1)
