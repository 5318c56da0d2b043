"""The bundled magnetic-tile classifier: candidates chosen by group CV on train/, the frozen test once.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/tile_classifier.py --data ../shared/datasets/magnetic_tile \
        --out resources/models/classifier-magnetic_tile --json benchmarks/results/tiles-classifier/cv.json \
        [--cache /tmp/tile-features] [--few 10 20 40 80 --seeds 0 1 2] [--tried]
    PYTHONPATH=. python benchmarks/tile_classifier.py --data ../shared/datasets/magnetic_tile --facts   # sizes, mask shares, shared tiles

1. Features of every ``train/`` tile (``texture``: the label-next embedding; ``defect``: the
   small-defect statistics of ``inference.texture_features``; 12 x 12 thumbnails for the simple answers).
2. 5-fold cross-validation grouped by capture session (file-name prefix, the protocol's rule) of the
   candidates (class-balanced logistic regression on either feature set at C 0.1 / 1 / 10 / 100, as the
   retrain command fits them) and the simple answers (majority, kNN, logistic regression on
   thumbnails). The best candidate by CV macro F1, then accuracy, is the model; nothing else is chosen.
   The same figures with folds grouped by physical tile (``groups.series_groups``) are reported beside
   them: what to expect on tiles the training never saw.
3. ``--few``: the retraining scenario inside train/ only: in each session fold, N random labelled
   tiles per class of the other folds are fitted and the whole held-out fold is scored (mean of seeds).
4. The chosen candidate is refitted on all of ``train/`` and written to ``--out`` (card with the CV
   estimate). ``val/`` is not read here: the frozen test is ``python main.py evaluate classifier
   --data .../val --model OUT --record``, once.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.services.json_files import write_json_atomic  # noqa: E402
from inference.training.classifier_head import (  # noqa: E402
    HEAD_C,
    candidate_c,
    candidate_features,
    fit_linear_head,
    split_items,
    texture_matrix,
    texture_name,
    write_texture_linear,
)
from inference.training.groups import assign_groups, group_folds, series_groups  # noqa: E402
from inference.training.simple_answers import (  # noqa: E402
    FOLDS,
    SIMPLE_MODELS,
    Score,
    best_name,
    cross_validated,
    fit_predict,
    score,
    thumbnails,
)

Predict = Callable[[np.ndarray, np.ndarray], np.ndarray]
# the feature sets its recorded figures compared (ADR 0027); the few-label bank is benchmarks/fewlabel.py's
SETS = ("texture", "defect")


def cached(cache: Path | None, name: str, make: Callable[[], np.ndarray]) -> np.ndarray:
    if cache is None:
        return make()
    path = cache / f"{name}.npy"
    if path.is_file():
        return np.load(path)
    cache.mkdir(parents=True, exist_ok=True)
    arr = make()
    np.save(path, arr)
    return arr


def feature_matrices(paths: list[Path], sets: tuple[str, ...], cache: Path | None) -> dict[str, np.ndarray]:
    """12 x 12 thumbnails and each feature set of ``sets`` for every image (from ``cache`` when there)."""
    features = {"thumbnail": cached(cache, "thumbnail", lambda: thumbnails(paths))}
    for feature_set in sets:
        features[feature_set] = cached(cache, feature_set, lambda fs=feature_set: texture_matrix(paths, fs))
    return features


def head_training(feature_set: str, c: float, n_features: int, selected_by: str) -> dict:
    """The card's ``training`` section of a texture_linear model (no network: a fitted linear layer)."""
    return {"initialisation": f"none: a linear layer on the {feature_set} features (inference.texture_features)",
            "head": {"kind": "class-balanced logistic regression on standardised features", "C": c,
                     "features": f"{n_features} {feature_set} features of the gray image", "selected_by": selected_by}}


def predictors(features: dict[str, np.ndarray], y: np.ndarray, k: int, sets: tuple[str, ...] = SETS) -> dict[str, Predict]:
    """name -> predict(train_idx, test_idx) for every simple answer and candidate (``sets``: their features)."""
    out: dict[str, Predict] = {}
    thumb = features["thumbnail"]
    for model_name, make in SIMPLE_MODELS.items():
        key = f"thumbnail_{model_name}" if model_name != "majority" else "majority"
        out[key] = lambda tr, te, make=make: fit_predict(make, thumb[tr], y[tr], thumb[te])
    for feature_set in sets:
        x = features[feature_set]
        for c in HEAD_C:
            out[texture_name(c, feature_set)] = (
                lambda tr, te, x=x, c=c: fit_linear_head(x[tr], y[tr], k, c).predict(x[te]))
    return out


def data_facts(root: Path, classes: list[str]) -> dict[str, dict]:
    """Per class: image sides, median defect-mask share (masks/train), and how many val/ images show a
    tile that train/ shows under another lighting (file names only; no val pixel is read)."""
    import cv2

    train_names = {p.name for c in classes for p in (root / "train" / c).glob("*.png")}
    val_names = {c: sorted(p.name for p in (root / "val" / c).glob("*.png")) for c in classes}
    every = sorted(train_names) + [n for c in classes for n in val_names[c]]
    series = dict(zip(every, series_groups(every)))
    in_train = {series[n] for n in train_names}
    out: dict[str, dict] = {}
    for c in classes:
        files = sorted((root / "train" / c).glob("*.png"))
        sides = np.array([cv2.imread(str(f), cv2.IMREAD_GRAYSCALE).shape for f in files])
        masks = [root / "masks" / "train" / c / f.name for f in files]
        share = [float((cv2.imread(str(m), cv2.IMREAD_GRAYSCALE) > 0).mean()) for m in masks if m.is_file()]
        out[c] = {"train": len(files), "height_min_median_max": [int(v) for v in np.percentile(sides[:, 0], [0, 50, 100])],
                  "width_min_median_max": [int(v) for v in np.percentile(sides[:, 1], [0, 50, 100])],
                  "median_mask_share": round(float(np.median(share)), 4) if share else None,
                  "train_tiles": len({series[f.name] for f in files}),
                  "val": len(val_names[c]), "val_tile_also_in_train": sum(series[n] in in_train for n in val_names[c])}
    return out


def tried_heads(x: np.ndarray, y: np.ndarray) -> dict[str, Predict]:
    """Heads tried on the defect statistics and dropped (``--tried``): gradient boosting, extra trees,
    an unweighted logistic regression. Reported under the same folds; never candidates."""
    from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    makers = {
        "defect_hgb_balanced": lambda: HistGradientBoostingClassifier(max_iter=200, max_leaf_nodes=15,
                                                                      class_weight="balanced", random_state=0),
        "defect_extratrees_balanced": lambda: ExtraTreesClassifier(500, class_weight="balanced", n_jobs=1, random_state=0),
        "defect_logreg_unweighted_C10": lambda: make_pipeline(StandardScaler(), LogisticRegression(C=10, max_iter=5000)),
    }
    return {name: (lambda tr, te, make=make: np.asarray(make().fit(x[tr], y[tr]).predict(x[te]), np.int64))
            for name, make in makers.items()}


def few_labels(predict: dict[str, Predict], y: np.ndarray, folds, classes: list[str], per_class: int,
               seeds: list[int]) -> dict[str, dict[str, float]]:
    """Mean CV score when only ``per_class`` random tiles per class of the training folds are labelled."""
    runs: dict[str, list[Score]] = {name: [] for name in predict}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        picks = [np.concatenate([rng.permutation(tr[y[tr] == c])[:per_class] for c in range(len(classes))])
                 for tr, _te in folds]
        for name, fn in predict.items():
            pred = np.empty(len(y), np.int64)
            for (_tr, te), lab in zip(folds, picks):
                pred[te] = fn(lab, te)
            runs[name].append(score(y, pred, classes))
    return {name: {"accuracy": round(float(np.mean([s.accuracy for s in r])), 4),
                   "accuracy_sd": round(float(np.std([s.accuracy for s in r])), 4),
                   "f1": round(float(np.mean([s.f1 for s in r])), 4),
                   "f1_sd": round(float(np.std([s.f1 for s in r])), 4)} for name, r in runs.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="magnetic_tile root with train/ (val/ is not read)")
    ap.add_argument("--out", type=Path, help="write the chosen model here")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--cache", type=Path, help="folder for the feature arrays (recomputed when absent)")
    ap.add_argument("--few", type=int, nargs="*", default=[], help="labels per class for the retraining scenario")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--facts", action="store_true", help="only print the data facts (sizes, mask shares, shared tiles)")
    ap.add_argument("--tried", action="store_true", help="also score the heads tried and dropped (minutes)")
    args = ap.parse_args()

    paths, y, classes = split_items(args.data, "train")
    if args.facts:
        facts = data_facts(args.data, classes)
        print(json.dumps(facts, indent=1))
        if args.json:
            write_json_atomic(args.json, facts)
        return 0
    names = [p.name for p in paths]
    t0 = time.monotonic()
    features = feature_matrices(paths, SETS, args.cache)
    feature_seconds = time.monotonic() - t0
    predict = predictors(features, y, len(classes))
    sessions, rule = assign_groups(names, [classes[i] for i in y], "prefix")
    fold_sets = {"session": group_folds(y, sessions, FOLDS, 0), "tile": group_folds(y, series_groups(names), FOLDS, 0)}
    cv = {kind: {name: cross_validated(fn, y, folds, classes) for name, fn in predict.items()}
          for kind, folds in fold_sets.items()}
    if args.tried:  # after the candidates' CV: these are reported, never chosen from
        extra = tried_heads(features["defect"], y)
        for kind, folds in fold_sets.items():
            cv[kind].update({name: cross_validated(fn, y, folds, classes) for name, fn in extra.items()})
    candidates = {k: v for k, v in cv["session"].items() if candidate_features(k)}
    chosen = best_name(candidates)
    best_simple = best_name({k: v for k, v in cv["session"].items() if k == "majority" or k.startswith("thumbnail_")})
    report = {
        "data": str(args.data), "images": len(y), "classes": classes,
        "counts": {c: int(n) for c, n in zip(classes, np.bincount(y, minlength=len(classes)))},
        "groups": {"session": {"rule": rule, "groups": len(set(sessions))},
                   "tile": {"rule": "groups.series_groups", "groups": len(set(series_groups(names)))}},
        "folds": FOLDS, "feature_seconds": round(feature_seconds, 1),
        "cv": {kind: {k: v.as_dict() for k, v in scores.items()} for kind, scores in cv.items()},
        "chosen": chosen, "best_simple": best_simple,
    }
    print(f"chosen {chosen}: session CV {cv['session'][chosen].as_dict()}, tile CV {cv['tile'][chosen].as_dict()}; "
          f"best simple {best_simple}: {cv['session'][best_simple].as_dict()}, tile CV {cv['tile'][best_simple].as_dict()}")
    if args.few:
        report["few_labels"] = {kind: {str(n): few_labels(predict, y, fold_sets[kind], classes, n, args.seeds)
                                       for n in args.few} for kind in fold_sets}
        report["seeds"] = args.seeds
    if args.out:
        feature_set = candidate_features(chosen) or "texture"
        c = candidate_c(chosen)
        card = {
            "family": "classifier", "task": "magnetic-tile surface defects (6 classes)",
            "data": {"train_images": len(y), "train_counts": report["counts"], "source": "magnetic_tile/train"},
            "training": head_training(feature_set, c, features[feature_set].shape[1],
                                      f"{FOLDS}-fold cross-validation grouped by capture session "
                                      "(file-name prefix) over texture/defect x C"),
            "command": "PYTHONPATH=. python benchmarks/tile_classifier.py --data magnetic_tile --out "
                       "resources/models/classifier-magnetic_tile",
            "metrics": {"cv": {**cv["session"][chosen].as_dict(), "folds": FOLDS, "groups": "session (prefix)"},
                        "cv_new_tiles": {**cv["tile"][chosen].as_dict(), "folds": FOLDS,
                                         "groups": "physical tile (groups.series_groups)"}},
            "licence": "trained on the Magnetic-tile-defect-datasets (abin24; no licence stated, 'welcomed to use'; "
                       "cite Huang, Qiu, Yuan, The Visual Computer 36 (2020) 85-96)",
        }
        write_texture_linear(features[feature_set], y, classes, c, args.out, card, feature_set)
        print(f"wrote {args.out}")
    if args.json:
        write_json_atomic(args.json, report)  # makes the folder
    return 0


if __name__ == "__main__":
    sys.exit(main())
