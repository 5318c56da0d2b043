"""``python main.py train classifier …`` and ``evaluate classifier …`` (wired by app/cli.py).

No torch at module level: building the argument parser must stay instant.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from inference import families
from inference.training.groups import GROUP_RULES

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
    p.add_argument("--tta", default="auto", choices=("auto", "none", "flips", "d4"),
                   help="test-time augmentation written to the card and used by the application (default auto: chosen by "
                        "group CV; without CV d4, all flips and 90° turns)")
    p.add_argument("--cv-folds", type=int, default=3,
                   help="group cross-validation folds inside the training images that choose the stopping epoch and "
                        "the test-time views (default 3; 0: no CV, train --epochs and report the held-out split only). "
                        "Costs (folds + 1) trainings; see docs/protocol.md")
    p.add_argument("--group-by", default="auto", choices=GROUP_RULES,
                   help="what keeps images together in one fold: sub-folder, file-name prefix (exp1_... -> exp1), none, "
                        "or auto (folder, else prefix, else none)")
    p.add_argument("--cv-every", type=int, default=0, metavar="N",
                   help="score the fold networks every N epochs (default 0: about six points along the schedule)")
    p.add_argument("--cv-only", action="store_true",
                   help="stop after cross-validation: write OUT/training/cv/report.json, train no final model "
                        "(to compare recipes on the training images alone)")
    p.add_argument("--augment", default="basic",
                   help="augmentation recipe: basic (flips, turns, shifts, mild gain/offset) or session "
                        "(+ stronger gain/offset, gamma, blur, noise: what changes between capture sessions) or "
                        "session_upright (the same without 90° turns, for a camera that always sees parts one way up)")
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
    p.add_argument("--profile", help="the card's speed profile to score (default: the card's default; "
                                     "see inference/profiles.py)")
    p.add_argument("--record", action="store_true",
                   help="write the figures into the model's card as metrics.test, beside the CV estimate: for the "
                        "frozen test split, scored once after every choice was made (docs/protocol.md)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, default=None)


def train_options(args: argparse.Namespace, command: str) -> Any:
    """The trainer's typed options from parsed ``train classifier`` arguments (ValueError: refused)."""
    from inference.training.classifier_train import TrainOptions

    if args.epochs < 1 or args.batch_size < 2:
        raise ValueError("--epochs must be >= 1 and --batch-size >= 2")
    return TrainOptions(
        data=args.data, out=args.out, preset=args.preset, ablation=args.ablation, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, img_size=args.img_size,
        input_norm=args.input_norm, balance=args.balance, crop=args.crop, resume=args.resume, init=args.init,
        init_head=args.init_head, tta=args.tta, seed=args.seed, cv_folds=args.cv_folds, group_by=args.group_by,
        cv_every=args.cv_every, augment=args.augment, cv_only=args.cv_only, device=args.device, threads=args.threads,
        quiet=args.quiet, command=command,
    )


def train_errors() -> tuple[type[Exception], ...]:
    """What training raises for bad data, options or model folders (shown as one line, not a traceback)."""
    from inference.training.classifier_data import DataTreeError

    return (DataTreeError, ValueError, RuntimeError, FloatingPointError)


def run_train(args: argparse.Namespace) -> int:
    from inference.training.classifier_train import train_classifier
    from inference.training.common import command_line

    try:
        out = train_classifier(train_options(args, command_line()))
    except train_errors() as exc:
        return _error(str(exc))
    print(f"cross-validation report written to {out}" if args.cv_only else f"model written to {out}")
    return 0


def _record_test(model_dir: Path, report: dict[str, Any]) -> int:
    """metrics.test beside metrics.cv (inference/training/test_record.py)."""
    from inference.training.common import command_line
    from inference.training.test_record import record_test

    figures = {**{k: report[k] for k in ("accuracy", "precision", "recall", "f1", "count")},
               "per_class": report.get("per_class"), "confusion_matrix": report.get("confusion_matrix"),
               "data": report.get("data"), "test_time_augmentation": report.get("test_time_augmentation")}
    return record_test(model_dir, figures, Path(str(report.get("data"))), command_line())


def evaluate_report(args: argparse.Namespace) -> dict[str, Any]:
    """``evaluate classifier`` as data: the metrics the command prints and writes as JSON."""
    from inference.bundled import bundled_model_dir
    from inference.checkpoints import load_model
    from inference.device import prepare_inference_process
    from inference.profiles import apply_profile, resolve_profile
    from inference.training.classifier_evaluate import evaluate_model
    from inference.training.common import pick_device

    prepare_inference_process(args.threads)
    model_dir = args.model or bundled_model_dir("classifier")
    loaded = load_model(model_dir, map_location=pick_device(args.device), family="classifier")
    profile = resolve_profile(loaded.card, args.profile)
    ev = evaluate_model(apply_profile(loaded, args.profile), args.data, tta=args.tta, progress=True)
    # (each unreadable image is warned of once, where it is read: ``preload``; it was said twice, a session-49 audit)
    if ev.report["count"] == 0:
        raise ValueError(f"{ev.source}: no readable images")
    return {"model": str(model_dir), "profile": profile, **ev.report}


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
    if args.record:
        from inference.training.test_record import RecordRefused, recorded_line
        try:
            times = _record_test(Path(report["model"]), report)
        except RecordRefused as exc:
            return _error(str(exc))
        print("\n" + recorded_line(Path(report["model"]), times))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
        print(f"\nmetrics written to {args.json}")
    return 0
