"""Running a loaded classifier on images of any size, depth and channel count.

The worker hands float images (as ``inference.imageio.read_image`` returns them, or any
(h, w), (h, w, 1), (h, w, 3) or (h, w, 4) float array in [0, 1]); this module brings each to the
model's own input (channels and size from its saved config) and returns plain data.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, cast

import numpy as np
import torch

from inference.checkpoints import LoadedModel
from inference.models.memory_mamba import MemoryMamba
from inference.preprocess import classifier_input


@dataclass(frozen=True)
class ClassPrediction:
    scores: np.ndarray  # (num_classes,) softmax over ``classes``
    classes: tuple[str, ...]
    index: int
    label: str
    confidence: float


# The model's own input shaping lives with every family's in inference.preprocess.
resize_to_model_input = classifier_input


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


def model_input(loaded: LoadedModel, image: np.ndarray) -> np.ndarray:
    """What the model's forward takes for one decoded image: the model's own features where it
    computes them from the picture (``texture_linear``'s ``image_input``), else the resized pixels.

    The one place where the predict path depends on the architecture, so the engine, the worker and
    ``evaluate`` run every classifier version through the same code.
    """
    own = getattr(loaded.model, "image_input", None)
    if callable(own):
        return np.asarray(own(image), dtype=np.float32)
    cfg = loaded.config
    return resize_to_model_input(image, cfg.img_size, cfg.in_chans)


def model_tta(loaded: LoadedModel) -> str:
    """The test-time augmentation the model's card asks for ("none" for cards that predate it)."""
    mode = str(loaded.card.get("test_time_augmentation", "none"))
    return mode if mode in TTA_MODES else "none"


@torch.no_grad()
def predict_logits(loaded: LoadedModel, batch: np.ndarray, tta: str | None = None) -> np.ndarray:
    """(b, chans, s, s) float array (or (b, features) for a model with ``image_input``) -> (b, num_classes)
    logits; ``tta`` None means the card's choice."""
    model = loaded.model
    device = next(model.parameters()).device
    mode = model_tta(loaded) if tta is None else tta
    if mode != "none" and callable(getattr(model, "image_input", None)):
        raise ValueError(f"test-time views ({mode}) turn pixels: {loaded.name} reads a feature vector of the "
                         "picture, so it runs without them (tta none)")
    return tta_logits(model, torch.from_numpy(batch).to(device), mode).float().cpu().numpy()


def predict_images(loaded: LoadedModel, images: Sequence[np.ndarray], batch_size: int = 16) -> list[ClassPrediction]:
    """Per-image softmax scores over the card's classes, the top class and its confidence."""
    classes = model_classes(loaded)
    loaded.model.eval()
    out: list[ClassPrediction] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        batch = np.stack([model_input(loaded, im) for im in chunk])
        logits = predict_logits(loaded, batch)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        for p in probs:
            i = int(p.argmax())
            out.append(ClassPrediction(p.astype(np.float32), classes, i, classes[i], float(p[i])))
    return out


@torch.no_grad()
def embed_images(loaded: LoadedModel, images: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
    """Float images -> (n, d) pooled backbone embeddings at the model's input (``MemoryMamba.embedding``),
    what ``inference.domain`` describes and scores. A model that computes its own input from the
    picture (``texture_linear``) is described by that input, standardised as its layer reads it."""
    cfg = loaded.config
    if callable(getattr(loaded.model, "image_input", None)):
        feats = np.stack([model_input(loaded, im) for im in images]) if len(images) else np.zeros((0, 0), np.float32)
        state = loaded.model.state_dict()
        return ((feats - state["mean"].numpy()) / state["scale"].numpy()).astype(np.float32) if len(images) else feats
    model = cast(MemoryMamba, loaded.model)
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        batch = np.stack([resize_to_model_input(im, cfg.img_size, cfg.in_chans) for im in images[start:start + batch_size]])
        out.append(model.embedding(torch.from_numpy(batch).to(device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
