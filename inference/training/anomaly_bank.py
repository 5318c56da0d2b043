"""Add a memory-bank normality term to a trained pattern anomaly model (no retraining).

Embeds the real tokens of the model's own good training images with its Siamese comparer (all
shifted grids), keeps a greedy k-centre coreset of them as the bank, fits the bank map's
per-position statistics leaving each image's own rows out, chooses the fusion with the
prediction map on held-out good images plus synthetic defects (never the test split), and
recalibrates the threshold on the held-out good images. ``train anomaly --memory-bank`` runs
the same step at the end of training.

    python -m inference.training.anomaly_bank --model DIR --data CATEGORY [--out DIR] [--threads 1]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..anomaly_predict import normalise_batch
from ..models.anomaly_maps import fuse_maps
from ..models.memory_bank import greedy_coreset, weighted
from ..models.pattern_anomaly import PatternAnomaly
from ..models.pattern_anomaly_fit import with_memory_bank
from .anomaly_data import synthesize_bands, synthesize_defects, synthesize_missing, synthesize_shifted
from .anomaly_metrics import auroc, pixel_auroc

BATCH = 8
STAT_IMAGES = 96  # good training images for per-position map statistics (prediction map and bank map alike)
# Validation defects: the training's own synthetic defects at their default size, and large
# ones (up to 30 % of the image), the case the bank is for.
VALIDATION_DEFECTS = {"small": 0.06, "large": 0.30}
IMAGE_AUROC_TOLERANCE = 0.01


@dataclass(frozen=True)
class BankOptions:
    size: int = 8192  # bank rows (8192 x 66 float32 = 2.2 MB in the checkpoint)
    pool: int = 120_000  # candidate rows (a random subsample of all tokens) the coreset picks from
    positions: tuple = (0.0, 1.0)  # position weights tried (0 = anywhere, as for textures)
    ks: tuple = (1, 3)
    weights: tuple = (0.5, 1.0, 2.0)  # bank weights tried for "sum"; "max" and "bank" use 1
    seed: int = 0


def collect_rows(model: PatternAnomaly, images: np.ndarray, per_image: int, device: torch.device,
                 seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Random ``per_image`` token rows of each image over all shifted grids -> rows, image ids, tokens seen."""
    cfg = model.config
    step = cfg.patch_size // cfg.shifts
    g = torch.Generator().manual_seed(seed)
    rows, ids, seen = [], [], 0
    for start in range(0, len(images), BATCH):
        x = normalise_batch(model, images[start:start + BATCH], device)
        per_grid = [model.token_features(x, oy, ox).flatten(1, 4) for oy in range(0, cfg.patch_size, step)
                    for ox in range(0, cfg.patch_size, step)]
        allr = torch.cat(per_grid, dim=1).cpu()  # (b, tokens, D)
        seen += allr.shape[0] * allr.shape[1]
        for i in range(allr.shape[0]):
            pick = torch.randperm(allr.shape[1], generator=g)[:per_image]
            rows.append(allr[i, pick])
            ids.append(torch.full((len(pick),), start + i, dtype=torch.long))
    return torch.cat(rows), torch.cat(ids), seen


def build_bank(model: PatternAnomaly, bank: torch.Tensor, bank_ids: torch.Tensor, fit: np.ndarray, device: torch.device,
               **settings) -> PatternAnomaly:
    """``model`` with ``bank`` and ``settings``, and its bank map statistics fitted leaving each image's rows out."""
    out = with_memory_bank(model, bank.to(device), **settings)
    n = min(len(fit), STAT_IMAGES)
    out.fit_bank_statistics(((normalise_batch(out, fit[i:i + BATCH], device), torch.arange(i, min(i + BATCH, n), device=device))
                             for i in range(0, n, BATCH)), bank_ids.to(device))
    return out


# Validation-only kinds, unlike anything the training synthesises: a brightness band along an edge
# (magnetic tile's ``uneven``), and structure removed or displaced (a broken or bent part).
Synthesizer = Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]
EXTRA_VALIDATION_KINDS: dict[str, Synthesizer] = {"band": synthesize_bands, "missing": synthesize_missing, "shifted": synthesize_shifted}
STRUCTURAL_KINDS = ("missing", "shifted")
# One random stream per kind, so adding a kind leaves the others' defects as they were.
KIND_STREAMS = {"small": 0, "large": 1, "band": 9, "missing": 10, "shifted": 11}


def _synthesize(held: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if kind in VALIDATION_DEFECTS:
        return synthesize_defects(held, rng, 1.0, VALIDATION_DEFECTS[kind])
    return EXTRA_VALIDATION_KINDS[kind](held, rng)


def validation_set(held: np.ndarray, seed: int = 0, extra: tuple[str, ...] = ()) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Held-out good images, and the same images with a synthetic defect of each size: name -> (images, masks);
    each kind named in ``extra`` (see EXTRA_VALIDATION_KINDS) adds the same images with that defect.
    Images whose defect changed nothing visible are left out of a kind, and a kind left with none is left out
    (``validation_kinds`` says which remain)."""
    s = held.shape[-1]
    out = {"good": (held, np.zeros((len(held), s, s), bool))}
    for kind in (*VALIDATION_DEFECTS, *extra):
        imgs, masks = _synthesize(held, kind, np.random.default_rng([seed, 7, KIND_STREAMS[kind]]))
        keep = masks.reshape(len(masks), -1).any(1)
        if keep.any():
            out[kind] = (imgs[keep], masks[keep])
    return out


def validation_kinds(val: dict[str, tuple[np.ndarray, np.ndarray]], kinds: tuple[str, ...],
                     log: Callable[[str], None] = print) -> tuple[str, ...]:
    """Those of ``kinds`` that ``val`` holds: the rule averages over them. With few held-out good images a kind's
    synthetic defect can change none of them (a session-49 audit: six good images, one held out, and training ended
    in "torch.cat(): expected a non-empty list of Tensors" after fitting); it is skipped and said. ValueError when
    none is left: nothing to choose on."""
    n = len(val["good"][0])
    left = tuple(k for k in kinds if k in val)
    if not left:
        raise ValueError(f"no synthetic defect changed any of the {n} held-out good image(s), so the terms after "
                         "training cannot be chosen on them: give more good images")
    for kind in kinds:
        if kind not in left:
            log(f"validation: a synthetic {kind!r} defect changed none of the {n} held-out good image(s); "
                f"the rule averages over {', '.join(left)}")
    return left


def validation_maps(fn: Callable[[torch.Tensor], torch.Tensor], model: PatternAnomaly, images: np.ndarray,
                    device: torch.device) -> torch.Tensor:
    return torch.cat([fn(normalise_batch(model, images[i:i + BATCH], device)).cpu() for i in range(0, len(images), BATCH)])


def score_validation(model: PatternAnomaly, maps: dict[str, torch.Tensor], masks: dict[str, np.ndarray],
                     kinds: tuple[str, ...] = tuple(VALIDATION_DEFECTS)) -> dict[str, float]:
    """Validation pixel AUROC per defect kind (pooled with the good images), their mean, and image
    AUROC (good vs all defect images of those kinds)."""
    good = [m.numpy() for m in maps["good"]]
    res = {}
    for name in kinds:
        res[f"pixel_{name}"] = pixel_auroc(list(masks["good"]) + list(masks[name]), good + [m.numpy() for m in maps[name]])
    scores = {k: model.score(v).numpy() for k, v in maps.items()}
    defect = np.concatenate([scores[k] for k in kinds])
    res["image"] = auroc(np.r_[np.zeros(len(scores["good"])), np.ones(len(defect))], np.r_[scores["good"], defect])
    res["pixel"] = float(np.mean([res[f"pixel_{n}"] for n in kinds]))
    return res


def choose(model: PatternAnomaly, fit: np.ndarray, held: np.ndarray, opts: BankOptions, device: torch.device,
           log: Callable[[str], None] = print) -> tuple[PatternAnomaly, dict[str, Any]]:
    """Build banks for each position weight and k, pick the fusion on validation; return the chosen model.

    Rule (fixed before any test figure): highest mean validation pixel AUROC over the two
    defect sizes, among settings whose validation image AUROC is at most 0.01 below the
    prediction map's alone. "none" (no bank) competes too, so a bank that does not help is
    not kept.
    """
    t0 = time.monotonic()
    model = model.eval()
    per_image = max(1, opts.pool // max(1, len(fit)))
    rows, ids, seen = collect_rows(model, fit, per_image, device, opts.seed)
    log(f"bank: {len(rows)} candidate rows from {seen} tokens of {len(fit)} images ({time.monotonic() - t0:.0f} s)")
    val = validation_set(held, opts.seed)
    kinds = validation_kinds(val, tuple(VALIDATION_DEFECTS), log)
    masks = {k: v[1] for k, v in val.items()}
    zmaps = {k: validation_maps(model.prediction_map, model, v[0], device) for k, v in val.items()}

    def pixel(r: dict[str, Any]) -> str:
        return f"pixel {r['pixel']:.4f} (" + ", ".join(f"{k} {r['pixel_' + k]:.4f}" for k in kinds) + ")"

    base = score_validation(model, zmaps, masks, kinds)
    table = [{"fusion": "none", "position": None, "k": None, "weight": None, **base}]
    log(f"validation, prediction map alone: {pixel(base)}, image {base['image']:.4f}")
    best = None
    best_key: tuple[float, float] = (base["pixel"], 0)
    for position in opts.positions:
        sel = greedy_coreset(weighted(rows, position), opts.size, opts.seed)
        for k in opts.ks:
            t1 = time.monotonic()
            banked = build_bank(model, rows[sel], ids[sel], fit, device, bank_k=min(k, len(sel)), bank_position=position)
            bmaps = {name: validation_maps(banked.bank_map, banked, v[0], device) for name, v in val.items()}
            for fusion, weights in (("bank", (1.0,)), ("sum", opts.weights), ("max", (1.0,))):
                for w in weights:
                    fused = {name: fuse_maps(zmaps[name], bmaps[name], fusion, w) for name in val}
                    r = score_validation(model, fused, masks, kinds) | {"fusion": fusion, "position": position, "k": k,
                                                                        "weight": w}
                    table.append(r)
                    log(f"  position {position:g} k {k} {fusion:>4} w {w:g}: {pixel(r)}, image {r['image']:.4f}")
                    if r["image"] >= base["image"] - IMAGE_AUROC_TOLERANCE and (r["pixel"], r["image"]) > best_key:
                        best_key = (r["pixel"], r["image"])
                        best = (banked, fusion, w)
            log(f"  (coreset and statistics for position {position:g}, k {k}: {time.monotonic() - t1:.0f} s)")
    chosen = model
    pick: dict[str, str | float] = {"fusion": "none"}
    if best is not None:
        banked, fusion, w = best
        chosen = with_memory_bank(banked, banked.memory_bank, bank_k=banked.config.bank_k,
                                  bank_position=banked.config.bank_position, bank_fusion=fusion, bank_weight=w)
        chosen.bank_map_mean.copy_(banked.bank_map_mean)
        chosen.bank_map_std.copy_(banked.bank_map_std)
        pick = {"fusion": fusion, "position": banked.config.bank_position, "k": banked.config.bank_k, "weight": w}
    info = {
        "chosen": pick,
        "rows": int(getattr(chosen.config, "bank_size", 0)),
        "candidates": int(len(rows)), "tokens_seen": int(seen), "images": int(len(fit)),
        "method": "greedy k-centre coreset of the comparer's unit token embeddings + (y, x) times the position weight, "
                  "from a random subsample of the real tokens of the fit images (all shifted grids); per-position "
                  f"statistics of the bank map on {min(len(fit), STAT_IMAGES)} fit images, each without its own rows",
        "selection_rule": f"highest mean validation pixel AUROC ({' and '.join(kinds)} synthetic defects on the held-out "
                          f"good images), image AUROC at most {IMAGE_AUROC_TOLERANCE} below the prediction map alone",
        "validation": table,
        "seconds": round(time.monotonic() - t0, 1),
    }
    log(f"chosen: {pick} ({info['seconds']:.0f} s)")
    return chosen, info


def add_bank(model_dir: Path, data: Path, out: Path | None = None, opts: BankOptions = BankOptions(),
             device: str = "cpu", log: Callable[[str], None] = print) -> dict[str, Any]:
    """Give the model in ``model_dir`` a memory bank (or keep it without, when validation says so).

    Writes ``out`` (default: in place): weights with the bank, config with its settings, card
    with the bank's record, the recalibrated threshold, and the previous threshold and test
    metrics under ``recalibrations`` (the test metrics are those of the model before).
    """
    from ..checkpoints import load_model, save_model
    from ..shell_words import shell_join
    from .anomaly_train import good_split

    loaded = load_model(model_dir, map_location=device, family="anomaly")
    if not isinstance(loaded.model, PatternAnomaly):
        raise ValueError(f"{model_dir}: a memory bank needs a pattern_anomaly model, not {loaded.name}")
    seed = int(loaded.card.get("training", {}).get("seed", 0))
    _, fit, held, _ = good_split(data, loaded.config, seed, log=log)
    base = loaded.model
    if getattr(base.config, "bank_size", 0):  # rebuilding: start from the prediction map alone
        base = _without_bank(base)
    model, info = choose(base, fit, held, opts, torch.device(device), log)
    card = recalibrated_card(loaded.card, "memory_bank", info, model, held, torch.device(device),
                             shell_join(["python", "-m", "inference.training.anomaly_bank", *sys.argv[1:]]), log)
    save_model(out or model_dir, loaded.name, model, model.config, card)
    return card


def recalibrated_card(card: dict[str, Any], key: str, info: dict[str, Any], model: PatternAnomaly, held: np.ndarray,
                      device: torch.device, command: str, log: Callable[[str], None] = print) -> dict[str, Any]:
    """A copy of ``card`` recording a post-training step under ``key``: the previous threshold,
    test metrics and ``key`` record go under ``recalibrations``, the threshold is recalibrated on
    the held-out good images, and the test metrics are cleared (they belonged to the model before)."""
    from .anomaly_train import calibrate

    card = dict(card)
    card.setdefault("recalibrations", []).append({
        "before": {"threshold": card.get("threshold"), "metrics": card.get("metrics"), key: card.get(key)},
        "command": command,
    })
    card["threshold"] = calibrate(model, held, device)
    card[key] = info
    card["metrics"] = {}
    log(f"threshold (image score): {card['threshold']['image']:.4f}")
    return card


def _without_bank(model: PatternAnomaly) -> PatternAnomaly:
    cfg = dataclasses.replace(model.config, bank_size=0)
    out = PatternAnomaly(cfg)
    out.load_state_dict({k: v for k, v in model.state_dict().items()
                         if k not in ("memory_bank", "bank_map_mean", "bank_map_std")})
    return out.to(model.map_mean.device).eval()


def step_main(argv: list[str] | None, description: str, key: str | Callable[[argparse.Namespace], str],
              run: Callable[[argparse.Namespace], dict[str, Any]],
              add_arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> int:
    """Command line of a post-training step (this one, anomaly_stats): model, data, output, threads;
    bad input -> one ``error:`` line and exit status 2; prints the choice recorded under ``key``."""
    from ..checkpoints import CheckpointError
    from .anomaly_data import AnomalyDataError
    from .common import set_threads

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", required=True, type=Path, help="trained pattern_anomaly model directory")
    p.add_argument("--data", required=True, type=Path, help="the category it was trained on (MVTec layout)")
    p.add_argument("--out", type=Path, help="write the model here (default: in place)")
    if add_arguments is not None:
        add_arguments(p)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    set_threads(args.threads)
    try:
        card = run(args)
    except (CheckpointError, AnomalyDataError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    record = card[key(args) if callable(key) else key]
    print(json.dumps({"chosen": record["chosen"], "threshold": card["threshold"]["image"]}, indent=2))
    return 0


def _bank_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bank-size", type=int, default=BankOptions.size, help="bank rows kept by the coreset")
    p.add_argument("--positions", type=float, nargs="+", default=list(BankOptions.positions),
                   help="position weights to try (0 = compare with tokens anywhere)")
    p.add_argument("--ks", type=int, nargs="+", default=list(BankOptions.ks), help="nearest neighbours to try")


def main(argv: list[str] | None = None) -> int:
    return step_main(argv, __doc__.split("\n\n")[0], "memory_bank",
                     lambda a: add_bank(a.model, a.data, a.out, BankOptions(size=a.bank_size, positions=tuple(a.positions),
                                                                            ks=tuple(a.ks))),
                     _bank_arguments)


if __name__ == "__main__":
    raise SystemExit(main())
