"""A learned pixel head (N) against the shipped linear one (S) for the tile defect model, by group
cross-validation on the TRAINING data only (issue 19, brief U; benchmarks/results/tile-pixel-net.md).

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 10 python benchmarks/tile_pixel_net.py --data /tmp/mt_split \\
        --cache /tmp/tile_planes.npz --seeds 0,1,2 --json benchmarks/results/tile-pixel-net/cv.jsonl

The out-of-fold planes are the localise benchmark's (``--cache``). S: ``out_of_fold_heads`` as
shipped; N: a net per fold trained on the fold's complement (``tile_pixel_net_fit``), its logit in
S's place in ``combined_map`` ("sum", weight 2); the image logits are S's. Under session folds
(``--group-by``) and physical-tile folds (``series``), one JSON line per (candidate, seed,
grouping), then the mean over seeds of N, and the CPU time per tile of each head. The test split
is never read.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def head_times(cfg, planes, knn_stats, net, model_w, model_b, n: int = 40) -> dict[str, float]:  # noqa: ANN001
    """CPU seconds per tile (one thread): the 60 pixel features (shared by both heads), the linear
    head on them, and the net on them (full size in, full size out, as the model would run it)."""
    import torch

    from inference.models.tile_defect import pixel_features

    mean, std = knn_stats
    t0 = time.process_time()
    feats = [pixel_features(planes.z[i], (planes.knn[i] - mean) / std, cfg) for i in range(n)]
    t1 = time.process_time()
    for f in feats:
        np.tensordot(model_w, f, axes=(0, 0)) + model_b
    t2 = time.process_time()
    with torch.no_grad():
        for f in feats:
            net(torch.from_numpy(f)[None])
    t3 = time.process_time()
    return {"features_s": (t1 - t0) / n, "linear_head_s": (t2 - t1) / n, "net_head_s": (t3 - t2) / n}


def main(argv: list[str] | None = None) -> int:
    from benchmarks.tile_defect_localise import planes_arguments

    p = planes_arguments(__doc__, "tile")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=15)
    args = p.parse_args(argv)

    import torch

    from benchmarks.tile_anomaly_cv import emit
    from benchmarks.tile_defect_localise import localisation, planes_for
    from inference.models.tile_defect import PRESETS, TileDefect, combined_map
    from inference.training.groups import name_group_function
    from inference.training.tile_defect_fit import (
        figures,
        fit_heads,
        fold_groupings,
        good_knn_stats,
        image_rows,
        out_of_fold_heads,
    )
    from inference.training.tile_pixel_net_fit import NetTraining, half_inputs, out_of_fold_net_maps, train_net

    torch.set_num_threads(1)
    cfg = PRESETS[args.preset]
    weight, mode = cfg.map_image_weight, cfg.map_offset
    planes = planes_for(args, cfg)
    group = name_group_function(args.group_by)
    stats = good_knn_stats(planes)
    rows = image_rows(cfg, planes, stats)
    tr = NetTraining(epochs=args.epochs)

    def record(cand: str, seed: int | None, gname: str, k: int, pix: np.ndarray, logits: np.ndarray, secs: float) -> dict:
        res = figures(planes, pix, logits, weight, mode)
        line = {"candidate": cand, "seed": seed, "grouping": gname, "folds": k, "offset": mode, "weight": weight,
                "pixel_auroc": res["pixel_auroc"], "image_auroc": res["image_auroc"],
                "pixel_auroc_by_type": res["pixel_auroc_by_type"], "seconds": round(secs, 1)}
        line |= localisation(combined_map(pix, logits[:, None, None], weight, mode), planes.labels, planes.masks)
        emit(line, args.json)
        return line

    groupings = fold_groupings(planes, group, args.group_by, args.folds)
    logits_by: dict[str, np.ndarray] = {}
    for gname, (groups, k) in groupings.items():
        t0 = time.monotonic()
        pix, logits_by[gname] = out_of_fold_heads(cfg, planes, rows, groups, k, stats)
        record("S", None, gname, k, pix, logits_by[gname], time.monotonic() - t0)

    t0 = time.monotonic()
    feats, targets, usable = half_inputs(cfg, planes, stats)
    print(f"net inputs {feats.shape}: {time.monotonic() - t0:.0f} s", flush=True)
    lines: list[dict] = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for gname, (groups, k) in groupings.items():
            t0 = time.monotonic()
            print(f"N seed {seed}, {gname} ({k} folds)", flush=True)
            pix = out_of_fold_net_maps(planes, feats, targets, usable, groups, k, seed, tr)
            lines.append(record("N", seed, gname, k, pix, logits_by[gname], time.monotonic() - t0))
    for gname in groupings:
        got = [x for x in lines if x["grouping"] == gname]
        types = sorted(got[0]["pixel_auroc_by_type"])
        emit({"candidate": "N", "seed": "mean", "grouping": gname, "n_seeds": len(got)}
             | {key: float(np.mean([x[key] for x in got])) for key in
                ("pixel_auroc", "image_auroc", "region_iou", "region_recall", "false_area", "flooded",
                 "good_with_region", "per_tile_auroc")}
             | {"pixel_auroc_by_type": {t: float(np.mean([x["pixel_auroc_by_type"][t] for x in got])) for t in types}},
             args.json)

    # CPU time per tile of each head (one net and one linear head fitted on every usable tile, seed 0)
    model = TileDefect(cfg)
    model.knn_stats.copy_(torch.tensor(stats))
    fit_heads(model, planes, rows, range(len(planes.images)))
    net = train_net(feats, targets, ~planes.labels, np.flatnonzero(usable), 0, NetTraining(epochs=1))
    emit({"timing": "cpu seconds per tile, one thread (net trained 1 epoch: the cost does not depend on the weights)"}
         | head_times(cfg, planes, stats, net, model.pixel_w.numpy(), float(model.pixel_b)), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
