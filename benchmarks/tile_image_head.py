"""The tile model's image head and its flag threshold, chosen for a NEW tile (issue 19 item 4; rule in
benchmarks/results/tile-image-head.md, written before the run). TRAINING split only.

    PYTHONPATH=. OMP_NUM_THREADS=2 python benchmarks/tile_image_head.py --data /tmp/mt_split \\
        --cache /tmp/tile_planes.npz --json benchmarks/results/tile-image-head/cv.jsonl

Part 1, the head (what flags a tile): S, the shipped class-balanced logistic regression (``IMAGE_C``)
on the image rows plus the texture descriptors (preset ``tile_net_bank``), against H, a gradient-boosted
tree ensemble (scikit-learn's ``HistGradientBoostingClassifier``, settings fixed in the rule) on the
same inputs. Out-of-fold image AUROC under the protocol's session folds and under physical-tile folds.

Part 2, the threshold: the shipped rule takes Youden's J on out-of-fold scores of session folds (a
known tile under a new lighting); the candidate takes it on physical-tile folds (a new tile). Judged
nested: 5 outer folds of physical tiles; inside each outer training part the two thresholds are chosen
on that part's own out-of-fold scores, the head is fitted on the whole part, and the outer tiles are
flagged. Pooled over the outer folds: defect recall, good tiles flagged, balanced accuracy. The test
split is never read.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

Fit = Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]


def logistic_head(x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """S: the shipped head (``tile_defect_fit._logistic`` at ``IMAGE_C``)."""
    from inference.training.tile_defect_fit import IMAGE_C, _logistic

    mean, scale, w, b = _logistic(x, y, IMAGE_C)
    return lambda q: ((q - mean) / scale) @ w + b


def boosted_head(x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """H: gradient-boosted trees, settings fixed before the run (deterministic: no early stopping, no subsampling)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    clf = HistGradientBoostingClassifier(learning_rate=0.05, max_iter=300, max_leaf_nodes=15, min_samples_leaf=10,
                                         l2_regularization=1.0, class_weight="balanced", early_stopping=False,
                                         random_state=0).fit(x, y)
    return lambda q: clf.decision_function(q)


HEADS: dict[str, Fit] = {"S": logistic_head, "H": boosted_head}


def out_of_fold(fit: Fit, x: np.ndarray, y: np.ndarray, groups: list[str], k: int) -> np.ndarray:
    from inference.training.groups import balanced_folds

    out = np.zeros(len(x), np.float64)
    for held in balanced_folds(groups, k):
        rest = np.setdiff1d(np.arange(len(x)), held)
        out[held] = fit(x[rest], y[rest])(x[held])
    return out


def nested_flags(fit: Fit, x: np.ndarray, y: np.ndarray, session: list[str], series: list[str],
                 session_folds: int, series_folds: int) -> dict[str, dict[str, float]]:
    """Flags of outer (new-tile) folds by the threshold each rule picks inside the outer training part."""
    from inference.training.groups import balanced_folds
    from inference.training.texture_knn_fit import choose_threshold

    flags: dict[str, np.ndarray] = {r: np.zeros(len(x), bool) for r in ("session", "series")}
    thresholds: dict[str, list[float]] = {r: [] for r in flags}
    for held in balanced_folds(series, series_folds):
        rest = np.setdiff1d(np.arange(len(x)), held)
        xr, yr = x[rest], y[rest]
        inner = {"session": ([session[i] for i in rest], session_folds),
                 "series": ([series[i] for i in rest], min(series_folds, len({series[i] for i in rest})))}
        scores = fit(xr, yr)(x[held])
        for rule, (groups, k) in inner.items():
            oof = out_of_fold(fit, xr, yr, groups, k)
            thr = choose_threshold(oof[~yr], oof[yr])["image"]
            thresholds[rule].append(float(thr))
            flags[rule][held] = scores > thr
    out = {}
    for rule, f in flags.items():
        recall, false_calls = float(f[y].mean()), float(f[~y].mean())
        out[rule] = {"defects_flagged": recall, "good_flagged": false_calls,
                     "balanced_accuracy": (recall + 1.0 - false_calls) / 2.0, "thresholds": thresholds[rule]}
    return out


def main(argv: list[str] | None = None) -> int:
    from benchmarks.tile_defect_localise import planes_arguments

    p = planes_arguments(__doc__, "tile_net_bank")
    p.add_argument("--threshold-head", default="S", choices=sorted(HEADS),
                   help="the head part 2 is run with (the one part 1's rule keeps)")
    args = p.parse_args(argv)

    from benchmarks.tile_anomaly_cv import emit
    from benchmarks.tile_defect_localise import planes_for
    from benchmarks.tile_image_net import image_figures
    from inference.models.tile_defect import PRESETS
    from inference.training.groups import name_group_function, series_groups
    from inference.training.tile_defect_fit import SERIES_FOLDS, good_knn_stats, image_rows

    cfg = PRESETS[args.preset]
    planes = planes_for(args, cfg)
    y = np.asarray(planes.labels, bool)
    x = image_rows(cfg, planes, good_knn_stats(planes)).astype(np.float32)  # the preset's rows: descriptors included
    print(f"{int((~y).sum())} good, {int(y.sum())} defect tiles, {x.shape[1]} inputs", flush=True)
    group = name_group_function(args.group_by)
    session = [group(n) for n in planes.names]
    series = series_groups(planes.names)
    n_series = min(SERIES_FOLDS, len(set(series)))
    for name, fit in HEADS.items():
        for gname, groups, k in ((args.group_by, session, args.folds), ("series", series, n_series)):
            t0 = time.monotonic()
            logits = out_of_fold(fit, x, y, groups, k)
            emit({"part": "head", "candidate": name, "grouping": gname, "folds": k, "inputs": int(x.shape[1]),
                  "seconds": round(time.monotonic() - t0, 1)} | image_figures(y, planes.types, logits), args.json)
    t0 = time.monotonic()
    nested = nested_flags(HEADS[args.threshold_head], x, y, session, series, args.folds, n_series)
    for rule, figures in nested.items():
        emit({"part": "threshold", "head": args.threshold_head, "threshold_folds": rule, "outer": f"series x{n_series}",
              "seconds": round(time.monotonic() - t0, 1)} | figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
