"""Scoring a segmenter on a data tree: IoU, nIoU, Pd, Fa at the model's threshold."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, cast

import torch

from inference.checkpoints import LoadedModel
from inference.models.mim_istd import MiMISTD
from inference.segmenter_predict import (
    PostProcess,
    model_flips,
    model_mask_threshold,
    model_max_fraction,
    model_members,
    model_threshold,
    model_verifier,
    predict_probabilities,
    score_masks,
)
from inference.training.common import Progress
from inference.training.segmenter_data import SegTree, load_frames


def evaluate_tree(
    loaded: LoadedModel, data: str | Path, split: str | None = None, threshold: float | None = None,
    device: torch.device | str = "cpu", max_fraction: float | None = None, use_verifier: bool = True,
    progress: bool = False, before_frame: Callable[[], object] | None = None,
) -> dict[str, Any]:
    """Score ``loaded`` on ``split`` of the tree (default: test.txt, else val.txt, else all frames).

    ``max_fraction`` None applies the card's large-component limit, as the application does; 0 turns it off.
    The model's target verifier, when it has one, runs as in the application unless ``use_verifier`` is False.
    ``progress`` shows a bar with an ETA (a full-size evaluation on a CPU takes many minutes).
    ``before_frame`` runs before each frame (``evaluate --threads auto``: the thread count, ADR 0040).
    """
    tree = SegTree.open(data)
    split = split or tree.eval_split()
    if split != "all" and not (tree.root / f"{split}.txt").is_file():
        # scored from a fallback, the figures said "test" over val.txt's frames, or "val" over a hash share of
        # frames train.txt lists (a session-45 probe): a split is scored from its own list or not at all
        raise ValueError(f"{data}: no {split}.txt; choose a split the folder lists, or --split all")
    stems = tree.stems(split)
    problems: list[str] = []
    if split == "all":  # every image and mask of the folder: one without its other half is said, not dropped
        problems += [f"{tree.images[s]}: no mask (left out)" for s in sorted(set(tree.images) - set(tree.masks))]
        problems += [f"{tree.masks[s]}: no image (left out)" for s in sorted(set(tree.masks) - set(tree.images))]
    else:
        trained = set(tree.stems("train")) if split != "train" and (tree.root / "train.txt").is_file() else set()
        overlap = sorted(trained & set(stems))
        if overlap:
            raise ValueError(f"{data}: {len(overlap)} frame(s) of {split}.txt are listed in train.txt too, e.g. "
                             f"{', '.join(overlap[:3])}")
    frames, unusable = load_frames(tree, stems, cast(MiMISTD, loaded.model).config.in_chans)
    problems += unusable
    if not frames:
        raise ValueError(f"{data}: no usable frames in split {split!r}" + (f" ({unusable[0]})" if unusable else ""))
    thr = model_threshold(loaded) if threshold is None else float(threshold)
    flips = model_flips(loaded)
    limit = model_max_fraction(loaded) if max_fraction is None else (float(max_fraction) or None)
    verifier = model_verifier(loaded) if use_verifier else None
    members = model_members(loaded)
    shrink = model_mask_threshold(loaded)
    t0 = time.monotonic()
    bar = Progress(len(frames), "evaluate segmenter") if progress else None

    def scored():
        # One frame at a time: frames differ in size and the maps of a 2k frame are not small.
        for f in frames:
            if before_frame is not None:
                before_frame()
            yield predict_probabilities(members, [f.image], device, standardised=True, flips=flips)[0], f.image, f.mask
            if bar is not None:
                bar.update()

    try:
        result = score_masks(PostProcess(thr, limit, verifier, shrink), scored())
    finally:
        if bar is not None:
            bar.close()
    result.update(threshold=thr, test_time_flips=flips, max_target_fraction=limit, verifier=verifier is not None, mask_threshold=shrink,
                  verifier_log_odds_per_pixel=getattr(verifier, "log_odds_per_pixel", None), members=len(members), split=split, skipped=problems, seconds=round(time.monotonic() - t0, 2),
                  model=str(loaded.path) if loaded.path else loaded.name)
    return result


def format_table(result: dict[str, Any]) -> str:
    def num(v: Any, fmt: str) -> str:
        return "n/a" if v is None else format(v, fmt)

    rows = [
        ("IoU", num(result["iou"], ".4f")),
        ("nIoU", num(result["niou"], ".4f")),
        ("Pd", num(result["pd"], ".4f") + f"  ({result['detected']}/{result['targets']} targets)"),
        ("Fa (x1e-6)", num(result["fa"], ".2f")),
        ("threshold", f"{result['threshold']:.2f}"),
        ("size limit", "off" if not result.get("max_target_fraction") else f"components over {result['max_target_fraction']:.4%} of a frame dropped"),
        ("verifier", "off" if not result.get("verifier") else "flat threshold" if result.get("verifier_log_odds_per_pixel") is None
         else f"pixel-cost rule, log lambda {result['verifier_log_odds_per_pixel']:.3f}"),
        ("mask threshold", "off" if result.get("mask_threshold") is None else f"{result['mask_threshold']:.2f} (hysteresis)"),
        ("frames", f"{result['images']} ({result['split']})" + (f", {len(result['skipped'])} skipped" if result["skipped"] else "")),
    ]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
