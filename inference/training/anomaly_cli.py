"""``python main.py train anomaly`` / ``evaluate anomaly``: argument parsing and run functions.

No torch at module level (the CLI's --help must stay instant); errors in the data tree or the
model directory print one ``error: …`` line and return 2.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from inference import families
from inference.shell_words import shell_join

if TYPE_CHECKING:
    from inference.anomaly_predict import AnomalyNet

ARCHS = families.family("anomaly").architectures


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="category folder in MVTec layout (train/good, test/<type>, ground_truth/<type>)")
    p.add_argument("--out", required=True, help="output model directory")
    p.add_argument("--arch", default=None, choices=ARCHS,
                   help="pattern_anomaly (the model), pixel_gaussian (the baseline), texture_knn (multi-scale "
                        "texture features + a memory of good cells; preset 'tile' for magnetic tiles) or tile_defect "
                        "(texture_knn + self-referenced local terms + linear heads learned from the labelled defects "
                        "in DATA/validation; preset 'tile', 'tile_net' for its learned pixel net, 'tile_net_bank' with the texture "
                        "descriptors in its image head) (default: pattern_anomaly, or --like's)")
    p.add_argument("--like", metavar="MODEL_DIR",
                   help="take the architecture and every setting from this anomaly model folder's config.json (its "
                        "weights are not read): how `retrain anomaly` refits the active version's kind on reviewed "
                        "images; --image-size and --channels still override")
    # No default here: each architecture has its own (DEFAULT_PRESET beside its PRESETS), and "cpu" refused
    # --arch tile_defect without --preset (a session-52 audit). The help cannot import the models (torch) to say it.
    p.add_argument("--preset", default=None,
                   help=f"config preset, one the --arch has: {', '.join(families.family('anomaly').presets)} "
                        "(default: depends on --arch: cpu; tile_net_bank for tile_defect)")
    p.add_argument("--image-size", type=int, help="override the preset's square input size")
    p.add_argument("--channels", type=int, choices=(1, 3), help="1 = grayscale input, 3 = RGB (default: preset)")
    p.add_argument("--mixer", choices=("attention", "ss2d"), help="token mixer of the ViT blocks (default: preset)")
    p.add_argument("--axes", type=int, choices=(1, 2),
                   help="pattern_anomaly: predict cells along rows (1) or rows and columns (2) (default: preset)")
    p.add_argument("--patch-size", type=int, help="pattern_anomaly: cell size in input pixels (default: preset)")
    p.add_argument("--token-size", type=int, help="pattern_anomaly: token size in pixels; a cell is read as (cell/token)^2 tokens")
    p.add_argument("--shifts", type=int, help="pattern_anomaly: grid offsets per axis in the heatmap (overlapping windows)")
    p.add_argument("--score-margin", type=int,
                   help="pattern_anomaly, texture_knn: border pixels (at model resolution) left out of the image score "
                        "(default: preset)")
    p.add_argument("--cv-folds", type=int, default=3,
                   help="texture_knn, tile_defect: folds of whole groups for the cross-validation estimate and the threshold "
                        "(0 = none: threshold on the held-out good images) (default: 3)")
    p.add_argument("--group-by", default="prefix",
                   help="how file names form groups a fold never splits: prefix (text before the first '_', "
                        "a capture session), none, or regex:PATTERN (default: prefix)")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--triples-per-image", type=int, default=48, help="cell triples trained per image and step")
    p.add_argument("--defect-prob", type=float, default=0.5, help="share of training images given a synthetic defect")
    p.add_argument("--defect-max-area", type=float, default=0.06, help="largest synthetic defect, as a fraction of the image")
    p.add_argument("--max-train-images", type=int, default=0, help="use at most this many good images (0 = all)")
    p.add_argument("--no-flips", action="store_true", help="no flip augmentation (for parts with a handedness)")
    # On by default: the validation step keeps a term only where it helps, and a category trained on
    # the spot should get the heatmap quality the bundled models show (bottle: 11 min in all on 1 thread).
    p.add_argument("--memory-bank", action=argparse.BooleanOptionalAction, default=True,
                   help="pattern_anomaly: after training, add the memory-bank term (nearest good-token embeddings), "
                        "fusion chosen on held-out good images with synthetic defects (default: on)")
    p.add_argument("--appearance-stats", action=argparse.BooleanOptionalAction, default=True,
                   help="pattern_anomaly: after training (and the memory bank), add the appearance-statistics term "
                        "(per-position colour and contrast statistics), fusion chosen the same way (default: on)")
    p.add_argument("--edge-band", action="store_true",
                   help="pattern_anomaly: then add the edge-band term (row/column profiles of the same features, for "
                        "bands along an edge), chosen on validation with synthetic bands")
    p.add_argument("--backbone", help="optional pretrained ViT weights (local .safetensors, timm names)")
    p.add_argument("--data-licence", default="", help="licence note for the card (default: read from a LICENSE file beside the data)")
    p.add_argument("--no-evaluate", action="store_true", help="skip the test-split evaluation after training")
    p.add_argument("--resume", action="store_true", help="continue from OUT/train_state.pt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch default)")


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="category folder in MVTec layout")
    p.add_argument("--model", action="append", help="model directory (repeatable; default: the bundled anomaly model)")
    p.add_argument("--json", help="write the metrics as JSON here")
    p.add_argument("--record", action="store_true",
                   help="also store the figures in each model's card.json (metrics.test), e.g. after a "
                        "post-training step (memory bank, statistics term) cleared them")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, default=0)


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def like_model(directory: str | Path) -> tuple[str, Any]:
    """(architecture, config) of an anomaly model folder, from its bounded config.json only: the
    weights are never read, and the config is checked like any loaded model's (unknown fields and
    sizes out of bounds are refused)."""
    from ..checkpoints import CONFIG, CheckpointError, read_json
    from ..models import registry

    meta = read_json(Path(directory) / CONFIG)
    arch = meta.get("model")
    if arch not in ARCHS:
        raise CheckpointError(f"{directory}: not an anomaly model folder (its config names {arch!r}; "
                              f"expected one of {', '.join(ARCHS)})")
    values = meta.get("config")
    if not isinstance(values, dict):
        raise CheckpointError(f"{directory}: config.json has no 'config' object")
    return str(arch), registry.config_from_dict(str(arch), values)


def resolve_arch(args: argparse.Namespace) -> str:
    """The architecture to train: ``--arch``, else ``--like``'s, else pattern_anomaly; the two must agree."""
    if getattr(args, "like", None):
        like_arch, _ = like_model(args.like)
        if args.arch and args.arch != like_arch:
            raise ValueError(f"--arch {args.arch} disagrees with --like {args.like} (a {like_arch} model)")
        return like_arch
    return args.arch or "pattern_anomaly"


def _build_config(args: argparse.Namespace):
    from ..models import pattern_anomaly, pixel_gaussian, registry, texture_knn, tile_defect

    args.arch = resolve_arch(args)
    module: Any = {"pattern_anomaly": pattern_anomaly, "pixel_gaussian": pixel_gaussian, "texture_knn": texture_knn,
                   "tile_defect": tile_defect}[args.arch]
    presets: dict[str, Any] = module.PRESETS
    preset = args.preset or module.DEFAULT_PRESET   # the architecture's own where none is given
    if getattr(args, "like", None):
        base = like_model(args.like)[1]
    elif preset not in presets:
        raise ValueError(f"unknown preset {preset!r} for {args.arch}; known: {', '.join(presets)}")
    else:
        base = presets[preset]
    over = {}
    if args.image_size:
        over["image_size"] = args.image_size
    if args.channels:
        over["in_channels"] = args.channels
        over["mean"] = tuple([float(base.mean[0])] * args.channels)
        over["std"] = tuple([float(base.std[0])] * args.channels)
    if args.mixer and args.arch == "pattern_anomaly":
        over["mixer"] = args.mixer
    if args.arch == "pattern_anomaly":
        for key in ("axes", "patch_size", "token_size", "shifts", "score_margin"):
            if getattr(args, key, None) is not None:
                over[key] = getattr(args, key)
    if args.arch == "texture_knn" and args.score_margin is not None:
        over["score_margin"] = args.score_margin
    import dataclasses

    registry.spec(args.arch)
    return dataclasses.replace(base, **over)


def train_options(args: argparse.Namespace, command: str) -> Any:
    """The trainer's typed options from parsed ``train anomaly`` arguments (ValueError: refused)."""
    from .anomaly_train import TrainOptions
    from .common import pick_device, set_threads

    set_threads(args.threads)
    config = _build_config(args)  # first: it resolves args.arch (``--like``)
    return TrainOptions(
        data=Path(args.data), out=Path(args.out), arch=args.arch, config=config, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=str(pick_device(args.device)), resume=args.resume,
        triples_per_image=args.triples_per_image, flips=not args.no_flips,
        defect_prob=args.defect_prob, defect_max_area=args.defect_max_area,
        max_train_images=args.max_train_images, evaluate=not args.no_evaluate,
        backbone=Path(args.backbone) if args.backbone else None, memory_bank=args.memory_bank,
        appearance_stats=args.appearance_stats, edge_band=args.edge_band, data_licence=args.data_licence,
        cv_folds=args.cv_folds, group_by=args.group_by, command=command,
    )


def train_errors() -> tuple[type[Exception], ...]:
    """What training raises for bad data, options or model folders (shown as one line, not a traceback)."""
    from ..checkpoints import CheckpointError
    from .anomaly_data import AnomalyDataError

    return (AnomalyDataError, CheckpointError, ValueError, RuntimeError)


def run_train(args: argparse.Namespace) -> int:
    from .anomaly_train import train

    out = Path(args.out)
    created = not out.exists()
    try:
        card = train(train_options(args, "python main.py train anomaly " + shell_join(sys.argv[3:])))
    except train_errors() as exc:
        if created:  # a refused run leaves no folder of its own (it left one holding only train_state.pt: a session-49 audit)
            shutil.rmtree(out, ignore_errors=True)
        return _fail(str(exc))
    print(f"saved {args.out} (trained {card['training']['seconds']:.0f} s)")
    return 0


def evaluate_results(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """``evaluate anomaly`` as data: model directory -> its metrics (``--record`` also writes them
    into each model's card)."""
    from ..bundled import bundled_model_dir
    from ..checkpoints import load_model
    from ..device import prepare_inference_process
    from .anomaly_data import scan_category
    from .anomaly_eval import evaluate_tree
    from .common import command_line, pick_device
    from .test_record import record_test, recorded_line

    prepare_inference_process(args.threads)
    dirs = args.model or [str(bundled_model_dir("anomaly"))]
    device = pick_device(args.device)
    tree = scan_category(args.data, need_train=False, need_test=True)
    results = {}
    for d in dirs:
        loaded = load_model(d, map_location=device, family="anomaly")
        results[d] = evaluate_tree(cast("AnomalyNet", loaded.model), tree, device, args.batch_size, progress=True) | {"model": loaded.name}
        if args.record:
            r = results[d]
            test = {k: v for k, v in r.items() if k not in ("skipped", "model")} | {"skipped": len(r["skipped"])}
            times = record_test(Path(d), test | {"data": str(tree.root)}, tree.root / "test", command_line())
            print(recorded_line(Path(d), times))
    return results


def _json_payload(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What ``--json`` writes: one model's metrics (NaN as null), or model directory -> metrics."""
    def clean(v: Any) -> Any:
        return None if isinstance(v, float) and math.isnan(v) else v

    payload: dict[str, Any] = {d: {k: clean(v) for k, v in r.items()} for d, r in results.items()}
    return next(iter(payload.values())) if len(payload) == 1 else payload


def evaluate_report(args: argparse.Namespace) -> dict[str, Any]:
    """``evaluate anomaly`` as data: what ``--json`` writes."""
    return _json_payload(evaluate_results(args))


def evaluate_errors() -> tuple[type[Exception], ...]:
    from ..checkpoints import CheckpointError
    from .anomaly_data import AnomalyDataError

    return (AnomalyDataError, CheckpointError, ValueError, RuntimeError)


def run_evaluate(args: argparse.Namespace) -> int:
    from .anomaly_eval import format_table

    try:
        results = evaluate_results(args)
    except evaluate_errors() as exc:
        return _fail(str(exc))
    for r in results.values():
        for s in r["skipped"]:
            print(f"skipped: {s}")
    print(format_table({f"{r['model']} ({Path(d).name})": r for d, r in results.items()}))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(_json_payload(results), indent=2), encoding="utf-8")
    return 0
