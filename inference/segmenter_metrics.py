"""Small-target segmentation metrics as the infrared small-target field reports them.

Definitions follow the DNANet / ACM evaluation code so that figures compare with published
tables, with its known slips fixed:

* IoU: intersection and union of target pixels summed over the whole set, then divided.
* nIoU: mean over images of each image's IoU, computed as inter / (union + eps) as ACM's
  ``SamplewiseSigmoidMetric`` does, so a frame with no target and no prediction scores 0 (the
  field's convention; it only matters for target-free frames).
* Pd: ground-truth targets are 8-connected components; one counts as detected when an as yet
  unmatched predicted component has its centroid closer than 3 pixels (``distance < 3``, as
  DNANet). Each predicted component matches at most one target.
* Fa: pixels of predicted components that matched no target, divided by all pixels of all
  frames at their actual size (DNANet hard-codes 256x256 per frame; we do not), reported x1e-6.
  DNANet drops unmatched components by *area value* (two components of equal area vanish
  together); we drop them by identity.

Target-free frames add their pixels to Fa's denominator, their false pixels to its numerator,
and nothing to Pd; a set without any target has Pd undefined (None), not a crash.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

MATCH_DISTANCE = 3.0
EPS = float(np.spacing(1))


def components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-connected components of a bool mask: (areas (n,), centroids (n, 2) as (x, y))."""
    n, _, stats, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return stats[1:, cv2.CC_STAT_AREA].astype(np.int64), centroids[1:].astype(np.float64)


def matched_components(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """One frame -> (predicted areas, predicted centroids (x, y), which predicted components matched a
    target, targets, detected targets), matched as Pd counts them."""
    gt_area, gt_cent = components(gt)
    pred_area, pred_cent = components(pred)
    matched = np.zeros(len(pred_area), dtype=bool)
    detected = 0
    for c in gt_cent:
        if matched.all():
            break
        dist = np.linalg.norm(pred_cent - c, axis=1)
        candidates = np.flatnonzero(~matched & (dist < MATCH_DISTANCE))
        if len(candidates):
            matched[candidates[0]] = True  # first unmatched one in label order, as DNANet
            detected += 1
    return pred_area, pred_cent, matched, len(gt_area), detected


def match_targets(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int, int]:
    """One frame -> (targets, detected targets, pixels of unmatched predicted components)."""
    pred_area, _, matched, targets, detected = matched_components(pred, gt)
    return targets, detected, int(pred_area[~matched].sum())


@dataclass
class SegmentationMeter:
    """Accumulates the four metrics over frames of any sizes."""

    inter: int = 0
    union: int = 0
    image_ious: list[float] = field(default_factory=list)
    targets: int = 0
    detected: int = 0
    false_pixels: int = 0
    pixels: int = 0

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        pred = np.asarray(pred, dtype=bool)
        gt = np.asarray(gt, dtype=bool)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {pred.shape} and mask {gt.shape} differ in size")
        inter = int(np.count_nonzero(pred & gt))
        union = int(np.count_nonzero(pred | gt))
        self.inter += inter
        self.union += union
        self.image_ious.append(inter / (union + EPS))
        t, d, f = match_targets(pred, gt)
        self.targets += t
        self.detected += d
        self.false_pixels += f
        self.pixels += gt.size

    def result(self) -> dict[str, float | int | None]:
        return {
            "iou": self.inter / self.union if self.union else None,
            "niou": float(np.mean(self.image_ious)) if self.image_ious else None,
            "pd": self.detected / self.targets if self.targets else None,
            "fa": self.false_pixels / self.pixels * 1e6 if self.pixels else None,
            "images": len(self.image_ious),
            "targets": self.targets,
            "detected": self.detected,
        }


def evaluate_masks(preds: list[np.ndarray], gts: list[np.ndarray]) -> dict[str, float | int | None]:
    meter = SegmentationMeter()
    for p, g in zip(preds, gts, strict=True):
        meter.update(p, g)
    return meter.result()
