"""Does the tile defect model's map localise? Group cross-validation of how the image logit enters
the map, on the TRAINING data only (issue 19, ADR 0032's known flaw).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/tile_defect_localise.py --data runs/mt_split \\
        --cache /tmp/tile_planes.npz --weights 1,2,4 --gates=-2,-1,0,1,2 \\
        --json benchmarks/results/tile-defect-localise.jsonl

The out-of-fold planes are made once (``--cache`` keeps them for a rerun); the two heads are fitted
without each fold and score it, under the session folds (``--group-by``) and physical-tile folds
(``series``). Every map rule (``combined_map``: "sum", "veto", "gate" at each weight and gate) is
then scored from the same out-of-fold pixel maps and image logits:

- pooled pixel AUROC (what the issue's target reads, every 2nd cell, as the card's figures);
- what an inspector sees, at the region threshold the station uses (the 99.9 % quantile of good
  tiles' map values, here their out-of-fold maps): on defect tiles with a mask, the region's IoU
  with the mask, the share of the defect it covers (recall) and of the non-defect area it paints
  (false area), the share of defect tiles painted over more than half their background
  ("flooded"); on good tiles, the share with any region at all;
- the mean per-tile pixel AUROC of defect tiles (does the map rank a tile's defect above its own
  background, whatever the threshold). Every rule here is increasing in the pixel logit within a
  tile, so this is the pixel head's own figure, the same for every rule: a check, not a choice.

One JSON line per (grouping, rule). The test split is never read.

``--candidates S,A,B,C,D`` (brief K, benchmarks/results/tile-pixel.md) scores term sets instead of
the shipped one: each candidate's term planes are remade from the cached images under the same
session folds (``tile_defect_fit.with_terms``; the kNN planes are kept), then the same heads and
rules; one JSON line per (candidate, grouping, rule).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))



def localisation(maps: np.ndarray, labels: np.ndarray, masks: list[np.ndarray | None]) -> dict[str, Any]:
    """Region figures at the good tiles' 99.9 % map quantile, and the mean per-tile AUROC."""
    from inference.training.anomaly_metrics import pixel_auroc
    from inference.training.texture_knn_fit import PIXEL_QUANTILE

    thr = float(np.quantile(maps[~labels], PIXEL_QUANTILE))
    ious, recalls, false_areas, per_tile = [], [], [], []
    for m, lab, mk in zip(maps, labels, masks):
        if not lab or mk is None or not mk.any() or mk.all():
            continue
        region = m > thr
        inter = float((region & mk).sum())
        ious.append(inter / float((region | mk).sum()))
        recalls.append(inter / float(mk.sum()))
        false_areas.append(float((region & ~mk).sum()) / float((~mk).sum()))
        per_tile.append(pixel_auroc([mk], [m]))  # full map_size grid: a small defect may miss every 2nd cell
    good_any = float(np.mean([(m > thr).any() for m in maps[~labels]]))
    fa = np.asarray(false_areas)
    return {"region_threshold": thr, "region_iou": float(np.mean(ious)), "region_recall": float(np.mean(recalls)),
            "false_area": float(fa.mean()), "flooded": float((fa > 0.5).mean()), "good_with_region": good_any,
            "per_tile_auroc": float(np.nanmean(per_tile)), "per_tile_undefined": int(np.isnan(per_tile).sum()),
            "n_masked_defects": len(ious)}


def planes_arguments(doc: str, preset: str) -> argparse.ArgumentParser:
    """The tile studies' common command line (they read the out-of-fold planes of ``planes_for``): ``--data``,
    ``--preset``, ``--cache``, ``--folds``, ``--group-by`` and ``--json``; a study adds its own options."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--preset", default=preset)
    p.add_argument("--cache", required=True, help="the localise benchmark's out-of-fold planes (.npz; made when absent)")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--group-by", default="prefix")
    p.add_argument("--json", help="append one line per result here")
    return p


def planes_for(args: argparse.Namespace, cfg: Any) -> Any:
    """The out-of-fold planes, from ``--cache`` when it holds them."""
    from inference.training.anomaly_data import load_images, scan_category
    from inference.training.groups import name_group_function
    from inference.training.texture_knn_fit import load_validation
    from inference.training.tile_defect_fit import Planes, out_of_fold

    cache = Path(args.cache) if args.cache else None
    if cache is not None and cache.exists():
        d = np.load(cache, allow_pickle=False)
        has = d["has_mask"]
        masks = [mk if h else None for mk, h in zip(d["masks"], has)]
        return Planes(d["images"], d["z"], d["knn"], d["labels"], masks, list(d["names"]), list(d["types"]))
    tree = scan_category(args.data, need_train=True)
    good, kept, _ = load_images(list(tree.train_good), cfg.image_size, cfg.in_channels)
    names, defects, types, masks = load_validation(tree.root, cfg, log=lambda _m: None)
    p = out_of_fold(cfg, [q.name for q in kept], good, names, defects, types, masks,
                    name_group_function(args.group_by), args.folds)
    if cache is not None:
        m = cfg.map_size
        np.savez(cache, images=p.images, z=p.z, knn=p.knn, labels=p.labels,
                 masks=np.stack([np.zeros((m, m), bool) if mk is None else mk for mk in p.masks]),
                 has_mask=np.array([mk is not None for mk in p.masks]), names=np.array(p.names),
                 types=np.array(p.types))
    return p


SHIPPED_TERMS = ("dark", "bright", "rows", "edge")
# brief K's candidates, listed in benchmarks/results/tile-pixel.md before any run: overrides of the preset
CANDIDATES: dict[str, dict[str, Any]] = {
    "S": {"local_terms": SHIPPED_TERMS},
    "A": {"local_terms": SHIPPED_TERMS + ("cols",)},
    "B": {"local_terms": SHIPPED_TERMS + ("level",)},
    "C": {"local_terms": SHIPPED_TERMS + ("cols", "level")},
    "D": {"local_terms": SHIPPED_TERMS + ("cols", "level"), "col_means": True},
}


def rules(args: argparse.Namespace) -> list[tuple[str, float, float]]:
    weights = [float(w) for w in args.weights.split(",")]
    out = [("sum", w, 0.0) for w in weights] + [("veto", w, 0.0) for w in weights]
    return out + [("gate", w, float(g)) for w in weights for g in args.gates.split(",")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--preset", default="tile")
    p.add_argument("--cache", help="an .npz that keeps the out-of-fold planes between runs")
    p.add_argument("--weights", default="2")
    p.add_argument("--gates", default="0", help="gate values of the 'gate' rule (comma list)")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--group-by", default="prefix")
    p.add_argument("--candidates", help="comma list of CANDIDATES ids: term sets to score (brief K)")
    p.add_argument("--json", help="append one line per result here")
    args = p.parse_args(argv)

    import dataclasses

    import torch

    from benchmarks.tile_anomaly_cv import emit
    from inference.models.tile_defect import PRESETS, combined_map
    from inference.training.groups import name_group_function
    from inference.training.tile_defect_fit import (
        figures,
        fold_groupings,
        good_knn_stats,
        image_rows,
        out_of_fold_heads,
        with_terms,
    )

    torch.set_num_threads(1)
    base_cfg = PRESETS[args.preset]
    cached = planes_for(args, base_cfg)
    group = name_group_function(args.group_by)
    stats = good_knn_stats(cached)
    for cand in args.candidates.split(",") if args.candidates else [None]:
        t0 = time.monotonic()
        cfg = dataclasses.replace(base_cfg, **CANDIDATES[cand]) if cand else base_cfg
        planes = with_terms(cfg, cached, group, args.folds) if cand else cached
        if cand == "S" and planes.z.shape == cached.z.shape:  # the remade shipped planes must be the cached ones
            print(f"S: remade term planes vs cached: max |diff| {float(np.abs(planes.z - cached.z).max()):.2e}")
        rows = image_rows(cfg, planes, stats)
        print(f"{cand or args.preset}: {cfg.n_terms} terms, pixel_dim {cfg.pixel_dim}; out-of-fold planes and "
              f"image rows: {time.monotonic() - t0:.0f} s", flush=True)
        for gname, (groups, k) in fold_groupings(planes, group, args.group_by, args.folds).items():
            pix, logits = out_of_fold_heads(cfg, planes, rows, groups, k, stats)
            for mode, w, gate in rules(args):
                maps = combined_map(pix, logits[:, None, None], w, mode, gate)
                res = figures(planes, pix, logits, w, mode, gate)
                emit(({"candidate": cand} if cand else {})
                     | {"grouping": gname, "folds": k, "offset": mode, "weight": w, "gate": gate,
                        "pixel_auroc": res["pixel_auroc"], "image_auroc": res["image_auroc"],
                        "pixel_auroc_by_type": res["pixel_auroc_by_type"]}
                     | localisation(maps, planes.labels, planes.masks), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
