"""Running a loaded classifier on images of any size, depth and channel count.

The worker hands float images (as ``inference.imageio.read_image`` returns them, or any
(h, w), (h, w, 1), (h, w, 3) or (h, w, 4) float array in [0, 1]); this module brings each to the
model's own input (channels and size from its saved config) and returns plain data.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import torch

from inference.checkpoints import LoadedModel

# ITU-R BT.601 luma, as OpenCV's RGB->gray uses, so file reads and arrays agree.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class ClassPrediction:
    scores: np.ndarray  # (num_classes,) softmax over ``classes``
    classes: tuple[str, ...]
    index: int
    label: str
    confidence: float


def _to_channels(img: np.ndarray, chans: int) -> np.ndarray:
    """-> (h, w, chans) float32; RGB assumed for 3/4-channel input, alpha dropped."""
    a = np.asarray(img, dtype=np.float32)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"expected an image of shape (h, w) or (h, w, 1|3|4), got {np.shape(img)}")
    if a.shape[2] == 2:  # gray + alpha
        a = a[:, :, :1]
    if a.shape[2] == 4:
        a = a[:, :, :3]
    if chans == 1 and a.shape[2] == 3:
        a = (a @ _LUMA)[:, :, None]
    elif chans == 3 and a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=0.0)


def resize_to_model_input(img: np.ndarray, size: int, chans: int) -> np.ndarray:
    """Any float image -> (chans, size, size) float32 in [0, 1]: area-averaged when shrinking."""
    a = _to_channels(img, chans)
    h, w = a.shape[:2]
    if (h, w) != (size, size):
        interp = cv2.INTER_AREA if h >= size and w >= size else cv2.INTER_LINEAR
        a = cv2.resize(a, (size, size), interpolation=interp)
        if a.ndim == 2:
            a = a[:, :, None]
    return np.clip(a, 0.0, 1.0).transpose(2, 0, 1).copy()


def model_classes(loaded: LoadedModel) -> tuple[str, ...]:
    n = loaded.config.num_classes
    classes = loaded.card.get("classes")
    if isinstance(classes, list) and len(classes) == n:
        return tuple(str(c) for c in classes)
    return tuple(f"class_{i}" for i in range(n))


@torch.no_grad()
def predict_logits(loaded: LoadedModel, batch: np.ndarray) -> np.ndarray:
    """(b, chans, s, s) float array -> (b, num_classes) logits."""
    model = loaded.model
    device = next(model.parameters()).device
    return model(torch.from_numpy(batch).to(device)).float().cpu().numpy()


def predict_images(loaded: LoadedModel, images: Sequence[np.ndarray], batch_size: int = 16) -> list[ClassPrediction]:
    """Per-image softmax scores over the card's classes, the top class and its confidence."""
    cfg = loaded.config
    classes = model_classes(loaded)
    loaded.model.eval()
    out: list[ClassPrediction] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        batch = np.stack([resize_to_model_input(im, cfg.img_size, cfg.in_chans) for im in chunk])
        logits = predict_logits(loaded, batch)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        for p in probs:
            i = int(p.argmax())
            out.append(ClassPrediction(p.astype(np.float32), classes, i, classes[i], float(p[i])))
    return out
