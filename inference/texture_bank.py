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

import threading
from collections import OrderedDict

import cv2
import numpy as np

from inference.preprocess import shrink_to

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


def _inner_box(h: int, w: int, margin: int = MARGIN) -> tuple[slice, slice]:
    """The rows and columns every summary reads: ``margin`` px in from each border (all of a small image)."""
    return (slice(margin, h - margin), slice(margin, w - margin)) if min(h, w) > 4 * margin else (slice(0, h), slice(0, w))


def _neighbour(img: np.ndarray, padded: np.ndarray, pad: int, rows: slice, cols: slice, dx: float,
               dy: float) -> np.ndarray:
    """The image sampled at (x + dx, y + dy) over ``rows`` x ``cols``, bilinear, borders replicated.

    ``padded`` is the image with ``pad`` px replicated round it: a whole-pixel offset (within 1e-4) is a
    slice of it, not a copy; any other is ``cv2.warpAffine`` of just the box (the offset kept exact in the
    float64 matrix, so the numbers are those of warping the whole image and cropping).
    """
    fdx, fdy = np.float32(dx), np.float32(dy)
    if abs(fdx - round(fdx)) < 1e-4 and abs(fdy - round(fdy)) < 1e-4:
        r0, c0 = rows.start + pad + round(fdy), cols.start + pad + round(fdx)
        return padded[r0:r0 + rows.stop - rows.start, c0:c0 + cols.stop - cols.start]
    m = np.array([[1, 0, float(fdx) + cols.start], [0, 1, float(fdy) + rows.start]], np.float64)
    return cv2.warpAffine(img, m, (cols.stop - cols.start, rows.stop - rows.start),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


def _lbp(z: np.ndarray, radius: int, blurred: dict[float, np.ndarray] | None = None) -> list[float]:
    """riu2 histogram (LBP_BINS) of P neighbours at ``radius``, then the log local variance's mean, p50, p90.

    Only the pixels the summaries read (``_inner_box``) are coded; their neighbours come from the whole
    (smoothed) image, replicated past its borders.
    """
    sigma = max(0.5, radius / 2)
    img = z if radius <= 1 else blurred[sigma] if blurred and sigma in blurred else cv2.GaussianBlur(z, (0, 0), sigma)
    h, w = img.shape
    rows, cols = _inner_box(h, w)
    pad = radius + 1
    padded = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    centre = img[rows, cols]
    angles = 2 * np.pi * np.arange(LBP_POINTS) / LBP_POINTS
    neigh = [_neighbour(img, padded, pad, rows, cols, radius * np.cos(a), -radius * np.sin(a)) for a in angles]
    level = centre + np.float32(1e-3)
    bits = [n >= level for n in neigh]
    ones = np.zeros(centre.shape, np.uint8)
    transitions = np.zeros(centre.shape, np.uint8)
    total = neigh[0] + neigh[1]  # the neighbours' variance as numpy's var(0) of the stack: sums in order, float32
    change = np.empty(centre.shape, bool)
    for k in range(LBP_POINTS):
        ones += bits[k]
        transitions += np.not_equal(bits[k], bits[k - 1], out=change)
        if k > 1:
            total += neigh[k]
    code = np.where(transitions <= 2, ones, np.uint8(LBP_POINTS + 1))
    hist = np.bincount(code.reshape(-1), minlength=LBP_BINS)[:LBP_BINS].astype(np.float64)
    hist /= max(hist.sum(), 1.0)
    mean = total / np.float32(LBP_POINTS)
    spread = np.square(neigh[0] - mean)
    d = np.empty_like(spread)
    for n in neigh[1:]:
        np.subtract(n, mean, out=d)
        np.multiply(d, d, out=d)
        spread += d
    spread /= np.float32(LBP_POINTS)
    var = np.log1p(spread, out=spread)
    return [*hist, float(var.mean()), *percentiles(var.reshape(-1), (50, 90))]


def percentiles(v: np.ndarray, qs: tuple[float, ...], top: int = 0, nonnegative: bool = False) -> list[float]:
    """``np.percentile(v, qs)`` (linear) of a 1-D array from one ``np.partition``; with ``top`` > 0 also
    its maximum and the mean of its ``top`` largest values.

    The partition places only the lower rank of each percentile (and the top's first); the next rank
    up is the smallest value between it and the next placed rank. ``nonnegative``: ``v`` has no value
    below 0 (a response cut at 0, often half zeros), so only its positive values are partitioned, the
    ranks that fall among the zeros being 0.
    """
    n = v.size
    at = [q / 100 * (n - 1) for q in qs]
    lows = [int(np.floor(i)) for i in at]
    placed = {*lows, *([n - top] if top else [])}
    zeros = 0
    if nonnegative:
        positive = v[v > 0]
        zeros, v = n - positive.size, positive
    kth = sorted(k - zeros for k in placed if k >= zeros)
    keys = _ordered_keys(v)
    part = np.partition(keys, kth) if kth else keys
    # the keys each percentile reads: its lower rank (placed) and, when it interpolates, the next one up,
    # which is placed too or the smallest key between it and the next placed rank; all turned back at once
    bounds = [*kth, v.size - 1]
    wanted: list[int] = []
    for i, lo in zip(at, lows):
        for k in ((lo, lo + 1) if i > lo and lo + 1 < n else (lo,)):
            j = k - zeros
            if j < 0:
                wanted.append(0)  # among the zeros (read as 0 below)
            elif j in kth:
                wanted.append(part[j].item())
            else:  # everything before j is at most it: the smallest up to the next placed rank
                wanted.append(part[j:next(b for b in bounds if b >= j) + 1].min().item())
    values = iter(_key_value(np.asarray(wanted, keys.dtype)).tolist() if keys.dtype == np.int32 else wanted)
    out = []
    for i, lo in zip(at, lows):
        a = next(values)
        b = next(values) if i > lo and lo + 1 < n else a
        a, b, g = (0.0 if lo < zeros else a), (0.0 if lo + 1 < zeros else b), i - lo
        out.append(a + (b - a) * g if g < 0.5 else b - (b - a) * (1 - g))  # numpy's own lerp
    if top:
        head = _key_value(part[max(0, n - top - zeros):])
        out += [float(head.max()) if head.size else 0.0, float(head.sum(dtype=np.float64) / top)]
    return out


def _ordered_keys(v: np.ndarray) -> np.ndarray:
    """float32 values as int32 keys in the same order (numpy partitions int32 about 1.7x faster): a
    non-negative float's bits already sort as integers; a negative one's magnitude bits are flipped.
    Other dtypes are returned as they are."""
    if v.dtype != np.float32:
        return v
    bits = np.ascontiguousarray(v).view(np.int32)
    return bits ^ ((bits >> 31) & np.int32(0x7FFFFFFF))


def _key_value(keys: np.ndarray) -> np.ndarray:
    """The float32 values of ``_ordered_keys`` (the flip undoes itself)."""
    if keys.dtype != np.int32:
        return keys
    keys = np.asarray(keys)
    return (keys ^ ((keys >> 31) & np.int32(0x7FFFFFFF))).view(np.float32)


def median(v: np.ndarray) -> float:
    """``np.median`` of a 1-D float32 array (one partition; the mean of the two middle values in float32)."""
    n = v.size
    part = _key_value(np.partition(_ordered_keys(v), sorted({(n - 1) // 2, n // 2})))
    return float(np.mean(part[[(n - 1) // 2, n // 2]]))


_GABOR: dict[tuple[float, float], np.ndarray] = {}
_SPECTRA: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
_SPECTRA_LOCK = threading.Lock()
_SPECTRA_KEPT = 4                     # image shapes whose kernel spectra are kept (NEU: one)
GABOR_PAD = max(int(2 * round(2.5 * 0.56 * lam) + 1) // 2 for lam in GABOR_WAVELENGTHS)  # largest kernel's half side


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


def _dft_size(n: int) -> int:
    """A fast DFT length >= n: OpenCV's choice, or the power of two when that is at most 5 % longer."""
    best = cv2.getOptimalDFTSize(n)
    two = 1 << (n - 1).bit_length()
    return two if two <= 1.05 * best else best


def _gabor_spectra(shape: tuple[int, int]) -> np.ndarray:
    """(wavelengths x orientations, H, W) complex64: what multiplies a padded image's spectrum to correlate
    it with each complex kernel re + i im (``cv2.filter2D``'s orientation, the kernel centred at GABOR_PAD)."""
    with _SPECTRA_LOCK:
        if shape in _SPECTRA:
            _SPECTRA.move_to_end(shape)
            return _SPECTRA[shape]
    spectra = np.empty((len(GABOR_WAVELENGTHS) * GABOR_ORIENTATIONS, *shape), np.complex64)
    for n, (lam, k) in enumerate((lam, k) for lam in GABOR_WAVELENGTHS for k in range(GABOR_ORIENTATIONS)):
        re, im = _gabor_kernel(lam, np.pi * k / GABOR_ORIENTATIONS)
        c = re.shape[0] // 2
        kernel = np.zeros((*shape, 2), np.float32)
        kernel[GABOR_PAD - c:GABOR_PAD + c + 1, GABOR_PAD - c:GABOR_PAD + c + 1] = np.stack([re, -im], -1)
        spectrum = cv2.dft(kernel, flags=cv2.DFT_COMPLEX_INPUT | cv2.DFT_COMPLEX_OUTPUT)  # of conj(kernel)
        spectra[n] = np.conj(spectrum.view(np.complex64)[..., 0]) / (shape[0] * shape[1])  # the inverse's scale
    with _SPECTRA_LOCK:
        _SPECTRA[shape] = spectra
        while len(_SPECTRA) > _SPECTRA_KEPT:
            _SPECTRA.popitem(last=False)
    return spectra


def _gabor_all(z: np.ndarray) -> list[float]:
    """Every wavelength's ``_gabor`` summary from one DFT of the image and one inverse per kernel.

    ``cv2.filter2D`` (BORDER_REFLECT_101) of the real and the imaginary kernel is the real and the
    imaginary part of one correlation with the complex kernel: the image is padded by GABOR_PAD px the
    same way, and the window the summarised box needs (the box and GABOR_PAD px round it) transformed
    once (float32), multiplied by each kernel's cached spectrum and transformed back; the transform is
    long enough that nothing the summaries read wraps round.
    """
    h, w = z.shape
    padded = cv2.copyMakeBorder(z, GABOR_PAD, GABOR_PAD, GABOR_PAD, GABOR_PAD, cv2.BORDER_REFLECT_101)
    rows, cols = _inner_box(h, w)
    box = (rows.stop - rows.start, cols.stop - cols.start)
    window = padded[rows.start:rows.stop + 2 * GABOR_PAD, cols.start:cols.stop + 2 * GABOR_PAD]
    shape = (_dft_size(window.shape[0]), _dft_size(window.shape[1]))
    image = np.zeros(shape, np.float32)
    image[:window.shape[0], :window.shape[1]] = window
    spectrum = cv2.dft(image, flags=cv2.DFT_COMPLEX_OUTPUT).view(np.complex64)[..., 0]
    spectra = _gabor_spectra(shape)
    feats: list[float] = []
    for n_lam in range(len(GABOR_WAVELENGTHS)):
        means, strongest = [], None
        for k in range(GABOR_ORIENTATIONS):
            product = spectrum * spectra[n_lam * GABOR_ORIENTATIONS + k]
            out = cv2.dft(product.view(np.float32).reshape(*shape, 2), flags=cv2.DFT_INVERSE)
            energy = np.abs(out.view(np.complex64)[:box[0], :box[1], 0])  # output row y: the box's row y
            means.append(energy.mean())
            strongest = energy if strongest is None else np.maximum(strongest, energy, out=strongest)
        assert strongest is not None
        feats += [*np.log1p(np.asarray(means, np.float64)), float(np.log1p(strongest.mean())),
                  float(np.log1p(strongest.std())), *np.log1p(percentiles(strongest.reshape(-1), (90, 99)))]
    return feats


_GLCM_I, _GLCM_J = np.meshgrid(np.arange(GLCM_LEVELS), np.arange(GLCM_LEVELS), indexing="ij")


def _glcm(q: np.ndarray, d: int) -> list[float]:
    """GLCM properties at distance ``d``: the mean over 4 directions, then the range (max - min)."""
    h, w = q.shape
    i, j = _GLCM_I, _GLCM_J
    counts = []
    for dy, dx in ((0, d), (d, d), (d, 0), (d, -d)):
        if dy >= h or abs(dx) >= w:  # no pixel pair this far apart (a tiny image): an empty matrix, not a
            counts.append(np.zeros((GLCM_LEVELS, GLCM_LEVELS), np.intp))  # wrapped slice (ValueError before)
            continue
        a = q[:h - dy, max(0, -dx):w - max(0, dx)]
        b = q[dy:, max(0, dx):w - max(0, -dx) if dx < 0 else w][:, :a.shape[1]] if dx >= 0 else q[dy:, :w + dx]
        pair = (a << 4) | b if GLCM_LEVELS == 16 else a.astype(np.intp) * GLCM_LEVELS + b  # uint8 codes 0..255
        counts.append(np.bincount(pair.reshape(-1), minlength=GLCM_LEVELS ** 2).reshape(GLCM_LEVELS, GLCM_LEVELS))
    m = np.stack(counts)
    p = (m + m.transpose(0, 2, 1)).astype(np.float64)
    p /= np.maximum(p.sum(axis=(1, 2), keepdims=True), 1.0)
    mu = (i * p).sum(axis=(1, 2), keepdims=True)
    var = ((i - mu) ** 2 * p).sum(axis=(1, 2))
    arr = np.stack([(p * (i - j) ** 2).sum(axis=(1, 2)), (p * np.abs(i - j)).sum(axis=(1, 2)),
                    (p / (1 + (i - j) ** 2)).sum(axis=(1, 2)), np.sqrt((p * p).sum(axis=(1, 2))),
                    ((i - mu) * (j - mu) * p).sum(axis=(1, 2)) / np.maximum(var, 1e-9)], axis=1)
    return [*arr.mean(0), *(arr.max(0) - arr.min(0))]


def _levels(z: np.ndarray) -> np.ndarray:
    """Each pixel's GLCM level: how many of the image's own 1/16 quantiles lie below it (``np.searchsorted``)."""
    edges = percentiles(z.reshape(-1), tuple(np.linspace(0, 100, GLCM_LEVELS + 1)[1:-1]))  # np.quantile's, bit for bit
    q = np.zeros(z.shape, np.uint8)
    for e in edges:
        q += z > np.float64(e)  # compared in float64, as searchsorted compared the float64 edges
    return q


def _band(blurred: dict[float, np.ndarray], sigma: float) -> list[float]:
    r = _inner(blurred[sigma] - blurred[2 * sigma]).reshape(-1).astype(np.float64)
    d = r - r.mean()
    d2 = d * d
    sd = float(np.sqrt(d2.mean())) + 1e-6
    skew = float(np.dot(d2, d)) / r.size / sd ** 3
    kurt = float(np.dot(d2, d2)) / r.size / sd ** 4
    return [float(np.log(sd)), float(np.log(np.abs(r).mean() + 1e-6)), skew, float(np.log(kurt + 1e-6))]


def shrunk_with_spread(gray: np.ndarray, side: int) -> tuple[np.ndarray, float, float]:
    """The gray image area-shrunk to at most ``side`` px (own aspect), its median and robust spread (MAD)."""
    g = np.asarray(shrink_to(np.asarray(gray, np.float32), side), np.float32)
    med = median(g.reshape(-1))
    return g, med, median(np.abs(g - med).reshape(-1)) * 1.4826 + 1e-3


def bank_vector(gray: np.ndarray) -> np.ndarray:
    """The (BANK_DIM,) descriptors of one gray image in [0, 1] (any size, own aspect)."""
    return bank_of_shrunk(*shrunk_with_spread(gray, BANK_SIDE))


def bank_of_shrunk(g: np.ndarray, med: float, mad: float) -> np.ndarray:
    """``bank_vector`` of ``shrunk_with_spread(gray, BANK_SIDE)``'s three answers (shared with the defect vector)."""
    z = np.clip((g - med) / mad, -20, 20).astype(np.float32)
    # the band-pass blurs, made once: the LBP's smoothing at radius r is the blur at r / 2 among them
    blurred = {s: cv2.GaussianBlur(z, (0, 0), s) for s in sorted({*BAND_SIGMAS, *(2 * s for s in BAND_SIGMAS)})}
    feats: list[float] = []
    for radius in LBP_RADII:
        feats += _lbp(z, radius, blurred)
    feats += _gabor_all(z)
    q = _levels(z)
    for d in GLCM_DISTANCES:
        feats += _glcm(q, d)
    for sigma in BAND_SIGMAS:
        feats += _band(blurred, sigma)
    feats += percentiles(_inner(z).reshape(-1), Z_PERCENTILES)
    out = np.asarray(feats, np.float32)
    if out.shape != (BANK_DIM,):
        raise AssertionError(f"bank vector has {out.shape}, expected ({BANK_DIM},)")
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
