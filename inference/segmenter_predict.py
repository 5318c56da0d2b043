"""Running a trained segmenter on frames of any size: probability map, binary mask, target count.

The worker, ``evaluate`` and training's held-out check all go through ``predict_probabilities``
so a model is scored exactly the way it is used. Frames are standardised whole, then run whole
(padded to the network's stride) up to ``MAX_WHOLE_SIDE``; larger frames run as overlapping
tiles so that memory stays bounded on a station without a GPU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable, NamedTuple, Sequence, cast

import cv2
import numpy as np
import torch

from inference.checkpoints import CheckpointError, LoadedModel
from inference.models.mim_istd import MiMISTD, pad_to_stride, segment_logits
from inference.models.target_verifier import TargetVerifier, verify
from inference.preprocess import segmenter_input, shrink_to, standardise
from inference.segmenter_metrics import SegmentationMeter, components

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
    confidence: float = 1.0  # frame_confidence: how far every blob the map holds is from the decision


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


def model_mask_threshold(loaded: LoadedModel) -> float | None:
    """The card's ``mask_threshold`` (hysteresis, see ``shrink_components``), or None; a broken value is a CheckpointError."""
    v = loaded.card.get("mask_threshold")
    if v is None:
        return None
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not model_threshold(loaded) <= v < 1:
        raise CheckpointError(f"{loaded.path}: mask_threshold must be a number from the threshold up to 1, got {v!r}")
    return float(v)


def shrink_components(mask: np.ndarray, probability: np.ndarray, mask_threshold: float | None) -> np.ndarray:
    """Hysteresis: each component (found at the lower threshold) keeps only its pixels above ``mask_threshold``.

    Fa charges every pixel of a false component and a lower detection threshold finds faint targets,
    so the component is found low and drawn high. A component without such a pixel stays whole: the
    shrink never removes a detection.
    """
    if mask_threshold is None or not mask.any():
        return mask
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    strong = mask & (probability > mask_threshold)
    has_strong = np.zeros(n, bool)
    has_strong[np.unique(labels[strong])] = True
    has_strong[0] = False
    return strong | (mask & ~has_strong[labels])


# Test-time flip views besides the frame itself, by the name a card gives them. A card's
# ``test_time_flips`` is ``true`` (all three: four views), ``false`` (none) or a list of these names
# (e.g. ``["h"]``: the frame and its mirror image, two views).
FLIP_DIMS: dict[str, tuple[int, ...]] = {"h": (-1,), "v": (-2,), "hv": (-2, -1)}
Flips = bool | Sequence[str]


def flip_views(flips: Flips) -> tuple[tuple[int, ...], ...]:
    """The tensor dims flipped for each view besides the identity; a malformed value is a ValueError."""
    if flips is True:
        return tuple(FLIP_DIMS.values())
    if flips is False:
        return ()
    if isinstance(flips, (str, bytes)) or not isinstance(flips, Sequence):
        raise ValueError(f"test_time_flips must be true, false or a list of {', '.join(FLIP_DIMS)}; got {flips!r}")
    unknown = [f for f in flips if f not in FLIP_DIMS]
    if unknown or len(set(flips)) != len(flips):
        raise ValueError(f"test_time_flips names unknown or repeated views {list(flips)!r} (known: {', '.join(FLIP_DIMS)})")
    return tuple(FLIP_DIMS[f] for f in FLIP_DIMS if f in flips)  # the catalogue's order: results do not depend on the card's


def model_flips(loaded: LoadedModel) -> Flips:
    """The card's test-time flips (chosen by cross-validation when it was trained); a malformed entry is a
    CheckpointError."""
    value = loaded.card.get("test_time_flips", False)
    try:
        flip_views(value)
    except ValueError as exc:
        raise CheckpointError(f"{loaded.path}: {exc}") from None
    return value if isinstance(value, bool) else [str(v) for v in value]


def _run(model: MiMISTD, x: torch.Tensor, flips: Flips) -> torch.Tensor:
    """Logits of one padded-or-not frame; with ``flips``, the mean over the frame and its flipped views.

    Averaging over flips cancels the scan-order bias of a causal model and most one-off false
    alarms, at one pass per view.
    """
    views = flip_views(flips)
    acc = segment_logits(model, x)
    for dims in views:
        acc = acc + segment_logits(model, x.flip(dims)).flip(dims)
    return acc / (1 + len(views)) if views else acc


def _tile_starts(n: int, tile: int, step: int) -> list[int]:
    if n <= tile:
        return [0]
    starts = list(range(0, n - tile, step))
    return starts + [n - tile]


@torch.no_grad()
def _logits(model: MiMISTD, image: np.ndarray, device: torch.device, flips: Flips = False) -> np.ndarray:
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
    model: torch.nn.Module | Sequence[torch.nn.Module], images: Sequence[np.ndarray], device: str | torch.device | None = None,
    standardised: bool = False, flips: Flips = False,
) -> list[np.ndarray]:
    """Float images ((h, w) or (h, w, c) in [0, 1], or standardised (c, h, w) frames) -> probability maps.

    Given several models (an ensemble, see ``model_members``), the map is the mean of their
    probabilities: members trained differently rarely share a false alarm, while all of them see
    a real target.
    """
    # Loaded segmenter networks (registry family "segmenter": MiMISTD is its one full network).
    models = [cast(MiMISTD, m) for m in (model if isinstance(model, Sequence) else [model])]
    if not models:
        raise ValueError("no model to run")
    dev = torch.device(device) if device is not None else next(models[0].parameters()).device
    in_chans = models[0].config.in_chans
    if any(m.config.in_chans != in_chans for m in models):
        raise ValueError("ensemble members disagree on the number of input channels")
    was_training = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        out = []
        for img in images:
            frame = img if standardised else standardise(segmenter_input(img, in_chans))
            acc = np.zeros(frame.shape[1:], np.float32)
            for m in models:
                logits = _logits(m, frame, dev, flips)
                acc += 1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))
            out.append((acc / len(models)).astype(np.float32))
        return out
    finally:
        for m, t in zip(models, was_training):
            m.train(t)


def model_members(loaded: LoadedModel) -> list[MiMISTD]:
    """The networks whose mean probability is the model's map: the main one, then the card's ``ensemble`` parts."""
    names = loaded.card.get("ensemble") or []
    missing = [n for n in names if n not in loaded.parts]
    if missing:
        raise CheckpointError(f"{loaded.path}: ensemble members {missing} are not among the model's parts")
    return [cast(MiMISTD, m) for m in [loaded.model] + [loaded.parts[n].model for n in names]]


def frame_plane(frame: np.ndarray) -> np.ndarray:
    """A standardised (c, h, w) frame as the single plane the target verifier reads."""
    return frame[0] if frame.shape[0] == 1 else frame.mean(0)


class VerifierRule(NamedTuple):
    """A target verifier and how its score decides.

    Without ``log_odds_per_pixel`` a component is rejected when its score is below ``threshold``
    (the rule of session 3's cards). With it, the pixel-cost rule replaces the flat threshold: a
    component of n pixels is kept iff its odds s / (1 - s) are at least lambda * n, with
    log lambda = ``log_odds_per_pixel``. Why that form: Fa charges a false component by its pixels
    while Pd charges a lost target by one, so the expected cost of keeping a component is
    (1 - s) * c * n against a gain of s; keeping iff the gain is larger is exactly this test, and
    the constant c (with the verifier's class-balanced prior) collapses into the one parameter lambda.
    """

    model: TargetVerifier
    threshold: float
    log_odds_per_pixel: float | None = None


def rejected_by(scores: np.ndarray, pixels: np.ndarray, threshold: float, log_odds_per_pixel: float | None = None) -> np.ndarray:
    """Which components (verifier ``scores`` and ``pixels`` per component) the verifier's rule rejects."""
    scores = np.asarray(scores, np.float64)
    if log_odds_per_pixel is None:
        return scores < threshold
    # odds(s) >= lambda * n  <=>  s >= sigmoid(log lambda + log n): no division, no log of a saturated score
    bar = 1.0 / (1.0 + np.exp(-(log_odds_per_pixel + np.log(np.maximum(np.asarray(pixels, np.float64), 1.0)))))
    return scores < bar


def drop_rejected(mask: np.ndarray, plane: np.ndarray, verifier: TargetVerifier, threshold: float,
                  log_odds_per_pixel: float | None = None, probability: np.ndarray | None = None) -> np.ndarray:
    """The mask without the 8-connected components the target verifier rejects (see ``VerifierRule``)."""
    n, labels, stats, cent = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask
    scores = verify(verifier, plane, cent[1:, ::-1], probability)
    rejected = np.flatnonzero(rejected_by(scores, stats[1:, cv2.CC_STAT_AREA], threshold, log_odds_per_pixel)) + 1
    return mask & ~np.isin(labels, rejected) if len(rejected) else mask


def _real(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def model_verifier(loaded: LoadedModel) -> VerifierRule | None:
    """The model directory's target verifier and its rule, or None when it carries none.

    A card that names a verifier without its part (or the reverse), or whose rule has broken
    values, is a broken model directory: running without it would silently change what the model
    detects. The card's optional ``size_rule`` (``log_odds_per_pixel``) switches on the pixel-cost rule.
    """
    part = loaded.parts.get("verifier")
    entry = loaded.card.get("verifier")
    if part is None and entry is None:
        return None
    if part is None or not isinstance(entry, dict) or not _real(entry.get("threshold")):
        raise CheckpointError(f"{loaded.path}: the card's verifier entry and its 'verifier' part do not match")
    if "size_rule" not in entry:
        return VerifierRule(cast(TargetVerifier, part.model), float(entry["threshold"]))
    rule = entry["size_rule"]
    if not isinstance(rule, dict) or not _real(rule.get("log_odds_per_pixel")):
        raise CheckpointError(f"{loaded.path}: the verifier's size_rule needs a finite number 'log_odds_per_pixel'")
    return VerifierRule(cast(TargetVerifier, part.model), float(entry["threshold"]), float(rule["log_odds_per_pixel"]))


# How far below the threshold, in log-odds, a blob still counts as one the model nearly called a target.
NEAR_LOG_ODDS = 4.0


def _logit(p: np.ndarray | float) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(q / (1 - q))


def frame_confidence(probability: np.ndarray, threshold: float) -> float:
    """How sure the segmenter is of its whole answer on a frame, in [0, 1], for "label next" (ADR 0071).

    A frame teaches a retraining most where the model nearly decided otherwise: a target whose peak barely
    clears the threshold, or a faint blob just below it (a target it may have missed). Each blob of the map
    within ``NEAR_LOG_ODDS`` log-odds below the threshold (8-connected) is judged by its peak: its distance
    from the threshold in log-odds, over ``NEAR_LOG_ODDS``, capped at 1. The frame's confidence is its
    least sure blob's; 1 where the map holds none (nothing near a target anywhere). Read off the probability map
    before the card's post-processing (verifier, hysteresis), so it says what the network was unsure of."""
    prob = np.asarray(probability, dtype=np.float32)
    if prob.size == 0:
        return 1.0
    t = float(_logit(threshold))
    low = float(1.0 / (1.0 + np.exp(-(t - NEAR_LOG_ODDS))))
    near = prob > low
    if not near.any():
        return 1.0
    n, labels = cv2.connectedComponents(near.astype(np.uint8), connectivity=8)
    peaks = np.zeros(n, dtype=np.float64)
    np.maximum.at(peaks, labels[near].astype(np.int64), prob[near].astype(np.float64))  # near pixels only
    margin = np.abs(_logit(peaks[1:]) - t).min()
    return float(min(1.0, margin / NEAR_LOG_ODDS))


def binarise(probability: np.ndarray, threshold: float, max_fraction: float | None = None,
             plane: np.ndarray | None = None, verifier: VerifierRule | tuple[TargetVerifier, float] | None = None,
             mask_threshold: float | None = None) -> SegmentationResult:
    """Threshold, drop over-large components, then (with a verifier and the frame's plane) rejected ones,
    then (with ``mask_threshold``) shrink the rest to their stronger pixels."""
    mask = drop_large_components(probability > threshold, max_fraction)
    if verifier is not None and plane is not None:
        rule = verifier if isinstance(verifier, VerifierRule) else VerifierRule(*verifier)
        mask = drop_rejected(mask, plane, rule.model, rule.threshold, rule.log_odds_per_pixel, probability=probability)
    mask = shrink_components(mask, probability, mask_threshold)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    boxes = tuple((int(x), int(y), int(w), int(h)) for x, y, w, h in stats[1:, :4])
    return SegmentationResult(probability, mask, n - 1, boxes, threshold, frame_confidence(probability, threshold))


@dataclass(frozen=True)
class PostProcess:
    """Probability map -> mask, as a model's card configures it (see ``binarise``): what the
    application, ``evaluate``, the calibrations and the diagnostics all apply."""

    threshold: float
    max_fraction: float | None = None
    verifier: VerifierRule | None = None
    mask_threshold: float | None = None

    def __call__(self, probability: np.ndarray, frame: np.ndarray) -> SegmentationResult:
        """``probability`` of a standardised (c, h, w) ``frame`` -> its result."""
        return binarise(probability, self.threshold, self.max_fraction, frame_plane(frame), self.verifier, self.mask_threshold)


def model_post_process(loaded: LoadedModel) -> PostProcess:
    """The card's post-processing; a broken verifier or mask threshold entry is a CheckpointError."""
    return PostProcess(model_threshold(loaded), model_max_fraction(loaded), model_verifier(loaded), model_mask_threshold(loaded))


def score_masks(post: PostProcess, frames: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict:
    """IoU, nIoU, Pd and Fa of ``post``'s masks over (probability, standardised frame, true mask) triples."""
    meter = SegmentationMeter()
    for probability, frame, truth in frames:
        meter.update(post(probability, frame).mask, truth)
    return meter.result()


def predict_masks(
    loaded: LoadedModel, images: Sequence[np.ndarray], threshold: float | None = None, device: str | torch.device | None = None
) -> list[SegmentationResult]:
    """The worker's entry point: float images of any size -> per-image map, mask and target count."""
    post = model_post_process(loaded)
    if threshold is not None:
        post = replace(post, threshold=float(threshold))
    in_chans = cast(MiMISTD, loaded.model).config.in_chans
    frames = [standardise(segmenter_input(img, in_chans)) for img in images]
    probs = predict_probabilities(model_members(loaded), frames, device, standardised=True, flips=model_flips(loaded))
    return [post(p, f) for p, f in zip(probs, frames)]


# Frames are shrunk to this side for their embedding: the domain question (is this an infrared
# sky frame like the training ones?) is about the whole scene, not its few-pixel targets, and the
# encoder at full size would cost as much again as the prediction.
EMBED_SIDE = 256


@torch.no_grad()
def embed_images(loaded: LoadedModel, images: Sequence[np.ndarray], device: str | torch.device | None = None) -> np.ndarray:
    """Float images -> (n, 2 C) embeddings: the spatial mean and spread of the deepest encoder map
    of the main network, on the frame shrunk to ``EMBED_SIDE`` (what ``inference.domain`` describes)."""
    model = cast(MiMISTD, loaded.model)
    model.eval()
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    in_chans = model.config.in_chans
    out = []
    for img in images:
        a = shrink_to(np.asarray(img, np.float32), EMBED_SIDE)
        frame = standardise(segmenter_input(a, in_chans))
        x, _ = pad_to_stride(torch.from_numpy(np.ascontiguousarray(frame)).to(dev)[None], model.config.stride)
        deepest = model.encode(x)[1][-1]
        out.append(torch.cat([deepest.mean(dim=(2, 3)), deepest.std(dim=(2, 3), correction=0)], dim=1)[0])
    return torch.stack(out).float().cpu().numpy() if out else np.zeros((0, 0), np.float32)
