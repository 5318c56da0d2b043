"""Station pretraining: a classifier backbone learnt from a folder's unlabelled images.

Objective (docs/adr/0018): SimCLR-style InfoNCE. Two random views of each image
(``pretrain_views``: crop, flips, turns, gain, offset, gamma, blur, noise) go through the
MemoryMamba backbone (``MemoryMamba.features``, the pooled features every head reads) and a
small projection MLP; each view must pick its partner out of the batch's other 2(b-1) views.
The projection is thrown away afterwards, as in SimCLR: only the backbone is the product.

The result is an ordinary MemoryMamba model directory whose card says ``"kind":
"pretrained_backbone"`` and has no classes; its two-class head is an untrained placeholder (the
architecture needs one), so ``train classifier --init DIR --init-head new`` takes every weight
but the class layer, and ``--init-head keep`` is refused.

Resumable at step granularity: the state file (``OUT/training/pretrain_state.pt``, written
atomically) is saved every ``save_every`` steps, at each epoch's end and when a cancel is
asked for. A cancel (``should_stop`` returning True, e.g. after SIGTERM or Ctrl+C) is honoured
between steps: the state is saved, no model directory is written, and ``PretrainCancelled`` is
raised. Every step's randomness derives from (seed, step), so a resumed run draws the same
batches and views as an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inference.checkpoints import save_model
from inference.classifier_predict import resize_to_model_input
from inference.imageio import ImageReadError, is_image_file, read_image
from inference.models.memory_mamba import MemoryMamba, preset
from inference.training.classifier_train import MODEL_NAME, _normalisation_card, _param_groups
from inference.training.common import (
    Progress,
    load_training_state,
    pick_device,
    save_training_state,
    seed_everything,
    set_threads,
    warmup_cosine,
)
from inference.training.pretrain_views import ViewConfig, random_view

log = logging.getLogger(__name__)
STATE_FILE = "pretrain_state.pt"
KIND = "pretrained_backbone"
OBJECTIVE = "contrastive views (SimCLR InfoNCE / NT-Xent) on the pooled backbone features through a projection MLP"
FAMILIES = ("classifier",)  # the families whose backbone this pretrains (the others: see docs/pretraining.md)
PLACEHOLDER_CLASSES = 2     # the architecture needs a class layer; a pretrained backbone's is never trained


class PretrainCancelled(Exception):
    """A cancel was honoured between steps: the resume state is saved, no model was written."""


@dataclass(frozen=True)
class PretrainOptions:
    folder: Path
    out: Path
    family: str = "classifier"
    preset: str = "cpu"
    ablation: str = "full"
    img_size: int | None = None
    input_norm: str | None = None
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    temperature: float = 0.2
    projection_dim: int = 64
    max_images: int = 20_000        # memory bound: images are preloaded at the model's input size
    max_file_mb: float = 64.0       # larger files are skipped with a message
    save_every: int = 25            # steps between resume-state saves
    paths: tuple[Path, ...] | None = None  # these images of ``folder`` (a station's indexed ones) instead of a search
    source: str = ""                # what ``paths`` are, for the card
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    resume: bool = False
    quiet: bool = False
    command: str = ""


@dataclass
class Images:
    pixels: np.ndarray          # (n, c, s, s) uint8
    paths: list[Path]
    skipped: list[str]          # "path: reason" for every file left out


def find_images(folder: Path) -> list[Path]:
    """Every image file under ``folder`` (recursively, hidden folders left out), in a stable order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder")
    found = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).parts
        if any(part.startswith(".") for part in rel[:-1]) or not is_image_file(p):
            continue
        found.append(p)
    return found


def load_images(paths: list[Path], size: int, mode: str, max_images: int, max_file_mb: float,
                progress: bool = False) -> Images:
    """Decode and resize up to ``max_images`` readable images; every other file is named in ``skipped``."""
    chans = 1 if mode == "gray" else 3
    keep = min(len(paths), max_images)
    pixels = np.empty((keep, chans, size, size), dtype=np.uint8)
    kept: list[Path] = []
    skipped: list[str] = []
    limit = int(max_file_mb * 2**20)
    bar = Progress(total=len(paths), desc="loading images", disable=not progress)
    for p in paths:
        bar.update(1)
        if len(kept) == keep:
            skipped.append(f"{p}: beyond --max-images {max_images}")
            continue
        try:
            if not p.is_file() or p.is_symlink():
                raise ImageReadError(p, "not a regular file")
            if p.stat().st_size > limit:
                raise ImageReadError(p, f"file too large ({p.stat().st_size / 2**20:.1f} MiB > --max-file-mb {max_file_mb:g})")
            arr = resize_to_model_input(read_image(p, mode), size, chans)
        except (ImageReadError, OSError) as exc:
            skipped.append(str(exc))
            log.warning("skipped %s", exc)
            continue
        pixels[len(kept)] = np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)
        kept.append(p)
    bar.close()
    return Images(pixels[:len(kept)], kept, skipped)


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent: each of the 2b normalised projections must pick its partner among the other 2b - 1."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    b = z1.shape[0]
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(logits, target)


def projector(width: int, out_dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, out_dim))


def _fingerprint(paths: list[Path], folder: Path) -> str:
    names = "\n".join(str(p.relative_to(folder)) for p in paths)
    return hashlib.sha256(names.encode()).hexdigest()[:16]


def pretrain(opts: PretrainOptions, should_stop: Callable[[], bool] = lambda: False) -> Path:
    """Pretrain, write the backbone's model directory and return it (PretrainCancelled on a cancel)."""
    if opts.family not in FAMILIES:
        raise ValueError(f"--family {opts.family}: pretraining covers {', '.join(FAMILIES)} so far")
    if opts.epochs < 1 or opts.batch_size < 2:
        raise ValueError("--epochs must be >= 1 and --batch-size >= 2 (InfoNCE needs other images in a batch)")
    set_threads(opts.threads)
    device = pick_device(opts.device)
    overrides: dict[str, Any] = {"num_classes": PLACEHOLDER_CLASSES}
    if opts.img_size:
        overrides["img_size"] = opts.img_size
    if opts.input_norm:
        overrides["input_norm"] = opts.input_norm
    cfg = preset(opts.preset, opts.ablation, **overrides)
    folder = Path(opts.folder)
    listed = [p for p in opts.paths if is_image_file(p)] if opts.paths is not None else find_images(folder)
    images = load_images(listed, cfg.img_size, cfg.color_mode, opts.max_images, opts.max_file_mb,
                         progress=not opts.quiet)
    n = len(images.paths)
    if n < 2:
        raise ValueError(f"{folder}: {n} readable image(s); pretraining needs at least 2")
    batch = min(opts.batch_size, n)
    steps_per_epoch = max(1, n // batch)
    total_steps = steps_per_epoch * opts.epochs
    cfg_dict = dataclasses.asdict(cfg)
    fingerprint = _fingerprint(images.paths, folder)

    seed_everything(opts.seed)
    model = MemoryMamba(cfg).to(device)
    head = projector(cfg.stage_dims[-1], opts.projection_dim).to(device)
    params = _param_groups(model, opts.weight_decay) + [{"params": list(head.parameters()), "weight_decay": opts.weight_decay}]
    optimizer = torch.optim.AdamW(params, lr=opts.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total_steps))

    state_dir = Path(opts.out) / "training"
    state_dir.mkdir(parents=True, exist_ok=True)
    state_path = state_dir / STATE_FILE
    step, elapsed_before = 0, 0.0
    commands = [opts.command]
    losses: list[float] = []
    if opts.resume and state_path.exists():
        state = load_training_state(state_path)
        if json.loads(state["config"]) != json.loads(json.dumps(cfg_dict)):
            raise ValueError(f"{state_path}: saved for another model configuration; use a new --out or drop --resume")
        if int(state["total_steps"]) != total_steps or state["images"] != fingerprint:
            raise ValueError(f"{state_path}: saved for a run of {state['total_steps']} steps on other images; "
                             "keep --folder/--epochs/--batch-size/--max-images, or use a new --out")
        model.load_state_dict(state["model"])
        head.load_state_dict(state["projector"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = int(state["step"])
        elapsed_before = float(state["elapsed"])
        losses = json.loads(state["losses"])
        commands = json.loads(state["commands"]) + [opts.command]
        log.info("resumed from %s at step %d of %d", state_path, step, total_steps)

    t0 = time.monotonic()

    def save_state() -> None:
        save_training_state(state_path, {
            "model": model.state_dict(), "projector": head.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "step": step, "total_steps": total_steps,
            "config": json.dumps(cfg_dict), "images": fingerprint, "elapsed": elapsed_before + time.monotonic() - t0,
            "losses": json.dumps(losses), "commands": json.dumps(commands),
        })

    views = ViewConfig()
    progress = Progress(total=total_steps, desc="pretrain backbone", disable=opts.quiet, initial=step)
    model.train()
    head.train()
    while step < total_steps:
        if should_stop():
            save_state()
            progress.close()
            raise PretrainCancelled(f"cancelled at step {step} of {total_steps}; state kept in {state_path} "
                                    "(run again with --resume to continue)")
        epoch, within = divmod(step, steps_per_epoch)
        order = np.random.default_rng([opts.seed, epoch]).permutation(n)
        idx = order[within * batch:(within + 1) * batch]
        gen = torch.Generator().manual_seed(opts.seed * 1_000_003 + step)
        x = torch.from_numpy(images.pixels[idx]).float().div_(255.0)
        v1, v2 = random_view(x, views, gen).to(device), random_view(x, views, gen).to(device)
        z = head(model.features(torch.cat([v1, v2]))[0])
        loss = info_nce(z[:len(idx)], z[len(idx):], opts.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in params for p in g["params"]], 5.0)
        optimizer.step()
        scheduler.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"loss became {value} at step {step + 1}")
        losses.append(round(value, 5))
        step += 1
        progress.update(1, epoch=epoch + 1, loss=value, lr=scheduler.get_last_lr()[0])
        if step % opts.save_every == 0 or step % steps_per_epoch == 0:
            save_state()
    progress.close()
    save_state()

    seconds = elapsed_before + time.monotonic() - t0
    tail = losses[-steps_per_epoch:]
    card = {
        "model": MODEL_NAME,
        "family": opts.family,
        "kind": KIND,
        "task": "pretrained backbone without classes: start point for `train classifier --init DIR --init-head new`",
        "input_size": [cfg.img_size, cfg.img_size],
        "color_mode": cfg.color_mode,
        "normalisation": {"input_range": [0.0, 1.0], **_normalisation_card(cfg)},
        "preset": opts.preset,
        "ablation": opts.ablation,
        "data": {"root": str(folder), "source": opts.source or "every image file under the folder", "images": n, "skipped": images.skipped[:200], "skipped_count": len(images.skipped),
                 "labels": "none used"},
        "pretraining": {
            "objective": OBJECTIVE,
            "temperature": opts.temperature,
            "projection_dim": opts.projection_dim,
            "views": views.as_dict(),
            "epochs": opts.epochs,
            "steps": total_steps,
            "batch_size": batch,
            "optimizer": "AdamW",
            "lr": opts.lr,
            "weight_decay": opts.weight_decay,
            "schedule": "linear warm-up 5% then cosine decay",
            "loss_first_epoch": float(np.mean(losses[:steps_per_epoch])) if losses else None,
            "loss_last_epoch": float(np.mean(tail)) if tail else None,
            "chance_loss": math.log(2 * batch - 1),
            "seed": opts.seed,
            "device": str(device),
            "threads": opts.threads,
            "seconds": seconds,
            "host": platform.machine(),
        },
        "command": opts.command,
        "commands": commands,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "licence": "weights learnt from the images under 'data'; see those images' licence",
    }
    out = save_model(opts.out, MODEL_NAME, model, cfg, card)
    log.info("saved pretrained backbone to %s (%d images, %d steps)", out, n, total_steps)
    return out
