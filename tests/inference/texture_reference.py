"""The texture vectors as they were before ADR 0039 made them fast: the slow reference the fast code is pinned to.

A verbatim copy of ``inference.texture_bank`` (the ``bank`` vector) and of
``inference.texture_features.defect_vector`` as of commit c4f424d, which ``classifier-neu-texture``
and the magnetic-tile classifier were fitted on; ``tests/inference/test_texture_speedup.py`` checks
that the fast versions give the same numbers. Test code only: nothing in the station imports it.
"""
from __future__ import annotations

import cv2
import numpy as np

# the constants (sizes, scales, margins) are the live modules': the reference is of the computation
from inference.texture_bank import (
    BAND_SIGMAS,
    BANK_DIM,
    BANK_SIDE,
    GABOR_ORIENTATIONS,
    GABOR_WAVELENGTHS,
    GLCM_DISTANCES,
    GLCM_LEVELS,
    LBP_BINS,
    LBP_POINTS,
    LBP_RADII,
    MARGIN,
    Z_PERCENTILES,
    _gabor_kernel,  # unchanged: the kernels themselves
)
from inference.texture_features import (
    DARK_BACKGROUND,
    DEFECT_MARGIN,
    DEFECT_PERCENTILES,
    DEFECT_SIDE,
    DEFECT_SIGMAS,
    THUMB,
    gray_of,
)


def _inner(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    return a[MARGIN:h - MARGIN, MARGIN:w - MARGIN] if min(h, w) > 4 * MARGIN else a


def _shifted(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """img sampled at (x + dx, y + dy), bilinear, borders replicated."""
    m = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32)
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def _lbp(z: np.ndarray, radius: int) -> list[float]:
    """riu2 histogram (LBP_BINS) of P neighbours at ``radius``, then the log local variance's mean, p50, p90."""
    img = cv2.GaussianBlur(z, (0, 0), max(0.5, radius / 2)) if radius > 1 else z
    angles = 2 * np.pi * np.arange(LBP_POINTS) / LBP_POINTS
    neigh = np.stack([_shifted(img, radius * np.cos(a), -radius * np.sin(a)) for a in angles])
    bits = (neigh >= img[None] + 1e-3).astype(np.int8)
    ones = bits.sum(0)
    transitions = np.abs(np.diff(np.concatenate([bits, bits[:1]]), axis=0)).sum(0)
    code = np.where(transitions <= 2, ones, LBP_POINTS + 1)
    hist = np.bincount(_inner(code).reshape(-1), minlength=LBP_BINS)[:LBP_BINS].astype(np.float64)
    hist /= max(hist.sum(), 1.0)
    var = np.log1p(_inner(neigh.var(0)))
    return [*hist, float(var.mean()), *np.percentile(var, (50, 90))]


def _gabor(z: np.ndarray, lam: float) -> list[float]:
    """Mean energy per orientation, then the strongest orientation's energy: mean, sd, p90, p99."""
    energies = []
    for k in range(GABOR_ORIENTATIONS):
        re, im = _gabor_kernel(lam, np.pi * k / GABOR_ORIENTATIONS)
        a, b = cv2.filter2D(z, cv2.CV_32F, re), cv2.filter2D(z, cv2.CV_32F, im)
        energies.append(_inner(np.sqrt(a * a + b * b)))
    e = np.stack(energies)
    strongest = e.max(0)
    return [*np.log1p(e.mean(axis=(1, 2))), float(np.log1p(strongest.mean())), float(np.log1p(strongest.std())),
            *np.log1p(np.percentile(strongest, (90, 99)))]


def _glcm(q: np.ndarray, d: int) -> list[float]:
    """GLCM properties at distance ``d``: the mean over 4 directions, then the range (max - min)."""
    h, w = q.shape
    i, j = np.meshgrid(np.arange(GLCM_LEVELS), np.arange(GLCM_LEVELS), indexing="ij")
    props = []
    for dy, dx in ((0, d), (d, d), (d, 0), (d, -d)):
        a = q[:h - dy, max(0, -dx):w - max(0, dx)]
        b = q[dy:, max(0, dx):w - max(0, -dx) if dx < 0 else w][:, :a.shape[1]] if dx >= 0 else q[dy:, :w + dx]
        m = np.bincount((a * GLCM_LEVELS + b).reshape(-1), minlength=GLCM_LEVELS ** 2).reshape(GLCM_LEVELS, GLCM_LEVELS)
        p = (m + m.T).astype(np.float64)
        p /= max(p.sum(), 1.0)
        mu = (i * p).sum()
        var = ((i - mu) ** 2 * p).sum()
        props.append([(p * (i - j) ** 2).sum(), (p * np.abs(i - j)).sum(), (p / (1 + (i - j) ** 2)).sum(),
                      np.sqrt((p * p).sum()), ((i - mu) * (j - mu) * p).sum() / max(var, 1e-9)])
    arr = np.asarray(props)
    return [*arr.mean(0), *(arr.max(0) - arr.min(0))]


def _band(z: np.ndarray, sigma: float) -> list[float]:
    r = _inner(cv2.GaussianBlur(z, (0, 0), sigma) - cv2.GaussianBlur(z, (0, 0), 2 * sigma)).reshape(-1).astype(np.float64)
    sd = r.std() + 1e-6
    c = (r - r.mean()) / sd
    return [float(np.log(sd)), float(np.log(np.abs(r).mean() + 1e-6)), float((c ** 3).mean()),
            float(np.log((c ** 4).mean() + 1e-6))]


def shrunk_with_spread(gray: np.ndarray, side: int) -> tuple[np.ndarray, float, float]:
    """The gray image area-shrunk to at most ``side`` px (own aspect), its median and robust spread (MAD)."""
    g = np.asarray(gray, np.float32)
    h, w = g.shape
    if max(h, w) > side:
        s = side / max(h, w)
        g = np.asarray(cv2.resize(g, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA), np.float32)
    med = float(np.median(g))
    return g, med, float(np.median(np.abs(g - med))) * 1.4826 + 1e-3


def bank_vector(gray: np.ndarray) -> np.ndarray:
    """The (BANK_DIM,) descriptors of one gray image in [0, 1] (any size, own aspect)."""
    g, med, mad = shrunk_with_spread(gray, BANK_SIDE)
    z = np.clip((g - med) / mad, -20, 20).astype(np.float32)
    feats: list[float] = []
    for radius in LBP_RADII:
        feats += _lbp(z, radius)
    for lam in GABOR_WAVELENGTHS:
        feats += _gabor(z, lam)
    edges = np.quantile(z, np.linspace(0, 1, GLCM_LEVELS + 1)[1:-1])
    q = np.searchsorted(edges, z).astype(np.int64)
    for d in GLCM_DISTANCES:
        feats += _glcm(q, d)
    for sigma in BAND_SIGMAS:
        feats += _band(z, sigma)
    feats += [float(v) for v in np.percentile(_inner(z), Z_PERCENTILES)]
    out = np.asarray(feats, np.float32)
    if out.shape != (BANK_DIM,):
        raise AssertionError(f"bank vector has {out.shape}, expected ({BANK_DIM},)")
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def _summary(response: np.ndarray) -> list[float]:
    h, w = response.shape
    m = DEFECT_MARGIN
    inner = response[m:h - m, m:w - m] if min(h, w) > 4 * m else response
    v = inner.reshape(-1)
    top = np.partition(v, v.size - max(1, v.size // 1000))[v.size - max(1, v.size // 1000):]
    return [*np.percentile(v, DEFECT_PERCENTILES), float(v.max()), float(top.mean())]


def _profile(p: np.ndarray) -> list[float]:
    d = np.abs(np.diff(p)) if p.size > 1 else np.zeros(1, np.float32)
    return [float(p.std()), float(p.max() - p.min()), float(d.max()), float(np.percentile(d, 90))]


def defect_vector(gray: np.ndarray) -> np.ndarray:
    """The (DEFECT_DIM,) small-defect statistics of one gray image in [0, 1] (any size, own aspect)."""
    g, med, mad = shrunk_with_spread(gray, DEFECT_SIDE)
    h, w = g.shape
    z = (g - med) / mad                             # the image's own exposure taken out
    r = z - np.median(z, axis=0, keepdims=True)     # the vertical striation taken out
    feats: list[float] = []
    for sigma in DEFECT_SIGMAS:
        fine = cv2.GaussianBlur(r, (0, 0), sigma)
        dog = fine - cv2.GaussianBlur(r, (0, 0), 2 * sigma)
        s2 = sigma * sigma
        dxx = cv2.Sobel(fine, cv2.CV_32F, 2, 0, ksize=3) * s2
        dyy = cv2.Sobel(fine, cv2.CV_32F, 0, 2, ksize=3) * s2
        dxy = cv2.Sobel(fine, cv2.CV_32F, 1, 1, ksize=3) * s2
        root = np.sqrt((dxx - dyy) ** 2 + 4 * dxy * dxy)
        gx = cv2.Sobel(fine, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(fine, cv2.CV_32F, 0, 1, ksize=3)
        for response in (np.maximum(-dog, 0), np.maximum(dog, 0), np.maximum((dxx + dyy + root) / 2, 0),
                         np.maximum(-(dxx + dyy - root) / 2, 0), np.sqrt(gx * gx + gy * gy) * sigma):
            feats += _summary(response)
    rows = cv2.GaussianBlur(z.mean(axis=1).reshape(-1, 1), (0, 0), 4).reshape(-1)
    cols = cv2.GaussianBlur(z.mean(axis=0).reshape(1, -1), (0, 0), 4).reshape(-1)
    feats += _profile(rows) + _profile(cols)
    dark = (g < DARK_BACKGROUND).astype(np.float32)
    b = max(4, min(h, w) // 16)
    feats += [float(dark.mean()), float(dark[:b].mean()), float(dark[-b:].mean()), float(dark[:, :b].mean()),
              float(dark[:, -b:].mean())]
    feats += [float(np.log(h)), float(np.log(w)), float(np.log(w / h)), med, mad, float(g.std())]
    thumb = cv2.resize(g, (THUMB, THUMB), interpolation=cv2.INTER_AREA).reshape(-1)
    return np.concatenate([np.asarray(feats, np.float32), thumb]).astype(np.float32)


def image_defect_bank(image: np.ndarray) -> np.ndarray:
    """The reference ``defect_bank`` vector of a float image in [0, 1]."""
    gray = gray_of(image)
    return np.concatenate([defect_vector(gray), bank_vector(gray)])
