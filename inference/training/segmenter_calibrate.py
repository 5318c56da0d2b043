"""Re-run a trained segmenter's held-out calibration: threshold, test-time flips, size limit.

Training ends with this step; running it again on an existing model directory brings a model
trained before a change of the post-processing (such as the large-component limit) up to date
without retraining. Like training, it looks only at ``train.txt`` (the fit frames for the size
limit, the held-out tenth for threshold and flips), never at the validation split.

``--add-member DIR`` (repeatable) turns the model into an ensemble: the other trained segmenter is
copied into ``members/`` of the model directory, the map becomes the mean of all members'
probabilities, and threshold and flips are calibrated for that mean. A target verifier trained
for the old map is removed (train it again with ``segmenter_verifier``).

    python -m inference.training.segmenter_calibrate --model DIR --data SIRST_DIR [--add-member OTHER_DIR]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Sequence

from inference.checkpoints import CheckpointError, load_model, save_model
from inference.segmentation import model_members
from inference.training.common import set_threads
from inference.training.segmenter_data import SegDataError, SegTree
from inference.training.segmenter_train import LARGE_COMPONENT_FACTOR, calibrate, size_limit, training_frames


def add_members(model_dir: Path, members: Sequence[Path]) -> None:
    """Copy each member model directory into ``model_dir/members/`` and list it in the card's ensemble."""
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
        shutil.copytree(src, dest)
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
    previous = {k: card.get(k) for k in ("threshold", "test_time_flips", "held_out_metrics", "max_target_fraction")}
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--add-member", type=Path, action="append", default=[], metavar="DIR",
                   help="make an ensemble: copy this trained segmenter into the model and average their maps (repeatable)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    set_threads(args.threads)
    try:
        card = recalibrate(args.model, args.data, members=args.add_member)
    except (CheckpointError, SegDataError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: card[k] for k in ("threshold", "test_time_flips", "max_target_fraction", "held_out_metrics")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
