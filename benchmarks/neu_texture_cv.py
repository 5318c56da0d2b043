"""The texture NEU classifier's cross-validation on MemoryMamba's own folds (like for like, issue 19).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/neu_texture_cv.py --data /work/shared/datasets/neu_cls \\
        --cache /tmp/neu-texture-features --json benchmarks/results/neu-texture-2/cv.json

MemoryMamba's estimate (0.9661, ``benchmarks/results/neu-texture/memorymamba_cv.json``) came from
``train classifier --cv-folds 3``: ``classifier_cv.plan_folds`` over the training split's items in
``training_split`` order, names relative to ``train/``, group rule ``auto`` (NEU: ``none``), seed 0.
Here the same call makes the folds (3, and 5 beside it) over the same items, and scores, from the
cached feature matrices of ``neu_texture_classifier.py`` (val/ is never read):

* ``shipped``: the bundled model's recipe fixed (``defect_bank`` features, logistic regression C 10);
* ``selected``: the whole choice repeated under these folds (every feature set x C of
  ``neu_texture_classifier.py``, the best pooled out-of-fold macro F1 then accuracy): the analogue of
  MemoryMamba's figure, whose epochs and views were chosen on the same pooled predictions.

The cache's rows are checked against the features computed now for ``--check`` images (the fast code).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.services.json_files import write_json_atomic  # noqa: E402
from benchmarks.neu_texture_classifier import SETS  # noqa: E402
from benchmarks.tile_classifier import feature_matrices, predictors  # noqa: E402
from inference.texture_features import FEATURE_SETS  # noqa: E402
from inference.training.classifier_cv import plan_folds  # noqa: E402
from inference.training.classifier_data import training_split  # noqa: E402
from inference.training.classifier_head import candidate_features, split_items, texture_name  # noqa: E402
from inference.training.simple_answers import best_name, cross_validated  # noqa: E402

SHIPPED = texture_name(10.0, "defect_bank")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="neu_cls root with train/ (val/ is not read)")
    ap.add_argument("--cache", type=Path, help="neu_texture_classifier.py's feature cache (recomputed when absent)")
    ap.add_argument("--folds", type=int, nargs="+", default=[3, 5])
    ap.add_argument("--check", type=int, default=12, help="cache rows recomputed to check the cache")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    paths, y, classes = split_items(args.data, "train")  # the cache's row order
    features = feature_matrices(paths, SETS, args.cache)
    split = training_split(args.data)                     # MemoryMamba's item order
    row = {p: i for i, p in enumerate(paths)}
    order = np.array([row[item.path] for item in split.train])
    assert split.classes == classes and (y[order] == [classes.index(item.label) for item in split.train]).all()
    features = {k: v[order] for k, v in features.items()}
    y = y[order]
    train_paths = [item.path for item in split.train]

    check = np.linspace(0, len(y) - 1, args.check).astype(int)
    from inference.imageio import read_image

    fresh = np.stack([FEATURE_SETS["defect_bank"][1](read_image(train_paths[i], "gray")) for i in check])
    cache_diff = float(np.abs(fresh - features["defect_bank"][check]).max())
    print(f"cache check on {len(check)} images: largest |cached - fresh| {cache_diff:.2e}")

    report: dict = {"data": str(args.data), "images": len(y), "classes": classes, "cache_check_max_abs": cache_diff,
                    "shipped": SHIPPED, "folds": {}}
    for k in args.folds:
        plan = plan_folds(train_paths, args.data / "train", y, classes, k, "auto", 0)
        preds = {n: f for n, f in predictors(features, y, len(classes), SETS).items() if candidate_features(n)}
        cv = {n: cross_validated(f, y, plan.folds, classes) for n, f in preds.items()}
        chosen = best_name(cv)
        report["folds"][str(k)] = {
            "rule": plan.rule, "groups": len(set(plan.groups)), "fold_sizes": [len(te) for _, te in plan.folds],
            "shipped": cv[SHIPPED].as_dict(), "selected": chosen, "selected_cv": cv[chosen].as_dict(),
            "every_candidate": {n: s.as_dict() for n, s in cv.items()}}
        print(f"{k}-fold (rule {plan.rule}, fold sizes {[len(te) for _, te in plan.folds]}): shipped {SHIPPED} "
              f"{cv[SHIPPED].as_dict()}; selected {chosen} {cv[chosen].as_dict()}")
    if args.json:
        write_json_atomic(args.json, report)  # makes the folder
    return 0


if __name__ == "__main__":
    sys.exit(main())
