"""Re-run a trained segmenter's held-out calibration: threshold, test-time flips, size limit.

Training ends with this step; running it again on an existing model directory brings a model
trained before a change of the post-processing (such as the large-component limit) up to date
without retraining. Like training, it looks only at ``train.txt`` (the fit frames for the size
limit, the held-out tenth for threshold and flips), never at the validation split.

    python -m inference.training.segmenter_calibrate --model DIR --data SIRST_DIR
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from inference.checkpoints import CheckpointError, load_model, save_model
from inference.training.common import set_threads
from inference.training.segmenter_data import SegDataError, SegTree
from inference.training.segmenter_train import LARGE_COMPONENT_FACTOR, calibrate, size_limit, training_frames


def recalibrate(model_dir: Path, data: Path, device: str = "cpu") -> dict[str, Any]:
    """Rewrites the card of ``model_dir`` in place (weights untouched); returns the new card."""
    loaded = load_model(model_dir, family="segmenter")
    fit, held, _ = training_frames(SegTree.open(data), loaded.config.in_chans)
    if not held:
        raise ValueError(f"{data}: no held-out frames to calibrate on")
    largest, limit = size_limit(fit)
    thr, flips, metrics = calibrate(loaded.model, held, device, limit)
    card = dict(loaded.card)
    previous = {k: card.get(k) for k in ("threshold", "test_time_flips", "held_out_metrics", "max_target_fraction")}
    card.update(
        threshold=thr, test_time_flips=flips, held_out_metrics=metrics, max_target_fraction=limit,
        max_target_fraction_rule=f"{LARGE_COMPONENT_FACTOR:g} x the largest fit-frame target's share of its frame; "
                                 "larger predicted components are dropped from the mask",
    )
    card.setdefault("data", {})["largest_target_fraction"] = largest
    card.setdefault("recalibrations", []).append({"before": previous, "command": "python -m inference.training.segmenter_calibrate"})
    save_model(model_dir, loaded.name, loaded.model, loaded.config, card)
    return card


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    set_threads(args.threads)
    try:
        card = recalibrate(args.model, args.data)
    except (CheckpointError, SegDataError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: card[k] for k in ("threshold", "test_time_flips", "max_target_fraction", "held_out_metrics")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
