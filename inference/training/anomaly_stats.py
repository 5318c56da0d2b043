"""Add the appearance-statistics term to a trained pattern anomaly model (no retraining).

Fits the per-position statistics of blurred colour and local contrast (the pixel-Gaussian
baseline's features) on the model's own fit images, standardises the resulting map per
position (each fit image scored without itself), and chooses how to fuse it with the model's
current map (prediction map, with its memory bank if it has one) on the same validation set as
the memory bank: held-out good images never trained on, and the same images with one synthetic
defect each at two sizes; never the test split. The threshold is then recalibrated on the
held-out good images. ``train anomaly --appearance-stats`` runs the same step after training
(and after the memory bank, with ``--memory-bank``).

``--term band`` adds the edge-band term instead (the same features averaged along rows and
columns, for broad bands along a tile edge), chosen on the same validation set plus synthetic
brightness bands along an edge; ``train anomaly --edge-band`` runs it after the statistics term.

    python -m inference.training.anomaly_stats --model DIR --data CATEGORY [--term stats|band] [--out DIR] [--threads 1]
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..anomaly_predict import normalise_batch
from ..models.anomaly_maps import fuse_maps
from ..models.pattern_anomaly import PatternAnomaly
from ..models.pattern_anomaly_fit import with_terms
from .anomaly_bank import (
    IMAGE_AUROC_TOLERANCE,
    STAT_IMAGES,
    VALIDATION_DEFECTS,
    recalibrated_card,
    score_validation,
    step_main,
    validation_kinds,
    validation_maps,
    validation_set,
)

TERM_WEIGHTS = (0.5, 1.0, 2.0)  # weights tried for "sum"; "max" and the term alone use 1


@dataclass(frozen=True)
class Term:
    """A post-training map term: its config prefix, card record, fit method and validation kinds."""
    name: str  # config prefix and the fusion name of the term alone: "stats" or "band"
    card_key: str
    fit: str  # PatternAnomaly method fitting its statistics on normalised fit images
    map: str  # PatternAnomaly method giving its standardised map
    # validation defect kinds the rule averages over: the training's own blob-like additions
    # saturate on an aligned part (0.993-0.994 for every setting on bottle), so the terms are
    # also judged on structure removed or displaced ("missing", "shifted"), which training never makes
    kinds: tuple[str, ...]
    method: str


TERMS = {
    "stats": Term("stats", "appearance_stats", "fit_stats_statistics", "stats_map", ("small", "large", "missing", "shifted"),
                  "per-position mean/std of blurred colour and local contrast over the fit images; map = RMS z-score"),
    "band": Term("band", "edge_band", "fit_band_statistics", "band_map", ("small", "large", "band", "missing", "shifted"),
                 "the same features averaged along each row and each column minus the image's median, mean/std per "
                 "row / column over the fit images; a pixel takes the larger RMS z-score of its row and its column"),
}


def _term_maps(model: PatternAnomaly, val: dict[str, tuple[np.ndarray, np.ndarray]],
               device: torch.device) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Validation maps of the prediction term alone and of the model's whole map, each term computed once."""
    cfg = model.config
    zpred = {k: validation_maps(model.prediction_map, model, v[0], device) for k, v in val.items()}
    current = zpred
    if cfg.bank_size:
        zbank = {k: validation_maps(model.bank_map, model, v[0], device) for k, v in val.items()}
        current = {k: fuse_maps(zpred[k], zbank[k], cfg.bank_fusion, cfg.bank_weight) for k in val}
    if cfg.stats_fusion != "none":
        zstats = {k: validation_maps(model.stats_map, model, v[0], device) for k, v in val.items()}
        current = {k: fuse_maps(current[k], zstats[k], cfg.stats_fusion, cfg.stats_weight) for k in val}
    return zpred, current


def choose_term(model: PatternAnomaly, fit: np.ndarray, held: np.ndarray, device: torch.device, seed: int = 0,
                log: Callable[[str], None] = print, force: tuple[str, float] | None = None,
                term: str = "stats") -> tuple[PatternAnomaly, dict[str, Any]]:
    """Fit a term (``TERMS``) on ``fit``, pick its fusion with the current map on validation; return the chosen model.

    Rule (fixed before any test figure, as for the memory bank): highest mean validation pixel
    AUROC over the term's synthetic defect kinds, among settings whose validation image AUROC is
    at most 0.01 below the prediction map's alone. The current map without the term ("none")
    competes and wins ties, so a term that does not help is not kept. ``force`` (fusion, weight)
    overrides the choice (ablations), recorded as such. Re-choosing "stats" drops an edge-band
    term too (it was chosen on top of the statistics term).
    """
    spec = TERMS[term]
    key_f, key_w = f"{term}_fusion", f"{term}_weight"
    t0 = time.monotonic()
    model = with_terms(model.eval(), **{key_f: "none"}, **({"band_fusion": "none"} if term == "stats" else {}))
    cfg = model.config
    fitted = with_terms(model, **{key_f: term})
    getattr(fitted, spec.fit)(normalise_batch(fitted, fit, device), STAT_IMAGES)
    val = validation_set(held, seed, tuple(k for k in spec.kinds if k not in VALIDATION_DEFECTS))
    kinds = validation_kinds(val, spec.kinds, log)
    masks = {k: v[1] for k, v in val.items()}
    zpred, current = _term_maps(model, val, device)
    zterm = {k: validation_maps(getattr(fitted, spec.map), fitted, v[0], device) for k, v in val.items()}

    def line(r: dict[str, Any]) -> str:
        return f"pixel {r['pixel']:.4f} (" + ", ".join(f"{k} {r['pixel_' + k]:.4f}" for k in kinds) + f"), image {r['image']:.4f}"

    reference = score_validation(model, zpred, masks, kinds)
    table = [{"map": "prediction map alone (reference for image AUROC)", key_f: None, key_w: None, **reference}]
    log(f"validation, prediction map alone: {line(reference)}")
    current_name = f"bank {cfg.bank_fusion} w {cfg.bank_weight:g}" if cfg.bank_size else "prediction map"
    if cfg.stats_fusion != "none":
        current_name += f", stats {cfg.stats_fusion} w {cfg.stats_weight:g}"
    best, best_key = None, (-1.0, -1.0)
    for fusion, weights in (("none", (1.0,)), (term, (1.0,)), ("sum", TERM_WEIGHTS), ("max", (1.0,))):
        for w in weights:
            fused = {k: fuse_maps(current[k], zterm[k], fusion, w) for k in val}
            r: dict[str, Any] = {"map": current_name if fusion == "none" else f"{current_name} with {term}",
                 key_f: fusion, key_w: w} | score_validation(model, fused, masks, kinds)
            table.append(r)
            log(f"  {term} {fusion:>5} w {w:g}: {line(r)}")
            if r["image"] >= reference["image"] - IMAGE_AUROC_TOLERANCE and (r["pixel"], r["image"]) > best_key:
                best_key, best = (r["pixel"], r["image"]), (fusion, w)
    fusion, w = best if best is not None else ("none", 1.0)
    ruled = {key_f: fusion, key_w: w}
    if force is not None:
        fusion, w = force
        log(f"rule's choice {ruled}, forced to {fusion} w {w:g}")
    chosen = model if fusion == "none" else with_terms(fitted, **{key_f: fusion, key_w: w})
    info = {
        "chosen": {key_f: fusion, key_w: w},
        **({"forced": True, "rule_choice": ruled} if force is not None else {}),
        "fit_images": int(len(fit)),
        "method": f"{spec.method} (blur sigma {cfg.stats_blur:g}, contrast {cfg.stats_window}x{cfg.stats_window} std, "
                  f"std floored at {cfg.stats_floor:g}); smoothed, standardised per position with statistics of "
                  f"{min(len(fit), STAT_IMAGES)} fit images each scored without itself",
        "selection_rule": f"highest mean validation pixel AUROC (synthetic defects {', '.join(kinds)} on the held-out "
                          f"good images), image AUROC at most {IMAGE_AUROC_TOLERANCE} below the prediction map alone; "
                          "the current map without the term wins ties",
        "validation": table,
        "seconds": round(time.monotonic() - t0, 1),
    }
    log(f"chosen: {info['chosen']} ({info['seconds']:.0f} s)")
    return chosen, info


def add_stats(model_dir: Path, data: Path, out: Path | None = None, device: str = "cpu",
              log: Callable[[str], None] = print, force: tuple[str, float] | None = None,
              term: str = "stats") -> dict[str, Any]:
    """Give the model in ``model_dir`` a term of ``TERMS`` (or keep it without, when validation says so).

    Writes ``out`` (default: in place): weights, config with the term's settings, card with its
    record and the recalibrated threshold (previous threshold and test metrics under ``recalibrations``).
    """
    from ..checkpoints import load_model, save_model
    from ..shell_words import shell_join
    from .anomaly_train import good_split

    loaded = load_model(model_dir, map_location=device, family="anomaly")
    if not isinstance(loaded.model, PatternAnomaly):
        raise ValueError(f"{model_dir}: the {term} term is part of a pattern_anomaly model, not {loaded.name}")
    seed = int(loaded.card.get("training", {}).get("seed", 0))
    _, fit, held, _ = good_split(data, loaded.config, seed, log=log)
    model, info = choose_term(loaded.model, fit, held, torch.device(device), seed, log, force, term)
    command = shell_join(["python", "-m", "inference.training.anomaly_stats", *sys.argv[1:]])
    card = recalibrated_card(loaded.card, TERMS[term].card_key, info, model, held, torch.device(device), command, log)
    save_model(out or model_dir, loaded.name, model, model.config, card)
    return card


def _force_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--term", choices=tuple(TERMS), default="stats",
                   help="stats: per-position colour/contrast statistics; band: row/column profiles (edge bands)")
    p.add_argument("--fusion", choices=("none", "stats", "band", "sum", "max"),
                   help="use this fusion instead of the rule's choice (ablations; the card records both)")
    p.add_argument("--weight", type=float, default=1.0, help="weight of the term with --fusion sum/max")


def main(argv: list[str] | None = None) -> int:
    return step_main(argv, __doc__.split("\n\n")[0], lambda a: TERMS[a.term].card_key,
                     lambda a: add_stats(a.model, a.data, a.out, force=(a.fusion, a.weight) if a.fusion else None, term=a.term),
                     _force_arguments)


if __name__ == "__main__":
    raise SystemExit(main())
