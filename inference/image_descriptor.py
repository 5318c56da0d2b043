"""A compact description of an image as a camera and scene make it, for out-of-domain flags
(plain numpy and OpenCV; no torch, no Qt, no SQLAlchemy).

Why: a backbone trained from scratch on one narrow data set maps much foreign data inside its
training cloud (ADR 0021: the NEU classifier's embedding told infrared sky frames from steel
textures with an AUROC of 0.55-0.7). What a change of camera or scene changes first is the
image itself: its size and shape, its grey-level distribution, how much detail it holds at
which scale and in which direction, how even its illumination is. A model's training set pins
these down tightly, so a Gaussian of them and the range each spans (``inference.domain``) flag
foreign images that the embedding lets through (ADR 0028).

``describe(image, source)`` takes the image as the engine decodes it for the model (float32 in
[0, 1], (h, w) or (h, w, 3), already shrunk to the model's largest side) and the file's own
(height, width, channels), and returns ``DESCRIPTOR_DIM`` float32 numbers. Each feature is expressed in units of the smallest change worth noticing
(``_UNITS``), so that one unit means the same for every feature and a training set in which a
feature never varies (every NEU image is 200 x 200) still gives it a variance of at least one
unit (``inference.domain`` floors it there) instead of an infinitely sure direction.

Cost (decode included, 2 busy cores; benchmarks/results/ood-2.md): 4 ms per 200 px NEU image,
21 ms per magnetic tile, 82 ms per SIRST frame of up to 456 px in colour, against 114-851 ms for
the backbone embedding it replaces.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .texture_features import gray_of

# Bumped whenever a feature or unit changes (``symmetry`` included): statistics fitted on another version are set
# aside.
DESCRIPTOR_VERSION = "image-descriptor-4"
SCALES = (1, 2, 4, 8)  # area-shrink factors at which detail is measured (absolute pixels: a camera's scale)
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
_EPS = 1e-4

_NAMES: list[str] = (
    ["log_long_side", "log_short_side", "file_channels", "colour_spread"]
    + [f"grey_q{int(q * 100):02d}" for q in QUANTILES]
    + ["clipped_dark", "clipped_bright"]
    + [f"{k}_s{s}" for s in SCALES for k in ("log_grad_x", "log_grad_y", "log_laplacian")]
    + ["log_grad_peak_ratio", "log_block_std_q10", "log_block_std_q50", "log_block_std_q90",
       "row_profile_spread", "column_profile_spread"]
)
# The smallest change worth noticing, per feature (the unit it is expressed in). Size: 1 % (two
# pixels at 200 px) is already another crop or another optical path; a training set whose
# images all have one size pins it there. Channels stored in the file (grey, colour, alpha): a
# tenth of a channel, so a grey file where colour ones were trained on is 20 units off. Detail and
# contrast: 5 %; grey levels: 1 % of the range.
_UNIT_OF = {"log_long_side": 0.01, "log_short_side": 0.01, "file_channels": 0.1, "log_": 0.05, "grey_q": 0.01,
            "clipped_": 0.01, "colour_spread": 0.01, "_profile_spread": 0.01}


def unit_of(name: str) -> float:
    """The unit feature ``name`` is expressed in (``_UNIT_OF``): a stored value times it is the raw measure."""
    for key, unit in _UNIT_OF.items():
        if name.startswith(key) or name.endswith(key):
            return unit
    raise KeyError(name)


FEATURES: tuple[str, ...] = tuple(_NAMES)
DESCRIPTOR_DIM = len(FEATURES)
_UNITS = np.array([unit_of(n) for n in FEATURES], np.float64)


def _grey(image: np.ndarray) -> tuple[np.ndarray, float]:
    """The grey image (``texture_features.gray_of``, the one home of that conversion) and how
    coloured the image is (mean spread between its colour channels; 0 for grey)."""
    a = np.asarray(image, np.float32)
    if a.ndim == 3 and a.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an (h, w) or (h, w, 3) image, got shape {a.shape}")
    spread = 0.0
    if a.ndim == 3 and a.shape[2] >= 3:
        rgb = a[:, :, :3]
        spread = float(np.mean(rgb.max(axis=2) - rgb.min(axis=2)))
    return gray_of(a), spread


def _shrink(grey: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return grey
    h, w = grey.shape
    return cv2.resize(grey, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)


def _detail(g: np.ndarray) -> tuple[float, float, float]:
    """Mean absolute horizontal and vertical differences and Laplacian of one scale."""
    gx = float(np.mean(np.abs(np.diff(g, axis=1)))) if g.shape[1] > 1 else 0.0
    gy = float(np.mean(np.abs(np.diff(g, axis=0)))) if g.shape[0] > 1 else 0.0
    lap = float(np.mean(np.abs(cv2.Laplacian(g, cv2.CV_32F, ksize=1)))) if min(g.shape) > 2 else 0.0
    return gx, gy, lap


def describe(image: np.ndarray, source: tuple[int, int, int] | None = None) -> np.ndarray:
    """One decoded image -> (DESCRIPTOR_DIM,) float32 features, each in its unit (module docstring).

    ``source``: (height, width, channels) of the file as stored, when the decoder shrank or
    channel-converted the image for the model (size and channels are the camera's and the
    file's; the other features read the image the model sees). A channel count of 0 is unknown:
    the image's own is used."""
    g, colour = _grey(image)
    h, w = g.shape
    g = np.clip(np.nan_to_num(g, nan=0.0), 0.0, 1.0)
    own = 1 if np.ndim(image) == 2 else int(np.shape(image)[2])
    fh, fw, ch = source if source is not None else (h, w, own)
    f: list[float] = [float(np.log(max(fh, fw, 1))), float(np.log(max(min(fh, fw), 1))), float(ch or own), colour]
    f += [float(v) for v in np.quantile(g, QUANTILES)]
    f += [float(np.mean(g <= 1 / 255)), float(np.mean(g >= 254 / 255))]
    for s in SCALES:
        gx, gy, lap = _detail(_shrink(g, s))
        f += [float(np.log(gx + _EPS)), float(np.log(gy + _EPS)), float(np.log(lap + _EPS))]
    # How concentrated the detail is: a sky with one small target has a few strong edges on a
    # flat field, a steel texture has edges everywhere.
    mag = np.abs(np.diff(g, axis=1))[:-1, :] + np.abs(np.diff(g, axis=0))[:, :-1] if min(h, w) > 1 else np.zeros(1)
    f.append(float(np.log((np.quantile(mag, 0.99) + _EPS) / (np.mean(mag) + _EPS))))
    # Local contrast in 8 x 8 blocks: how uneven the image is from place to place.
    bh, bw = max(1, h // 8), max(1, w // 8)
    blocks = g[: bh * 8, : bw * 8].reshape(bh, min(8, h), bw, min(8, w)) if h >= 8 and w >= 8 else g[None, :, None, :]
    block_std = blocks.std(axis=(1, 3))
    f += [float(np.log(v + _EPS)) for v in np.quantile(block_std, (0.1, 0.5, 0.9))]
    # Illumination: how much the row and column means vary (vignetting, a lit spot, a tile's edge).
    f += [float(np.std(g.mean(axis=1))), float(np.std(g.mean(axis=0)))]
    return (np.asarray(f, np.float64) / _UNITS).astype(np.float32)


def describe_images(images: Sequence[np.ndarray], sources: Sequence[tuple[int, int, int]] | None = None) -> np.ndarray:
    """(n, DESCRIPTOR_DIM) float32 descriptors of decoded images (``sources``: the files'
    (height, width, channels), see ``describe``)."""
    if not images:
        return np.zeros((0, DESCRIPTOR_DIM), np.float32)
    if sources is not None and len(sources) != len(images):
        raise ValueError(f"{len(sources)} sources for {len(images)} images")
    return np.stack([describe(im, sources[i] if sources is not None else None) for i, im in enumerate(images)])


# -- how the frame is arranged (ADR 0067) ------------------------------------------------------
# A scene has a direction (sky above, ground below); a part photographed from above on a fixture looks nearly the
# same turned by a quarter. None of the features above says so: a bottle photograph sits inside every global
# statistic of SIRST's 278 infrared scenes (benchmarks/results/ood-symmetry.md). The grey view, area-shrunk to
# SYMMETRY_SIDE x SYMMETRY_SIDE with its mean removed, is correlated with itself turned and mirrored.
SYMMETRY_FEATURES: tuple[str, ...] = ("turn_90", "turn_180", "mirror_left_right", "mirror_up_down")
SYMMETRY_DIM = len(SYMMETRY_FEATURES)
SYMMETRY_SIDE = 32
SYMMETRY_UNIT = 0.05  # a correlation change smaller than this is not worth noticing (the domain's variance floor)


def symmetry(image: np.ndarray) -> np.ndarray:
    """(SYMMETRY_DIM,) float32: the correlation of the image's shrunk grey view with itself turned by 90° and
    180° and mirrored left-right and up-down, in units of ``SYMMETRY_UNIT``. A flat image has no arrangement to
    compare: 0 for each."""
    g = np.clip(np.nan_to_num(gray_of(image), nan=0.0), 0.0, 1.0)
    h, w = g.shape
    interp = cv2.INTER_AREA if min(h, w) >= SYMMETRY_SIDE else cv2.INTER_LINEAR
    small = cv2.resize(g, (SYMMETRY_SIDE, SYMMETRY_SIDE), interpolation=interp).astype(np.float64)
    small -= small.mean()
    energy = float((small * small).sum())
    if energy < 1e-10:
        return np.zeros(SYMMETRY_DIM, np.float32)
    views = (np.rot90(small), np.rot90(small, 2), small[:, ::-1], small[::-1, :])  # each has the same energy
    return (np.array([float((small * v).sum()) / energy for v in views]) / SYMMETRY_UNIT).astype(np.float32)


def symmetry_images(images: Sequence[np.ndarray]) -> np.ndarray:
    """(n, SYMMETRY_DIM) float32 ``symmetry`` of decoded images."""
    if not images:
        return np.zeros((0, SYMMETRY_DIM), np.float32)
    return np.stack([symmetry(im) for im in images])


__all__ = ["describe", "describe_images", "DESCRIPTOR_DIM", "DESCRIPTOR_VERSION", "FEATURES", "symmetry",
           "symmetry_images", "SYMMETRY_DIM", "SYMMETRY_FEATURES"]
