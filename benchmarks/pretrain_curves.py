"""Learning curves: what station pretraining buys a classifier trained on few labels.

For each backbone (a pretrained one from ``main.py pretrain``, the same architecture randomly
initialised, and optionally others such as the bundled classifier's), the downstream learner is
the one the station's retraining tries first (``retrain --method head``): the backbone frozen, a
class-balanced linear head fitted on its pooled features averaged over the 'flips' views
(``classifier_head.embed`` + ``fit_linear_head``). The head's regularisation C is chosen by
5-fold cross-validation inside the labelled subset only, as retraining chooses it — never on
the scoring split. A logistic regression on 12×12 thumbnails (one of retraining's "simple
answers") is the floor every backbone has to beat.

Each point: ``--shots`` labelled images per class drawn from DATA/train (seeded), scored on
every image of DATA/val; mean and standard deviation over ``--seeds``.

    OMP_NUM_THREADS=1 python benchmarks/pretrain_curves.py --data ../shared/datasets/neu_cls \\
        --backbone pretrained=/tmp/neu-pretrained --backbone bundled=resources/models/classifier-neu \\
        --random-like pretrained --json benchmarks/results/pretrain_curves_neu.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.checkpoints import LoadedModel, load_model  # noqa: E402
from inference.models.memory_mamba import MemoryMamba  # noqa: E402
from inference.training.classifier_head import HEAD_C, embed, fit_linear_head, split_items  # noqa: E402
from inference.training.common import seed_everything, set_threads  # noqa: E402
from inference.training.simple_answers import (  # noqa: E402
    SIMPLE_MODELS,
    best_name,
    cross_validated,
    fit_predict,
    group_folds,
    score,
    thumbnails,
)


def subset(labels: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """``shots`` indices per class (all of a class's images when it has fewer), seeded."""
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(labels == c))[:shots] for c in np.unique(labels)]
    return np.sort(np.concatenate(picked))


def head_point(x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, classes: list[str], seed: int) -> dict:
    """C chosen by 5-fold CV on the labelled subset only; then fitted on all of it and scored on val."""
    folds = group_folds(y, [f"image:{i}" for i in range(len(y))], 5, seed)
    def predict_with(c: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        return lambda tr, te: fit_linear_head(x[tr], y[tr], len(classes), c).predict(x[te])

    cv = {f"{c:g}": cross_validated(predict_with(c), y, folds, classes) for c in HEAD_C}
    c = float(best_name(cv))
    s = score(yv, fit_linear_head(x, y, len(classes), c).predict(xv), classes)
    return {"accuracy": s.accuracy, "f1": s.f1, "C": c}


def random_backbone(like: LoadedModel, seed: int) -> LoadedModel:
    seed_everything(seed)
    return LoadedModel(model=MemoryMamba(like.config).eval(), name=like.name, family=like.family,
                       config=like.config, card={"kind": "random initialisation"})


def table(result: dict) -> str:
    """Markdown: one row per backbone, one column per labelled-set size (accuracy and macro F1, mean ± std)."""
    shots = [str(n) for n in result["shots_per_class"]]
    lines = ["| backbone | " + " | ".join(f"{n}/class acc (F1)" for n in shots) + " |",
             "|---|" + "---|" * len(shots)]
    for name, curve in result["curves"].items():
        cells = [f"{curve[n]['accuracy_mean']:.3f} ± {curve[n]['accuracy_std']:.3f} ({curve[n]['f1_mean']:.3f})" for n in shots]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--table"]:  # print the tables of earlier runs' JSON files
        for path in argv[1:]:
            print(f"{path}\n\n{table(json.loads(Path(path).read_text(encoding='utf-8')))}\n")
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="split tree: train/<class>/*, val/<class>/*")
    ap.add_argument("--backbone", action="append", default=[], metavar="NAME=DIR", help="a model directory (repeatable)")
    ap.add_argument("--random-like", metavar="NAME", help="also a randomly initialised backbone of NAME's architecture")
    ap.add_argument("--shots", default="10,20,40,80")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    paths, y, classes = split_items(args.data, "train")
    vpaths, yv, _ = split_items(args.data, "val", classes)
    shots = [int(s) for s in args.shots.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    backbones = {name: load_model(d) for name, d in (b.split("=", 1) for b in args.backbone)}
    if args.random_like:
        backbones[f"random ({args.random_like} architecture)"] = random_backbone(backbones[args.random_like], 0)
    features: dict[str, tuple[np.ndarray, np.ndarray]] = {"thumbnail_logreg": (thumbnails(paths), thumbnails(vpaths))}
    timing = {}
    for name, loaded in backbones.items():
        t0 = time.monotonic()
        features[name] = (embed(loaded, paths).mean(0), embed(loaded, vpaths).mean(0))
        timing[name] = round(time.monotonic() - t0, 1)
        print(f"embedded {len(paths) + len(vpaths)} images with {name} in {timing[name]} s", flush=True)
    curves: dict[str, dict[str, dict]] = {}
    for name, (x, xv) in features.items():
        curves[name] = {}
        for n in shots:
            points = []
            for seed in seeds:
                idx = subset(y, n, seed)
                if name == "thumbnail_logreg":
                    s = score(yv, fit_predict(SIMPLE_MODELS["logreg"], x[idx], y[idx], xv), classes)
                    points.append({"accuracy": s.accuracy, "f1": s.f1})
                else:
                    points.append(head_point(x[idx], y[idx], xv, yv, classes, seed))
            acc, f1 = np.array([p["accuracy"] for p in points]), np.array([p["f1"] for p in points])
            curves[name][str(n)] = {"accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std()),
                                    "f1_mean": float(f1.mean()), "f1_std": float(f1.std()), "points": points}
            print(f"{name:40s} {n:3d}/class  acc {acc.mean():.4f} ± {acc.std():.4f}  F1 {f1.mean():.4f}", flush=True)
    result = {
        "data": str(args.data), "train_images": len(y), "val_images": len(yv), "classes": classes,
        "shots_per_class": shots, "seeds": seeds,
        "learner": "frozen backbone + class-balanced linear head on pooled features averaged over 'flips' views; "
                   "C chosen by 5-fold CV inside the labelled subset (as retrain --method head)",
        "backbones": {name: {"path": str(b.path) if b.path else None, "kind": b.card.get("kind", "trained classifier"),
                             "embed_seconds": timing[name]} for name, b in backbones.items()},
        "curves": curves,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"written {args.json}\n\n{table(result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
