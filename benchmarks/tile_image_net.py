"""The tile model's image head with the pixel net's map as an input (T) against the shipped head (S),
by group cross-validation on the TRAINING data only (issue 19 item 4; rule in
benchmarks/results/tile-image-net.md, written before the run).

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 5 python benchmarks/tile_image_net.py --data /tmp/mt_split \\
        --cache /tmp/tile_planes.npz --seeds 0 --json benchmarks/results/tile-image-net/cv.jsonl

S: the image head's out-of-fold logits as shipped (``out_of_fold_heads``' image part). T: the same
head on the image rows plus the top-k mean of each tile's out-of-fold net map inside the margin and
over the whole map. The nets are trained under the same folds the head is scored on, one JSON line
per (candidate, seed, grouping). The test split is never read.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def image_logits(rows: np.ndarray, labels: np.ndarray, groups: list[str], n_folds: int, c: float) -> np.ndarray:
    """Out-of-fold image-head logits: the shipped head's fit (``tile_defect_fit._logistic``), the
    same folds as ``out_of_fold_heads``."""
    from inference.training.groups import balanced_folds
    from inference.training.tile_defect_fit import _logistic

    out = np.zeros(len(rows), np.float32)
    for held in balanced_folds(groups, n_folds):
        fit = np.setdiff1d(np.arange(len(rows)), held)
        mean, scale, w, b = _logistic(rows[fit], labels[fit], c)
        out[held] = ((rows[held] - mean) / scale) @ w + b
    return out


def image_figures(labels: np.ndarray, types: list[str], logits: np.ndarray) -> dict:
    """Image AUROC pooled and per type, and the Youden threshold's flag rates on these scores."""
    from inference.training.anomaly_metrics import auroc
    from inference.training.texture_knn_fit import choose_threshold

    good = ~labels
    by_type = {t: auroc(np.r_[np.zeros(int(good.sum()), bool), np.ones(int(sel.sum()), bool)],
                        np.r_[logits[good], logits[sel]])
               for t in sorted(set(np.asarray(types)[labels])) for sel in [np.asarray(types) == t]}
    thr = choose_threshold(logits[good], logits[labels])
    return {"image_auroc": auroc(labels, logits), "image_auroc_by_type": by_type,
            "youden_defects_flagged": thr["defects_flagged"], "youden_good_flagged": thr["good_flagged"]}


def main(argv: list[str] | None = None) -> int:
    from benchmarks.tile_defect_localise import planes_arguments

    p = planes_arguments(__doc__, "tile_net")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--maps", help="keep each seed's out-of-fold net maps' two numbers here (.npz prefix)")
    args = p.parse_args(argv)

    import torch

    from benchmarks.tile_anomaly_cv import emit
    from benchmarks.tile_defect_localise import planes_for
    from inference.models.tile_defect import PRESETS, top_mean
    from inference.training.groups import name_group_function
    from inference.training.tile_defect_fit import IMAGE_C, fold_groupings, good_knn_stats, image_rows
    from inference.training.tile_pixel_net_fit import half_inputs, out_of_fold_net_maps

    torch.set_num_threads(1)
    cfg = PRESETS[args.preset]
    planes = planes_for(args, cfg)
    print(f"{int((~planes.labels).sum())} good, {int(planes.labels.sum())} defect tiles", flush=True)
    group = name_group_function(args.group_by)
    stats = good_knn_stats(planes)
    rows = image_rows(cfg, planes, stats)
    groupings = fold_groupings(planes, group, args.group_by, args.folds)
    for gname, (groups, k) in groupings.items():
        emit({"candidate": "S", "seed": None, "grouping": gname, "folds": k}
             | image_figures(planes.labels, planes.types, image_logits(rows, planes.labels, groups, k, IMAGE_C)),
             args.json)
    feats, targets, usable = half_inputs(cfg, planes, stats)
    for seed in (int(s) for s in args.seeds.split(",")):
        for gname, (groups, k) in groupings.items():
            t0 = time.monotonic()
            print(f"T seed {seed}, {gname} ({k} folds)", flush=True)
            pix = out_of_fold_net_maps(planes, feats, targets, usable, groups, k, seed)
            extra = np.stack([top_mean(pix, cfg.topk, cfg.image_margin), top_mean(pix, cfg.topk, 0)], 1)
            if args.maps:
                np.savez(f"{args.maps}_seed{seed}_{gname}.npz", extra=extra, names=np.array(planes.names))
            logits = image_logits(np.hstack([rows, extra]).astype(np.float32), planes.labels, groups, k, IMAGE_C)
            emit({"candidate": "T", "seed": seed, "grouping": gname, "folds": k,
                  "seconds": round(time.monotonic() - t0, 1)} | image_figures(planes.labels, planes.types, logits),
                 args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
