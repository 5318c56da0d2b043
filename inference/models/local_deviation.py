"""Self-referenced local deviation terms for small defects on unaligned, striated parts.

Issue 19 item 4: on magnetic tiles the texture kNN map (texture_knn.py) localises blowholes and
cracks but their image scores compete with good tiles' own border maxima, and a band of other
brightness (``uneven``) over a quarter of the tile is not a *texture* change at all. Each term
here compares a pixel with the tile's own robust background, not with other tiles:

- the image is standardised by its own median and MAD (gain/offset/exposure invariant); with
  ``destripe`` each column's median is removed too (the tiles' vertical grinding striation);
- ``dark_s`` / ``bright_s``: the darker / brighter-than-surroundings part of a difference of
  Gaussians at scale ``s`` (``G(s) - G(4 s)``): spots, blowholes, the dark ridge of a crack;
- ``rows``: each row's median deviation from the tile's median row (after the column medians are
  removed): a band of other brightness across the tile (``uneven``), spread over the whole row;
- ``edge_s``: gradient magnitude at scale ``s`` of the de-striped image (fray and break outlines);
- ``cols`` (brief K): the column twin of ``rows``, on the image *without* the column medians
  removed (they would take a vertical band with them): each column's median, smoothed along x at
  ``COL_SMOOTH`` px (finer than a band, coarser than the grinding striation), its absolute
  deviation from the profile's median, spread down the column;
- ``level_S`` (brief K): a coarse brightness deviation, ``|G(S) * z - median(G(S) * z)|`` at the
  ``level_sigmas`` S (16, 32 px of a 256 px tile), also without the column medians removed: a
  band of other brightness in any orientation, against the tile's own median.

Every term is then standardised *per position* by statistics of the same term on defect-free
training tiles (mean and spread on a coarse ``grid`` x ``grid`` grid, stretched to the input):
squashed tiles fill the input frame, so their borders, chamfers and lighting fall-off sit at
about the same place, and a term that is always high at the border of a good tile stops being a
false alarm there. The combined map is a weighted sum of the standardised terms' positive parts.

numpy + OpenCV only; a few ms a 256 x 256 tile on one core.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

TERMS = ("dark", "bright", "rows", "edge", "cols", "level")
COL_SMOOTH = 8.0  # px: the ``cols`` profile's smoothing along x
MAD_SCALE = 1.4826  # MAD -> standard deviation for a normal distribution
MIN_SPREAD = 1e-3


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(x, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REFLECT_101)


def robust_standardise(img: np.ndarray, destripe: bool) -> np.ndarray:
    """(h, w) float -> (img - median) / (1.4826 MAD), then each column's median removed (``destripe``)."""
    x = img.astype(np.float32)
    med = float(np.median(x))
    mad = float(np.median(np.abs(x - med))) * MAD_SCALE
    z = (x - med) / max(mad, MIN_SPREAD)
    if destripe:
        z = z - np.median(z, axis=0, keepdims=True)
    return z


def term_names(sigmas: Sequence[float], terms: Sequence[str], level_sigmas: Sequence[float] = ()) -> list[str]:
    """Names of the raw term planes ``raw_terms`` returns, in order."""
    out = []
    for t in terms:
        if t in ("rows", "cols"):
            out.append(t)
        elif t == "level":
            out.extend(f"level_{s:g}" for s in level_sigmas)
        else:
            out.extend(f"{t}_{s:g}" for s in sigmas)
    return out


def raw_terms(img: np.ndarray, sigmas: Sequence[float], terms: Sequence[str], destripe: bool = True,
              level_sigmas: Sequence[float] = ()) -> np.ndarray:
    """One (h, w) image in [0, 1] -> (n_terms, h, w) float32 raw term planes (see the module docstring)."""
    unknown = set(terms) - set(TERMS)
    if unknown:
        raise ValueError(f"unknown local terms {sorted(unknown)}; choose from {', '.join(TERMS)}")
    if "level" in terms and not level_sigmas:
        raise ValueError("the 'level' term needs level_sigmas")
    z = robust_standardise(img, destripe)
    flat = robust_standardise(img, False) if {"cols", "level"} & set(terms) else z  # column medians kept
    planes: list[np.ndarray] = []
    dogs = {s: _blur(z, s) - _blur(z, 4 * s) for s in sigmas} if {"dark", "bright"} & set(terms) else {}
    for t in terms:
        if t == "dark":
            planes.extend(np.maximum(-dogs[s], 0) for s in sigmas)
        elif t == "bright":
            planes.extend(np.maximum(dogs[s], 0) for s in sigmas)
        elif t == "rows":
            zr = z if destripe else z - np.median(z, axis=0, keepdims=True)
            prof = np.median(zr, axis=1)
            dev = np.abs(prof - np.median(prof)).astype(np.float32)
            planes.append(np.repeat(dev[:, None], z.shape[1], axis=1))
        elif t == "cols":
            prof = np.median(flat, axis=0).astype(np.float32)[None]
            kx = cv2.getGaussianKernel(2 * int(3 * COL_SMOOTH) + 1, COL_SMOOTH)
            prof = cv2.sepFilter2D(prof, cv2.CV_32F, kx, np.ones((1, 1)), borderType=cv2.BORDER_REFLECT_101)[0]
            dev = np.abs(prof - np.median(prof)).astype(np.float32)
            planes.append(np.repeat(dev[None, :], z.shape[0], axis=0))
        elif t == "level":
            for s in level_sigmas:
                g = _blur(flat, s)
                planes.append(np.abs(g - np.median(g)))
        elif t == "edge":
            for s in sigmas:
                g = _blur(z, s)
                gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT_101)
                gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT_101)
                planes.append(np.sqrt(gx * gx + gy * gy) * float(s) / 8.0)
    return np.stack(planes).astype(np.float32)


def coarse(planes: np.ndarray, grid: int) -> np.ndarray:
    """(..., h, w) -> (..., grid, grid) cell means (area resize)."""
    lead, (h, w) = planes.shape[:-2], planes.shape[-2:]
    flat = planes.reshape(-1, h, w)
    out = np.stack([cv2.resize(p, (grid, grid), interpolation=cv2.INTER_AREA) for p in flat])
    return out.reshape(*lead, grid, grid)


def position_stats(sum_: np.ndarray, sum_sq: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-term, per-cell mean and standard deviation from running sums over ``count`` good images."""
    mean = sum_ / max(count, 1)
    var = np.maximum(sum_sq / max(count, 1) - mean * mean, 0.0)
    return mean.astype(np.float32), np.sqrt(var).astype(np.float32)


def standardised(planes: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Raw planes (t, h, w) -> per-position z-scores using (t, g, g) statistics stretched to (h, w)."""
    h, w = planes.shape[-2:]
    up = lambda a: np.stack([cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR) for p in a])  # noqa: E731
    mu, sd = up(mean), up(std)
    floor = np.median(std.reshape(len(std), -1), axis=1)[:, None, None] * 0.25 + MIN_SPREAD
    return (planes - mu) / np.maximum(sd, floor)
