"""Fit and cross-validate the tile defect model (models/tile_defect.py; ADR 0032).

1. Out-of-fold planes: folds of whole groups (``group_by``, capture sessions by default); for each
   fold a kNN bank and the per-position term statistics are fitted on the *other* folds' good
   tiles, and the held-out fold's good tiles and labelled defects (``validation/``) are mapped.
2. Cross-validation estimate: the two heads are fitted on the other folds' out-of-fold planes and
   score the held-out fold; under the session folds and under physical-tile folds
   (``groups.series_groups``: a new tile, not a known tile under a new lighting). The image
   threshold is the maximum balanced accuracy on the session-fold scores.
3. The shipped model: a bank and statistics from all good tiles, heads from all out-of-fold planes.

With ``pixel_head`` "net" the pixel head is a ``TilePixelNet`` (tile_pixel_net_fit.py, the recipe
fixed in benchmarks/results/tile-pixel-net.md): the CV estimates and the pixel threshold come from
out-of-fold net maps (a net trained without each fold), and the shipped net is trained on every
usable tile's out-of-fold planes. The image head is the same logistic regression either way.

The heads' settings (regularisation, ``map_image_weight``) were chosen by the same cross-validation
(benchmarks/results/tile-anomaly.md); the frozen test split is never read here.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..models.local_deviation import position_stats, standardised
from ..models.texture_knn import TextureKnnConfig
from ..models.tile_defect import (
    TileDefect,
    TileDefectConfig,
    combined_map,
    defect_probability,
    image_features,
    pixel_features,
)
from .groups import balanced_folds, series_groups
from .texture_knn_fit import PIXEL_QUANTILE, choose_threshold, fit_model, score_images, summary

PIXEL_C = 0.1  # logistic-regression inverse regularisation of the pixel head
IMAGE_C = 0.01  # ... and of the image head (chosen under physical-tile folds)
PIXEL_STEP = 4  # the pixel head is fitted on every 4th cell of each map along each axis
SERIES_FOLDS = 5


def knn_config(cfg: TileDefectConfig) -> TextureKnnConfig:
    """The texture kNN part of a tile defect config."""
    names = {f.name for f in dataclasses.fields(TextureKnnConfig)}
    return TextureKnnConfig(**{k: getattr(cfg, k) for k in names} | {"score_margin": 0})


def _logistic(x: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(mean, scale, weights, bias) of a class-balanced logistic regression on standardised ``x``."""
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(0)
    scale = x.std(0)
    scale[scale < 1e-8] = 1.0
    clf = LogisticRegression(C=c, max_iter=2000, class_weight="balanced").fit((x - mean) / scale, y)
    return mean.astype(np.float32), scale.astype(np.float32), clf.coef_[0].astype(np.float32), float(clf.intercept_[0])


@dataclasses.dataclass
class Planes:
    """Out-of-fold standardised planes of the training images (good first, then defects)."""

    images: np.ndarray  # (n, s, s) [0, 1]
    z: np.ndarray  # (n, t, m, m) standardised terms
    knn: np.ndarray  # (n, m, m) kNN maps at map_size, raw
    labels: np.ndarray  # (n,) True = defect
    masks: list[np.ndarray | None]  # at map_size; good: empty; defect without a mask: None
    names: list[str]
    types: list[str]


def _fold_rows(good_groups: Sequence[str], defect_groups: Sequence[str], folds: Sequence[Sequence[int]]
               ) -> list[tuple[np.ndarray, list[int]]]:
    """Per fold: (the good tiles it is fitted on, the rows it maps: its held good tiles, then the
    defects of its groups, indexed in the good-first image order)."""
    n_good = len(good_groups)
    out = []
    for held in folds:
        names = {good_groups[i] for i in held}
        rows = list(held) + [n_good + j for j, g in enumerate(defect_groups) if g in names]
        out.append((np.setdiff1d(np.arange(n_good), held), rows))
    return out


def fold_term_planes(probe: TileDefect, images: np.ndarray, fold_rows: Sequence[tuple[np.ndarray, list[int]]]
                     ) -> np.ndarray:
    """(n, t, m, m): each image's local terms standardised per position by the statistics of the
    good tiles its fold is fitted on (``_fold_rows``)."""
    cfg = probe.config
    n, m = len(images), cfg.map_size
    small = np.zeros((n, cfg.n_terms, m, m), np.float32)
    s1 = np.zeros((n, cfg.n_terms, cfg.grid, cfg.grid), np.float32)
    s2 = np.zeros_like(s1)
    for i, img in enumerate(images):
        small[i], s1[i], s2[i] = probe.coarse_terms(img)
    z = np.zeros_like(small)
    for fit, rows in fold_rows:
        mean, std = position_stats(s1[fit].sum(0), s2[fit].sum(0), len(fit))
        for r in rows:
            z[r] = standardised(small[r], mean, std)
    return z


def out_of_fold(cfg: TileDefectConfig, good_names: Sequence[str], good: np.ndarray, defect_names: Sequence[str],
                defects: np.ndarray, defect_types: Sequence[str], defect_masks: Sequence[np.ndarray | None],
                group: Callable[[str], str], n_folds: int, device: torch.device | str = "cpu", seed: int = 0,
                log: Callable[[str], None] = print, tick: Callable[[], None] | None = None) -> Planes:
    """The out-of-fold planes; ``tick`` is called after each fold's bank (a progress bar's step)."""
    import cv2

    probe = TileDefect(cfg)
    gg = [group(n) for n in good_names]
    folds = balanced_folds(gg, n_folds)
    held_d = [i for i, n in enumerate(defect_names) if group(n) in set(gg)]
    if len(held_d) < len(defect_names):
        log(f"{len(defect_names) - len(held_d)} defect image(s) in no fold's group: left out")
    images = np.concatenate([good[:, 0], defects[held_d, 0]]) if held_d else good[:, 0]
    n, m = len(images), cfg.map_size
    knn = np.zeros((n, m, m), np.float32)
    fold_rows = _fold_rows(gg, [group(defect_names[i]) for i in held_d], folds)
    for k, (fit, rows) in enumerate(fold_rows):
        model = fit_model(knn_config(cfg), good[fit], device, seed, quiet=True)
        held = folds[k]
        maps, _ = score_images(model, np.concatenate([good[held], defects[[held_d[r - len(good)] for r in rows[len(held):]]]]),
                               device)
        knn[rows] = probe.knn_small(maps)
        log(f"fold {k + 1}/{len(folds)} (groups {', '.join(sorted({gg[i] for i in held}))}): bank and statistics "
            f"without them; {len(rows)} images mapped")
        if tick is not None:
            tick()
    z = fold_term_planes(probe, images, fold_rows)
    masks: list[np.ndarray | None] = [np.zeros((m, m), bool)] * len(good)
    for i in held_d:
        mk = defect_masks[i]
        masks.append(None if mk is None else cv2.resize(mk.astype(np.uint8), (m, m), interpolation=cv2.INTER_NEAREST) > 0)
    return Planes(images, z, knn, np.r_[np.zeros(len(good), bool), np.ones(len(held_d), bool)], masks,
                  list(good_names) + [defect_names[i] for i in held_d],
                  ["good"] * len(good) + [defect_types[i] for i in held_d])


def with_terms(cfg: TileDefectConfig, p: Planes, group: Callable[[str], str], n_folds: int) -> Planes:
    """``p`` with its term planes remade for ``cfg``'s local terms from its images, under the same
    folds as ``out_of_fold`` made them (the kNN planes are kept): to compare term sets without
    redoing the kNN banks."""
    n_good = int((~p.labels).sum())
    gg = [group(x) for x in p.names[:n_good]]
    rows = _fold_rows(gg, [group(x) for x in p.names[n_good:]], balanced_folds(gg, n_folds))
    return dataclasses.replace(p, z=fold_term_planes(TileDefect(cfg), p.images, rows))


def good_knn_stats(p: Planes) -> tuple[float, float]:
    """(mean, std) of the good tiles' out-of-fold kNN map values: what standardises every kNN map."""
    good_knn = p.knn[~p.labels]
    return float(good_knn.mean()), max(float(good_knn.std()), 1e-6)


def image_rows(cfg: TileDefectConfig, p: Planes, knn_stats: tuple[float, float]) -> np.ndarray:
    """(n, image_dim) image-head inputs of every image (they do not depend on the heads)."""
    mean, std = knn_stats
    return np.stack([image_features(p.images[i], p.z[i], (p.knn[i] - mean) / std, cfg) for i in range(len(p.images))])


def _pixel_rows(cfg: TileDefectConfig, p: Planes, knn_stats: tuple[float, float], idx: Sequence[int] | np.ndarray,
                step: int) -> tuple[np.ndarray, np.ndarray]:
    """(pixel rows, labels) of the images ``idx`` that have a mask, every ``step``-th cell."""
    mean, std = knn_stats
    px, py = [], []
    for i in idx:
        mask = p.masks[i]
        if mask is not None:
            f = pixel_features(p.z[i], (p.knn[i] - mean) / std, cfg)[:, ::step, ::step]
            px.append(f.reshape(len(f), -1).T)
            py.append(mask[::step, ::step].ravel())
    return np.concatenate(px), np.concatenate(py)


def fit_heads(model: TileDefect, p: Planes, rows: np.ndarray, idx: Sequence[int] | np.ndarray, pixel_c: float = PIXEL_C,
              image_c: float = IMAGE_C) -> None:
    """Both heads from the images ``idx`` (``rows``: ``image_rows`` of all images)."""
    cfg = model.config
    stats = (float(model.knn_stats[0]), float(model.knn_stats[1]))
    idx = list(idx)
    px, py = _pixel_rows(cfg, p, stats, idx, PIXEL_STEP)
    mean, scale, w, b = _logistic(px, py, pixel_c)
    model.pixel_w.copy_(torch.from_numpy(w / scale))
    model.pixel_b.fill_(b - float((mean * w / scale).sum()))
    mean, scale, w, b = _logistic(rows[idx], p.labels[idx], image_c)
    model.image_mean.copy_(torch.from_numpy(mean))
    model.image_scale.copy_(torch.from_numpy(scale))
    model.image_w.copy_(torch.from_numpy(w))
    model.image_b.fill_(b)


def out_of_fold_heads(cfg: TileDefectConfig, p: Planes, rows: np.ndarray, groups: Sequence[str], n_folds: int,
                      knn_stats: tuple[float, float], pixel_c: float = PIXEL_C, image_c: float = IMAGE_C
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(pixel-head maps (n, m, m), image logits (n,)), each image's from heads fitted without its fold."""
    n, m = len(p.images), cfg.map_size
    logits = np.zeros(n, np.float32)
    maps = np.zeros((n, m, m), np.float32)
    for held in balanced_folds(list(groups), n_folds):
        model = TileDefect(cfg)
        model.knn_stats.copy_(torch.tensor(knn_stats))
        fit_heads(model, p, rows, np.setdiff1d(np.arange(n), held), pixel_c, image_c)
        w, b = model.pixel_w.numpy(), float(model.pixel_b)
        for i in held:
            maps[i] = np.tensordot(w, pixel_features(p.z[i], model.standardise_knn(p.knn[i]), cfg), axes=(0, 0)) + b
        x = (rows[held] - model.image_mean.numpy()) / model.image_scale.numpy()
        logits[held] = x @ model.image_w.numpy() + float(model.image_b)
    return maps, logits


def figures(p: Planes, pixel_maps: np.ndarray, logits: np.ndarray, weight: float, offset: str = "sum",
            gate: float = 0.0) -> dict[str, Any]:
    """Image figures of the logits, pixel figures (every 2nd cell) of the maps the model would show
    (``combined_map`` of the pixel maps and the logits)."""
    maps = combined_map(pixel_maps, logits[:, None, None], weight, offset, gate)
    good, bad = ~p.labels, p.labels
    res = summary(logits[good], logits[bad], [t for t, b in zip(p.types, bad) if b], maps[good],
                  list(maps[bad]), [mk for mk, b in zip(p.masks, bad) if b], pixel_step=2)
    return res | {"pixel_step": 2, "map_size": pixel_maps.shape[-1]}


def fold_groupings(p: Planes, group: Callable[[str], str], group_by: str, n_folds: int) -> dict[str, tuple[list[str], int]]:
    """The protocol's grouping and physical-tile groups (``series``), each with its fold count."""
    series = series_groups(p.names)
    out = {group_by: ([group(x) for x in p.names], n_folds)}
    if len(set(series)) >= 2 and group_by != "series":
        out["series"] = (series, min(SERIES_FOLDS, len(set(series))))
    return out


def joined_groups(group: Callable[[str], str], good_names: Sequence[str]) -> Callable[[str], str]:
    """``group``, except that a defect whose group holds no good tile joins the group of a good tile
    picked by a hash of its name. Folds are made of the good tiles' groups, so such a defect (every
    image its own group under ``none``; station names with the class in front) would be in no fold
    and left out of the heads: with few reviewed defects that left none. Magnetic tile's sessions
    hold both, so its folds are unchanged."""
    import zlib

    known = sorted({group(n) for n in good_names})
    known_set = set(known)

    def joined(name: str) -> str:
        g = group(name)
        return g if g in known_set or not known else known[zlib.crc32(name.encode("utf-8")) % len(known)]
    return joined


def fit_tile_defect(cfg: TileDefectConfig, good_names: Sequence[str], good: np.ndarray, defect_names: Sequence[str],
                    defects: np.ndarray, defect_types: Sequence[str], defect_masks: Sequence[np.ndarray | None],
                    group: Callable[[str], str], group_by: str, n_folds: int, device: torch.device | str = "cpu",
                    seed: int = 0, log: Callable[[str], None] = print, quiet: bool = False
                    ) -> tuple[TileDefect, dict[str, Any], dict[str, Any]]:
    """(model, cross-validation estimates, threshold) from the training split (see the module docstring)."""
    if len(defects) == 0:
        raise ValueError("tile_defect learns its heads from labelled defects: the data needs a validation/ "
                         "folder of defect images with masks (convert_magnetic_tile --defects-by-split)")
    from .common import Progress

    group = joined_groups(group, good_names)
    # Steps a window can follow (the retrain dialog's bar): each fold's bank, each cross-validation, the final fit.
    bar = Progress(n_folds + 3, "tile model fit", disable=quiet)
    p = out_of_fold(cfg, good_names, good, defect_names, defects, defect_types, defect_masks, group, n_folds,
                    device, seed, log, tick=bar.update)
    knn_stats = good_knn_stats(p)
    rows = image_rows(cfg, p, knn_stats)
    cv: dict[str, Any] = {}
    logits_by: dict[str, np.ndarray] = {}
    pixel_by: dict[str, np.ndarray] = {}
    net_inputs = None
    if cfg.pixel_head == "net":
        from .tile_pixel_net_fit import half_inputs

        net_inputs = half_inputs(cfg, p, knn_stats)
    for name, (groups, k) in fold_groupings(p, group, group_by, n_folds).items():
        maps, logits_by[name] = out_of_fold_heads(cfg, p, rows, groups, k, knn_stats)
        if net_inputs is not None:
            from .tile_pixel_net_fit import out_of_fold_net_maps

            log(f"pixel net, {k} folds by {name}:")
            maps = out_of_fold_net_maps(p, *net_inputs, groups, k, seed, log=log)
        pixel_by[name] = maps
        cv[name] = figures(p, maps, logits_by[name], cfg.map_image_weight, cfg.map_offset, cfg.map_gate) | {"n_folds": k}
        log(f"cross-validation ({k} folds by {name}): image AUROC {cv[name]['image_auroc']:.4f}  "
            f"pixel AUROC {cv[name]['pixel_auroc']:.4f}")
        bar.update()
    session = defect_probability(logits_by[group_by])  # the model's image score, in its unit
    thr = choose_threshold(session[~p.labels], session[p.labels])
    thr["method"] += f", each scored in {n_folds}-fold group cross-validation (groups by {group_by})"
    # The region threshold from out-of-fold maps too: good tiles mapped by heads fitted without them
    # (a held-out tile's map from the shipped heads is in-sample for them, and low: 4.29 vs 6.58).
    good_maps = combined_map(pixel_by[group_by][~p.labels], logits_by[group_by][~p.labels, None, None],
                             cfg.map_image_weight, cfg.map_offset, cfg.map_gate)
    thr["pixel"] = float(np.quantile(good_maps, PIXEL_QUANTILE))
    thr["pixel_method"] = (f"{PIXEL_QUANTILE:.1%} quantile of the map values of {int((~p.labels).sum())} good images, "
                           f"each mapped by heads fitted without its fold ({n_folds} folds by {group_by})"
                           + (f"; pixel head: a net trained without its fold (seed {seed})" if net_inputs is not None else ""))
    # the shipped model: bank and statistics from every good tile, heads from every out-of-fold plane
    bank = fit_model(knn_config(cfg), good, device, seed, quiet=quiet)
    kc = bank.config  # the bank may be smaller than asked for with few good images
    cfg = dataclasses.replace(cfg, bank_size=kc.bank_size, bank_k=kc.bank_k, density=kc.density, density_k=kc.density_k)
    model = TileDefect(cfg).to(device)
    model.bank.copy_(bank.bank)
    model.bank_scale.copy_(bank.bank_scale)
    s1 = np.zeros((cfg.n_terms, cfg.grid, cfg.grid), np.float64)
    s2 = np.zeros_like(s1)
    for img in good[:, 0]:
        _, a, b = model.coarse_terms(img)
        s1 += a
        s2 += b
    mean, std = position_stats(s1, s2, len(good))
    model.term_mean.copy_(torch.from_numpy(mean))
    model.term_std.copy_(torch.from_numpy(std))
    model.knn_stats.copy_(torch.tensor(knn_stats))
    fit_heads(model, p, rows, range(len(p.images)))
    net_info = None
    if net_inputs is not None:
        net_info = _ship_net(model, net_inputs, p, seed, log)
    bar.update(bar.total - bar.done)  # the final fit (and a cross-validation not run: one grouping only)
    bar.close()
    estimate = {"image_auroc": cv[group_by]["image_auroc"], "pixel_auroc": cv[group_by]["pixel_auroc"],
                "group_by": group_by, "n_folds": n_folds, "by_grouping": cv,
                "note": "heads fitted on out-of-fold maps of the other folds; 'series' = folds of physical tiles "
                        "(a new tile), the other = the protocol's groups (a known tile under a new lighting)"}
    if net_info is not None:
        estimate["pixel_head"] = "net: pixel figures and threshold from out-of-fold net maps (a net trained without each fold)"
        estimate["pixel_net_training"] = net_info
    return model.eval(), estimate, thr


def _ship_net(model: TileDefect, net_inputs: tuple[np.ndarray, np.ndarray, np.ndarray], p: Planes, seed: int,
              log: Callable[[str], None]) -> dict[str, Any]:
    """Train the shipped pixel net on every usable tile's out-of-fold planes into ``model.pixel_net``;
    returns the recipe for the card's ``training``."""
    import time

    from ..models.tile_pixel_net import three_widths
    from .tile_pixel_net_fit import NetTraining, train_net

    feats, targets, usable = net_inputs
    tr = NetTraining(widths=three_widths(model.config.pixel_net_widths))
    t0 = time.monotonic()
    idx = np.flatnonzero(usable)
    net = train_net(feats, targets, ~p.labels, idx, seed, tr)
    assert model.pixel_net is not None
    model.pixel_net.load_state_dict(net.state_dict())
    secs = time.monotonic() - t0
    log(f"pixel net: trained on {len(idx)} tiles in {secs:.0f} s")
    return {"epochs": tr.epochs, "optimiser": "AdamW", "lr": tr.lr, "lr_schedule": "cosine to 0",
            "weight_decay": tr.weight_decay, "batch": tr.batch, "widths": list(tr.widths), "seed": seed,
            "augmentation": "horizontal and vertical flips",
            "loss": "per-pixel BCE on the 2x2-pooled mask, class-balanced (positive and negative pixels equal total "
                    "weight); each epoch every defect tile and as many good tiles drawn afresh",
            "input": "the linear head's pixel features of each tile's out-of-fold planes, average-pooled 2x2",
            "tiles": int(len(idx)), "good_tiles": int((~p.labels[idx]).sum()), "seconds": round(secs, 1),
            "recipe": "benchmarks/results/tile-pixel-net.md (fixed before its run)"}
