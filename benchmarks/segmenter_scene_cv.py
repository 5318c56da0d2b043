"""Leave-scene-out cross-validation of segmenter recipes on SIRST's train.txt (issue 19).

Frames are grouped into scenes (``groups.scene_groups`` via ``segmenter_cv.frame_groups``), the
scenes dealt into folds (``groups.balanced_folds``); for a recipe, network k is trained on every
fold but k and scores fold k (out-of-fold maps). ``score`` then runs every post-processing variant
(threshold, flips, hysteresis mask threshold, size limit) on those maps, choosing each setting by
CV only. val.txt is never read here.

    PYTHONPATH=. python benchmarks/segmenter_scene_cv.py train --data SIRST --work runs/scenecv --recipe base --fold 0
    PYTHONPATH=. python benchmarks/segmenter_scene_cv.py score --data SIRST --work runs/scenecv --recipe base
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

# name -> TrainOptions fields (everything else: the trainer's defaults, nothing held out). The recipes recorded
# before session 22 name clutter_prob 0.0: the trainer's default became 0.25 then (segmenter-clutter.md).
RECIPES: dict[str, dict[str, Any]] = {
    "base": {"inner": "mamba", "augment": False, "clutter_prob": 0.0},
    "aug": {"inner": "mamba", "augment": True, "clutter_prob": 0.0},
    "base12": {"inner": "mamba", "augment": False, "epochs": 12, "clutter_prob": 0.0},  # the same, twice the schedule
    "conv": {"inner": "conv", "augment": False, "clutter_prob": 0.0},
    "conv_aug": {"inner": "conv", "augment": True, "clutter_prob": 0.0},
    # issue 19, detection-oriented (segmenter-scenes-3.md): a per-target Dice beside the pooled one, and that
    # with a quarter of the crops centred on bright non-target blobs (target crops stay at 0.5, uniform 0.25)
    "targets": {"inner": "mamba", "augment": False, "loss": "dice+targets", "clutter_prob": 0.0},
    "targets_clutter": {"inner": "mamba", "augment": False, "loss": "dice+targets", "clutter_prob": 0.25},
    # session 22 (segmenter-clutter.md): the clutter-centred crops alone, with the pooled Dice loss
    "clutter": {"inner": "mamba", "augment": False, "clutter_prob": 0.25},
    # session 23 (segmenter-clutter-more.md): more clutter crops, fewer on targets (0.4 / 0.4 / 0.2 uniform)
    "clutter40": {"inner": "mamba", "augment": False, "clutter_prob": 0.4, "target_prob": 0.4},
    # session 24 (segmenter-two-stage.md): the earlier bundle's own schedule, 36 epochs then 16 more from their
    # weights at lr 1e-3 (the trainer's second phase since, ADR 0052), without clutter crops as it was trained, and
    # with them. (The runs recorded there named the second phase by hand, into the same folders with the same
    # options: the trainer's phase is that, moved into the trainer.)
    "old2stage": {"inner": "mamba", "augment": False, "clutter_prob": 0.0, "epochs": 36,
                  "fine_tune_epochs": 16, "fine_tune_lr": 1e-3},
    "clutter2stage": {"inner": "mamba", "augment": False, "clutter_prob": 0.25, "epochs": 36,
                      "fine_tune_epochs": 16, "fine_tune_lr": 1e-3},
    # session 27 (segmenter-context192.md): the adopted crop mix on crops of 192 px (a frame's median is 212 x 304,
    # a 128 crop a quarter of it) at the adopted schedule's pixels and optimiser steps: batch 4, 36 epochs
    # (36 x 192² ≈ 80 x 128², 4 x 192² ≈ 8 x 128² a step)
    "ctx192": {"inner": "mamba", "augment": False, "clutter_prob": 0.25, "crop": 192, "batch_size": 4, "epochs": 36},
    # session 27 (segmenter-context2phase.md): the adopted recipe's first 62 epochs, then 8 on crops of 192 px
    # (batch 4) from its weights: the adopted pixels and steps (62 x 128² + 8 x 192² ≈ 80 x 128²)
    "ctx2phase": {"inner": "mamba", "augment": False, "clutter_prob": 0.25, "epochs": 62, "fine_tune_epochs": 8,
                  "fine_tune_lr": 1e-3, "fine_tune_crop": 192, "fine_tune_batch_size": 4},
    # session 28 (segmenter-paste.md): the adopted recipe, and half its crops get one more training target pasted in
    # (segmenter_data.target_patches: a target's signal over its painted-out background, scaled by 0.7-1.2)
    "paste": {"inner": "mamba", "augment": False, "clutter_prob": 0.25, "paste_prob": 0.5},
}


def recipe_dir(work: Path, recipe: str, k: int, alone: bool = False) -> Path:
    """Fold k's network: trained on every fold but k, or (``alone``) on fold k alone."""
    return work / recipe / (f"alone{k}" if alone else f"net{k}")


def train_fold(args: argparse.Namespace) -> None:
    from inference.training.segmenter_cv import cv_parts
    from inference.training.segmenter_fold_negatives import write_fold_tree
    from inference.training.segmenter_train import TrainOptions, train

    parts = cv_parts(args.data, args.folds, args.group_by)
    # --alone: fold k's frames only (the nested networks whose maps give the verifier out-of-fold candidates)
    stems = parts[args.fold] if args.alone else [s for j, p in enumerate(parts) if j != args.fold for s in p]
    tree = write_fold_tree(args.data, stems, args.work / f"data_{args.group_by}{args.folds}_{'alone' if args.alone else ''}{args.fold}")
    out = recipe_dir(args.work, args.recipe, args.fold, args.alone)
    t0 = time.monotonic()
    fields = {"epochs": args.epochs, "target_prob": 0.5, "batch_size": 8, "crop": 128, **RECIPES[args.recipe]}
    train(TrainOptions(data=str(tree), out=str(out), preset="cpu",
                       seed=args.seed + (10 if args.alone else 0) + args.fold, threads=1,
                       held_out_fraction=0.0, quiet=True,
                       command=f"benchmarks/segmenter_scene_cv.py train --recipe {args.recipe} --fold {args.fold} "
                               f"--folds {args.folds} --epochs {fields['epochs']}{' --alone' if args.alone else ''}",
                       **fields))
    (out / "seconds.json").write_text(json.dumps({"training_seconds": round(time.monotonic() - t0, 1)}), encoding="utf-8")


def score(args: argparse.Namespace) -> dict[str, Any]:
    from inference.training.segmenter_cv import MIRROR, choose_additions, cv_parts, scored_fold_maps
    from inference.training.segmenter_data import SegTree, load_frames

    tree = SegTree.open(args.data)
    parts = cv_parts(args.data, args.folds, args.group_by)
    frames_by_fold = [load_frames(tree, list(p), 1)[0] for p in parts]
    report: dict[str, Any] = {"folds": args.folds, "group_by": args.group_by, "fold_frames": [len(p) for p in parts]}
    for recipe in args.recipe.split(","):
        recipes = recipe.split("+")  # base+conv: fold k's base and conv networks averaged (a two-network ensemble)
        t0 = time.monotonic()
        maps = scored_fold_maps([[recipe_dir(args.work, r, k) / "final" for r in recipes] for k in range(args.folds)],
                                frames_by_fold, args.work / "maps" / f"{recipe}_{args.group_by}{args.folds}",
                                views=(False, MIRROR, True) if args.flips else (False,))
        chosen = choose_additions(frames_by_fold, maps)
        files = [recipe_dir(args.work, r, k) / "seconds.json" for r in recipes for k in range(args.folds)]
        report[recipe] = {**chosen, "scoring_seconds": round(time.monotonic() - t0, 1),
                          "training_seconds_per_network": [json.loads(f.read_text())["training_seconds"]
                                                           for f in files if f.is_file()]}
        print(f"{recipe}: chosen {chosen['chosen_additions'] or 'nothing'}")
        for name, v in chosen["variants"].items():
            m = v["pooled"]
            print(f"  {name:28s} IoU {m['iou']:.3f} nIoU {m['niou']:.3f} Pd {m['pd']:.3f} Fa {m['fa']:.1f}  per-fold IoU "
                  + " ".join(f"{f['iou']:.3f}" for f in v["per_fold"]))
    return report

def group_report(args: argparse.Namespace) -> dict[str, Any]:
    """How many scene groups train.txt holds and how big; how many val.txt frames share a scene with a
    train.txt frame when all frames are grouped together (the frozen split is the data set's own)."""
    from collections import Counter

    from inference.training.segmenter_cv import cv_parts, frame_groups
    from inference.training.segmenter_data import SegTree

    tree = SegTree.open(args.data)
    train, val = tree.stems("train"), tree.stems("val")
    sizes = Counter(Counter(frame_groups(args.data, train, args.group_by)).values())
    both = frame_groups(args.data, train + val, args.group_by)
    train_groups = set(both[:len(train)])
    report = {"train_frames": len(train), "train_groups": sum(sizes.values()),
              "group_sizes": {str(k): v for k, v in sorted(sizes.items())},
              "val_frames_sharing_a_scene_with_train": sum(g in train_groups for g in both[len(train):]),
              "fold_frames": [len(p) for p in cv_parts(args.data, args.folds, args.group_by)]}
    print(json.dumps(report))
    return report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=("train", "score", "groups"))
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--work", type=Path, default=Path("runs/scenecv"))
    p.add_argument("--recipe", default="base", help=f"one of {', '.join(RECIPES)} (score: comma-separated)")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=60)
    p.add_argument("--group-by", default="scene", choices=("scene", "none", "frame"))
    p.add_argument("--json", type=Path)
    p.add_argument("--alone", action="store_true",
                   help="train: fit fold --fold's frames alone (not every other fold); stored as <recipe>/alone<k>")
    p.add_argument("--no-flips", dest="flips", action="store_false",
                   help="score: no test-time-view maps (7x cheaper; views are then not compared)")
    args = p.parse_args()
    if args.action == "train":
        train_fold(args)
    elif args.action in ("score", "groups"):
        report = score(args) if args.action == "score" else group_report(args)
        if args.json:
            args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
