"""Group cross-validation of the tile defect model's head settings on the TRAINING data only
(issue 19 item 4, ADR 0032).

    PYTHONPATH=. python benchmarks/tile_defect_select.py --data runs/mt_split \\
        --image-c 0.001,0.01,0.1,1 --pixel-c 0.1 --weights 0,0.5,1,2,4 --json benchmarks/results/tile-defect-select.jsonl

The out-of-fold planes (kNN maps and standardised local terms of every training tile from a bank
and statistics that never saw its capture session) are made once; then for every (image C,
pixel C) the two heads are fitted without each fold and score it, under the session folds
(``--group-by``) and physical-tile folds (``series``); every map weight is rescored from the same
maps. One JSON line per (grouping, image C, pixel C, weight). The test split is never read.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--preset", default="tile")
    p.add_argument("--image-c", default="0.01")
    p.add_argument("--pixel-c", default="0.1")
    p.add_argument("--weights", default="2")
    p.add_argument("--offsets", default="sum", help="how the image logit enters the map: sum, veto (comma list)")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--group-by", default="prefix")
    p.add_argument("--cache", help="an .npz that keeps the out-of-fold planes between runs (tile_defect_localise.py's)")
    p.add_argument("--only", help="score under this grouping only (e.g. series)")
    p.add_argument("--json", help="append one line per result here")
    args = p.parse_args(argv)

    import torch

    from benchmarks.tile_anomaly_cv import emit
    from benchmarks.tile_defect_localise import planes_for
    from inference.models.tile_defect import PRESETS
    from inference.training.groups import name_group_function
    from inference.training.tile_defect_fit import (
        figures,
        fold_groupings,
        good_knn_stats,
        image_rows,
        out_of_fold_heads,
    )

    torch.set_num_threads(1)
    cfg = PRESETS[args.preset]
    t0 = time.monotonic()
    group = name_group_function(args.group_by)
    planes = planes_for(args, cfg)  # the out-of-fold planes, shared with tile_defect_localise.py (--cache)
    stats = good_knn_stats(planes)
    rows = image_rows(cfg, planes, stats)
    print(f"out-of-fold planes and image rows: {time.monotonic() - t0:.0f} s", flush=True)
    for gname, (groups, k) in fold_groupings(planes, group, args.group_by, args.folds).items():
        if args.only and gname != args.only:
            continue
        for image_c in (float(c) for c in args.image_c.split(",")):
            for pixel_c in (float(c) for c in args.pixel_c.split(",")):
                t1 = time.monotonic()
                maps, logits = out_of_fold_heads(cfg, planes, rows, groups, k, stats, pixel_c, image_c)
                for w in (float(x) for x in args.weights.split(",")):
                    for offset in args.offsets.split(","):
                        res = figures(planes, maps, logits, w, offset)
                        emit({"grouping": gname, "folds": k, "image_c": image_c, "pixel_c": pixel_c, "weight": w,
                              "offset": offset, "seconds": round(time.monotonic() - t1, 1)} | res, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
