"""The "texture" feature vector of one image: numpy + OpenCV, no model (184 numbers).

One home for two users: the station's "label next" embeds every file with it (cached by content
hash in ``app.services.image_embedding``), and the ``texture_linear`` classifier
(``inference.models.texture_linear``) reads the same numbers at prediction time, so a version
fitted by the retrain command sees exactly what label next measured. On magnetic tiles a
logistic regression on these features beat one on 12 x 12 thumbnails (0.825 vs 0.785 with 80
random labels per class; benchmarks/results/label-next.md) and the frozen NEU backbone's head
by far (0.33 at 40 per class; benchmarks/results/retrain-baselines.md).

Every image is resized to ``WORK_SIDE`` first, so the cost is bounded whatever the file's size.
"""
from __future__ import annotations

import cv2
import numpy as np

GRID = 4           # gradient energy on a GRID x GRID layout: where on the part an edge or spot sits
THUMB = 12         # gray thumbnail side (the simple answers' 12 x 12: the layout at a glance)
ORIENTATIONS = 8   # gradient orientation histogram bins
WORK_SIDE = 96     # every image is resized to this square before the filters: the cost is bounded
STATS = 16         # intensity, edge and spot statistics
TEXTURE_DIM = THUMB * THUMB + ORIENTATIONS + GRID * GRID + STATS


def gray_of(image: np.ndarray) -> np.ndarray:
    """A (h, w) float32 gray image of an (h, w), (h, w, 1), (h, w, 3) or (h, w, 4) float image in [0, 1]."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3:
        colour = np.ascontiguousarray(img[..., :3])
        img = img[..., 0] if img.shape[2] == 1 else np.asarray(cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY), np.float32)
    if img.ndim != 2 or img.size == 0:
        raise ValueError(f"expected an image, got an array of shape {np.shape(image)}")
    return img


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


def image_texture(image: np.ndarray) -> np.ndarray:
    """The (TEXTURE_DIM,) vector of a float image in [0, 1] of any channel count (its own aspect)."""
    gray = gray_of(image)
    h, w = gray.shape
    return texture_vector(gray, w / max(h, 1))
