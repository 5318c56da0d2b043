"""Train an anomaly model on a category's good images; calibrate its threshold; write the model dir.

A deterministic 15 % of train/good is held out (never trained on) to calibrate the image
threshold: the 99th percentile of held-out good scores, i.e. about 1 % false alarms on good
parts. The pattern model trains generation (predict the clean cell) and comparison (tell real
from synthetic defects and swapped cells) jointly; the comparison sees the prediction detached
so it cannot teach the generator to hide defects.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, cast

import numpy as np
import torch
import torch.nn.functional as F

from ..anomaly_predict import model_maps, normalise_batch
from ..checkpoints import save_model
from ..models import registry
from ..models.pattern_anomaly import PatternAnomaly
from ..models.pixel_gaussian import PixelGaussian
from ..models.texture_knn import TextureKnn
from ..models.tile_defect import TileDefect
from .anomaly_bank import STAT_IMAGES, BankOptions, choose
from .anomaly_data import AnomalyDataError, load_images, scan_category, synthesize_defects
from .anomaly_eval import evaluate_tree
from .anomaly_stats import choose_term
from .common import (
    Progress,
    deterministic_split,
    load_training_state,
    save_training_state,
    seed_everything,
    warmup_cosine,
)
from .texture_knn_fit import PIXEL_QUANTILE

if TYPE_CHECKING:
    from ..anomaly_predict import AnomalyNet

STATE_FILE = "train_state.pt"
HOLDOUT_FRACTION = 0.15
THRESHOLD_QUANTILE = 0.99


@dataclass
class TrainOptions:
    data: Path
    out: Path
    arch: str = "pattern_anomaly"
    config: Any = None
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.05
    seed: int = 0
    device: str = "cpu"
    resume: bool = False
    triples_per_image: int = 48
    defect_prob: float = 0.5
    defect_max_area: float = 0.06
    swap_prob: float = 0.05
    generation_weight: float = 1.0
    flips: bool = True
    max_train_images: int = 0
    evaluate: bool = True
    backbone: Path | None = None
    memory_bank: bool = False  # add the memory-bank term after training (anomaly_bank.py)
    appearance_stats: bool = False  # then the appearance-statistics term (anomaly_stats.py)
    edge_band: bool = False  # then the edge-band term (anomaly_stats.py, term "band")
    cv_folds: int = 3  # texture_knn: group cross-validation folds (< 2: none; threshold on the held-out good images)
    group_by: str = "prefix"  # how file names map to groups that a fold never splits (groups.py)
    data_licence: str = ""
    command: str = ""
    quiet: bool = False


def _licence_note(root: Path, explicit: str) -> str:
    if explicit:
        return explicit
    for folder in (root, root.parent):
        for name in ("LICENSE.txt", "license.txt", "LICENSE", "LICENCE.txt"):
            f = folder / name
            if f.is_file():
                text = f.read_text(encoding="utf-8", errors="replace")
                if "CC BY-NC-SA" in text or "Attribution-NonCommercial-ShareAlike" in text:
                    return "CC BY-NC-SA 4.0 (non-commercial, share-alike); see " + str(f)
                return f"see {f}"
    return "unknown (no licence file found beside the data)"


def pattern_step(model: PatternAnomaly, clean: np.ndarray, rng: np.random.Generator, opts: TrainOptions,
                 device: torch.device) -> dict[str, torch.Tensor]:
    """One batch: synthetic defects, random grid shift, sampled triples -> losses."""
    cfg = model.config
    p, _t, s = cfg.patch_size, cfg.tokens_per_side, cfg.token_size
    corrupt, masks = synthesize_defects(clean, rng, opts.defect_prob, opts.defect_max_area)
    axis = int(rng.integers(2)) if cfg.axes == 2 else 0  # 1: down the columns = along the transpose's rows
    if axis:
        clean, corrupt, masks = (np.ascontiguousarray(a.swapaxes(-1, -2)) for a in (clean, corrupt, masks))
    xc = normalise_batch(model, clean, device)
    xa = normalise_batch(model, corrupt, device)
    m = torch.as_tensor(masks, dtype=torch.float32, device=device)[:, None]
    oy, ox = (int(v) for v in rng.integers(0, p, 2))
    cells_a, centres = model.cell_grid(xa, oy, ox)
    cells_c, _ = model.cell_grid(xc, oy, ox)
    cells_m, _ = model.cell_grid(m, oy, ox)
    b, ny, nx = cells_a.shape[:3]
    tri = model.triples(ny, nx, cfg.bidirectional, device, axis)
    img = torch.arange(b, device=device).repeat_interleave(len(tri))
    idx = torch.cat([img[:, None], tri.repeat(b, 1)], dim=1)
    has = cells_m[idx[:, 0], idx[:, 1], idx[:, 4]].flatten(1).amax(1) > 0
    k = min(len(idx), opts.triples_per_image * b)
    weights = (1.0 + 4.0 * has.float()).cpu().numpy()
    pick = rng.choice(len(idx), size=k, replace=False, p=weights / weights.sum())
    idx = idx[torch.as_tensor(pick, device=device)]
    pos = model.position(centres)
    e1, e2 = model.encode_cells(cells_a, pos)
    pred = model.generate(e1, e2, pos, idx)
    real = cells_a[idx[:, 0], idx[:, 1], idx[:, 4]].clone()
    labels = F.max_pool2d(cells_m[idx[:, 0], idx[:, 1], idx[:, 4]], s)[:, 0]  # (k, t, t)
    n_swap = int(round(opts.swap_prob * k))
    if n_swap:
        rows = torch.as_tensor(rng.choice(k, n_swap, replace=False), device=device)
        src_b = torch.as_tensor(rng.integers(0, b, n_swap), device=device)
        src_r = torch.as_tensor(rng.integers(0, ny, n_swap), device=device)
        shift = torch.as_tensor(rng.integers(1, nx, n_swap), device=device)
        src_c = (idx[rows, 4] + shift) % nx  # another column: never the target cell itself
        real[rows] = cells_a[src_b, src_r, src_c]
        labels[rows] = 1.0
    logits = model.compare(pred.detach(), real, pos[idx[:, 1], idx[:, 4]])
    gen = F.mse_loss(pred, cells_c[idx[:, 0], idx[:, 1], idx[:, 4]])
    cmp = F.binary_cross_entropy_with_logits(logits, labels)
    return {"loss": opts.generation_weight * gen + cmp, "gen": gen.detach(), "cmp": cmp.detach()}


def _augment(batch: np.ndarray, rng: np.random.Generator, flips: bool) -> np.ndarray:
    if not flips:
        return batch
    out = batch.copy()
    for i in range(len(out)):
        if rng.random() < 0.5:
            out[i] = out[i, :, :, ::-1]
        if rng.random() < 0.5:
            out[i] = out[i, :, ::-1, :]
    return out


def calibrate(model: AnomalyNet, holdout: np.ndarray, device: torch.device) -> dict[str, Any]:
    scores, pixels = [], []
    for start in range(0, len(holdout), 8):
        maps, sc = model_maps(model, holdout[start:start + 8], device)
        scores.extend(sc.tolist())
        pixels.append(maps.ravel())
    scores_a = np.array(scores)
    allpix = np.concatenate(pixels)
    margin = getattr(model.config, "score_margin", 0)
    score = f"max of the map inside a {margin}-px border" if margin else "max of the map"
    return {
        "image": float(np.quantile(scores_a, THRESHOLD_QUANTILE)),
        "pixel": float(np.quantile(allpix, PIXEL_QUANTILE)),
        "method": f"{THRESHOLD_QUANTILE:.0%} quantile of image scores ({score}) on {len(scores_a)} held-out "
                  "good images; pixel: 99.9 % quantile of their map values",
        "holdout_scores": {"min": float(scores_a.min()), "mean": float(scores_a.mean()), "max": float(scores_a.max())},
    }


def good_split(data: Path, config: Any, seed: int = 0, max_train_images: int = 0,
               log: Callable[[str], None] = print) -> tuple[Any, np.ndarray, np.ndarray, list[str]]:
    """(tree, fit images, held-out images, unreadable) of train/good, split as training splits it.

    The held-out side is never trained on; a model's later calibration steps (memory bank,
    threshold) re-create the same split from the seed recorded in its card.
    """
    tree = scan_category(data, need_train=True)
    names = [str(p.relative_to(tree.root)) for p in tree.train_good]
    fit_names, hold_names = deterministic_split(names, HOLDOUT_FRACTION, seed=seed)
    if not hold_names:
        raise AnomalyDataError(f"{tree.root / 'train' / 'good'}: need at least 2 good images "
                               "(one is held out to calibrate the threshold)")
    if max_train_images:
        fit_names = fit_names[:max_train_images]
    fit, _, err1 = load_images([tree.root / n for n in fit_names], config.image_size, config.in_channels)
    hold, _, err2 = load_images([tree.root / n for n in hold_names], config.image_size, config.in_channels)
    unreadable = err1 + err2
    for e in unreadable:
        log(f"warning: skipped unreadable image {e}")
    if len(fit) == 0 or len(hold) == 0:
        raise AnomalyDataError(f"{tree.root}: no readable good images to {'train on' if len(fit) == 0 else 'calibrate with'}")
    log(f"data: {len(fit)} good images to train, {len(hold)} held out for the threshold, "
        f"{len(unreadable)} unreadable; input {config.image_size}x{config.image_size}")
    return tree, fit, hold, unreadable


def train(opts: TrainOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    from .groups import check_path_rule, name_group_function

    # a bad --group-by is refused before training, not after it (a session-49 audit): by the rule that reads it, the
    # file-name groups of the texture bank's and tile model's folds, else the domain fit's path groups (the review of
    # that fix: "scene" and "folder", which the latter takes, were refused)
    (name_group_function if opts.arch in ("texture_knn", "tile_defect") else check_path_rule)(opts.group_by)
    seed_everything(opts.seed)
    device = torch.device(opts.device)
    config = opts.config if opts.config is not None else registry.spec(opts.arch).config_cls()
    tree, fit, hold, unreadable = good_split(opts.data, config, opts.seed, opts.max_train_images, log)

    model = cast("AnomalyNet", registry.build(opts.arch, config).to(device))
    opts.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    step_times: list[float] = []
    history: list[dict[str, float]] = []
    backbone_counts = None
    if isinstance(model, PixelGaussian):  # arch "pixel_gaussian"
        model.fit(normalise_batch(model, fit, device))
        epochs_done = 0
    elif isinstance(model, TileDefect):  # arch "tile_defect": needs the labelled defects in validation/
        from .texture_knn_fit import load_validation
        from .tile_defect_fit import fit_tile_defect

        good_all, kept, _ = load_images(list(tree.train_good), config.image_size, config.in_channels)
        names, defects, types, masks = load_validation(tree.root, config, log)
        model, tile_cv, tile_threshold = fit_tile_defect(
            config, [q.name for q in kept], good_all, names, defects, types, masks,
            name_group_function(opts.group_by), opts.group_by, max(opts.cv_folds, 2), device, opts.seed, log, opts.quiet)
        config = model.config
        epochs_done = 0
    elif isinstance(model, TextureKnn):  # arch "texture_knn"
        from .texture_knn_fit import fit_model

        model = fit_model(config, fit, device, opts.seed, quiet=opts.quiet)
        log(f"memory bank: {model.config.bank_size} rows of {model.config.feature_dim} features")
        epochs_done = 0
    else:
        if opts.backbone is not None:
            from ..models.pattern_anomaly_fit import load_pretrained_backbone

            backbone_counts = load_pretrained_backbone(model, opts.backbone)
            log(f"pretrained backbone {opts.backbone}: tensors copied {backbone_counts}")
        steps_per_epoch = math.ceil(len(fit) / opts.batch_size)
        total = steps_per_epoch * opts.epochs
        optim = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(optim, warmup_cosine(total, 0.05))
        start_epoch = 0
        state_path = opts.out / STATE_FILE
        if opts.resume and state_path.is_file():
            st = load_training_state(state_path)
            # Map statistics are recomputed after training, so a state without them still resumes.
            missing, unexpected = model.load_state_dict(st["model"], strict=False)
            if unexpected or set(missing) - {"map_mean", "map_std"}:
                raise RuntimeError(f"{state_path}: does not match this model (missing {missing}, unexpected {unexpected})")
            optim.load_state_dict(st["optimizer"])
            sched.load_state_dict(st["scheduler"])
            start_epoch = int(st["epoch"])
            history = list(st.get("history", []))
            started -= float(st.get("seconds", 0.0))  # the card reports the whole training time
            log(f"resumed from {state_path} at epoch {start_epoch}/{opts.epochs}")
        bar = Progress(total, "train", disable=opts.quiet)
        bar.update(start_epoch * steps_per_epoch)
        for epoch in range(start_epoch, opts.epochs):
            rng = np.random.default_rng([opts.seed, epoch])
            order = rng.permutation(len(fit))
            model.train()
            sums = {"loss": 0.0, "gen": 0.0, "cmp": 0.0}
            for i in range(steps_per_epoch):
                t0 = time.monotonic()
                batch = _augment(fit[order[i * opts.batch_size:(i + 1) * opts.batch_size]], rng, opts.flips)
                losses = pattern_step(model, batch, rng, opts, device)
                optim.zero_grad(set_to_none=True)
                losses["loss"].backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optim.step()
                sched.step()
                step_times.append(time.monotonic() - t0)
                for k in sums:
                    sums[k] += float(losses[k].detach())
                bar.update(1, epoch=epoch + 1, gen=float(losses["gen"]), cmp=float(losses["cmp"]))
            history.append({k: v / steps_per_epoch for k, v in sums.items()} | {"epoch": epoch + 1})
            save_training_state(state_path, {"model": model.state_dict(), "optimizer": optim.state_dict(),
                                             "scheduler": sched.state_dict(), "epoch": epoch + 1, "history": history,
                                             "seconds": time.monotonic() - started})
        bar.close()
        epochs_done = opts.epochs
    model.eval()
    if isinstance(model, PatternAnomaly):  # the model with map statistics (fit_map_statistics)
        n = min(len(fit), STAT_IMAGES)
        model.fit_map_statistics(normalise_batch(model, fit[i:i + 8], device) for i in range(0, n, 8))
    bank_info = None
    if opts.memory_bank and isinstance(model, PatternAnomaly):
        model, bank_info = choose(model, fit, hold, BankOptions(seed=opts.seed), device, log)
    stats_info = None
    if opts.appearance_stats and isinstance(model, PatternAnomaly):
        model, stats_info = choose_term(model, fit, hold, device, opts.seed, log)
    band_info = None
    if opts.edge_band and isinstance(model, PatternAnomaly):
        model, band_info = choose_term(model, fit, hold, device, opts.seed, log, term="band")
    train_seconds = time.monotonic() - started
    threshold = calibrate(model, hold, device)
    cv_info = None
    net_training = None
    if isinstance(model, TileDefect):
        threshold |= tile_threshold
        net_training = tile_cv.pop("pixel_net_training", None)  # the net's recipe goes to the card's training
        cv_info = tile_cv
    if opts.arch == "texture_knn" and opts.cv_folds >= 2:
        from .texture_knn_fit import protocol

        cv_info, cv_threshold = protocol(config, tree.root, tree.train_good, opts.cv_folds, opts.group_by,
                                         device, opts.seed, log)
        threshold |= cv_threshold
        if cv_info is not None:
            log(f"cross-validation ({opts.cv_folds} folds of whole {opts.group_by} groups): image AUROC "
                f"{cv_info['image_auroc']:.4f}  pixel AUROC {cv_info['pixel_auroc']:.4f}  "
                f"({cv_info['n_good']} good, {cv_info['n_defect']} validation defect images)")
    log(f"threshold (image score): {threshold['image']:.4f}  [{threshold['method']}]")
    metrics = None
    if opts.evaluate:
        tree_t = scan_category(opts.data, need_train=False)
        if tree_t.test and {t.is_anomalous for t in tree_t.test} == {True, False}:
            metrics = evaluate_tree(model, tree_t, device, progress=not opts.quiet)
            log(f"test: image AUROC {metrics['image_auroc']:.4f}  pixel AUROC {metrics['pixel_auroc']:.4f}  "
                f"PRO {metrics['pro']:.4f}  ({metrics['n_images']} images, {len(metrics['skipped'])} skipped)")
    card = {
        "model": opts.arch,
        "family": "anomaly",
        "task": (("anomaly heatmap from good images plus a pixel net and a linear image head learned from the "
                  "labelled defects of the training split (validation/)" if net_training is not None else
                  "anomaly heatmap from good images plus two linear heads learned from the labelled defects "
                  "of the training split (validation/)") if isinstance(model, TileDefect)
                 else "unsupervised anomaly heatmap; trained on good images only"),
        "input": {"size": [config.image_size, config.image_size], "channels": config.in_channels,
                  "resize": "squash to a square (aspect ratio not kept); the map is stretched back",
                  "normalisation": {"mean": list(config.mean), "std": list(config.std)}},
        "output": ("anomaly map (pixel head logit + map_image_weight x image logit) and image score = the image "
                   "head's logit" if isinstance(model, TileDefect)
                   else "anomaly map (per pixel, higher = more anomalous) and image score = max of the map"),
        "threshold": threshold,
        "data": {"root": str(tree.root), "train_good": len(fit), "holdout_good": len(hold),
                 "unreadable": unreadable, "licence": _licence_note(tree.root, opts.data_licence),
                 **({"test_copies_of_train": copies} if (copies := tree.test_copies()) else {})},
        "training": {"epochs": epochs_done, "batch_size": opts.batch_size, "lr": opts.lr, "seed": opts.seed,
                     "device": str(device), "threads": torch.get_num_threads(),
                     "seconds": round(train_seconds, 1),
                     "seconds_per_step": round(float(np.median(step_times)), 4) if step_times else None,
                     "triples_per_image": opts.triples_per_image, "defect_prob": opts.defect_prob,
                     "defect_max_area": opts.defect_max_area,
                     "swap_prob": opts.swap_prob, "flips": opts.flips,
                     "pretrained_backbone": str(opts.backbone) if opts.backbone else None,
                     "backbone_tensors": backbone_counts, "history": history[-5:]}
        | ({"pixel_net": net_training} if net_training is not None else {}),
        "command": opts.command,
        **({"memory_bank": bank_info} if bank_info is not None else {}),
        **({"appearance_stats": stats_info} if stats_info is not None else {}),
        **({"edge_band": band_info} if band_info is not None else {}),
        **({"cross_validation": cv_info} if cv_info is not None else {}),
        "metrics": {"test": {k: v for k, v in metrics.items() if k != "skipped"} | {"skipped": len(metrics["skipped"])}}
        if metrics else {},
    }
    save_model(opts.out, opts.arch, model, model.config if bank_info or stats_info or band_info or opts.arch in ("texture_knn", "tile_defect") else
               (dataclasses.replace(config) if dataclasses.is_dataclass(config) and not isinstance(config, type) else config), card)
    return card

