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


TTA_MODES = ("none", "flips", "d4")


def tta_views(x: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """The test-time views of a (b, c, s, s) batch: identity; + h/v flips; or all 8 of the dihedral group.

    Surface textures have no canonical orientation and the classifier is trained with flips and 90°
    turns, so every view is a valid picture of the same class; averaging over them removes the
    scan-order preferences a causal selective scan keeps despite its four directions.
    """
    if mode == "none":
        return [x]
    if mode == "flips":
        return [x, x.flip(-1), x.flip(-2), x.flip((-2, -1))]
    if mode == "d4":
        turns = [torch.rot90(x, k, dims=(-2, -1)) for k in range(4)]
        return turns + [t.flip(-1) for t in turns]
    raise ValueError(f"test-time augmentation must be one of {TTA_MODES}, got {mode!r}")


def tta_logits(model: torch.nn.Module, x: torch.Tensor, mode: str = "none") -> torch.Tensor:
    """Mean of the logits over the views of ``mode`` (one batched forward pass)."""
    views = tta_views(x, mode)
    if len(views) == 1:
        return model(x)
    out = model(torch.cat(views))
    return out.view(len(views), x.shape[0], -1).mean(0)


def model_tta(loaded: LoadedModel) -> str:
    """The test-time augmentation the model's card asks for ("none" for cards that predate it)."""
    mode = str(loaded.card.get("test_time_augmentation", "none"))
    return mode if mode in TTA_MODES else "none"


@torch.no_grad()
def predict_logits(loaded: LoadedModel, batch: np.ndarray, tta: str | None = None) -> np.ndarray:
    """(b, chans, s, s) float array -> (b, num_classes) logits; ``tta`` None means the card's choice."""
    model = loaded.model
    device = next(model.parameters()).device
    mode = model_tta(loaded) if tta is None else tta
    return tta_logits(model, torch.from_numpy(batch).to(device), mode).float().cpu().numpy()


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
