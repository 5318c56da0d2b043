"""Running a trained segmenter on frames of any size: probability map, binary mask, target count.

The worker, ``evaluate`` and training's held-out check all go through ``predict_probabilities``
so a model is scored exactly the way it is used. Frames are standardised whole, then run whole
(padded to the network's stride) up to ``MAX_WHOLE_SIDE``; larger frames run as overlapping
tiles so that memory stays bounded on a station without a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import torch

from inference.checkpoints import LoadedModel
from inference.models.mim_istd import segment_logits
from inference.training.segmenter_data import standardise_np, to_channels
from inference.training.segmenter_metrics import components

DEFAULT_THRESHOLD = 0.5  # logit > 0, the field's convention
MAX_WHOLE_SIDE = 1024
TILE = 512
TILE_OVERLAP = 64


@dataclass(frozen=True)
class SegmentationResult:
    probability: np.ndarray  # float32 (h, w) in [0, 1]
    mask: np.ndarray  # bool (h, w)
    count: int  # 8-connected target components in the mask
    boxes: tuple[tuple[int, int, int, int], ...]  # (x, y, w, h) per component
    threshold: float


def model_threshold(loaded: LoadedModel) -> float:
    return float(loaded.card.get("threshold", DEFAULT_THRESHOLD))


def model_max_fraction(loaded: LoadedModel) -> float | None:
    """Largest share of a frame one predicted target may cover (the card's ``max_target_fraction``), or None."""
    v = loaded.card.get("max_target_fraction")
    return float(v) if v else None


def largest_target_fraction(masks: Sequence[np.ndarray]) -> float:
    """The largest share of its frame any one 8-connected ground-truth target covers (0 with no targets)."""
    largest = 0.0
    for m in masks:
        areas, _ = components(m)
        if len(areas):
            largest = max(largest, float(areas.max()) / m.size)
    return largest


def drop_large_components(mask: np.ndarray, max_fraction: float | None) -> np.ndarray:
    """The mask without 8-connected components covering more than ``max_fraction`` of the frame.

    A small-target detector that lights up a whole bright object (a building, a cloud edge) has
    found clutter, not a target: such a blob is larger than any target it was trained on. The
    limit comes from the training masks (see ``segmenter_train``), so it is a property of the
    data the model was taught, not a tuned constant.
    """
    if not max_fraction or not mask.any():
        return mask
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    big = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] > max_fraction * mask.size)
    big = big[big > 0]
    return mask & ~np.isin(labels, big) if len(big) else mask


def model_flips(loaded: LoadedModel) -> bool:
    """Whether the card asks for test-time flips (chosen on held-out frames when it was trained)."""
    return bool(loaded.card.get("test_time_flips", False))


def _run(model: torch.nn.Module, x: torch.Tensor, flips: bool) -> torch.Tensor:
    """Logits of one padded-or-not frame; with ``flips``, the mean over the four h/v flips.

    Averaging over flips cancels the scan-order bias of a causal model and most one-off false
    alarms, at four times the cost.
    """
    if not flips:
        return segment_logits(model, x)
    acc = segment_logits(model, x)
    for dims in ((-1,), (-2,), (-2, -1)):
        acc = acc + segment_logits(model, x.flip(dims)).flip(dims)
    return acc / 4


def _tile_starts(n: int, tile: int, step: int) -> list[int]:
    if n <= tile:
        return [0]
    starts = list(range(0, n - tile, step))
    return starts + [n - tile]


@torch.no_grad()
def _logits(model: torch.nn.Module, image: np.ndarray, device: torch.device, flips: bool = False) -> np.ndarray:
    """Standardised (c, h, w) -> logits (h, w), tiled beyond MAX_WHOLE_SIDE."""
    c, h, w = image.shape
    x = torch.from_numpy(np.ascontiguousarray(image)).to(device)[None]
    if max(h, w) <= MAX_WHOLE_SIDE:
        return _run(model, x, flips)[0, 0].float().cpu().numpy()
    acc = np.zeros((h, w), np.float32)
    hits = np.zeros((h, w), np.float32)
    step = TILE - TILE_OVERLAP
    for y0 in _tile_starts(h, TILE, step):
        for x0 in _tile_starts(w, TILE, step):
            tile = x[:, :, y0:y0 + TILE, x0:x0 + TILE]
            out = _run(model, tile, flips)[0, 0].float().cpu().numpy()
            acc[y0:y0 + out.shape[0], x0:x0 + out.shape[1]] += out
            hits[y0:y0 + out.shape[0], x0:x0 + out.shape[1]] += 1
    return acc / hits


def predict_probabilities(
    model: torch.nn.Module, images: Sequence[np.ndarray], device: str | torch.device | None = None,
    standardised: bool = False, flips: bool = False,
) -> list[np.ndarray]:
    """Float images ((h, w) or (h, w, c) in [0, 1], or standardised (c, h, w) frames) -> probability maps."""
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    in_chans = model.config.in_chans
    try:
        out = []
        for img in images:
            frame = img if standardised else standardise_np(to_channels(np.asarray(img, dtype=np.float32), in_chans))
            logits = _logits(model, frame, dev, flips)
            out.append((1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))).astype(np.float32))
        return out
    finally:
        model.train(was_training)


def binarise(probability: np.ndarray, threshold: float, max_fraction: float | None = None) -> SegmentationResult:
    mask = drop_large_components(probability > threshold, max_fraction)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    boxes = tuple(tuple(int(v) for v in row[:4]) for row in stats[1:])
    return SegmentationResult(probability, mask, n - 1, boxes, threshold)


def predict_masks(
    loaded: LoadedModel, images: Sequence[np.ndarray], threshold: float | None = None, device: str | torch.device | None = None
) -> list[SegmentationResult]:
    """The worker's entry point: float images of any size -> per-image map, mask and target count."""
    thr = model_threshold(loaded) if threshold is None else float(threshold)
    limit = model_max_fraction(loaded)
    return [binarise(p, thr, limit) for p in predict_probabilities(loaded.model, images, device, flips=model_flips(loaded))]
