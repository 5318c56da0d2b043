"""Train a segmenter's target verifier (its second stage) and store it inside the model directory.

The verifier (``inference/models/target_verifier.py``) learns, from the training frames only,
to tell the segmenter's targets from its false alarms:

* positives: every ground-truth target of the fit frames (views centred on its centroid);
* negatives: the segmenter's own unmatched components on the fit frames (at a low threshold, so
  there are more of them than at the operating point) and bright top-hat blobs away from any
  target (``segmenter_data.clutter_points``), the clutter a small-target detector confuses.

Its decision threshold keeps a set share of real targets: the fit frames are split into folds,
a verifier trained on the other folds scores each fold's targets, and the threshold is the
``keep_quantile`` quantile of those out-of-fold target scores (0.01 = one target in a hundred may
be dropped). The final verifier is then trained on all fit frames. The held-out frames and val
are never used to train or choose it; the held-out metrics with and without it go on the card.

    python -m inference.training.segmenter_verifier --model DIR --data SIRST_DIR
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from inference.checkpoints import CheckpointError, LoadedModel, load_model, save_model
from inference.models.target_verifier import NAME, TargetVerifier, TargetVerifierConfig, d4, score_views, views
from inference.segmentation import (
    binarise, drop_large_components, frame_plane, model_flips, model_max_fraction, model_members, model_threshold,
    predict_probabilities,
)
from inference.training.common import Progress, seed_everything, set_threads
from inference.training.segmenter_data import Frame, SegDataError, SegTree, clutter_points
from inference.training.segmenter_metrics import SegmentationMeter, components, matched_components
from inference.training.segmenter_train import training_frames

PART = "verifier"  # sub-directory of the segmenter's model directory
CANDIDATE_THRESHOLD = 0.3
CLUTTER_PER_FRAME = 15


@dataclass(frozen=True)
class VerifierOptions:
    steps: int = 800
    batch_size: int = 64
    lr: float = 3e-3
    folds: int = 3
    keep_quantile: float = 0.01
    seed: int = 0
    quiet: bool = False


def unmatched_centres(prob: np.ndarray, gt: np.ndarray, threshold: float, max_fraction: float | None) -> np.ndarray:
    """(n, 2) centres as (y, x) of the predicted components that match no target (the false alarms)."""
    mask = drop_large_components(prob > threshold, max_fraction)
    _, centres, matched, _, _ = matched_components(mask, gt)
    return centres[~matched][:, ::-1].copy()


def target_centres(mask: np.ndarray) -> np.ndarray:
    return components(mask)[1][:, ::-1].copy()


def clutter_centres(frame: Frame, limit: int = CLUTTER_PER_FRAME) -> np.ndarray:
    pts = clutter_points(frame)
    if not len(pts):
        return np.zeros((0, 2))
    m = np.zeros(frame.mask.shape, np.uint8)
    m[pts[:, 0], pts[:, 1]] = 1
    return target_centres(m)[:limit]


def collect(frames: list[Frame], probs: list[np.ndarray], max_fraction: float | None,
            config: TargetVerifierConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(views, labels, frame index per sample) from training frames and the segmenter's maps of them."""
    xs, ys, idx = [], [], []
    for i, (f, p) in enumerate(zip(frames, probs)):
        plane = frame_plane(f.image)
        false = unmatched_centres(p, f.mask, CANDIDATE_THRESHOLD, max_fraction)
        groups = ((target_centres(f.mask), 1.0), (false, 0.0), (clutter_centres(f), 0.0))
        for c, label in groups:
            if len(c):
                xs.append(views(plane, c, config))
                ys.append(np.full(len(c), label, np.float32))
                idx.append(np.full(len(c), i))
    if not xs:
        raise ValueError("no training samples: the frames hold no targets and no candidates")
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(idx)


def fit(x: np.ndarray, y: np.ndarray, config: TargetVerifierConfig, opts: VerifierOptions, seed: int,
        desc: str = "verifier") -> TargetVerifier:
    """Train one verifier: random symmetries and ±2 px shifts, positives weighted up to balance the classes."""
    if y.min() == y.max():
        raise ValueError("the verifier needs both targets and non-targets to learn from")
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    model = TargetVerifier(config)
    optim = torch.optim.AdamW(model.parameters(), opts.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, opts.lr, total_steps=opts.steps)
    pos_weight = torch.tensor(float((1 - y).sum() / y.sum()))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    bar = Progress(opts.steps, desc, disable=opts.quiet)
    model.train()
    for _ in range(opts.steps):
        i = torch.from_numpy(rng.integers(len(x), size=opts.batch_size))
        dy, dx = (int(v) for v in rng.integers(-2, 3, 2))
        xb = torch.roll(d4(xt[i], int(rng.integers(8))), (dy, dx), (-2, -1))
        loss = F.binary_cross_entropy_with_logits(model(xb), yt[i], pos_weight=pos_weight)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        sched.step()
        bar.update(loss=loss.item())
    bar.close()
    return model.eval()


def out_of_fold_scores(x: np.ndarray, y: np.ndarray, frame_idx: np.ndarray, config: TargetVerifierConfig,
                       opts: VerifierOptions) -> np.ndarray:
    """Each sample scored by a verifier that never saw its frame (folds by frame)."""
    fold = frame_idx % opts.folds
    out = np.zeros(len(x), np.float32)
    for k in range(opts.folds):
        train, test = fold != k, fold == k
        model = fit(x[train], y[train], config, opts, opts.seed + k, desc=f"fold {k + 1}/{opts.folds}")
        out[test] = score_views(model, x[test])
    return out


def held_out_metrics(loaded: LoadedModel, held: list[Frame], probs: list[np.ndarray],
                     verifier: TargetVerifier | None, threshold: float) -> dict[str, Any]:
    """Held-out metrics at the card's threshold and size limit, with or without ``verifier``."""
    meter = SegmentationMeter()
    pair = (verifier, threshold) if verifier is not None else None
    for f, p in zip(held, probs):
        meter.update(binarise(p, model_threshold(loaded), model_max_fraction(loaded), frame_plane(f.image), pair).mask, f.mask)
    return meter.result()


def train_verifier(model_dir: Path, data: Path, opts: VerifierOptions = VerifierOptions(),
                   config: TargetVerifierConfig = TargetVerifierConfig(), device: str = "cpu") -> dict[str, Any]:
    """Train the verifier of the segmenter in ``model_dir`` and store it there; returns the card's ``verifier`` entry."""
    loaded = load_model(model_dir, family="segmenter")
    fit_frames, held, _ = training_frames(SegTree.open(data), loaded.config.in_chans)
    if not fit_frames:
        raise ValueError(f"{data}: no usable training frames")
    t0 = time.monotonic()
    flips = model_flips(loaded)
    fit_probs = predict_probabilities(model_members(loaded), [f.image for f in fit_frames], device, standardised=True, flips=flips)
    x, y, frame_idx = collect(fit_frames, fit_probs, model_max_fraction(loaded), config)
    oof = out_of_fold_scores(x, y, frame_idx, config, opts)
    threshold = float(np.quantile(oof[y == 1], opts.keep_quantile))
    verifier = fit(x, y, config, opts, opts.seed + 100, desc="final verifier")
    entry: dict[str, Any] = {
        "dir": PART,
        "threshold": threshold,
        "rule": f"components scored below the {opts.keep_quantile:g} quantile of out-of-fold target scores "
                f"({opts.folds} folds of the fit frames) are dropped from the mask",
        "samples": {"targets": int(y.sum()), "non_targets": int(len(y) - y.sum())},
        "out_of_fold": {"targets_kept": float(np.mean(oof[y == 1] >= threshold)),
                        "non_targets_dropped": float(np.mean(oof[y == 0] < threshold))},
        "options": {k: v for k, v in opts.__dict__.items() if k != "quiet"},
    }
    if held:
        held_probs = predict_probabilities(model_members(loaded), [f.image for f in held], device, standardised=True, flips=flips)
        entry["held_out_without"] = held_out_metrics(loaded, held, held_probs, None, threshold)
        entry["held_out_with"] = held_out_metrics(loaded, held, held_probs, verifier, threshold)
    entry["seconds"] = round(time.monotonic() - t0, 1)
    save_model(Path(model_dir) / PART, NAME, verifier, config, {
        "model": NAME, "family": "segmenter", "task": "second stage of the segmenter: accept or reject each predicted component",
        "threshold": threshold, "trained_for": Path(model_dir).name, "data": str(data),
    })
    card = dict(loaded.card)
    card["verifier"] = entry
    card["parts"] = {**card.get("parts", {}), "verifier": PART}
    save_model(model_dir, loaded.name, loaded.model, loaded.config, card)
    return entry


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, type=Path, help="segmenter model directory (the verifier is stored inside)")
    p.add_argument("--data", required=True, type=Path, help="the tree the segmenter was trained on (train.txt is used)")
    p.add_argument("--steps", type=int, default=VerifierOptions.steps)
    p.add_argument("--folds", type=int, default=VerifierOptions.folds)
    p.add_argument("--keep-quantile", type=float, default=VerifierOptions.keep_quantile,
                   help="share of out-of-fold targets the threshold may drop (default 0.01)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.folds < 2 or not 0.0 <= args.keep_quantile < 0.5 or args.steps < 1:
        print("error: need --folds >= 2, --steps >= 1 and 0 <= --keep-quantile < 0.5", file=sys.stderr)
        return 2
    set_threads(args.threads)
    opts = VerifierOptions(steps=args.steps, folds=args.folds, keep_quantile=args.keep_quantile, seed=args.seed, quiet=args.quiet)
    try:
        entry = train_verifier(args.model, args.data, opts)
    except (CheckpointError, SegDataError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(entry, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
