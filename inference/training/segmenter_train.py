"""Training MiM-ISTD on an images/ + masks/ tree: crops in memory, soft Dice, resumable epochs.

The paper trains 800 GPU epochs on full frames. A CPU cannot, so an epoch here is as many
random crops as there are training frames, biased to contain a target (targets cover ~0.1 % of
SIRST pixels; uniform crops would mostly teach "background"). A tenth of the training split is
held out (deterministically) to pick the best epoch and the decision threshold, so the
validation split stays untouched for ``evaluate``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from inference.checkpoints import save_model
from inference.models.mim_istd import NAME, MiMISTD, MiMISTDConfig, preset
from inference.segmenter_metrics import SegmentationMeter
from inference.segmenter_predict import drop_large_components, largest_target_fraction, predict_probabilities
from inference.training.common import (
    Progress,
    command_line,
    deterministic_split,
    load_training_state,
    pick_device,
    save_training_state,
    seed_everything,
    set_threads,
    warmup_cosine,
)
from inference.training.segmenter_cli import DEFAULT_EPOCHS
from inference.training.segmenter_data import CropSampler, Frame, SegTree, load_frames

log = logging.getLogger(__name__)
STATE = "state.pt"
# Soft-Dice training saturates the sigmoid, so the useful thresholds crowd near 1.
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.1, 0.91, 0.05)) + (0.95, 0.97, 0.98, 0.99)
HELD_OUT_FRACTION = 0.1
# A predicted component larger than this many times the largest training target is clutter (see
# segmentation.drop_large_components). 2 is set a priori: room for targets somewhat larger than
# any seen, while a lit-up building or cloud edge (tens of times larger) is still dropped.
LARGE_COMPONENT_FACTOR = 2.0


@dataclass
class TrainOptions:
    data: str
    out: str
    preset: str = "cpu"
    inner: str | None = None  # override the preset's inner block ("conv" = the ablation)
    init: str | None = None  # start from this model directory's weights (fine-tuning, retraining)
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = 8
    crop: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"  # or "adagrad" (the paper: lr 0.05, wd 4e-4)
    bce_weight: float = 0.0
    loss: str = "dice"  # one of LOSSES: "dice" (pooled soft Dice), "dice+targets" (plus the per-target term)
    # The crop mix measured under leave-scene-out CV (benchmarks/results/segmenter-clutter.md, session 22): half the
    # crops centred near a target, a quarter on bright non-target blobs (segmenter_data.clutter_points, the false
    # alarms of new scenes), a quarter uniform; against no clutter crops (target 0.5, uniform 0.5), mean of two
    # network seeds: IoU 0.598 -> 0.620, detections 376.5 -> 378.5 of 424, Fa 103.9 -> 80.4.
    target_prob: float = 0.5
    clutter_prob: float = 0.25
    augment: bool = False  # scene/camera augmentation of crops (segmenter_data.SceneAugment): gamma, contrast, blur, noise, stripes, scale
    # Share of crops that get one more training target pasted in (segmenter_data.CropSampler, target_patches):
    # targets against backgrounds they were never on. Measured in benchmarks/results/segmenter-paste.md (session 28):
    # half the crops, against none, mean of two network seeds under leave-scene-out CV: detections 381.5 -> 384.5 of
    # 424, Fa 88.0 -> 115.1, IoU 0.641 -> 0.608 — does not win; kept at 0 for the record.
    paste_prob: float = 0.0
    eval_every: int = 5
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    resume: bool = False
    max_steps: int | None = None  # stop early (smoke runs, time budgets); the schedule stays the same
    verifier: bool = False  # also train the second-stage target verifier (segmenter_verifier) for the final model
    verifier_steps: int = 800
    quiet: bool = False
    # share of train.txt held out to pick the epoch, threshold and flips; 0 fits every frame and keeps the
    # final weights at threshold 0.5 without flips (cross-validated ensembles choose those out of fold instead)
    held_out_fraction: float = HELD_OUT_FRACTION
    command: str = ""  # the command line that produced this run, for the card (default: this process's)
    # A second phase: this many more epochs from the first phase's final weights, a fresh cosine schedule at
    # ``fine_tune_lr`` (the earlier bundle's own schedule). Measured under leave-scene-out CV with the clutter crops
    # (benchmarks/results/segmenter-two-stage.md, ADR 0052): 36 + 16 against 40 epochs, mean of two network seeds,
    # IoU 0.620 -> 0.630, detections 378.5 -> 380 of 424, Fa 80.4 -> 92.7. ``train segmenter`` turns it on for a
    # network trained from scratch; 0 here keeps a caller's recorded recipe as it was.
    fine_tune_epochs: int = 0
    fine_tune_lr: float = 1e-3
    # The second phase's crop side and batch (0: the first phase's). Session 27 (segmenter-context192.md): crops of
    # 192 px cut new-scene false alarms by a quarter but, at the same pixels, centred each target in half as many
    # crops and lost detections; a short phase on large crops after the adopted schedule is measured in
    # segmenter-context2phase.md.
    fine_tune_crop: int = 0
    fine_tune_batch_size: int = 0


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice over the whole batch (pixels of all crops pooled, as DNANet's SoftIoU loss)."""
    p = torch.sigmoid(logits)
    inter = (p * target).sum()
    return 1.0 - (2.0 * inter + smooth) / (p.sum() + target.sum() + smooth)


LOSSES = ("dice", "dice+targets")
# Pixels around a ground-truth target that belong to its window in the per-target term (set a priori:
# a few pixels of spill around a small target, the scale at which Pd matches a prediction to it).
TARGET_WINDOW_MARGIN = 4


def target_windows(target: np.ndarray, margin: int = TARGET_WINDOW_MARGIN) -> np.ndarray:
    """(B, 1, H, W) int64 ids: each 8-connected ground-truth component of each crop numbered 1.. across the
    batch, its pixels and the background pixels within ``margin`` of it carrying its id (a target's own
    pixels always keep its id; where two windows meet, the higher id wins); 0 elsewhere."""
    import cv2

    out = np.zeros(target.shape, np.int64)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * margin + 1,) * 2)
    offset = 0
    for i in range(target.shape[0]):
        n, labels = cv2.connectedComponents((target[i, 0] > 0.5).astype(np.uint8), connectivity=8)
        if n <= 1:
            continue
        labels = labels.astype(np.int64) + np.where(labels > 0, offset, 0)
        grown = cv2.dilate(labels.astype(np.float32), kernel).astype(np.int64) if margin > 0 else labels
        out[i, 0] = np.where(labels > 0, labels, grown)
        offset += n - 1
    return out


def per_target_dice_loss(logits: torch.Tensor, target: torch.Tensor, windows: torch.Tensor | np.ndarray | None = None
                         ) -> torch.Tensor:
    """1 - the mean over ground-truth targets of each target's soft Dice inside its window
    (``target_windows``): every target counts the same whatever its size, so a missed 3-pixel target costs
    as much as a missed 300-pixel one (the pooled Dice lets the large ones dominate). 0 if the batch holds
    no target. A target whose window is entirely missed scores 0 (no smoothing: a window holds >= 1 target pixel)."""
    if windows is None:
        windows = target_windows(target.detach().cpu().numpy())
    ids = torch.as_tensor(windows, device=logits.device).reshape(-1)
    n = int(ids.max()) if ids.numel() else 0
    if n == 0:
        return logits.sum() * 0.0
    p = torch.sigmoid(logits).reshape(-1)
    t = target.reshape(-1)
    inside = ids > 0
    ids, p, t = ids[inside] - 1, p[inside], t[inside]
    inter = torch.zeros(n, dtype=p.dtype, device=p.device).index_add_(0, ids, p * t)
    psum = torch.zeros(n, dtype=p.dtype, device=p.device).index_add_(0, ids, p)
    tsum = torch.zeros(n, dtype=p.dtype, device=p.device).index_add_(0, ids, t)
    return 1.0 - (2.0 * inter / (psum + tsum).clamp_min(1e-6)).mean()


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, bce_weight: float = 0.0, loss_name: str = "dice"
                      ) -> torch.Tensor:
    """The training loss ``loss_name`` (``LOSSES``): pooled soft Dice, plus with "dice+targets" the
    per-target Dice (``per_target_dice_loss``), plus ``bce_weight`` x BCE."""
    if loss_name not in LOSSES:
        raise ValueError(f"unknown loss {loss_name!r} ({', '.join(LOSSES)})")
    loss = soft_dice_loss(logits, target)
    if loss_name == "dice+targets":
        loss = loss + per_target_dice_loss(logits, target)
    if bce_weight:
        loss = loss + bce_weight * F.binary_cross_entropy_with_logits(logits, target)
    return loss


def score_probabilities(
    probs: list[np.ndarray], frames: list[Frame], thresholds=THRESHOLDS, max_fraction: float | None = None
) -> dict[float, dict[str, Any]]:
    out = {}
    for t in thresholds:
        meter = SegmentationMeter()
        for p, f in zip(probs, frames):
            meter.update(drop_large_components(p > t, max_fraction), f.mask)
        out[float(t)] = meter.result()
    return out


def pick_threshold(scores: dict[float, dict[str, Any]]) -> float:
    """Highest IoU; ties go to the threshold nearest 0.5."""
    return max(scores, key=lambda t: ((scores[t]["iou"] or 0.0), -abs(t - 0.5)))


def calibrate(
    model: torch.nn.Module | Sequence[torch.nn.Module], held: list[Frame], device: torch.device | str,
    max_fraction: float | None,
) -> tuple[float, bool, dict[str, Any]]:
    """(threshold, test-time flips, held-out metrics) that give the best held-out IoU for these weights
    (or for the mean map of these ensemble members)."""
    return choose_threshold_and_flips(
        {use_flips: predict_probabilities(model, [f.image for f in held], device, standardised=True, flips=use_flips)
         for use_flips in (False, True)},
        held, max_fraction)


def choose_threshold_and_flips(
    maps: dict[bool, list[np.ndarray]], frames: list[Frame], max_fraction: float | None,
) -> tuple[float, bool, dict[str, Any]]:
    """The calibration rule on given maps (``maps[flips]``: one map per frame, without / with test-time
    flips), wherever they came from: one network's held-out maps or out-of-fold maps of a cross-validation.
    Best IoU over ``THRESHOLDS`` (``pick_threshold``); flips only if they beat no flips strictly."""
    best: tuple[float, bool, dict[str, Any]] | None = None
    for use_flips in (False, True):
        scores = score_probabilities(maps[use_flips], frames, max_fraction=max_fraction)
        t = pick_threshold(scores)
        if best is None or (scores[t]["iou"] or 0.0) > (best[2]["iou"] or 0.0):
            best = (t, use_flips, scores[t])
    assert best is not None
    return best


def split_stems(tree: SegTree, held_out_fraction: float = HELD_OUT_FRACTION) -> tuple[list[str], list[str]]:
    """(fit stems, held-out stems) of train.txt as the trainer cuts them: the one home of that cut (the trainer, its
    no-target check and its domain statistics read it)."""
    if not 0.0 <= held_out_fraction < 1.0:
        raise ValueError(f"held-out fraction must be in [0, 1), not {held_out_fraction}")
    if held_out_fraction == 0.0:
        return list(tree.stems("train")), []
    fit, held = deterministic_split(tree.stems("train"), held_out_fraction, seed=1)
    return list(fit), list(held)


def training_frames(
    tree: SegTree, in_chans: int, held_out_fraction: float = HELD_OUT_FRACTION
) -> tuple[list[Frame], list[Frame], list[str]]:
    """(fit frames, held-out frames, problems): train.txt split deterministically, val.txt untouched.

    ``held_out_fraction`` 0 holds nothing out (deterministic_split alone would always keep one frame back).
    """
    fit_stems, held_stems = split_stems(tree, held_out_fraction)
    fit, problems = load_frames(tree, fit_stems, in_chans)
    held, more = load_frames(tree, held_stems, in_chans)
    return fit, held, problems + more


def size_limit(fit: list[Frame]) -> tuple[float, float | None]:
    """(largest fit-frame target share, the large-component limit derived from it or None)."""
    largest = largest_target_fraction([f.mask for f in fit])
    return largest, (LARGE_COMPONENT_FACTOR * largest if largest > 0 else None)


def _optimizer(model: torch.nn.Module, opts: TrainOptions) -> torch.optim.Optimizer:
    if opts.optimizer == "adagrad":
        return torch.optim.Adagrad(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    if opts.optimizer == "adamw":
        decay = [p for p in model.parameters() if p.ndim > 1]
        no_decay = [p for p in model.parameters() if p.ndim <= 1]
        groups = [{"params": decay, "weight_decay": opts.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=opts.lr)
    raise ValueError(f"unknown optimizer {opts.optimizer!r} (adamw or adagrad)")


def build_config(opts: TrainOptions) -> MiMISTDConfig:
    cfg = preset(opts.preset)
    return dataclasses.replace(cfg, inner=opts.inner) if opts.inner else cfg


def training_record(opts: TrainOptions) -> dict[str, Any]:
    """The options a card records under ``training`` (paths and the command line are recorded elsewhere)."""
    return {k: v for k, v in dataclasses.asdict(opts).items() if k not in ("data", "out", "quiet", "command")}


def train(opts: TrainOptions) -> Path:
    """Train; returns the final model directory (``<out>/final``). Raises SegDataError on bad data.

    With ``fine_tune_epochs`` the first phase runs in ``<out>/phase1`` (no verifier) and the second starts
    from its final weights in ``<out>``; the final card records both phases under ``training_phases``."""
    if opts.fine_tune_epochs < 0:
        raise ValueError("--fine-tune-epochs must be 0 (off) or more")
    if not opts.fine_tune_epochs:
        return _train_phase(opts)
    first_out = Path(opts.out) / "phase1"
    first = first_out / "final"
    if not (opts.resume and (first / "card.json").is_file()):
        first = _train_phase(dataclasses.replace(opts, out=str(first_out), fine_tune_epochs=0, verifier=False))
    final = _train_phase(dataclasses.replace(opts, init=str(first), epochs=opts.fine_tune_epochs, lr=opts.fine_tune_lr,
                                             fine_tune_epochs=0, crop=opts.fine_tune_crop or opts.crop,
                                             batch_size=opts.fine_tune_batch_size or opts.batch_size))
    from inference.checkpoints import read_json, save_card

    card = read_json(final / "card.json")
    card["training"] = training_record(opts)
    card["training_phases"] = [
        {"phase": 1, "epochs": opts.epochs, "lr": opts.lr, "init": opts.init, "out": str(first_out)},
        {"phase": 2, "epochs": opts.fine_tune_epochs, "lr": opts.fine_tune_lr, "init": "phase 1's final weights",
         "crop": opts.fine_tune_crop or opts.crop, "batch_size": opts.fine_tune_batch_size or opts.batch_size}]
    save_card(final, card)
    return final


def require_targets(data: str | Path, held_out_fraction: float = HELD_OUT_FRACTION) -> None:
    """``ValueError`` when no frame the trainer fits on holds a target: a model trained on it was written and
    registered like any other (a session-46 probe). Checked once on ``--data``, on the frames it fits on (its own cut:
    a target only in its held-out tenth, or a mask not the size of its frame, teaches nothing), before any fold network
    (a fold whose frames hold none is not the data's fault). Masks are read, frames only by their header, at their
    stored size as the trainer reads them (``stored_size``: a JPEG's EXIF turn not applied; with it, frames tagged
    6 whose masks the station's own export wrote at the stored size were refused, a session-49 audit). An empty
    train.txt, or masks all of another size than their frames, are said as such (the same audit: both were told
    "its masks hold none")."""
    from inference.imageio import ImageReadError, read_mask, stored_size
    from inference.training.segmenter_data import size_mismatch

    tree = SegTree.open(data)
    fit = split_stems(tree, held_out_fraction)[0]
    if not fit:
        listed = tree.root / "train.txt"
        raise ValueError(f"{listed} lists no frames: nothing to train on" if listed.is_file() else
                         f"{data}: no frame has both an image and a mask: nothing to train on")
    unreadable: list[str] = []
    mismatched: list[str] = []
    for stem in fit:
        try:
            mask = read_mask(tree.masks[stem])
        except ImageReadError as exc:
            unreadable.append(exc.reason if len(unreadable) < 3 else "")
            continue
        size = stored_size(tree.images[stem])
        if size is not None and mask.shape != (size[1], size[0]):
            mismatched.append(size_mismatch(tree.masks[stem], mask.shape, tree.images[stem], (size[1], size[0])))
            continue
        if mask.any():
            return
    said = f" ({len(unreadable)} unreadable, e.g. {'; '.join(u for u in unreadable[:3] if u)})" if unreadable else ""
    if mismatched and len(mismatched) + len(unreadable) == len(fit):
        raise ValueError(f"{data}: none of the {len(mismatched)} masks of frames the trainer fits on is the size of its "
                         f"frame (e.g. {mismatched[0]}){said}: nothing to learn targets from")
    if mismatched:
        said += f" ({len(mismatched)} masks not the size of their frame, which the trainer skips, e.g. {mismatched[0]})"
    raise ValueError(f"{data}: no frame the trainer fits on holds a target{said}: its masks hold none, or only frames it "
                     "holds out do: nothing to learn targets from")


def _train_phase(opts: TrainOptions) -> Path:
    """One schedule of ``opts.epochs`` (``train`` runs one or two of them)."""
    if opts.loss not in LOSSES:
        raise ValueError(f"unknown loss {opts.loss!r} ({', '.join(LOSSES)})")
    seed_everything(opts.seed)
    set_threads(opts.threads)
    device = pick_device(opts.device)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = build_config(opts)

    tree = SegTree.open(opts.data)
    fit, held, problems = training_frames(tree, cfg.in_chans, opts.held_out_fraction)
    for msg in problems:
        log.warning("skipped: %s", msg)
    if not fit:
        raise ValueError(f"{opts.data}: no usable training frames")
    sampler = CropSampler(fit, opts.crop, opts.target_prob, seed=opts.seed, clutter_prob=opts.clutter_prob,
                          augment=opts.augment, paste_prob=opts.paste_prob)
    largest, max_fraction = size_limit(fit)

    model = MiMISTD(cfg).to(device)
    init_record: dict[str, Any] | None = None
    if opts.init and not (opts.resume and (out / STATE).is_file()):
        from inference.checkpoints import load_model

        start = load_model(opts.init)
        if start.name != NAME or start.config != cfg:
            raise ValueError(f"{opts.init}: its model ({start.name}, {start.config}) is not the one asked for ({cfg})")
        model.load_state_dict(start.model.state_dict())  # every weight: a pretrained one (``pretrain``) has no extra layer
        init_record = {"path": str(opts.init), "kind": start.card.get("kind", "trained segmenter"),
                       **{k: start.card[k] for k in ("pretraining", "data", "commands", "command") if k in start.card}}
    optim = _optimizer(model, opts)
    steps_per_epoch = max(1, math.ceil(len(fit) / opts.batch_size))
    total = steps_per_epoch * opts.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(optim, warmup_cosine(total, warmup_frac=0.05))
    best: dict[str, Any] = {"iou": -1.0, "epoch": -1}
    start_epoch, history = 0, []
    state_path = out / STATE
    if opts.resume and state_path.is_file():
        state = load_training_state(state_path)
        model.load_state_dict(state["model"])
        optim.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, best, history = int(state["epoch"]), state["best"], json.loads(state["history"])
        sampler.rng = np.random.default_rng([opts.seed, start_epoch])
        log.info("resumed from %s at epoch %d", state_path, start_epoch)
    else:  # a fresh run: an earlier run's best epoch and log in this --out are not this run's (a session-49 audit: a
        # rerun with nothing held out kept the earlier best/, and domain statistics of the new data were fitted to it)
        if (out / "best").exists():
            shutil.rmtree(out / "best")
        (out / "log.jsonl").unlink(missing_ok=True)

    card_base = {
        "model": NAME,
        "family": "segmenter",
        "preset": opts.preset,
        "classes": ["background", "target"],
        "input": {"channels": cfg.in_chans, "any_size": True, "pad_to_multiple_of": cfg.stride,
                  "normalisation": "per-frame standardisation (zero mean, unit variance over the whole frame)"},
        "data": {"path": str(Path(opts.data).resolve()), "fit_frames": len(fit), "held_out_frames": len(held),
                 "skipped": problems, "largest_target_fraction": largest},
        "max_target_fraction": max_fraction,
        "max_target_fraction_rule": f"{LARGE_COMPONENT_FACTOR:g} x the largest fit-frame target's share of its frame; "
                                    "larger predicted components are dropped from the mask",
        "training": training_record(opts),
        **({"init_model": init_record} if init_record else {}),
        "command": opts.command or command_line(),
    }
    step = start_epoch * steps_per_epoch
    total_steps = opts.epochs * steps_per_epoch if opts.max_steps is None else min(opts.max_steps, opts.epochs * steps_per_epoch)
    bar = Progress(total_steps, "train segmenter", disable=opts.quiet)  # one bar and ETA for the whole run
    bar.update(min(step, total_steps))
    for epoch in range(start_epoch, opts.epochs):
        if opts.max_steps is not None and step >= opts.max_steps:
            break
        model.train()
        losses, t0 = [], time.monotonic()
        for _ in range(steps_per_epoch):
            images, masks = sampler.batch(opts.batch_size)
            x, y = torch.from_numpy(images).to(device), torch.from_numpy(masks).to(device)
            loss = segmentation_loss(model(x), y, opts.bce_weight, opts.loss)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optim.step()
            sched.step()
            step += 1
            losses.append(loss.item())
            bar.update(epoch=epoch + 1, loss=losses[-1], lr=sched.get_last_lr()[0])
            if opts.max_steps is not None and step >= opts.max_steps:
                break
        entry: dict[str, Any] = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "seconds": time.monotonic() - t0}
        last = epoch + 1 == opts.epochs or (opts.max_steps is not None and step >= opts.max_steps)
        if held and ((epoch + 1) % opts.eval_every == 0 or last):
            scores = score_probabilities(predict_probabilities(model, [f.image for f in held], device, standardised=True), held,
                                         max_fraction=max_fraction)
            thr = pick_threshold(scores)
            entry.update(held_out=scores[thr], threshold=thr)
            if (scores[thr]["iou"] or 0.0) > best["iou"]:
                best = {"iou": scores[thr]["iou"] or 0.0, "epoch": epoch + 1, "threshold": thr, "metrics": scores[thr]}
                save_model(out / "best", NAME, model, cfg, {**card_base, "threshold": thr, "epoch": epoch + 1,
                                                            "held_out_metrics": scores[thr]})
        history.append(entry)
        log.info("epoch %d: %s", epoch + 1, json.dumps(entry))
        with open(out / "log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
        save_training_state(state_path, {
            "model": model.state_dict(), "optimizer": optim.state_dict(), "scheduler": sched.state_dict(),
            "epoch": epoch + 1, "best": best, "history": json.dumps(history),
        })

    bar.close()
    final = out / "final"
    chosen: torch.nn.Module = model
    epoch_used, thr, metrics = len(history), 0.5, None
    if held and best["epoch"] > 0:
        # The best held-out epoch is the shipped model (selection never looks at val).
        from inference.checkpoints import load_model

        chosen, epoch_used = load_model(out / "best").model.to(device), int(best["epoch"])
    flips = False
    if held:  # threshold and test-time flips are picked for the shipped weights, on the held-out frames
        thr, flips, metrics = calibrate(chosen, held, device, max_fraction)
    card = {**card_base, "threshold": thr, "test_time_flips": flips, "epoch": epoch_used, "held_out_metrics": metrics,
            "licence": "Weights learnt from the data named under 'data': its licence and citation apply. "
                       "Architecture after MiM-ISTD (Chen et al., 2024).",
            "history": history}
    save_model(final, NAME, chosen, cfg, card)
    if opts.verifier:
        from inference.training.segmenter_verifier import VerifierOptions, train_verifier

        try:
            train_verifier(final, Path(opts.data), VerifierOptions(steps=opts.verifier_steps, seed=opts.seed, quiet=opts.quiet),
                           device=str(device))
        except ValueError as exc:  # the segmenter itself is trained and saved; say why it has no verifier
            log.warning("no target verifier trained: %s", exc)
    return final
