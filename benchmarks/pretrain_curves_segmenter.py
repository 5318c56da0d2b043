"""Segmenter learning curves with and without station pretraining (issue 19 item 3, ADR 0037).

SIRST's train.txt is split into 3 folds of whole scenes (``segmenter_cv.cv_parts``, the
leave-scene-out folds of ADR 0026). Fold 0 is the evaluation set; folds 1-2 are the station's
pool. val.txt (the frozen test split) is never read.

    # 1. the pool's frames without masks, as a station's unlabelled folder (copies: pretrain skips links)
    PYTHONPATH=. python benchmarks/pretrain_curves_segmenter.py prepare --data SIRST --work runs/segpre
    # 2. pretrain on them (the deliverable command itself)
    python main.py pretrain --family segmenter --folder runs/segpre/pool_frames --out runs/segpre/pretrained ...
    # 3. the curve: N labelled pool frames (seeded draw), trained from scratch and from the pretrained start
    PYTHONPATH=. python benchmarks/pretrain_curves_segmenter.py run --data SIRST --work runs/segpre \\
        --pretrained runs/segpre/pretrained --sizes 25,50,100 --seeds 0,1,2 --json OUT.json
    PYTHONPATH=. python benchmarks/pretrain_curves_segmenter.py table --json OUT.json

Both starts use one recipe: the same frames, crops, seed and step budget (``--steps`` optimiser
steps whatever N, so small sets are not also short runs), nothing held out, the final weights
at the fixed threshold 0.5 without flips or size limit (no setting is chosen, so none is
chosen on the evaluation fold). ``run`` appends each point to the JSON as it finishes and skips
points already there, so it can be stopped and restarted.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import time
from pathlib import Path
from typing import Any

STARTS = ("scratch", "pretrained")
EVAL_FOLD = 0


def _parts(data: Path) -> tuple[list[str], list[str]]:
    """(evaluation stems, pool stems): fold 0 of the scene folds, and the other folds."""
    from inference.training.segmenter_cv import cv_parts

    parts = cv_parts(data, 3, "scene")
    return parts[EVAL_FOLD], [s for k, p in enumerate(parts) if k != EVAL_FOLD for s in p]


def prepare(args: argparse.Namespace) -> None:
    from inference.training.segmenter_data import SegTree

    tree = SegTree.open(args.data)
    evaluation, pool = _parts(args.data)
    out = args.work / "pool_frames"
    out.mkdir(parents=True, exist_ok=True)
    for s in pool:
        shutil.copyfile(tree.images[s], out / tree.images[s].name)
    (args.work / "split.json").write_text(json.dumps({"evaluation": evaluation, "pool": pool}, indent=1), encoding="utf-8")
    print(f"{len(pool)} pool frames copied to {out}; {len(evaluation)} evaluation frames (scene fold {EVAL_FOLD})")


def subset(pool: list[str], size: int, seed: int) -> list[str]:
    import numpy as np

    if size > len(pool):
        raise ValueError(f"{size} labelled frames asked, the pool has {len(pool)}")
    pick = np.random.default_rng([20260, seed]).permutation(len(pool))[:size]
    return [pool[i] for i in sorted(pick)]


def train_point(args: argparse.Namespace, size: int, seed: int, start: str) -> dict[str, Any]:
    from inference.checkpoints import load_model
    from inference.segmenter_metrics import SegmentationMeter
    from inference.segmenter_predict import predict_probabilities
    from inference.training.segmenter_data import SegTree, load_frames
    from inference.training.segmenter_fold_negatives import write_fold_tree
    from inference.training.segmenter_train import TrainOptions, train

    evaluation, pool = _parts(args.data)
    stems = subset(pool, size, seed)
    tree = write_fold_tree(args.data, stems, args.work / "trees" / f"n{size}_s{seed}")
    steps_per_epoch = math.ceil(size / args.batch_size)
    epochs = math.ceil(args.steps / steps_per_epoch)
    run_dir = args.work / "runs" / f"n{size}_s{seed}_{start}"
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a half-finished point is redone whole
    t0 = time.monotonic()
    final = train(TrainOptions(
        data=str(tree), out=str(run_dir), preset="cpu", init=str(args.pretrained) if start == "pretrained" else None,
        epochs=epochs, max_steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=args.lr,
        target_prob=0.5, clutter_prob=0.0, seed=100 + seed, threads=1, held_out_fraction=0.0, quiet=True,
        command=f"benchmarks/pretrain_curves_segmenter.py run (n={size}, seed={seed}, start={start})"))
    train_s = time.monotonic() - t0
    model = load_model(final, family="segmenter").model
    frames, problems = load_frames(SegTree.open(args.data), evaluation, 1)
    t1 = time.monotonic()
    probs = predict_probabilities(model, [f.image for f in frames], "cpu", standardised=True)
    meter = SegmentationMeter()
    for p, f in zip(probs, frames):
        meter.update(p > 0.5, f.mask)
    result = meter.result()
    shutil.rmtree(run_dir / "best", ignore_errors=True)
    return {"size": size, "seed": seed, "start": start, "frames": stems, "epochs": epochs, "steps": args.steps,
            "train_seconds": round(train_s, 1), "eval_seconds": round(time.monotonic() - t1, 1),
            "evaluation_frames": len(frames), "skipped": problems,
            **{k: result[k] for k in ("iou", "niou", "pd", "fa")}}


def run(args: argparse.Namespace) -> None:
    from inference.training.common import set_threads

    set_threads(1)
    report = json.loads(args.json.read_text()) if args.json.exists() else {"points": []}
    report.update({"recipe": {"steps": args.steps, "batch_size": args.batch_size, "crop": args.crop, "lr": args.lr,
                              "preset": "cpu", "target_prob": 0.5, "threshold": 0.5, "held_out_fraction": 0.0},
                   "pretrained": str(args.pretrained), "evaluation": f"scene fold {EVAL_FOLD} of train.txt",
                   "host": platform.machine()})
    if args.pretrained.is_dir() and (args.pretrained / "card.json").is_file():
        report["pretraining_card"] = json.loads((args.pretrained / "card.json").read_text())["pretraining"]
    done = {(p["size"], p["seed"], p["start"]) for p in report["points"]}
    for size in args.sizes:
        for seed in args.seeds:
            for start in args.starts:
                if (size, seed, start) in done:
                    continue
                point = train_point(args, size, seed, start)
                report["points"].append(point)
                args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
                print(f"n={size} seed={seed} {start:10s} IoU {point['iou']:.3f} nIoU {point['niou']:.3f} "
                      f"Pd {point['pd']:.3f} Fa {point['fa']:.1f}  ({point['train_seconds']:.0f} s train)", flush=True)


def summary(report: dict[str, Any]) -> dict[tuple[int, str], dict[str, tuple[float, float, int]]]:
    """(size, start) -> metric -> (mean, sample std, runs)."""
    import numpy as np

    out: dict[tuple[int, str], dict[str, tuple[float, float, int]]] = {}
    keys = sorted({(p["size"], p["start"]) for p in report["points"]})
    for size, start in keys:
        pts = [p for p in report["points"] if p["size"] == size and p["start"] == start]
        out[(size, start)] = {m: (float(np.mean([p[m] for p in pts])),
                                  float(np.std([p[m] for p in pts], ddof=1)) if len(pts) > 1 else 0.0, len(pts))
                              for m in ("iou", "niou", "pd", "fa")}
    return out


def verdict(s: dict[tuple[int, str], dict[str, tuple[float, float, int]]]) -> tuple[int, int, list[str]]:
    """The keep rule fixed before the runs: the pretrained start wins at a size when its mean IoU beats
    scratch's by more than the larger of the two starts' seed std; it is kept if it wins at >= 2 of 3 sizes."""
    wins, sizes, lines = 0, 0, []
    for size in sorted({k[0] for k in s}):
        if (size, "scratch") not in s or (size, "pretrained") not in s:
            continue
        sizes += 1
        a, b = s[(size, "scratch")]["iou"], s[(size, "pretrained")]["iou"]
        margin = max(a[1], b[1])
        won = b[0] - a[0] > margin
        wins += won
        lines.append(f"n={size}: IoU {b[0]:.3f} vs {a[0]:.3f} (diff {b[0] - a[0]:+.3f}, margin {margin:.3f}): "
                     f"{'pretrained wins' if won else 'no win'}")
    return wins, sizes, lines


def table(report: dict[str, Any]) -> str:
    s = summary(report)
    rows = ["| labelled frames | start | runs | IoU | nIoU | Pd | Fa ×10⁻⁶ |", "|---|---|---|---|---|---|---|"]
    for (size, start), m in s.items():
        rows.append(f"| {size} | {start} | {m['iou'][2]} | " + " | ".join(
            f"{m[k][0]:.{1 if k == 'fa' else 3}f} ± {m[k][1]:.{1 if k == 'fa' else 3}f}" for k in ("iou", "niou", "pd", "fa"))
            + " |")
    wins, sizes, lines = verdict(s)
    return "\n".join(rows + [""] + lines + [f"pretrained start wins at {wins} of {sizes} sizes "
                                            f"(kept if >= 2 of 3): {'KEEP' if wins >= 2 else 'DROP'}"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=("prepare", "run", "table"))
    p.add_argument("--data", type=Path, default=Path("../shared/datasets/sirst"))
    p.add_argument("--work", type=Path, default=Path("runs/segpre"))
    p.add_argument("--pretrained", type=Path, default=Path("runs/segpre/pretrained"))
    p.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",")], default=[25, 50, 100])
    p.add_argument("--seeds", type=lambda v: [int(x) for x in v.split(",")], default=[0, 1, 2])
    p.add_argument("--starts", type=lambda v: v.split(","), default=list(STARTS))
    p.add_argument("--steps", type=int, default=120, help="optimiser steps per training, whatever the size")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--json", type=Path, default=Path("benchmarks/results/pretrain_curves_segmenter.json"))
    args = p.parse_args()
    if args.action == "prepare":
        prepare(args)
    elif args.action == "run":
        run(args)
    else:
        print(table(json.loads(args.json.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
