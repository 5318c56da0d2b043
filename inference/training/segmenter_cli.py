"""``python main.py train|evaluate segmenter``: argument wiring only (no torch at import time)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from inference import families
from inference.threads_option import threads_arg

# Epochs of a segmenter training (crops of 128 px, batch 8): 80 won against 40 under leave-scene-out CV at two network
# seeds with the clutter crops (benchmarks/results/segmenter-epochs80.md, ADR 0055); ≈ 13 min of one idle core.
DEFAULT_EPOCHS = 80


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="tree with images/, masks/ (same stems) and optional train.txt/val.txt")
    p.add_argument("--out", required=True, help="run folder (state, log, best/ and final/ model directories)")
    p.add_argument("--preset", default="cpu",
                   help=f"model preset: {', '.join(families.family('segmenter').presets)} (default: cpu)")
    p.add_argument("--inner", choices=("mamba", "conv"), help="inner block (conv = the paper's ablation)")
    p.add_argument("--init", metavar="DIR", help="start from this model directory's weights (same preset)")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                   help=f"default {DEFAULT_EPOCHS}: won against 40 under leave-scene-out CV (ADR 0055)")
    p.add_argument("--fine-tune-epochs", type=int, default=0,
                   help="a second phase of this many epochs from the first phase's weights at --fine-tune-lr "
                        "(default 0: one phase; 16 won at two network seeds and lost at a third under "
                        "leave-scene-out CV, ADR 0052)")
    p.add_argument("--fine-tune-lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=128, help="training crop side in pixels (multiple of the stride)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--optimizer", choices=("adamw", "adagrad"), default="adamw",
                   help="adagrad with --lr 0.05 --weight-decay 4e-4 is the paper's setting")
    p.add_argument("--bce-weight", type=float, default=0.0, help="add this much BCE to the soft Dice loss")
    p.add_argument("--loss", choices=("dice", "dice+targets"), default="dice",
                   help="dice: soft Dice pooled over the batch (default); dice+targets: plus a per-target Dice that "
                        "weighs every ground-truth target the same whatever its size")
    p.add_argument("--target-prob", type=float, default=0.5, help="share of crops centred near a target (default 0.5)")
    p.add_argument("--clutter-prob", type=float, default=0.25,
                   help="share of crops centred on bright blobs that are not targets (hard negatives; default 0.25: "
                        "under leave-scene-out CV it lowered false alarms on unseen scenes by about a fifth and raised "
                        "IoU, benchmarks/results/segmenter-clutter.md); the rest are uniform crops")
    p.add_argument("--augment", action="store_true",
                   help="scene/camera augmentation of the crops: gamma, contrast, blur, noise, sensor stripes, scale")
    p.add_argument("--cv-folds", type=int, default=0,
                   help="K > 1: leave-scene-out cross-validation inside train.txt chooses the threshold, flips, size "
                        "limit and mask threshold (docs/protocol.md), then one network on all of train.txt; costs K + 1 "
                        "trainings (default 0: one training, settings from --held-out-fraction)")
    p.add_argument("--group-by", default="scene", choices=("scene", "none"),
                   help="with --cv-folds: what a fold never splits: scene (frames whose backgrounds look alike) or none")
    p.add_argument("--networks", default="one", choices=("one", "pair"),
                   help="with --cv-folds: one network, or a pair — one that rejects clutter (a last tenth on wider "
                        "crops) and one that finds faint targets (pasted training targets), their maps averaged; "
                        "twice the training (benchmarks/results/segmenter-pair.md)")
    p.add_argument("--cv-fold", type=int, default=None, metavar="K",
                   help="with --cv-folds: train only fold K's network(s) and stop; run one process per fold, then the "
                        "same command without --cv-fold reuses them (fold networks in parallel on several cores)")
    p.add_argument("--cv-no-flips", action="store_true",
                   help="with --cv-folds: do not compare test-time flips (their out-of-fold maps cost four passes); no flips")
    p.add_argument("--eval-every", type=int, default=5, help="score the held-out frames every N epochs")
    p.add_argument("--held-out-fraction", type=float, default=0.1, metavar="F",
                   help="share of train.txt held out to pick the epoch, threshold and flips (default 0.1); "
                        "0 fits every frame and keeps the final weights (threshold 0.5, no flips)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps")
    p.add_argument("--resume", action="store_true", help="continue from <out>/state.pt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, help="cap CPU threads (use 1 on a shared machine)")
    p.add_argument("--verifier", action="store_true",
                   help="also train the second-stage target verifier that rejects false alarms (segmenter_verifier)")
    p.add_argument("--verifier-steps", type=int, default=800, help="optimiser steps per verifier training (default 800)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def unit_interval(text: str) -> float:
    """A threshold in 0-1: NaN or a value outside was taken, and every figure then read 0 as if valid (a probe)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"a threshold is between 0 and 1, not {text}")
    return value


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="tree with images/ and masks/ (test.txt, else val.txt, else all)")
    p.add_argument("--model", help="model directory (default: the bundled segmenter)")
    p.add_argument("--split", choices=("train", "val", "test", "all"), help="override the split to score")
    p.add_argument("--threshold", type=unit_interval, help="override the model card's decision threshold (0-1)")
    p.add_argument("--max-target-fraction", type=float, default=None, metavar="F",
                   help="drop predicted components larger than F of the frame (default: the card's limit; 0: off)")
    p.add_argument("--no-verifier", action="store_true", help="score without the model's target verifier (if it has one)")
    p.add_argument("--profile", help="the card's speed profile to score (default: the card's default; "
                                     "see inference/profiles.py)")
    p.add_argument("--json", metavar="FILE", help="also write the figures here")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=threads_arg, default="auto", metavar="N|auto",
                   help="model threads (default auto: chosen before each frame from the cores the machine's "
                        "other work leaves idle; ADR 0040)")


def _error(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def train_options(args: argparse.Namespace, command: str) -> Any:
    """The trainer's typed options from parsed ``train segmenter`` arguments (ValueError: refused)."""
    from inference.training.segmenter_train import TrainOptions

    fields = TrainOptions.__dataclass_fields__
    given = {k: v for k, v in vars(args).items() if k in fields and k != "command"}
    opts = TrainOptions(**given, command=command)
    if opts.crop <= 0:
        raise ValueError("--crop must be positive")
    return opts


def train_errors() -> tuple[type[Exception], ...]:
    """What training raises for bad data, options or model folders (shown as one line, not a traceback)."""
    from inference.checkpoints import CheckpointError
    from inference.training.segmenter_data import SegDataError

    return (CheckpointError, SegDataError, ValueError, KeyError, RuntimeError)


def run_train(args: argparse.Namespace) -> int:
    from inference.training.common import command_line
    from inference.training.segmenter_cv import train_with_cv
    from inference.training.segmenter_train import require_targets, train

    if args.cv_folds == 1 or args.cv_folds < 0:
        return _error("--cv-folds must be 0 (off) or at least 2")
    try:
        opts = train_options(args, command_line())
        if args.networks != "one" and not args.cv_folds:
            raise ValueError("--networks pair needs --cv-folds (its views are chosen by the folds)")
        if args.cv_fold is not None and not args.cv_folds:
            raise ValueError("--cv-fold needs --cv-folds")
        require_targets(opts.data, 0.0 if args.cv_folds else opts.held_out_fraction)   # (the folds hold none out)
        final = (train_with_cv(opts, args.cv_folds, args.group_by, not args.cv_no_flips, args.networks, args.cv_fold)
                 if args.cv_folds else train(opts))
        if args.cv_fold is not None:
            print(f"fold {args.cv_fold}'s network(s) written beside {final}; run the command without --cv-fold to finish")
            return 0
    except train_errors() as exc:
        return _error(str(exc).strip("'\""))
    print(f"model written to {final}")
    return 0


def evaluate_report(args: argparse.Namespace) -> dict[str, Any]:
    """``evaluate segmenter`` as data: the metrics the command prints and writes as JSON."""
    from inference.bundled import bundled_model_dir
    from inference.checkpoints import load_model
    from inference.device import AUTO_THREADS, ThreadGovernor, prepare_inference_process
    from inference.profiles import apply_profile, resolve_profile
    from inference.training.common import pick_device
    from inference.training.segmenter_eval import evaluate_tree

    prepare_inference_process(args.threads)
    governor = ThreadGovernor() if args.threads == AUTO_THREADS else None
    model_dir = Path(args.model) if args.model else bundled_model_dir("segmenter")
    device = pick_device(args.device)
    loaded = load_model(model_dir, map_location=device, family="segmenter")
    profile = resolve_profile(loaded.card, args.profile)
    result = evaluate_tree(apply_profile(loaded, args.profile), args.data, args.split, args.threshold, device,
                           args.max_target_fraction, use_verifier=not args.no_verifier, progress=True,
                           before_frame=governor.apply if governor is not None else None)
    return {**result, "profile": profile}


def evaluate_errors() -> tuple[type[Exception], ...]:
    from inference.checkpoints import CheckpointError
    from inference.training.segmenter_data import SegDataError

    return (CheckpointError, SegDataError, ValueError, RuntimeError)  # a broken profile is a ValueError


def run_evaluate(args: argparse.Namespace) -> int:
    from inference.training.segmenter_eval import format_table

    try:
        result = evaluate_report(args)
    except evaluate_errors() as exc:
        return _error(str(exc))
    for msg in result["skipped"]:
        print(f"skipped: {msg}", file=sys.stderr)
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0
