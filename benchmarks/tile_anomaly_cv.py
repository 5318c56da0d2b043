"""Group cross-validation of texture_knn settings on a category's TRAINING data only (issue 19).

    python benchmarks/tile_anomaly_cv.py --data runs/mt_split --json benchmarks/results/tile-anomaly-cv.jsonl \
        --variant '{}' --variant '{"density": false}' ...

Each ``--variant`` is a JSON object of TextureKnnConfig fields over the ``tile`` preset. Folds hold
out whole capture sessions (``--group-by``); each fold's bank sees only the other sessions' good
tiles and scores the held-out sessions' good tiles and validation defects (``validation/``, the
train split's defects: ``convert_magnetic_tile --defects-by-split``). The test split is never read.
Score margins are rescored from the same maps (``--margins``). One JSON line per variant and margin.

``--model DIR`` (repeatable) instead scores a trained model directory, any anomaly architecture, on
training data it never fitted: the good images its trainer held out (same seed) against the
validation defects. That is how the bundled pattern model is compared without retraining it per fold.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _score(m: np.ndarray, margin: int) -> float:
    """The map's maximum inside ``margin`` pixels of the border (TextureKnn.score for one map)."""
    inner = m[margin:m.shape[0] - margin, margin:m.shape[1] - margin] if margin else m
    return float(inner.max())


def emit(line: dict, path: str | None) -> None:
    """Print one result line as JSON and append it to ``path`` (a JSON-lines file) when given."""
    print(json.dumps(line), flush=True)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


def _score_models(args: argparse.Namespace) -> int:
    from inference.checkpoints import load_model
    from inference.training.anomaly_train import good_split
    from inference.training.texture_knn_fit import load_validation, score_images, summary

    for d in args.model:
        loaded = load_model(d, family="anomaly")
        cfg = loaded.config
        seed = int(loaded.card.get("training", {}).get("seed", 0))
        _, _, hold, _ = good_split(Path(args.data), cfg, seed, log=lambda _m: None)
        _, defects, types, masks = load_validation(args.data, cfg, log=lambda _m: None)
        gm, gs = score_images(loaded.model, hold)
        dm, ds = score_images(loaded.model, defects)
        emit({"model": d, "held_out_good": len(hold)} | summary(gs, ds, types, gm, list(dm), masks), args.json)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--variant", action="append", default=[])
    p.add_argument("--margins", default="0,16,32")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--group-by", default="prefix")
    p.add_argument("--json", help="append one line per result here")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--model", action="append", default=[], help="score this model directory instead (see above)")
    args = p.parse_args(argv)

    import torch

    from inference.models.texture_knn import PRESETS
    from inference.training.anomaly_data import load_images, scan_category
    from inference.training.groups import name_group_function
    from inference.training.texture_knn_fit import group_cv, load_validation, summary

    torch.set_num_threads(args.threads)
    if args.model:
        return _score_models(args)
    tree = scan_category(args.data, need_train=True)
    for raw in args.variant or ["{}"]:
        over = json.loads(raw)
        over = {k: tuple(v) if isinstance(v, list) else v for k, v in over.items()}
        cfg = dataclasses.replace(PRESETS["tile"], **over)
        t0 = time.monotonic()
        good, kept, _ = load_images(list(tree.train_good), cfg.image_size, cfg.in_channels)
        names, defects, types, masks = load_validation(tree.root, cfg, log=lambda _m: None)
        res = group_cv(cfg, [q.name for q in kept], good, names, defects, types, masks,
                       name_group_function(args.group_by), args.folds, log=lambda m: print(m, flush=True), keep_maps=True)
        seconds = time.monotonic() - t0
        for margin in (int(m) for m in args.margins.split(",")):
            gs = np.array([_score(m, margin) for m in res["_good_maps"]])
            ds = np.array([_score(m, margin) for m in res["_defect_maps"]])
            out = summary(gs, ds, res["_defect_types"], res["_good_maps"], res["_defect_maps"], res["_defect_masks"],
                          pixels=False) | {k: res[k] for k in ("pixel_auroc", "pixel_auroc_by_type", "pixel_step")}
            emit({"variant": raw, "score_margin": margin, "seconds": round(seconds, 1), "folds": args.folds,
                  "group_by": args.group_by} | {k: v for k, v in out.items()}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
