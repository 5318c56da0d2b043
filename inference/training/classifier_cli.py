"""``python main.py train classifier …`` and ``evaluate classifier …`` (wired by app/cli.py).

No torch at module level: building the argument parser must stay instant.
"""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

from inference import families

PRESETS = families.family("classifier").presets
ABLATIONS = ("full", "no_coarse", "no_fine", "no_fusion", "no_memory", "l1", "l2")

log = logging.getLogger(__name__)


def _error(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, type=Path, help="ImageFolder tree: train/<class>/*, val/<class>/* (or class folders, split 80/20)")
    p.add_argument("--out", required=True, type=Path, help="model directory to write (resume state under OUT/training/)")
    p.add_argument("--preset", default="cpu", choices=PRESETS, help="model size (default: cpu)")
    p.add_argument("--ablation", default="full", choices=ABLATIONS, help="switch memory parts off (default: full model)")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--img-size", type=int, default=None, help="input size (default: the preset's)")
    p.add_argument("--input-norm", default=None, choices=("fixed", "per_image"),
                   help="input normalisation inside the model (default: the preset's, fixed); per_image standardises "
                        "each image by its own mean and std, for dark or low-contrast surfaces")
    p.add_argument("--balance", default="auto", choices=("auto", "on", "off"), help="class-balanced sampling (auto: when imbalanced)")
    p.add_argument("--crop", default="shift", choices=("shift", "scale"),
                   help="crop augmentation: whole-pixel shifts (default) or scaled crops resampled back")
    p.add_argument("--resume", action="store_true", help="continue from OUT/training/state.pt")
    p.add_argument("--init", type=Path, default=None, metavar="DIR",
                   help="start from this model directory's weights (same preset/ablation/classes); fresh optimizer and schedule")
    p.add_argument("--init-head", default="keep", choices=("keep", "new"),
                   help="with --init: keep its class layer (same classes), or start a new one for this data's "
                        "classes and take all its other weights (transfer learning)")
    p.add_argument("--tta", default="d4", choices=("none", "flips", "d4"),
                   help="test-time augmentation written to the card and used by the application (default: d4, all flips and 90° turns)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch and the scan kernel)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, type=Path, help="class-folder tree, or a split tree (its test/, else val/)")
    p.add_argument("--model", type=Path, default=None, help="model directory (default: the bundled classifier)")
    p.add_argument("--json", type=Path, default=None, help="write the metrics here as JSON")
    p.add_argument("--tta", default=None, choices=("none", "flips", "d4"),
                   help="test-time augmentation (default: what the model's card says, as the application uses it)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, default=None)


def _command_line() -> str:
    argv = sys.argv[1:] if Path(sys.argv[0]).name == "main.py" else sys.argv
    return "python main.py " + shlex.join(argv) if Path(sys.argv[0]).name == "main.py" else shlex.join(argv)


def train_options(args: argparse.Namespace, command: str) -> Any:
    """The trainer's typed options from parsed ``train classifier`` arguments (ValueError: refused)."""
    from inference.training.classifier_train import TrainOptions

    if args.epochs < 1 or args.batch_size < 2:
        raise ValueError("--epochs must be >= 1 and --batch-size >= 2")
    return TrainOptions(
        data=args.data, out=args.out, preset=args.preset, ablation=args.ablation, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, img_size=args.img_size,
        input_norm=args.input_norm, balance=args.balance, crop=args.crop, resume=args.resume, init=args.init,
        init_head=args.init_head, tta=args.tta, seed=args.seed, device=args.device, threads=args.threads,
        quiet=args.quiet, command=command,
    )


def train_errors() -> tuple[type[Exception], ...]:
    """What training raises for bad data, options or model folders (shown as one line, not a traceback)."""
    from inference.training.classifier_data import DataTreeError

    return (DataTreeError, ValueError, RuntimeError, FloatingPointError)


def run_train(args: argparse.Namespace) -> int:
    from inference.training.classifier_train import train_classifier

    try:
        out = train_classifier(train_options(args, _command_line()))
    except train_errors() as exc:
        return _error(str(exc))
    print(f"model written to {out}")
    return 0


def evaluate_report(args: argparse.Namespace) -> dict[str, Any]:
    """``evaluate classifier`` as data: the metrics the command prints and writes as JSON."""
    from inference.bundled import bundled_model_dir
    from inference.checkpoints import load_model
    from inference.training.classifier_evaluate import evaluate_model
    from inference.training.common import pick_device, set_threads

    set_threads(args.threads)
    model_dir = args.model or bundled_model_dir("classifier")
    loaded = load_model(model_dir, map_location=pick_device(args.device), family="classifier")
    ev = evaluate_model(loaded, args.data, tta=args.tta, progress=True)
    for f in ev.failures:
        print(f"warning: skipped unreadable image {f}", file=sys.stderr)
    if ev.report["count"] == 0:
        raise ValueError(f"{ev.source}: no readable images")
    return {"model": str(model_dir), **ev.report}


def evaluate_errors() -> tuple[type[Exception], ...]:
    from inference.checkpoints import CheckpointError
    from inference.training.classifier_data import DataTreeError

    return (CheckpointError, DataTreeError, ValueError, RuntimeError)


def run_evaluate(args: argparse.Namespace) -> int:
    from inference.training.classifier_metrics import format_report

    try:
        report = evaluate_report(args)
    except evaluate_errors() as exc:
        return _error(str(exc))
    print(f"model {report['model']}\ndata  {report['data']}\ntest-time augmentation {report['test_time_augmentation']}\n")
    print(format_report(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
        print(f"\nmetrics written to {args.json}")
    return 0
