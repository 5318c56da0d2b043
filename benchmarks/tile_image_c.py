"""The tile model's image-head regularisation (``IMAGE_C``) for its 432 inputs, judged nested on new tiles
(issue 19 item 4; rule in benchmarks/results/tile-image-c.md, written before the run). TRAINING split only.

    PYTHONPATH=. OMP_NUM_THREADS=2 python benchmarks/tile_image_c.py --data /tmp/mt_split \\
        --cache /tmp/tile_planes.npz --json benchmarks/results/tile-image-c/cv.jsonl

``IMAGE_C`` 0.01 was chosen under physical-tile folds when the head had 297 inputs; since session 29 it reads 432
(the texture descriptors). Shipped: C fixed at 0.01. Candidate: C chosen from ``GRID`` by physical-tile CV image
AUROC inside each outer training part. Both scored on 5 outer folds of physical tiles (pooled out-of-fold AUROC),
and, for information, the plain (not nested) physical-tile CV AUROC of every C in the grid.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GRID = (0.001, 0.003, 0.01, 0.03, 0.1)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.tile_defect_localise import planes_arguments

    p = planes_arguments(__doc__, "tile_net_bank")
    args = p.parse_args(argv)

    from benchmarks.tile_anomaly_cv import emit
    from benchmarks.tile_defect_localise import planes_for
    from benchmarks.tile_image_net import image_logits
    from inference.models.tile_defect import PRESETS
    from inference.training.anomaly_metrics import auroc
    from inference.training.groups import balanced_folds, series_groups
    from inference.training.tile_defect_fit import IMAGE_C, SERIES_FOLDS, _logistic, good_knn_stats, image_rows

    cfg = PRESETS[args.preset]
    planes = planes_for(args, cfg)
    y = np.asarray(planes.labels, bool)
    x = image_rows(cfg, planes, good_knn_stats(planes)).astype(np.float32)
    series = series_groups(planes.names)
    k = min(SERIES_FOLDS, len(set(series)))
    for c in GRID:
        emit({"part": "plain", "C": c, "series_cv_auroc": auroc(y, image_logits(x, y, series, k, c))}, args.json)
    out = {"fixed": np.zeros(len(y)), "chosen": np.zeros(len(y))}
    chosen = []
    for held in balanced_folds(series, k):
        rest = np.setdiff1d(np.arange(len(y)), held)
        inner = [series[i] for i in rest]
        ki = min(SERIES_FOLDS, len(set(inner)))
        inner_auc = {c: auroc(y[rest], image_logits(x[rest], y[rest], inner, ki, c)) for c in GRID}
        best = max(GRID, key=lambda c: (inner_auc[c], -abs(np.log10(c / IMAGE_C))))  # ties: nearest the shipped C
        chosen.append(best)
        for name, c in (("fixed", IMAGE_C), ("chosen", best)):
            mean, scale, w, b = _logistic(x[rest], y[rest], c)
            out[name][held] = ((x[held] - mean) / scale) @ w + b
    for name, logits in out.items():
        emit({"part": "nested", "rule": name, "outer": f"series x{k}", "image_auroc": auroc(y, logits),
              "chosen_C": chosen if name == "chosen" else [IMAGE_C] * k}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
