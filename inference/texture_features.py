"""The "texture" feature vector of one image: numpy + OpenCV, no model (184 numbers).

One home for two users: the station's "label next" embeds every file with it (cached by content
hash in ``app.services.image_embedding``), and the ``texture_linear`` classifier
(``inference.models.texture_linear``) reads the same numbers at prediction time, so a version
fitted by the retrain command sees exactly what label next measured. On magnetic tiles a
logistic regression on these features beat one on 12 x 12 thumbnails (0.825 vs 0.785 with 80
random labels per class; benchmarks/results/label-next.md) and the frozen NEU backbone's head
by far (0.33 at 40 per class; benchmarks/results/retrain-baselines.md).

Every image is resized to ``WORK_SIDE`` first, so the cost is bounded whatever the file's size.

The second vector, ``defect`` (``image_defect``: ``DEFECT_DIM`` numbers), is for parts whose defects
are small: a 96 x 96 square resize of a long magnetic tile erases a 2-pixel crack or a blowhole of
0.2 % of the area. It works at the image's own aspect and up to ``DEFECT_SIDE`` pixels: each image
is standardised by its own median and spread (lighting sessions differ), the vertical striation
is taken out column by column, and at four scales the dark and bright spots (difference of
Gaussians), the dark and bright ridges (Hessian eigenvalues: cracks) and the edge strength are
summarised by high percentiles, the maximum and the mean of the strongest 0.1 % inside a margin,
so where on the part a defect sits does not matter; then the row and column brightness profiles
(uneven bands), how much dark background shows along each side (breaks, frays), the size and
the exposure, and the 12 x 12 thumbnail. On magnetic tiles a logistic regression on it scored
0.94 / macro F1 0.90 under session-grouped cross-validation, against 0.85 / 0.71 for thumbnails
(benchmarks/results/tiles-classifier.md).
"""
from __future__ import annotations

import cv2
import numpy as np

from inference.preprocess import to_channels
from inference.texture_bank import BANK_DIM, BANK_SIDE, bank_of_shrunk, bank_vector, percentiles, shrunk_with_spread

GRID = 4           # gradient energy on a GRID x GRID layout: where on the part an edge or spot sits
THUMB = 12         # gray thumbnail side (the simple answers' 12 x 12: the layout at a glance)
ORIENTATIONS = 8   # gradient orientation histogram bins
WORK_SIDE = 96     # every image is resized to this square before the filters: the cost is bounded
STATS = 16         # intensity, edge and spot statistics
TEXTURE_DIM = THUMB * THUMB + ORIENTATIONS + GRID * GRID + STATS


def gray_of(image: np.ndarray) -> np.ndarray:
    """A (h, w) float32 gray image of an (h, w), (h, w, 1|2|3|4) float image in [0, 1], by the one channel
    conversion (``preprocess.to_channels``; this kept a second one, which refused gray + alpha)."""
    return to_channels(image, 1)[..., 0]


def texture_vector(gray: np.ndarray, aspect: float) -> np.ndarray:
    """Layout, contrast, gradient direction and where the edges sit, of one gray image in [0, 1].

    ``aspect`` is the file's width / height (the work image is square, so it is passed apart).
    """
    work = cv2.resize(gray, (WORK_SIDE, WORK_SIDE), interpolation=cv2.INTER_AREA)
    thumb = cv2.resize(work, (THUMB, THUMB), interpolation=cv2.INTER_AREA).reshape(-1)
    gx = cv2.Sobel(work, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(work, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.sqrt(gx * gx + gy * gy)
    ang = (np.arctan2(gy, gx) % np.pi) / np.pi  # edge orientation, direction-free, in [0, 1)
    bins = np.minimum((ang * ORIENTATIONS).astype(np.int64), ORIENTATIONS - 1)
    orient = np.bincount(bins.reshape(-1), weights=mag.reshape(-1), minlength=ORIENTATIONS)
    orient = orient / (orient.sum() + 1e-6)
    cell = WORK_SIDE // GRID
    energy = mag[:cell * GRID, :cell * GRID].reshape(GRID, cell, GRID, cell).mean(axis=(1, 3)).reshape(-1)
    lap = np.abs(cv2.Laplacian(work, cv2.CV_32F, ksize=3))
    blur = cv2.GaussianBlur(work, (0, 0), 3.0)
    local = work - blur  # what stands out from its neighbourhood: spots, cracks, pits
    med = float(np.median(work))
    stats = [
        *np.percentile(work, (2, 25, 50, 75, 98)), float(work.std()),
        float(mag.mean()), float(np.percentile(mag, 99)), float(lap.mean()), float(np.percentile(lap, 99)),
        float(local.min()), float(local.max()), float(np.abs(local).mean()),
        float((work < med - 0.15).mean()), float((work > med + 0.15).mean()),
        float(np.log(max(aspect, 1e-3))),
    ]
    return np.concatenate([thumb, orient, energy, np.asarray(stats, np.float64)]).astype(np.float32)


DEFECT_SIDE = BANK_SIDE           # 256: longer side the defect statistics work at (larger images are area-shrunk)
DEFECT_SIGMAS = (1.0, 2.0, 4.0, 8.0)
DEFECT_PERCENTILES = (50, 90, 99, 99.9)
DEFECT_MARGIN = 8                 # pixels left out at each border before the percentiles (resampling edges)
DEFECT_MAPS = 5                   # dark spots, bright spots, dark ridges, bright ridges, edge strength
DEFECT_STATS = len(DEFECT_PERCENTILES) + 2  # the percentiles, the maximum, the mean of the strongest 0.1 %
DEFECT_DIM = len(DEFECT_SIGMAS) * DEFECT_MAPS * DEFECT_STATS + 8 + 5 + 6 + THUMB * THUMB
DARK_BACKGROUND = 0.12            # gray level below which a pixel is background showing past the part


def _summary(v: np.ndarray, cut: bool) -> list[float]:
    """The DEFECT_PERCENTILES, the maximum and the mean of the strongest 0.1 % of a response's inner pixels
    (``cut``: a response cut at 0, often half zeros)."""
    return percentiles(v.reshape(-1), DEFECT_PERCENTILES, top=max(1, v.size // 1000), nonnegative=cut)


def _profile(p: np.ndarray) -> list[float]:
    d = np.abs(np.diff(p)) if p.size > 1 else np.zeros(1, np.float32)
    return [float(p.std()), float(p.max() - p.min()), float(d.max()), float(np.percentile(d, 90))]


def defect_vector(gray: np.ndarray) -> np.ndarray:
    """The (DEFECT_DIM,) small-defect statistics of one gray image in [0, 1] (any size, own aspect)."""
    return defect_of_shrunk(*shrunk_with_spread(gray, DEFECT_SIDE))


def defect_of_shrunk(g: np.ndarray, med: float, mad: float) -> np.ndarray:
    """``defect_vector`` of ``shrunk_with_spread(gray, DEFECT_SIDE)``'s three answers (shared with the bank).

    Each scale's responses are formed only over the pixels the summaries read (DEFECT_MARGIN in from
    each border, all of a small image); the filters still see the whole image. A blur at 2 sigma is
    the next scale's blur at sigma, made once.
    """
    h, w = g.shape
    z = (g - med) / mad                             # the image's own exposure taken out
    r = z - np.median(z, axis=0, keepdims=True)     # the vertical striation taken out
    m = DEFECT_MARGIN
    box = (slice(m, h - m), slice(m, w - m)) if min(h, w) > 4 * m else (slice(0, h), slice(0, w))
    blurred = {s: cv2.GaussianBlur(r, (0, 0), s) for s in sorted({*DEFECT_SIGMAS, *(2 * s for s in DEFECT_SIGMAS)})}
    feats: list[float] = []
    for sigma in DEFECT_SIGMAS:
        fine = blurred[sigma]
        dog = fine[box] - blurred[2 * sigma][box]
        s2 = sigma * sigma
        dxx = cv2.Sobel(fine, cv2.CV_32F, 2, 0, ksize=3)[box] * s2
        dyy = cv2.Sobel(fine, cv2.CV_32F, 0, 2, ksize=3)[box] * s2
        dxy = cv2.Sobel(fine, cv2.CV_32F, 1, 1, ksize=3)[box] * s2
        root = np.sqrt((dxx - dyy) ** 2 + 4 * dxy * dxy)
        gx = cv2.Sobel(fine, cv2.CV_32F, 1, 0, ksize=3)[box]
        gy = cv2.Sobel(fine, cv2.CV_32F, 0, 1, ksize=3)[box]
        for response in (np.maximum(-dog, 0), np.maximum(dog, 0), np.maximum((dxx + dyy + root) / 2, 0),
                         np.maximum(-(dxx + dyy - root) / 2, 0)):
            feats += _summary(response, cut=True)
        feats += _summary(np.sqrt(gx * gx + gy * gy) * sigma, cut=False)
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


FINE_SIGMA = 0.5                  # the finest scale of ``defect_fine``: pin-hole blowholes, hair-line cracks
LINE_SIGMAS = (1.0, 2.0)          # dark-ridge scales whose oriented line responses ``defect_fine`` reads
LINE_LENGTH = 15                  # px: the line segment a crack response is averaged along
LINE_ORIENTATIONS = 8
FINE_EXTRA_DIM = (DEFECT_MAPS + 2 * len(LINE_SIGMAS)) * DEFECT_STATS
DEFECT_FINE_DIM = DEFECT_DIM + FINE_EXTRA_DIM


def _line_kernels() -> list[tuple[np.ndarray, np.ndarray]]:
    """For each of LINE_ORIENTATIONS directions, the two halves of a LINE_LENGTH-px segment centred on the
    pixel (centre to one end, centre to the other), anti-aliased, each summing to 1."""
    half = LINE_LENGTH // 2
    out = []
    for k in range(LINE_ORIENTATIONS):
        t = np.pi * k / LINE_ORIENTATIONS
        dx, dy = half * np.cos(t), half * np.sin(t)
        c = LINE_LENGTH * 4
        kernels = []
        for sign in (1, -1):
            img = np.zeros((LINE_LENGTH * 8, LINE_LENGTH * 8), np.uint8)  # drawn at 8 x, then area-shrunk
            cv2.line(img, (c, c), (round(c + sign * 8 * dx), round(c + sign * 8 * dy)), 255, 8, cv2.LINE_AA)
            kern = cv2.resize(img.astype(np.float32), (LINE_LENGTH, LINE_LENGTH), interpolation=cv2.INTER_AREA)
            kernels.append(kern / kern.sum())
        out.append((kernels[0], kernels[1]))
    return out


_LINE_KERNELS = _line_kernels()


def _hessian_ridges(fine: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """(dark ridges, bright ridges): the scale-normalised Hessian eigenvalue responses, cut at 0."""
    s2 = sigma * sigma
    dxx = cv2.Sobel(fine, cv2.CV_32F, 2, 0, ksize=3) * s2
    dyy = cv2.Sobel(fine, cv2.CV_32F, 0, 2, ksize=3) * s2
    dxy = cv2.Sobel(fine, cv2.CV_32F, 1, 1, ksize=3) * s2
    root = np.sqrt((dxx - dyy) ** 2 + 4 * dxy * dxy)
    return np.maximum((dxx + dyy + root) / 2, 0), np.maximum(-(dxx + dyy - root) / 2, 0)


def fine_of_shrunk(g: np.ndarray, med: float, mad: float) -> np.ndarray:
    """The (FINE_EXTRA_DIM,) additions of ``defect_fine`` to ``defect_of_shrunk`` (same standardisation).

    The five responses at sigma FINE_SIGMA (spots against sigma 2 * FINE_SIGMA, ridges, edges), then
    for each of LINE_SIGMAS the dark-ridge map averaged along LINE_LENGTH-px segments in
    LINE_ORIENTATIONS directions, two-sided (the weaker of the two halves from the pixel: a line runs
    through it, a spot beside it does not count): the strongest direction, and the strongest minus the
    directions' median (how line-like: a crack is, a blowhole or grain is not). All summarised as ``_summary``.
    """
    h, w = g.shape
    z = (g - med) / mad
    r = z - np.median(z, axis=0, keepdims=True)
    m = DEFECT_MARGIN
    box = (slice(m, h - m), slice(m, w - m)) if min(h, w) > 4 * m else (slice(0, h), slice(0, w))
    fine = cv2.GaussianBlur(r, (0, 0), FINE_SIGMA)
    dog = fine - cv2.GaussianBlur(r, (0, 0), 2 * FINE_SIGMA)
    dark, bright = _hessian_ridges(fine, FINE_SIGMA)
    gx = cv2.Sobel(fine, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(fine, cv2.CV_32F, 0, 1, ksize=3)
    feats: list[float] = []
    for response in (np.maximum(-dog, 0), np.maximum(dog, 0), dark, bright):
        feats += _summary(response[box], cut=True)
    feats += _summary((np.sqrt(gx * gx + gy * gy) * FINE_SIGMA)[box], cut=False)
    for sigma in LINE_SIGMAS:
        ridge = _hessian_ridges(cv2.GaussianBlur(r, (0, 0), sigma), sigma)[0]
        lines = np.stack([np.minimum(cv2.filter2D(ridge, cv2.CV_32F, a, borderType=cv2.BORDER_REFLECT)[box],
                                     cv2.filter2D(ridge, cv2.CV_32F, b, borderType=cv2.BORDER_REFLECT)[box])
                          for a, b in _LINE_KERNELS])
        strongest = lines.max(axis=0)
        feats += _summary(strongest, cut=True)
        feats += _summary(np.maximum(strongest - np.median(lines, axis=0), 0), cut=True)
    return np.asarray(feats, np.float32)


def defect_fine_vector(gray: np.ndarray) -> np.ndarray:
    """The (DEFECT_FINE_DIM,) vector: ``defect_vector`` then the finer-scale and oriented-line additions."""
    shrunk = shrunk_with_spread(gray, DEFECT_SIDE)
    return np.concatenate([defect_of_shrunk(*shrunk), fine_of_shrunk(*shrunk)])


def image_defect_fine(image: np.ndarray) -> np.ndarray:
    """The (DEFECT_FINE_DIM,) vector of a float image in [0, 1] of any channel count."""
    return defect_fine_vector(gray_of(image))


def image_defect(image: np.ndarray) -> np.ndarray:
    """The (DEFECT_DIM,) vector of a float image in [0, 1] of any channel count."""
    return defect_vector(gray_of(image))


def image_texture(image: np.ndarray) -> np.ndarray:
    """The (TEXTURE_DIM,) vector of a float image in [0, 1] of any channel count (its own aspect)."""
    gray = gray_of(image)
    h, w = gray.shape
    return texture_vector(gray, w / max(h, 1))


def image_bank(image: np.ndarray) -> np.ndarray:
    """The (BANK_DIM,) LBP / Gabor / GLCM / band-pass descriptors (``inference.texture_bank``) of a float image."""
    return bank_vector(gray_of(image))


def image_defect_bank(image: np.ndarray) -> np.ndarray:
    """The small-defect statistics and the texture descriptors of one image, side by side (ADR 0033)."""
    shrunk = shrunk_with_spread(gray_of(image), DEFECT_SIDE)  # both work at the same side: shrunk once
    return np.concatenate([defect_of_shrunk(*shrunk), bank_of_shrunk(*shrunk)])


# feature set name -> (length, function of a decoded float image): what a texture_linear version reads
FEATURE_SETS = {"texture": (TEXTURE_DIM, image_texture), "defect": (DEFECT_DIM, image_defect),
                "bank": (BANK_DIM, image_bank), "defect_bank": (DEFECT_DIM + BANK_DIM, image_defect_bank),
                "defect_fine": (DEFECT_FINE_DIM, image_defect_fine)}
