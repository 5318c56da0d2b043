"""Texture nearest-neighbour anomaly model: multi-scale local features + a memory of good patches.

Why it exists (issue 19, item 4): magnetic tiles are unaligned, of varying size and exposure,
and carry a strong vertical striation. The pattern model (pattern_anomaly.py) and its
per-position terms light the tile borders and the striation; the frozen NEU MemoryMamba features
(a PatchCore-style bank over them was tried first) respond to the fine striation too, so
their nearest-neighbour maps are noise. What separates blowholes, cracks, frays, breaks and
bands from good texture is local intensity structure at a few scales once each image's own
exposure is taken out. So:

- each image is standardised by its own mean and standard deviation (gain/offset invariant, and
  invariant to the config's mean/std normalisation, which is affine);
- features per pixel and scale sigma: the Gaussian-blurred value, its two derivatives (scaled
  by sigma, so every scale has comparable units) and the local standard deviation; averaged over
  ``stride`` x ``stride`` cells (one feature row per cell);
- fitting keeps a greedy k-centre coreset of the good images' rows (``bank_size`` rows), the
  PatchCore recipe without a pretrained network; the map is each cell's mean distance to its
  ``bank_k`` nearest bank rows, stretched to the input size and Gaussian-smoothed;
- ``density`` divides each distance by how spread out the good rows are around the nearest one
  (its mean distance to its ``density_k`` nearest bank rows, plus the bank's median of that): rare
  but normal cells (tile corners with background, chamfers) sit in sparse parts of the bank, where a
  plain distance raises false alarms; PatchCore's reweighting has the same aim;
- no position enters the rows (tiles are unaligned); the image score is the map's maximum
  inside ``score_margin`` pixels of the border.

Every choice above (scales, stride, bank size, k, blur, margin) was made by group-aware
cross-validation on the training split only (benchmarks/results/tileanomaly.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .anomaly_maps import gaussian_smooth
from .memory_bank import greedy_coreset, knn_distance, nearest_rows
from .registry import register

# Floor on an image's own standard deviation (normalised units): a flat image is not blown up.
MIN_IMAGE_STD = 1e-3


@dataclass(frozen=True)
class TextureKnnConfig:
    image_size: int = 256
    in_channels: int = 1
    mean: tuple = (0.5,)
    std: tuple = (0.25,)
    sigmas: tuple = (2.0, 4.0, 8.0, 16.0)
    stride: int = 8
    gradients: bool = True
    local_std: bool = True
    bank_size: int = 8192
    bank_k: int = 1
    density: bool = True
    density_k: int = 3
    smoothing_sigma: float = 6.0
    score_margin: int = 0

    def __post_init__(self) -> None:
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ValueError("mean/std need one value per input channel")
        if not self.sigmas or any(s <= 0 for s in self.sigmas):
            raise ValueError(f"sigmas must be positive, got {self.sigmas}")
        if self.stride < 1 or self.image_size % self.stride:
            raise ValueError(f"stride must divide image_size, got {self.stride} and {self.image_size}")
        if self.bank_size < 1 or not 1 <= self.bank_k <= self.bank_size:
            raise ValueError(f"bank_size must be >= 1 and bank_k in [1, bank_size], got {self.bank_size}, {self.bank_k}")
        if self.density and not 1 <= self.density_k < self.bank_size:
            raise ValueError(f"density_k must be in [1, bank_size), got {self.density_k}")
        if not 0 <= self.score_margin < self.image_size // 2:
            raise ValueError(f"score_margin must be in [0, image_size/2), got {self.score_margin}")

    @property
    def feature_dim(self) -> int:
        per_scale = 1 + 2 * int(self.gradients) + int(self.local_std)
        return self.in_channels * len(self.sigmas) * per_scale


PRESETS = {
    "test_tiny": TextureKnnConfig(image_size=32, sigmas=(1.0, 2.0), stride=4, bank_size=64, smoothing_sigma=1.0),
    "cpu": TextureKnnConfig(),
    # Magnetic tiles: wider blur and a 32-px score margin, chosen by 3-fold session-grouped CV on the
    # train split (benchmarks/results/tile-anomaly.md): CV image / pixel AUROC 0.768 / 0.673.
    "tile": TextureKnnConfig(smoothing_sigma=12.0, score_margin=32),
}
# What `train anomaly --arch texture_knn` takes without --preset (magnetic tiles: --preset tile).
DEFAULT_PRESET = "cpu"


def _derivatives(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences along y and x of (b, h, w), zero on the outer row/column."""
    gy, gx = torch.zeros_like(g), torch.zeros_like(g)
    gy[:, 1:-1] = (g[:, 2:] - g[:, :-2]) / 2
    gx[:, :, 1:-1] = (g[:, :, 2:] - g[:, :, :-2]) / 2
    return gy, gx


def texture_features(x: torch.Tensor, cfg: TextureKnnConfig) -> torch.Tensor:
    """Images (b, c, s, s) -> feature rows per cell (b, s/stride, s/stride, feature_dim)."""
    b, c, h, w = x.shape
    flat = x.reshape(b * c, h, w)
    mu = flat.mean(dim=(1, 2), keepdim=True)
    sd = flat.std(dim=(1, 2), keepdim=True).clamp_min(MIN_IMAGE_STD) if h * w > 1 else torch.ones_like(mu)
    z = (flat - mu) / sd
    feats = []
    for s in cfg.sigmas:
        g = gaussian_smooth(z, float(s))
        feats.append(g)
        if cfg.gradients:
            gy, gx = _derivatives(g)
            feats += [gy * s, gx * s]
        if cfg.local_std:
            feats.append((gaussian_smooth(z * z, float(s)) - g * g).clamp_min(0).sqrt())
    f = torch.stack(feats, 1).view(b, c * len(feats), h, w)
    if cfg.stride > 1:
        f = F.avg_pool2d(f, cfg.stride, cfg.stride)
    return f.permute(0, 2, 3, 1).contiguous()


@register("texture_knn", "anomaly", TextureKnnConfig)
class TextureKnn(nn.Module):
    bank: torch.Tensor  # (bank_size, feature_dim), set by ``set_bank``
    bank_scale: torch.Tensor  # (bank_size,): each row's mean distance to its density_k nearest rows

    def __init__(self, config: TextureKnnConfig | None = None) -> None:
        super().__init__()
        cfg = config or TextureKnnConfig()
        self.config = cfg
        self.register_buffer("bank", torch.zeros(cfg.bank_size, cfg.feature_dim))
        self.register_buffer("bank_scale", torch.ones(cfg.bank_size))
        # A learnable-free model still exposes one parameter so generic code (device lookup) runs.
        self.temperature = nn.Parameter(torch.ones(()), requires_grad=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return texture_features(x, self.config)

    @torch.no_grad()
    def bank_rows(self, images: torch.Tensor, rows_per_image: int = 256, seed: int = 0) -> torch.Tensor:
        """Candidate rows from normalised good images (n, c, s, s): up to ``rows_per_image`` random
        cells of each (all cells when fewer), the pool the coreset picks from."""
        f = self.features(images)
        n, gh, gw, d = f.shape
        flat = f.reshape(n, gh * gw, d)
        if rows_per_image >= gh * gw:
            return flat.reshape(-1, d)
        g = torch.Generator().manual_seed(seed)
        idx = torch.stack([torch.randperm(gh * gw, generator=g)[:rows_per_image] for _ in range(n)])
        return torch.gather(flat, 1, idx.to(flat.device)[..., None].expand(-1, -1, d)).reshape(-1, d)

    @torch.no_grad()
    def set_bank(self, rows: torch.Tensor, seed: int = 0, progress: Callable[[int], None] | None = None) -> None:
        """Keep a greedy k-centre coreset of ``rows`` (at least ``bank_size`` of them) as the bank
        (``progress``: see ``greedy_coreset``)."""
        if len(rows) < self.config.bank_size:
            raise ValueError(f"{len(rows)} candidate rows for a bank of {self.config.bank_size}; "
                             "use a smaller bank_size or more good images")
        pick = greedy_coreset(rows.float().cpu(), self.config.bank_size, seed, progress)
        self.bank.copy_(rows[pick.to(rows.device)])
        if self.config.density:
            ids = torch.arange(len(self.bank), device=self.bank.device)
            self.bank_scale.copy_(knn_distance(self.bank, self.bank, self.config.density_k, query_ids=ids, bank_ids=ids))

    def _distances(self, rows: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Each row's mean distance to its ``bank_k`` nearest bank rows, divided by the density
        scale of the nearest one when ``density`` is on -> (n,)."""
        cfg = self.config
        if not cfg.density:
            return knn_distance(rows, self.bank, cfg.bank_k)
        b2 = (self.bank * self.bank).sum(1)
        floor = self.bank_scale.median()
        out = []
        for s in range(0, len(rows), chunk):
            q = rows[s:s + chunk]
            if cfg.bank_k == 1:
                part, nearest = nearest_rows(q, self.bank, b2)
                near, idx = (part + (q * q).sum(1))[:, None], nearest[:, None]
            else:
                d2 = torch.addmm(b2, q, self.bank.T, alpha=-2.0) + (q * q).sum(1, keepdim=True)
                near, idx = d2.topk(cfg.bank_k, dim=1, largest=False)
            dist = near.clamp_min(0).sqrt().mean(1)
            out.append(dist / (self.bank_scale[idx[:, 0]] + floor))
        return torch.cat(out) if out else rows.new_zeros(0)

    @torch.no_grad()
    def anomaly_map(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        f = self.features(x)
        b, gh, gw, d = f.shape
        dist = self._distances(f.reshape(-1, d)).view(b, 1, gh, gw)
        m = F.interpolate(dist, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        return gaussian_smooth(m, cfg.smoothing_sigma)

    @torch.no_grad()
    def score(self, maps: torch.Tensor) -> torch.Tensor:
        r = self.config.score_margin
        inner = maps[:, r:maps.shape[1] - r, r:maps.shape[2] - r] if r else maps
        return inner.flatten(1).amax(1)
