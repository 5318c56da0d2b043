"""Re-run a trained segmenter's held-out calibration: threshold, test-time flips, size limit.

Training ends with this step; running it again on an existing model directory brings a model
trained before a change of the post-processing (such as the large-component limit) up to date
without retraining. Like training, it looks only at ``train.txt`` (the fit frames for the size
limit, the held-out tenth for threshold and flips), never at the validation split.

``--add-member DIR`` (repeatable) turns the model into an ensemble: the other trained segmenter is
copied into ``members/`` of the model directory, the map becomes the mean of all members'
probabilities, and threshold and flips are calibrated for that mean. A target verifier trained
for the old map is removed (train it again with ``segmenter_verifier``).

``--mask-thresholds 0.7,0.8,...`` does only the hysteresis step instead: components stay found at the
card's threshold, each is drawn with its pixels above the mask threshold
(``segmentation.shrink_components``), and the candidate with the lowest held-out Fa is stored as
``mask_threshold`` among those that keep held-out Pd and lose at most ``IOU_TOLERANCE`` of held-out
IoU, and only if it lowers Fa at all (otherwise the card is left without one).

    python -m inference.training.segmenter_calibrate --model DIR --data SIRST_DIR [--add-member OTHER_DIR | --mask-thresholds LIST]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from inference.checkpoints import CheckpointError, load_model, save_model
from inference.segmenter_predict import (
    PostProcess,
    model_flips,
    model_members,
    model_post_process,
    model_threshold,
    predict_probabilities,
    score_masks,
)
from inference.training.common import set_threads
from inference.training.segmenter_data import Frame, SegDataError, SegTree
from inference.training.segmenter_train import LARGE_COMPONENT_FACTOR, calibrate, size_limit, training_frames


def add_members(model_dir: Path, members: Sequence[Path], storage_dtype: torch.dtype | None = None) -> None:
    """Copy each member model directory into ``model_dir/members/`` and list it in the card's ensemble;
    with ``storage_dtype`` (float16) the members' weights are stored at that precision (loaded as float32)."""
    main = load_model(model_dir, family="segmenter")
    card = dict(main.card)
    parts, ensemble = dict(card.get("parts") or {}), list(card.get("ensemble") or [])
    for src in members:
        other = load_model(src, family="segmenter")
        if other.name != main.name or other.config.in_chans != main.config.in_chans or other.parts:
            raise ValueError(f"{src}: not a plain {main.name} model with {main.config.in_chans} input channel(s)")
        k = 1 + max((int(n[6:]) for n in parts if n.startswith("member") and n[6:].isdigit()), default=0)
        dest = Path(model_dir) / "members" / str(k)
        if dest.exists():
            shutil.rmtree(dest)
        if storage_dtype is None:
            shutil.copytree(src, dest)
        else:
            save_model(dest, other.name, other.model, other.config, other.card, storage_dtype=storage_dtype)
        parts[f"member{k}"] = f"members/{k}"
        ensemble.append(f"member{k}")
    if parts.pop("verifier", None) is not None:
        shutil.rmtree(Path(model_dir) / "verifier", ignore_errors=True)
    card.pop("verifier", None)
    card.update(parts=parts, ensemble=ensemble)
    save_model(model_dir, main.name, main.model, main.config, card)


def recalibrate(model_dir: Path, data: Path, device: str = "cpu", members: Sequence[Path] = ()) -> dict[str, Any]:
    """Rewrites the card of ``model_dir`` in place (weights untouched); returns the new card."""
    if members:
        add_members(model_dir, members)
    loaded = load_model(model_dir, family="segmenter")
    fit, held, _ = training_frames(SegTree.open(data), loaded.config.in_chans)
    if not held:
        raise ValueError(f"{data}: no held-out frames to calibrate on")
    largest, limit = size_limit(fit)
    thr, flips, metrics = calibrate(model_members(loaded), held, device, limit)
    card = dict(loaded.card)
    previous = {k: card.get(k) for k in ("threshold", "test_time_flips", "held_out_metrics", "max_target_fraction", "mask_threshold")}
    card.pop("mask_threshold", None)  # chosen for the old threshold and map; choose again with --mask-thresholds
    card.update(
        threshold=thr, test_time_flips=flips, held_out_metrics=metrics, max_target_fraction=limit,
        max_target_fraction_rule=f"{LARGE_COMPONENT_FACTOR:g} x the largest fit-frame target's share of its frame; "
                                 "larger predicted components are dropped from the mask",
    )
    card.setdefault("data", {})["largest_target_fraction"] = largest
    card.setdefault("recalibrations", []).append({"before": previous, "command": "python -m inference.training.segmenter_calibrate",
                                                  "members": [str(m) for m in members]})
    save_model(model_dir, loaded.name, loaded.model, loaded.config, card)
    return card


IOU_TOLERANCE = 0.005  # held-out IoU the hysteresis may cost (session 3's tolerance for the verifier)


def choose_mask_threshold(post: PostProcess, probs: Sequence[np.ndarray], frames: Sequence[Frame],
                          candidates: Sequence[float], label: str = "held_out") -> dict[str, Any]:
    """The mask-threshold rule (module docstring) on given maps of given frames; ``post`` is the card's
    post-processing without a mask threshold. Returns the record: chosen value (or None), figures without
    and per candidate (keys ``<label>_without``, ``<label>_sweep``)."""
    def score(mask_threshold: float | None) -> dict[str, Any]:
        return score_masks(replace(post, mask_threshold=mask_threshold), ((p, f.image, f.mask) for f, p in zip(frames, probs)))

    base = score(None)
    sweep = {f"{c:g}": score(float(c)) for c in candidates}
    def iou_kept(c: float) -> bool:  # frames without a target pixel have no IoU (None): nothing to keep (it raised
        now, before = sweep[f"{c:g}"]["iou"], base["iou"]   # a TypeError on a fold with few targets, session 46)
        return now is None or before is None or now >= before - IOU_TOLERANCE

    allowed = [c for c in candidates if sweep[f"{c:g}"]["detected"] >= base["detected"]
               and iou_kept(c) and sweep[f"{c:g}"]["fa"] < base["fa"]]
    chosen = min(allowed, key=lambda c: (sweep[f"{c:g}"]["fa"], c)) if allowed else None
    where = label.replace("_", "-")
    return {"chosen": chosen, f"{label}_without": base, f"{label}_sweep": sweep,
            "rule": f"lowest {where} Fa among mask thresholds keeping {where} Pd and IoU within {IOU_TOLERANCE:g}; "
                    "none unless Fa falls"}


def calibrate_mask_threshold(model_dir: Path, data: Path, candidates: Sequence[float], device: str = "cpu") -> dict[str, Any]:
    """Pick the hysteresis mask threshold on the held-out frames (rule in the module docstring); returns the card entry."""
    loaded = load_model(model_dir, family="segmenter")
    thr = model_threshold(loaded)
    if not candidates or any(not thr < c < 1 for c in candidates):
        raise ValueError(f"mask thresholds must lie above the threshold {thr:g} and below 1")
    _, held, _ = training_frames(SegTree.open(data), loaded.config.in_chans)
    if not held:
        raise ValueError(f"{data}: no held-out frames to calibrate on")
    probs = predict_probabilities(model_members(loaded), [f.image for f in held], device, standardised=True, flips=model_flips(loaded))
    entry = choose_mask_threshold(model_post_process(loaded), probs, held, candidates)
    card = dict(loaded.card)
    card.pop("mask_threshold", None)
    if entry["chosen"] is not None:
        card["mask_threshold"] = float(entry["chosen"])
    card["mask_threshold_calibration"] = entry
    save_model(model_dir, loaded.name, loaded.model, loaded.config, card)
    return entry


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--add-member", type=Path, action="append", default=[], metavar="DIR",
                   help="make an ensemble: copy this trained segmenter into the model and average their maps (repeatable)")
    p.add_argument("--mask-thresholds", metavar="LIST",
                   help="only choose the hysteresis mask threshold among these comma-separated values (held-out frames)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    set_threads(args.threads)
    try:
        if args.mask_thresholds:
            if args.add_member:
                raise ValueError("--mask-thresholds and --add-member are separate steps")
            entry = calibrate_mask_threshold(args.model, args.data, [float(v) for v in args.mask_thresholds.split(",")])
            print(json.dumps(entry, indent=2))
            return 0
        card = recalibrate(args.model, args.data, members=args.add_member)
    except (CheckpointError, SegDataError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: card[k] for k in ("threshold", "test_time_flips", "max_target_fraction", "held_out_metrics")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
