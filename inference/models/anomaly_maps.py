"""Map-level pieces shared by the anomaly models: smoothing, per-position standardisation and
per-position appearance statistics.

The appearance statistics are the pixel-Gaussian baseline's (pixel_gaussian.py) and also an
optional third term of the pattern model (pattern_anomaly.py): on aligned parts a per-position
"golden template with a tolerance band" of blurred colour and local contrast outlines the whole
extent of a large structural defect (a missing arc of a rim), which the pattern and memory-bank
terms, built for small defects and textures, only partly light up. One implementation keeps the
baseline and the term comparable.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from inference.ssm import speed


def gaussian_smooth(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (b, h, w) maps with reflect borders."""
    if sigma <= 0:
        return maps
    r = max(1, int(math.ceil(3 * sigma)))
    r = min(r, min(maps.shape[-2:]) - 1)
    k = torch.arange(-r, r + 1, dtype=maps.dtype, device=maps.device)
    k = torch.exp(-0.5 * (k / sigma) ** 2)
    k = k / k.sum()
    if speed.enabled() and maps.device.type == "cpu" and maps.dtype == torch.float32 and not maps.requires_grad:
        return _smooth_cv2(maps, k)
    x = maps[:, None]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))
    return x[:, 0]


def _smooth_cv2(maps: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The same separable blur by OpenCV (same taps; torch's "reflect" is OpenCV's BORDER_REFLECT_101):
    a single-channel ``conv2d`` with a 1 x 97 kernel is several times slower on a CPU, and OpenCV
    releases the GIL (issue 21: the texture model's features were most of its time)."""
    taps = k.numpy().astype(np.float32)
    planes = maps.detach().contiguous().numpy()
    out = np.empty_like(planes)
    for i, plane in enumerate(planes.reshape(-1, *planes.shape[-2:])):
        out.reshape(-1, *planes.shape[-2:])[i] = cv2.sepFilter2D(plane, cv2.CV_32F, taps, taps,
                                                                  borderType=cv2.BORDER_REFLECT_101)
    return torch.from_numpy(out)


def set_position_statistics(maps: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Per-position mean and floored std of good-image maps (n, s, s), written in place.

    The floor (a tenth of the global std) keeps flat regions from turning tiny fluctuations
    into alarms.
    """
    sd = maps.std(0, unbiased=maps.shape[0] > 1) if maps.shape[0] > 1 else torch.zeros_like(maps[0])
    mean.copy_(maps.mean(0))
    std.copy_(sd + 0.1 * maps.std() + 1e-3)


def appearance_features(x: torch.Tensor, blur_sigma: float, window: int) -> torch.Tensor:
    """Normalised images (b, c, h, w) -> (b, 2c, h, w): blurred colour, then local contrast
    (standard deviation in a ``window`` x ``window`` neighbourhood)."""
    b, c, h, w = x.shape
    blurred = gaussian_smooth(x.reshape(b * c, h, w), blur_sigma).view(b, c, h, w)
    r = window // 2
    padded = F.pad(x, (r, r, r, r), mode="reflect")
    mu = F.avg_pool2d(padded, window, stride=1)
    var = (F.avg_pool2d(padded * padded, window, stride=1) - mu * mu).clamp(min=0)
    return torch.cat([blurred, var.sqrt()], dim=1)


def fit_appearance(features: torch.Tensor, std_floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position mean and floored std of good images' features (n, f, h, w)."""
    return features.mean(0), features.std(0, unbiased=features.shape[0] > 1).clamp(min=std_floor)


def appearance_deviation(features: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Root-mean-square z-score over the features (b, f, h, w) -> (b, h, w), unsmoothed."""
    return ((features - mean) / std).pow(2).mean(1).sqrt()


def leave_one_out_deviation(features: torch.Tensor, std_floor: float, count: int) -> torch.Tensor:
    """``appearance_deviation`` of the first ``count`` of the good images (n, f, h, w), each
    against statistics of the other n - 1 images: the deviation a new good image gets.

    Scored against statistics that include themselves, fit images look more normal than any
    unseen good image (most at the places that vary most), which would bias the per-position
    standardisation of the map. Needs n >= 3; with fewer, the in-sample statistics are used.
    """
    n = features.shape[0]
    if n < 3:
        mean, std = fit_appearance(features, std_floor)
        return appearance_deviation(features[:count], mean, std)
    f64 = features.double()
    s1, s2 = f64.sum(0), (f64 * f64).sum(0)
    out = []
    for i in range(min(count, n)):
        fi = f64[i]
        mean = (s1 - fi) / (n - 1)
        var = ((s2 - fi * fi) - (n - 1) * mean * mean) / (n - 2)
        std = var.clamp(min=0).sqrt().clamp(min=std_floor)
        out.append(appearance_deviation(fi[None], mean, std).float())
    return torch.cat(out)


def edge_profiles(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (b, f, h, w) -> row profile (b, f, h, 1) and column profile (b, f, w, 1): the
    features averaged along each row / column, minus the image's median profile value.

    A band along an edge shifts the profile over a run of rows (or columns); taking off the
    median removes the image's overall brightness, which varies between good parts.
    """
    rows, cols = features.mean(3), features.mean(2)
    return ((rows - rows.median(2, keepdim=True).values)[..., None],
            (cols - cols.median(2, keepdim=True).values)[..., None])


def profile_map(row_dev: torch.Tensor, col_dev: torch.Tensor) -> torch.Tensor:
    """Per-row (b, h, 1) and per-column (b, w, 1) deviations -> (b, h, w) map, the larger of the two."""
    return torch.maximum(row_dev, col_dev.transpose(1, 2))


ALONE_FUSIONS = ("bank", "stats", "band")  # a term fused "alone" replaces the map before it


def fuse_maps(z: torch.Tensor, zb: torch.Tensor, fusion: str, weight: float) -> torch.Tensor:
    """A map ``z`` with a second term ``zb``: "none" z, "bank"/"stats"/"band" zb alone, "sum" z + w*zb, "max"."""
    if fusion == "none":
        return z
    if fusion in ALONE_FUSIONS:
        return zb
    return z + weight * zb if fusion == "sum" else torch.maximum(z, weight * zb)
