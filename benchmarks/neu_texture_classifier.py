"""A texture-descriptor NEU classifier: candidates chosen by cross-validation on train/, val/ once.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/neu_texture_classifier.py --data ../shared/datasets/neu_cls \\
        --out resources/models/classifier-neu-texture --cache /tmp/neu-texture-features \\
        --json benchmarks/results/neu-texture/cv.json
    python main.py evaluate classifier --data ../shared/datasets/neu_cls/val \\
        --model resources/models/classifier-neu-texture --record          # the frozen split, once

The candidates are the retrain command's light heads (class-balanced logistic regression,
``classifier_head.fit_linear_head``) on each feature set of ``inference.texture_features``
(``texture``, ``defect``, ``bank``, ``defect_bank``) at each C of ``HEAD_C``, beside the simple answers
(majority, kNN and logistic regression on 12 x 12 thumbnails). NEU's file names carry only the class
(``groups.assign_groups`` rule ``auto`` finds no capture groups), so the 5 folds are stratified by
class with one image per group. The best candidate by CV macro F1, then accuracy (the cheaper feature
set on a tie), is refitted on all of train/ and written to ``--out``; val/ is never read here.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.services.json_files import write_json_atomic  # noqa: E402
from benchmarks.tile_classifier import feature_matrices, head_training, predictors  # noqa: E402
from inference.training.classifier_head import (  # noqa: E402
    FEATURE_KINDS,
    candidate_c,
    candidate_features,
    split_items,
    write_texture_linear,
)
from inference.training.groups import assign_groups, group_folds  # noqa: E402
from inference.training.simple_answers import FOLDS, best_name, cross_validated  # noqa: E402

SETS = tuple(FEATURE_KINDS)  # texture, defect, bank, defect_bank: cheapest first


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="neu_cls root with train/ (val/ is not read)")
    ap.add_argument("--out", type=Path, help="write the chosen model here")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--cache", type=Path, help="folder for the feature arrays (recomputed when absent)")
    args = ap.parse_args()

    paths, y, classes = split_items(args.data, "train")
    names = [p.name for p in paths]
    t0 = time.monotonic()
    features = feature_matrices(paths, SETS, args.cache)
    feature_seconds = time.monotonic() - t0
    groups, rule = assign_groups(names, [classes[i] for i in y], "auto")
    folds = group_folds(y, groups, FOLDS, 0)
    cv = {name: cross_validated(fn, y, folds, classes) for name, fn in predictors(features, y, len(classes), SETS).items()}
    chosen = best_name({k: v for k, v in cv.items() if candidate_features(k)})
    best_simple = best_name({k: v for k, v in cv.items() if not candidate_features(k)})
    report = {"data": str(args.data), "images": len(y), "classes": classes, "group_rule": rule, "folds": FOLDS,
              "feature_seconds": round(feature_seconds, 1), "cv": {k: v.as_dict() for k, v in cv.items()},
              "chosen": chosen, "best_simple": best_simple}
    print(f"chosen {chosen}: CV {cv[chosen].as_dict()}; best simple {best_simple}: {cv[best_simple].as_dict()}")
    if args.out:
        feature_set = candidate_features(chosen) or "texture"
        c = candidate_c(chosen)
        card = {
            "family": "classifier", "task": "NEU hot-rolled steel surface defects (6 classes)",
            "data": {"train_images": len(y), "source": "neu_cls/train",
                     "train_counts": {k: int(n) for k, n in zip(classes, np.bincount(y, minlength=len(classes)))}},
            "training": head_training(feature_set, c, features[feature_set].shape[1],
                                      f"{FOLDS}-fold cross-validation stratified by class (NEU names carry no "
                                      f"capture group: rule {rule}) over {'/'.join(SETS)} x C"),
            "command": "PYTHONPATH=. python benchmarks/neu_texture_classifier.py --data neu_cls --out "
                       "resources/models/classifier-neu-texture",
            "metrics": {"cv": {**cv[chosen].as_dict(), "folds": FOLDS, "groups": rule}},
            "licence": "trained on NEU-DET (siddhartamukherjee/NEU-DET-Steel-Surface-Defect-Detection; research "
                       "dataset, no licence stated; cite K. Song and Y. Yan, Applied Surface Science 285 (2013))",
        }
        write_texture_linear(features[feature_set], y, classes, c, args.out, card, feature_set)
        print(f"wrote {args.out}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.json, report)
        print(json.dumps(report["cv"][chosen]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
