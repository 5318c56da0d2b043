"""Anomaly heatmaps for the worker: LoadedModel + float images of any size -> plain numpy results.

Preprocessing is defined by the saved config (square ``image_size``, channel count, mean/std),
so a model directory alone is enough to run it; the map is stretched back to each image's own
size. ``is_anomalous`` uses the image threshold calibrated on held-out good images at training
time (card ``threshold.image``); a model without one reports False and threshold NaN.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence, cast

import cv2
import numpy as np
import torch

from .checkpoints import LoadedModel
from .preprocess import anomaly_input

if TYPE_CHECKING:
    from .models.pattern_anomaly import PatternAnomaly
    from .models.pixel_gaussian import PixelGaussian
    from .models.texture_knn import TextureKnn
    from .models.tile_defect import TileDefect

    # The anomaly family's networks (registry family "anomaly"): what a loaded anomaly model is.
    AnomalyNet = PatternAnomaly | TextureKnn | TileDefect | PixelGaussian


@dataclass(frozen=True)
class AnomalyPrediction:
    anomaly_map: np.ndarray  # float32 (h, w), the input image's size
    score: float
    is_anomalous: bool
    threshold: float


def image_threshold(card: dict) -> float:
    try:
        return float(card["threshold"]["image"])
    except (KeyError, TypeError, ValueError):
        return math.nan


def normalise_batch(model: AnomalyNet, batch: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(n, c, s, s) [0, 1] -> normalised tensor per the model's config."""
    cfg = model.config
    mean = torch.tensor(cfg.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std = torch.tensor(cfg.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return (torch.as_tensor(batch, device=device) - mean) / std


@torch.no_grad()
def model_maps(model: AnomalyNet, batch: np.ndarray, device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Maps (n, s, s) and scores (n,) at model resolution for a [0, 1] batch (n, c, s, s)."""
    x = normalise_batch(model, batch, device)
    both = getattr(model, "maps_and_scores", None)
    if callable(both):  # a model whose image score is not read off its map (tile_defect)
        maps, scores = both(x)
    else:
        maps = model.anomaly_map(x)
        scores = model.score(maps)
    return maps.float().cpu().numpy(), scores.float().cpu().numpy()


def predict_images(loaded: LoadedModel, images: Sequence[np.ndarray], batch_size: int = 8) -> list[AnomalyPrediction]:
    """Per-image anomaly map (float32, image size), image score and the thresholded decision."""
    model = cast("AnomalyNet", loaded.model)
    cfg = model.config
    device = next(iter(model.buffers()), next(model.parameters())).device
    thr = image_threshold(loaded.card)
    results: list[AnomalyPrediction] = []
    model.eval()
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        batch = np.stack([anomaly_input(img, cfg.image_size, cfg.in_channels) for img in chunk])
        maps, scores = model_maps(model, batch, device)
        for img, m, s in zip(chunk, maps, scores):
            h, w = np.asarray(img).shape[:2]
            full = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
            results.append(AnomalyPrediction(full, float(s), bool(not math.isnan(thr) and s > thr), thr))
    return results


@torch.no_grad()
def embed_images(loaded: LoadedModel, images: Sequence[np.ndarray], batch_size: int = 8) -> np.ndarray:
    """Float images -> (n, 2 d) embeddings: mean and spread over the image of the comparer's token
    embeddings (``token_features``), or of the appearance features of a model without one; what
    ``inference.domain`` describes and scores."""
    model = cast("AnomalyNet", loaded.model)
    model.eval()
    cfg = model.config
    device = next(iter(model.buffers()), next(model.parameters())).device
    out = []
    for start in range(0, len(images), batch_size):
        batch = np.stack([anomaly_input(img, cfg.image_size, cfg.in_channels) for img in images[start:start + batch_size]])
        x = normalise_batch(model, batch, device)
        if hasattr(model, "token_features"):  # the pattern model: its comparer's tokens
            feats = cast("PatternAnomaly", model).token_features(x)[..., :-2]  # the last two columns are token positions
            feats = feats.reshape(feats.shape[0], -1, feats.shape[-1])
        else:
            feats = cast("TextureKnn | PixelGaussian", model).features(x).flatten(2).transpose(1, 2)
        out.append(torch.cat([feats.mean(dim=1), feats.std(dim=1, correction=0)], dim=1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
