"""Classical texture descriptors for retraining from few labels (numpy + OpenCV, no model): ``bank``.

Built for ``retrain`` from a few dozen corrections per class (issue 20 item 1, ADR 0033). Each
image, gray, at its own aspect and at most ``BANK_SIDE`` px, is standardised by its own median
and spread (lighting), then described by what texture classification with few labels has long
relied on, every part summarised over the whole image so where a defect sits does not matter:

* multi-scale rotation-invariant uniform LBP histograms (8 neighbours at radii 1, 2, 4, 8 on a
  Gaussian-smoothed image, the 10 "riu2" bins each) and the local contrast (neighbour variance);
* Gabor energies (3 wavelengths x 6 orientations, ``cv2.getGaborKernel``): the mean energy per
  orientation and, orientation-free, the spread and high percentiles of the strongest response;
* grey-level co-occurrence (GLCM, 16 levels by the image's own quantiles, distances 1, 2, 4,
  4 directions): contrast, dissimilarity, homogeneity, energy and correlation, the mean and the
  range over the directions;
* per-scale band-pass statistics (difference of Gaussians at sigma 1 ... 8): spread, mean
  absolute value, skewness and kurtosis; and the standardised image's own percentiles.

No new dependency: LBP, GLCM and the Gabor bank are a few lines each on numpy and OpenCV
(scikit-image has them, but is not a dependency of the station).
"""
from __future__ import annotations

import cv2
import numpy as np

BANK_SIDE = 256                       # longer side the descriptors work at (larger images are area-shrunk)
LBP_POINTS = 8
LBP_RADII = (1, 2, 4, 8)
LBP_BINS = LBP_POINTS + 2             # riu2: 0..P ones in a uniform pattern, one bin for the rest
GABOR_WAVELENGTHS = (4.0, 8.0, 16.0)
GABOR_ORIENTATIONS = 6
GLCM_LEVELS = 16
GLCM_DISTANCES = (1, 2, 4)
GLCM_PROPS = 5                        # contrast, dissimilarity, homogeneity, energy, correlation
BAND_SIGMAS = (1.0, 2.0, 4.0, 8.0)
Z_PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
MARGIN = 8                            # border pixels left out of every summary (filter edges)
BANK_DIM = (len(LBP_RADII) * (LBP_BINS + 3)
            + len(GABOR_WAVELENGTHS) * (GABOR_ORIENTATIONS + 4)
            + len(GLCM_DISTANCES) * GLCM_PROPS * 2
            + len(BAND_SIGMAS) * 4 + len(Z_PERCENTILES))


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


_GABOR: dict[tuple[float, float], np.ndarray] = {}


def _gabor_kernel(lam: float, theta: float) -> np.ndarray:
    key = (lam, theta)
    if key not in _GABOR:
        sigma = 0.56 * lam
        size = int(2 * round(2.5 * sigma) + 1)
        re = cv2.getGaborKernel((size, size), sigma, theta, lam, 0.5, 0, cv2.CV_32F)
        im = cv2.getGaborKernel((size, size), sigma, theta, lam, 0.5, np.pi / 2, cv2.CV_32F)
        re -= re.mean()  # no response to flat brightness
        _GABOR[key] = np.stack([re, im]) / np.abs(re).sum()
    return _GABOR[key]


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
