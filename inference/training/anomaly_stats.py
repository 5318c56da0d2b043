"""Add the appearance-statistics term to a trained pattern anomaly model (no retraining).

Fits the per-position statistics of blurred colour and local contrast (the pixel-Gaussian
baseline's features) on the model's own fit images, standardises the resulting map per
position (each fit image scored without itself), and chooses how to fuse it with the model's
current map (prediction map, with its memory bank if it has one) on the same validation set as
the memory bank: held-out good images never trained on, and the same images with one synthetic
defect each at two sizes; never the test split. The threshold is then recalibrated on the
held-out good images. ``train anomaly --appearance-stats`` runs the same step after training
(and after the memory bank, with ``--memory-bank``).

    python -m inference.training.anomaly_stats --model DIR --data CATEGORY [--out DIR] [--threads 1]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..anomaly_predict import normalise_batch
from ..models.pattern_anomaly import PatternAnomaly, with_appearance_stats
from .anomaly_bank import (IMAGE_AUROC_TOLERANCE, STAT_IMAGES, fuse, recalibrated_card, score_validation, step_main,
                           validation_maps, validation_set)

STATS_WEIGHTS = (0.5, 1.0, 2.0)  # weights tried for "sum"; "max" and "stats" (the term alone) use 1


def choose_stats(model: PatternAnomaly, fit: np.ndarray, held: np.ndarray, device: torch.device, seed: int = 0,
                 log: Callable[[str], None] = print,
                 force: tuple[str, float] | None = None) -> tuple[PatternAnomaly, dict[str, Any]]:
    """Fit the statistics term on ``fit``, pick its fusion on validation; return the chosen model.

    Rule (fixed before any test figure, as for the memory bank): highest mean validation pixel
    AUROC over the two synthetic defect sizes, among settings whose validation image AUROC is
    at most 0.01 below the prediction map's alone. The current map without the term ("none")
    competes and wins ties, so a term that does not help is not kept. ``force`` (fusion, weight)
    overrides the choice (ablations), recorded as such.
    """
    t0 = time.monotonic()
    model = with_appearance_stats(model.eval(), stats_fusion="none")
    cfg = model.config
    statted = with_appearance_stats(model, stats_fusion="stats")
    statted.fit_stats_statistics(normalise_batch(statted, fit, device), STAT_IMAGES)
    val = validation_set(held, seed)
    masks = {k: v[1] for k, v in val.items()}
    zpred = {k: validation_maps(model.prediction_map, model, v[0], device) for k, v in val.items()}
    if cfg.bank_size:
        zbank = {k: validation_maps(model.bank_map, model, v[0], device) for k, v in val.items()}
        current = {k: fuse(zpred[k], zbank[k], cfg.bank_fusion, cfg.bank_weight) for k in val}
    else:
        current = zpred
    zstats = {k: validation_maps(statted.stats_map, statted, v[0], device) for k, v in val.items()}
    reference = score_validation(model, zpred, masks)
    table = [{"map": "prediction map alone (reference for image AUROC)", "stats_fusion": None, "stats_weight": None,
              **reference}]
    log(f"validation, prediction map alone: pixel {reference['pixel']:.4f} (small {reference['pixel_small']:.4f}, "
        f"large {reference['pixel_large']:.4f}), image {reference['image']:.4f}")
    current_name = f"bank {cfg.bank_fusion} w {cfg.bank_weight:g}" if cfg.bank_size else "prediction map"
    best, best_key = None, (-1.0, -1.0)
    for fusion, weights in (("none", (1.0,)), ("stats", (1.0,)), ("sum", STATS_WEIGHTS), ("max", (1.0,))):
        for w in weights:
            fused = {k: fuse(current[k], zstats[k], fusion, w) for k in val}
            r = {"map": current_name if fusion == "none" else f"{current_name} with stats",
                 "stats_fusion": fusion, "stats_weight": w} | score_validation(model, fused, masks)
            table.append(r)
            log(f"  stats {fusion:>5} w {w:g}: pixel {r['pixel']:.4f} (small {r['pixel_small']:.4f}, "
                f"large {r['pixel_large']:.4f}), image {r['image']:.4f}")
            if r["image"] >= reference["image"] - IMAGE_AUROC_TOLERANCE and (r["pixel"], r["image"]) > best_key:
                best_key, best = (r["pixel"], r["image"]), (fusion, w)
    fusion, w = best if best is not None else ("none", 1.0)
    ruled = {"stats_fusion": fusion, "stats_weight": w}
    if force is not None:
        fusion, w = force
        log(f"rule's choice {ruled}, forced to {fusion} w {w:g}")
    chosen = model if fusion == "none" else with_appearance_stats(statted, stats_fusion=fusion, stats_weight=w)
    info = {
        "chosen": {"stats_fusion": fusion, "stats_weight": w},
        **({"forced": True, "rule_choice": ruled} if force is not None else {}),
        "fit_images": int(len(fit)),
        "method": "per-position mean/std of blurred colour (sigma "
                  f"{cfg.stats_blur:g}) and local contrast ({cfg.stats_window}x{cfg.stats_window} std) over the fit "
                  f"images, std floored at {cfg.stats_floor:g}; map = RMS z-score, smoothed, standardised per position "
                  f"with statistics of {min(len(fit), STAT_IMAGES)} fit images each scored without itself",
        "selection_rule": "highest mean validation pixel AUROC (small and large synthetic defects on the held-out good "
                          f"images), image AUROC at most {IMAGE_AUROC_TOLERANCE} below the prediction map alone; "
                          "the current map without the term wins ties",
        "validation": table,
        "seconds": round(time.monotonic() - t0, 1),
    }
    log(f"chosen: {info['chosen']} ({info['seconds']:.0f} s)")
    return chosen, info


def add_stats(model_dir: Path, data: Path, out: Path | None = None, device: str = "cpu",
              log: Callable[[str], None] = print, force: tuple[str, float] | None = None) -> dict[str, Any]:
    """Give the model in ``model_dir`` the statistics term (or keep it without, when validation says so).

    Writes ``out`` (default: in place): weights, config with the term's settings, card with its
    record and the recalibrated threshold (previous threshold and test metrics under ``recalibrations``).
    """
    from ..checkpoints import load_model, save_model
    from .anomaly_train import good_split

    loaded = load_model(model_dir, map_location=device, family="anomaly")
    if not isinstance(loaded.model, PatternAnomaly):
        raise ValueError(f"{model_dir}: the statistics term is part of a pattern_anomaly model, not {loaded.name}")
    seed = int(loaded.card.get("training", {}).get("seed", 0))
    _, fit, held, _ = good_split(data, loaded.config, seed, log=log)
    model, info = choose_stats(loaded.model, fit, held, torch.device(device), seed, log, force)
    card = recalibrated_card(loaded.card, "appearance_stats", info, model, held, torch.device(device),
                             "python -m inference.training.anomaly_stats " + " ".join(sys.argv[1:]), log)
    save_model(out or model_dir, loaded.name, model, model.config, card)
    return card


def _force_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fusion", choices=("none", "stats", "sum", "max"),
                   help="use this fusion instead of the rule's choice (ablations; the card records both)")
    p.add_argument("--weight", type=float, default=1.0, help="weight of the term with --fusion sum/max")


def main(argv: list[str] | None = None) -> int:
    return step_main(argv, __doc__.split("\n\n")[0], "appearance_stats",
                     lambda a: add_stats(a.model, a.data, a.out, force=(a.fusion, a.weight) if a.fusion else None),
                     _force_arguments)


if __name__ == "__main__":
    raise SystemExit(main())
