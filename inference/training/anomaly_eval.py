"""Evaluate an anomaly model on a category's test split (image AUROC, pixel AUROC, PRO).

Maps are computed at the model's resolution and stretched to each image's own size, where
the ground truth lives. Unreadable images and defect images without a mask are reported in
``skipped`` (the latter still count for image AUROC).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch

from ..anomaly_predict import model_maps
from ..imageio import ImageReadError, read_image
from .anomaly_data import GOOD, CategoryTree, channel_mode, read_test_mask, to_model_input
from .anomaly_metrics import auroc, pixel_auroc, pro_score
from .common import batched

if TYPE_CHECKING:
    from ..anomaly_predict import AnomalyNet


def evaluate_tree(model: AnomalyNet, tree: CategoryTree, device: torch.device | str = "cpu",
                  batch_size: int = 8, progress: bool = False) -> dict[str, Any]:
    cfg = model.config
    labels, scores, masks, maps, mask_types = [], [], [], [], []
    skipped: list[str] = []
    per_type: dict[str, list[float]] = {}
    bar = None
    if progress:
        from .common import Progress

        bar = Progress(len(tree.test), "evaluate")
    model.eval()
    for chunk in batched(tree.test, batch_size):
        items, inputs, shapes = [], [], []
        for item in chunk:
            try:
                img = read_image(item.path, channel_mode(cfg.in_channels))
            except ImageReadError as exc:
                skipped.append(f"{exc} (left out)")
                continue
            try:
                gt = read_test_mask(item, img.shape[:2])
            except ImageReadError as exc:  # the image still counts for the image AUROC (it was left out whole, and a
                # readable defect image with it: a session-45 probe)
                skipped.append(f"{item.path}: its ground-truth mask cannot be read ({exc.reason}; image score only)")
                gt = None
            else:
                if gt is None:
                    skipped.append(f"{item.path}: no ground-truth mask (image score only)")
            items.append((item, gt))
            inputs.append(to_model_input(img, cfg.image_size, cfg.in_channels))
            shapes.append(img.shape[:2])
        if bar is not None:
            bar.update(len(chunk))
        if not inputs:
            continue
        batch_maps, batch_scores = model_maps(model, np.stack(inputs), device)
        for (item, gt), m, s, (h, w) in zip(items, batch_maps, batch_scores, shapes):
            labels.append(item.is_anomalous)
            scores.append(float(s))
            per_type.setdefault(item.defect_type, []).append(float(s))
            if gt is not None:
                masks.append(gt)
                mask_types.append(item.defect_type)
                maps.append(cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR))
    if bar is not None:
        bar.close()
    labels_a, scores_a = np.array(labels, bool), np.array(scores)
    result: dict[str, Any] = {
        "image_auroc": auroc(labels_a, scores_a),
        "pixel_auroc": pixel_auroc(masks, maps) if masks else math.nan,
        "pro": math.nan,
        "n_images": int(labels_a.size),
        "n_good": int((~labels_a).sum()),
        "n_defect": int(labels_a.sum()),
        "n_pixel_evaluated": len(masks),
        "skipped": skipped,
        "mean_score_by_type": {k: float(np.mean(v)) for k, v in sorted(per_type.items())},
    }
    if any(m.any() for m in masks):
        result["pro"] = pro_score(masks, maps)
    result["pixel_auroc_by_type"] = _pixel_auroc_by_type(masks, maps, mask_types)
    return result


def _pixel_auroc_by_type(masks: list[np.ndarray], maps: list[np.ndarray], types: list[str]) -> dict[str, float]:
    """Pixel AUROC of each defect type's images pooled with the good images.

    The pooled figure is dominated by the types with the largest masks (magnetic tile:
    'uneven' holds about two thirds of all defect pixels), so it is reported per type too.
    """
    good = [i for i, t in enumerate(types) if t == GOOD]
    out = {}
    for kind in sorted(set(types) - {GOOD}):
        idx = good + [i for i, t in enumerate(types) if t == kind]
        out[kind] = pixel_auroc([masks[i] for i in idx], [maps[i] for i in idx])
    return out


def format_table(rows: dict[str, dict[str, Any]]) -> str:
    """Plain-text table of image AUROC, pixel AUROC and PRO per model/category row."""
    head = f"{'model':<28} {'image AUROC':>11} {'pixel AUROC':>11} {'PRO@30%':>8} {'images':>7}"
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        lines.append(f"{name:<28} {r['image_auroc']:>11.4f} {r['pixel_auroc']:>11.4f} {r['pro']:>8.4f} {r['n_images']:>7d}")
    for name, r in rows.items():
        if r.get("pixel_auroc_by_type"):
            lines.append(f"pixel AUROC by type, {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in r["pixel_auroc_by_type"].items()))
    return "\n".join(lines)
