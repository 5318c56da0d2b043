"""Station pretraining: a family's network learnt from a folder's unlabelled images.

Classifier (``--family classifier``, docs/adr/0022): SimCLR-style InfoNCE. Two random views of each image
(``pretrain_views``: crop, flips, turns, gain, offset, gamma, blur, noise) go through the
MemoryMamba backbone (``MemoryMamba.features``, the pooled features every head reads) and a
small projection MLP; each view must pick its partner out of the batch's other 2(b-1) views.
The projection is thrown away afterwards, as in SimCLR: only the backbone is the product.

The result is an ordinary MemoryMamba model directory whose card says ``"kind":
"pretrained_backbone"`` and has no classes; its two-class head is an untrained placeholder (the
architecture needs one), so ``train classifier --init DIR --init-head new`` takes every weight
but the class layer, and ``--init-head keep`` is refused.

Segmenter (``--family segmenter``, docs/adr/0037): masked-patch prediction (``pretrain_masked``):
hidden squares of each crop are predicted by the whole MiM-ISTD network through a temporary
pixel layer that is thrown away. The result is a MiM-ISTD model directory of the same kind
without threshold or classes, for ``train segmenter --init DIR``.

Both share everything else here: image search and loading (hostile files skipped), the step
loop, resume state, cancel and the card.

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

from inference import families
from inference.checkpoints import save_model
from inference.classifier_predict import resize_to_model_input
from inference.imageio import ImageReadError, is_image_file, read_image
from inference.model_limits import PRETRAINED_KIND
from inference.models.memory_mamba import MemoryMamba, preset
from inference.models.mim_istd import NAME as SEGMENTER_NAME
from inference.models.mim_istd import MiMISTD
from inference.models.mim_istd import preset as segmenter_preset
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
from inference.training.pretrain_masked import MaskConfig, PixelPredictor, masked_prediction_loss
from inference.training.pretrain_views import ViewConfig, random_view

log = logging.getLogger(__name__)
STATE_FILE = "pretrain_state.pt"
KIND = PRETRAINED_KIND
OBJECTIVE = "contrastive views (SimCLR InfoNCE / NT-Xent) on the pooled backbone features through a projection MLP"
SEGMENTER_OBJECTIVE = ("masked-patch prediction (SimMIM-style L1 on the hidden pixels' standardised intensity) "
                       "through a temporary pixel layer on the decoder's last feature map")
SEGMENTER_IMG_SIZE = 256    # frames are preloaded at this side; crops of --crop are cut from them
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
    batch_size: int = 32            # the classifier's default; the catalogue's pretrain_batch has each family's
    lr: float = 1e-3
    weight_decay: float = 0.05
    temperature: float = 0.2
    projection_dim: int = 64
    crop: int = 128                 # segmenter: crop side the masked patches are cut into
    mask_ratio: float = 0.5         # segmenter: share of each crop's patches hidden
    mask_patch: int = 8             # segmenter: side of a hidden square in pixels
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
    """Every image file under ``folder`` (recursively, hidden folders and label folders left out: a session-46 probe
    pretrained a segmenter on 24 "frames" of a tree of 12 frames and their 12 masks), in a stable order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder")
    found = []
    beside: dict[Path, bool] = {}
    labels: dict[Path, bool] = {}  # per directory: its files all share the answer
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).parts
        if any(part.startswith(".") for part in rel[:-1]) or not is_image_file(p):
            continue
        if p.parent not in labels:
            labels[p.parent] = _label_folder(folder, rel, beside)
        if not labels[p.parent]:
            found.append(p)
    return found


def _masks_of_images(masks: Path) -> bool:
    """Whether a ``masks/`` folder holds the masks of images in a folder beside it (``images/``, ``frames/``, …): one
    of its first files' stems is an image's there (a session-47 audit pretrained on the masks of ``frames/``)."""
    stems = {p.stem for p in sorted(masks.iterdir())[:50] if p.is_file()}
    for sibling in masks.parent.iterdir():
        if sibling != masks and sibling.is_dir() and not sibling.name.startswith("."):
            if any(p.stem in stems for p in sibling.iterdir() if p.is_file() and is_image_file(p)):
                return True
    return False


def _label_folder(folder: Path, rel: tuple[str, ...], beside: dict[Path, bool]) -> bool:
    """Whether the file lies in a label folder: ``masks/`` beside an ``images/`` folder or beside a folder of the images
    its files are the masks of, ``ground_truth/`` beside an MVTec ``train/`` or ``test/`` (a folder of real frames named
    ``masks`` elsewhere is read: the review). ``beside``: what was found of each ``masks/`` folder so far."""
    for depth, part in enumerate(rel[:-1]):
        parent = folder.joinpath(*rel[:depth])
        if part == "masks":
            masks = parent / part
            if masks not in beside:
                beside[masks] = (parent / "images").is_dir() or _masks_of_images(masks)
            if beside[masks]:
                return True
        if part == "ground_truth" and ((parent / "train").is_dir() or (parent / "test").is_dir()):
            return True
    return False


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


class _Objective:
    """One family's pretraining: the network that is the product, the temporary layer thrown away, the loss."""

    name: str
    family: str
    cfg: Any
    img_size: int
    color_mode: str
    model: nn.Module
    head: nn.Module
    objective: str
    task: str

    def state_config(self) -> dict[str, Any]:
        """What a resumed run must share with the saved one (architecture and objective settings)."""
        return json.loads(json.dumps(dataclasses.asdict(self.cfg)))

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        raise NotImplementedError

    def loss(self, x: torch.Tensor, gen: torch.Generator, device: torch.device) -> torch.Tensor:
        """``x``: the step's images, (b, c, s, s) float in [0, 1] on the CPU."""
        raise NotImplementedError

    def card(self) -> dict[str, Any]:
        raise NotImplementedError


class _Contrastive(_Objective):
    """The classifier's MemoryMamba: InfoNCE between two random views through a projection MLP (ADR 0022)."""

    name, family, objective = MODEL_NAME, "classifier", OBJECTIVE
    model: MemoryMamba
    task = "pretrained backbone without classes: start point for `train classifier --init DIR --init-head new`"

    def __init__(self, opts: PretrainOptions) -> None:
        if opts.batch_size < 2:
            raise ValueError("--batch-size must be >= 2 (InfoNCE needs other images in a batch)")
        overrides: dict[str, Any] = {"num_classes": PLACEHOLDER_CLASSES}
        if opts.img_size:
            overrides["img_size"] = opts.img_size
        if opts.input_norm:
            overrides["input_norm"] = opts.input_norm
        self.opts = opts
        self.cfg = preset(opts.preset, opts.ablation, **overrides)
        self.img_size, self.color_mode = self.cfg.img_size, self.cfg.color_mode
        self.views = ViewConfig()

    def build(self, device: torch.device) -> None:
        self.model = MemoryMamba(self.cfg).to(device)
        self.head = projector(self.cfg.stage_dims[-1], self.opts.projection_dim).to(device)

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        return _param_groups(self.model, weight_decay) + [{"params": list(self.head.parameters()), "weight_decay": weight_decay}]

    def loss(self, x: torch.Tensor, gen: torch.Generator, device: torch.device) -> torch.Tensor:
        v1, v2 = random_view(x, self.views, gen).to(device), random_view(x, self.views, gen).to(device)
        z = self.head(self.model.features(torch.cat([v1, v2]))[0])
        return info_nce(z[:len(x)], z[len(x):], self.opts.temperature)

    def card(self) -> dict[str, Any]:
        return {"input_size": [self.cfg.img_size, self.cfg.img_size], "color_mode": self.cfg.color_mode,
                "normalisation": {"input_range": [0.0, 1.0], **_normalisation_card(self.cfg)},
                "ablation": self.opts.ablation,
                "pretraining": {"temperature": self.opts.temperature, "projection_dim": self.opts.projection_dim,
                                "views": self.views.as_dict()}}

    def chance_loss(self, batch: int) -> float | None:
        return math.log(2 * batch - 1)


class _MaskedPatches(_Objective):
    """The segmenter's MiM-ISTD: masked-patch prediction through a temporary pixel layer (ADR 0037)."""

    name, family, objective = SEGMENTER_NAME, "segmenter", SEGMENTER_OBJECTIVE
    model: MiMISTD
    head: PixelPredictor
    task = "pretrained segmenter without threshold or classes: start point for `train segmenter --init DIR`"

    def __init__(self, opts: PretrainOptions) -> None:
        if opts.input_norm or opts.ablation != "full":
            raise ValueError("--input-norm and ablations are the classifier's; the segmenter standardises each frame")
        self.opts = opts
        self.cfg = segmenter_preset(opts.preset)
        self.img_size = opts.img_size or SEGMENTER_IMG_SIZE
        self.color_mode = "gray" if self.cfg.in_chans == 1 else "rgb"
        self.mask = MaskConfig(ratio=opts.mask_ratio, patch=opts.mask_patch, crop=opts.crop)
        if self.mask.crop % self.cfg.stride or self.mask.crop > self.img_size:
            raise ValueError(f"--crop {self.mask.crop} must be a multiple of the network's stride {self.cfg.stride} "
                             f"and at most --img-size {self.img_size}")

    def build(self, device: torch.device) -> None:
        self.model = MiMISTD(self.cfg).to(device)
        self.head = PixelPredictor(self.model.feature_dim, self.cfg.in_chans, self.cfg.word_px).to(device)

    def state_config(self) -> dict[str, Any]:
        return {**super().state_config(), "img_size": self.img_size, "mask": dataclasses.asdict(self.mask)}

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        # the segmenter's own 1x1 head is not used by this objective: left out, it keeps its initial "background" bias
        own = [p for n, p in self.model.named_parameters() if not n.startswith("head.")]
        decay = [p for p in own if p.ndim > 1] + [p for p in self.head.parameters() if p.ndim > 1]
        rest = [p for p in own if p.ndim <= 1] + [p for p in self.head.parameters() if p.ndim <= 1]
        return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]

    def loss(self, x: torch.Tensor, gen: torch.Generator, device: torch.device) -> torch.Tensor:
        return masked_prediction_loss(self.model, self.head, x, self.mask, gen, device)

    def card(self) -> dict[str, Any]:
        return {"input": {"channels": self.cfg.in_chans, "any_size": True, "pad_to_multiple_of": self.cfg.stride,
                          "normalisation": "per-frame standardisation (zero mean, unit variance over the whole frame)"},
                "pretraining": {"frame_size": [self.img_size, self.img_size], "mask": self.mask.as_dict(),
                                "thrown_away": "the pixel-prediction layer on the decoder's last feature map; the "
                                               "segmenter's 1x1 head is untrained (its initial background bias)"}}

    def chance_loss(self, batch: int) -> float | None:
        return math.sqrt(2.0 / math.pi)  # L1 of predicting 0 (the frame mean) for unit-variance Gaussian pixels


def _objective(opts: PretrainOptions) -> _Contrastive | _MaskedPatches:
    if opts.family not in families.pretrainable():
        raise ValueError(f"--family {opts.family}: pretraining covers {', '.join(families.pretrainable())} so far")
    return _Contrastive(opts) if opts.family == "classifier" else _MaskedPatches(opts)


def pretrain(opts: PretrainOptions, should_stop: Callable[[], bool] = lambda: False) -> Path:
    """Pretrain, write the family's model directory and return it (PretrainCancelled on a cancel)."""
    obj = _objective(opts)
    if opts.epochs < 1 or opts.batch_size < 1:
        raise ValueError("--epochs and --batch-size must be >= 1")
    set_threads(opts.threads)
    device = pick_device(opts.device)
    folder = Path(opts.folder)
    listed = [p for p in opts.paths if is_image_file(p)] if opts.paths is not None else find_images(folder)
    images = load_images(listed, obj.img_size, obj.color_mode, opts.max_images, opts.max_file_mb,
                         progress=not opts.quiet)
    n = len(images.paths)
    if n < 2:
        raise ValueError(f"{folder}: {n} readable image(s); pretraining needs at least 2")
    batch = min(opts.batch_size, n)
    steps_per_epoch = max(1, n // batch)
    total_steps = steps_per_epoch * opts.epochs
    cfg_dict = obj.state_config()
    fingerprint = _fingerprint(images.paths, folder)

    seed_everything(opts.seed)
    obj.build(device)
    model, head = obj.model, obj.head
    params = obj.param_groups(opts.weight_decay)
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
        if json.loads(state["config"]) != cfg_dict:
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
        loss = obj.loss(x, gen, device)
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
    extra = obj.card()
    card = {
        "model": obj.name,
        "family": obj.family,
        "kind": KIND,
        "task": obj.task,
        **{k: v for k, v in extra.items() if k != "pretraining"},
        "preset": opts.preset,
        "data": {"root": str(folder), "source": opts.source or "every image file under the folder", "images": n, "skipped": images.skipped[:200], "skipped_count": len(images.skipped),
                 "labels": "none used"},
        "pretraining": {
            "objective": obj.objective,
            **extra.get("pretraining", {}),
            "epochs": opts.epochs,
            "steps": total_steps,
            "batch_size": batch,
            "optimizer": "AdamW",
            "lr": opts.lr,
            "weight_decay": opts.weight_decay,
            "schedule": "linear warm-up 5% then cosine decay",
            "loss_first_epoch": float(np.mean(losses[:steps_per_epoch])) if losses else None,
            "loss_last_epoch": float(np.mean(tail)) if tail else None,
            "chance_loss": obj.chance_loss(batch),
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
    out = save_model(opts.out, obj.name, model, obj.cfg, card)
    log.info("saved pretrained %s to %s (%d images, %d steps)", obj.family, out, n, total_steps)
    return out
