"""Decoded image -> model input: the one home of channel conversion and per-family input shaping.

Why one module: the classifier, the segmenter and the anomaly model each used to carry their
own channel converter, and the anomaly one turned RGB into gray with a plain mean while the
others used luma. A model trained on one conversion and fed another scores silently worse, so
training and prediction of every family now call the same ``to_channels``.

Gray is ITU-R BT.601 luma, the weights OpenCV's ``COLOR_BGR2GRAY`` uses when
``inference.imageio`` reads a file as gray, so an RGB array converted here and the same file
read as gray agree. Runtime code (the ``*_predict`` modules, the engine) and the trainers
import from here; nothing here imports ``inference.training``.

The anomaly change from mean to luma leaves the bundled models untouched: files reach
``anomaly_input`` already decoded in the model's channel mode (gray for a 1-channel model), so
the conversion only ever applied to 3-channel arrays handed in directly.
"""
from __future__ import annotations

import cv2
import numpy as np

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def to_channels(image: np.ndarray, chans: int) -> np.ndarray:
    """(h, w) or (h, w, 1|2|3|4) float image, RGB(A) or gray(+alpha) -> (h, w, chans) float32.

    Alpha is dropped (not composited); RGB becomes gray with ``LUMA``; gray is repeated to RGB.
    Anything else is refused with a ValueError naming its shape.
    """
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"expected an image of shape (h, w) or (h, w, 1|3|4), got {np.shape(image)}")
    if a.shape[2] == 2:  # gray + alpha
        a = a[:, :, :1]
    if a.shape[2] == 4:
        a = a[:, :, :3]
    if chans == 1 and a.shape[2] == 3:
        a = (a @ LUMA)[:, :, None]
    elif chans == 3 and a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] != chans:
        raise ValueError(f"cannot turn {a.shape[2]} channels into {chans}")
    return a


def shrink_to(image: np.ndarray, max_side: int) -> np.ndarray:
    """The image area-shrunk so that its longer side is at most ``max_side`` (its own aspect; never enlarged): the
    decoder, the segmenter's domain embedding, the texture bank, thumbnails and the comparison panel each carried
    this step (a session-47 audit found five copies)."""
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def classifier_input(img: np.ndarray, size: int, chans: int) -> np.ndarray:
    """Any float image -> (chans, size, size) float32 in [0, 1]: area-averaged when shrinking."""
    a = np.nan_to_num(to_channels(img, chans), nan=0.0, posinf=1.0, neginf=0.0)
    h, w = a.shape[:2]
    if (h, w) != (size, size):
        interp = cv2.INTER_AREA if h >= size and w >= size else cv2.INTER_LINEAR
        a = cv2.resize(a, (size, size), interpolation=interp)
        if a.ndim == 2:
            a = a[:, :, None]
    return np.clip(a, 0.0, 1.0).transpose(2, 0, 1).copy()


def segmenter_input(image: np.ndarray, chans: int) -> np.ndarray:
    """Float (h, w[, c]) image -> (chans, h, w) float32, not yet standardised (see ``standardise``)."""
    return np.ascontiguousarray(to_channels(image, chans).transpose(2, 0, 1))


def standardise(image: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """numpy twin of ``mim_istd.standardise`` for one (c, h, w) frame: zero mean, unit spread."""
    image = image.astype(np.float32)
    return (image - image.mean()) / (image.std(ddof=1) + eps) if image.size > 1 else image - image.mean()


def anomaly_input(image: np.ndarray, size: int, in_channels: int) -> np.ndarray:
    """Float image (h, w[, c]) in [0, 1] -> (c, size, size) float32 in [0, 1]."""
    img = to_channels(image, in_channels)
    h, w = img.shape[:2]
    interp = cv2.INTER_AREA if h > size or w > size else cv2.INTER_LINEAR
    img = cv2.resize(img, (size, size), interpolation=interp)
    if img.ndim == 2:
        img = img[:, :, None]
    return np.ascontiguousarray(np.clip(img, 0.0, 1.0).transpose(2, 0, 1))
