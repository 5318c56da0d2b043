"""Training loop for the MemoryMamba classifier: preload, augment, AdamW, warm-up + linear decay.

Each epoch ends with a validation pass and a resume file (``<out>/training/state.pt``), so a
killed run continues with ``--resume`` losing at most one epoch. Per-epoch randomness is
derived from (seed, epoch), which makes a resumed run draw the same batches as an uninterrupted
one. The final model directory holds the last epoch's weights (not a validation-picked one:
the validation figure in the card is then an honest estimate).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inference.checkpoints import CheckpointError, load_model, save_model
from inference.classifier_predict import TTA_MODES, tta_logits
from inference.models.memory_mamba import MemoryMamba, MemoryMambaConfig, preset
from inference.training.classifier_data import (
    AugmentConfig,
    Preloaded,
    augment_batch,
    balanced_sample_weights,
    preload,
    training_split,
)
from inference.training.classifier_losses import memory_mamba_loss
from inference.training.classifier_metrics import classification_report, confusion_matrix
from inference.training.common import (
    Progress,
    load_training_state,
    pick_device,
    save_training_state,
    seed_everything,
    set_threads,
    warmup_linear_decay,
)

log = logging.getLogger(__name__)
MODEL_NAME = "memory_mamba"
STATE_FILE = "state.pt"
IMBALANCE_RATIO = 3.0  # above this max/min class count, "auto" balancing switches on


@dataclass(frozen=True)
class TrainOptions:
    data: Path
    out: Path
    preset: str = "cpu"
    ablation: str = "full"
    epochs: int = 60
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_frac: float = 0.05
    img_size: int | None = None
    input_norm: str | None = None  # None: the preset's ("fixed"); "per_image" for low-contrast surfaces
    val_frac: float = 0.2
    balance: str = "auto"  # auto | on | off
    crop: str = "shift"  # augmentation crop mode (classifier_data.CROP_MODES)
    resume: bool = False
    init: Path | None = None  # model directory whose weights start this run (fine-tuning)
    # "keep": the init model must have this data's classes. "new": transfer learning to other
    # classes — every weight but the final class layer comes from the init model, which is redrawn.
    init_head: str = "keep"
    # Test-time augmentation the saved card asks for. "d4" by default: training augments with every
    # flip and 90° turn, so all eight views are in-distribution, and averaging them is fixed here,
    # before any run, not picked on validation figures.
    tta: str = "d4"
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    eval_every: int = 1
    quiet: bool = False
    command: str = ""


def _state_dir(out: Path) -> Path:
    return out / "training"


def evaluate_arrays(
    model: MemoryMamba, data: Preloaded, device: torch.device, batch_size: int = 64, tta: str = "none"
) -> np.ndarray:
    """Predicted class per preloaded image (eval mode; ``tta`` as the application will apply it)."""
    model.eval()
    preds = []
    with torch.no_grad():
        for s in range(0, len(data.labels), batch_size):
            x = torch.from_numpy(data.images[s : s + batch_size]).to(device).float().div_(255.0)
            preds.append(tta_logits(model, x, tta).argmax(1).cpu().numpy())
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)


def _report(model: MemoryMamba, data: Preloaded, classes: list[str], device: torch.device, tta: str = "none") -> dict[str, Any]:
    pred = evaluate_arrays(model, data, device, tta=tta)
    return classification_report(confusion_matrix(data.labels, pred, len(classes)), classes)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, norms, memory banks and scan parameters (A, D, dt bias)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.ndim < 2 or name.endswith(("memory", "A_logs", "Ds", "dt_projs_bias")):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


HEAD_LAYER = "head.3."  # the last linear layer of the head: the only weights shaped by the class count


def _load_init(init: Path, cfg_dict: dict[str, Any], classes: list[str],
               new_head: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and card of the model a fine-tuning run starts from, refused unless it is the same network.

    Same architecture means the same config (preset, ablation, image size, class count) and the same
    class names in the same order: otherwise the loaded head would silently mean other classes.
    With ``new_head`` the class count and names may differ: the final class layer is left out of
    the returned weights (the caller keeps its fresh one), everything else must match.
    """
    try:
        loaded = load_model(init)
    except CheckpointError as exc:
        raise ValueError(f"--init: {exc}") from None
    if loaded.name != MODEL_NAME:
        raise ValueError(f"--init {init}: a {loaded.name} model, not {MODEL_NAME}")
    if loaded.card.get("kind") == "pretrained_backbone" and not new_head:
        raise ValueError(f"--init {init}: a pretrained backbone without classes; use --init-head new")
    theirs = json.loads(json.dumps(dataclasses.asdict(loaded.config)))
    ours = json.loads(json.dumps(cfg_dict))
    diff = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k)
                  and not (new_head and k == "num_classes"))
    if diff == ["num_classes"]:
        raise ValueError(f"--init {init}: trained on classes {loaded.card.get('classes')}, this data has {classes} "
                         "(--init-head new starts a new class layer on its other weights)")
    if diff:
        shown = ", ".join(f"{k}: model {theirs.get(k)!r} vs this run {ours.get(k)!r}" for k in diff[:6])
        preset_hint = f" (it was trained with --preset {loaded.card['preset']})" if "preset" in loaded.card else ""
        raise ValueError(f"--init {init}: another architecture than this run's preset/ablation{preset_hint}; differs in {shown}")
    their_classes = loaded.card.get("classes")
    if new_head:
        return {k: v for k, v in loaded.model.state_dict().items() if not k.startswith(HEAD_LAYER)}, loaded.card
    if their_classes is not None and list(their_classes) != list(classes):
        raise ValueError(f"--init {init}: trained on classes {their_classes}, this data has {classes} "
                         "(--init-head new starts a new class layer on its other weights)")
    return loaded.model.state_dict(), loaded.card


def _normalisation_card(cfg: MemoryMambaConfig) -> dict[str, Any]:
    if cfg.input_norm == "per_image":
        return {"mode": "per_image", "applied": "inside the model: (x - mean(x)) / max(std(x), 0.01), per image"}
    return {"mode": "fixed", "mean": cfg.mean, "std": cfg.std, "applied": "inside the model: (x - mean) / std"}


def _epoch_order(labels: np.ndarray, num_classes: int, balanced: bool, rng: np.random.Generator) -> np.ndarray:
    n = len(labels)
    if balanced:
        return rng.choice(n, size=n, replace=True, p=balanced_sample_weights(labels, num_classes))
    return rng.permutation(n)


def _initialisation(init: Path | None, card: dict[str, Any] | None, init_head: str = "keep") -> str:
    if init is None or card is None:
        return "from scratch (no pretrained weights)"
    if init_head == "new":
        return (f"transferred from the model in {init}: all its weights but the final class layer, which starts "
                "afresh for this data's classes (fresh optimizer and schedule); its training is under init_model")
    return f"fine-tuned from the model in {init} (fresh optimizer and schedule); its training is under init_model"


def _init_record(init: Path | None, card: dict[str, Any]) -> dict[str, Any]:
    """The earlier phase of a fine-tuned model: where it came from, how it was made, how good it was."""
    earlier = card.get("training", {})
    return {
        "path": str(init),
        "commands": card.get("commands") or ([card["command"]] if card.get("command") else []),
        "epochs": earlier.get("epochs"),
        "lr": earlier.get("lr"),
        "seconds": earlier.get("seconds"),
        "initialisation": earlier.get("initialisation"),
        "metrics": card.get("metrics", {}),
        **({"init_model": card["init_model"]} if "init_model" in card else {}),
        # a pretrained backbone (``main.py pretrain``) records its objective and data here instead of training
        **({"kind": card["kind"], "pretraining": card.get("pretraining"), "data": card.get("data")} if card.get("kind") else {}),
    }


def train_classifier(opts: TrainOptions) -> Path:
    if opts.tta not in TTA_MODES:
        raise ValueError(f"--tta must be one of {TTA_MODES}, got {opts.tta!r}")
    set_threads(opts.threads)
    device = pick_device(opts.device)
    split = training_split(opts.data, val_frac=opts.val_frac, seed=opts.seed)
    classes = split.classes
    overrides: dict[str, Any] = {"num_classes": len(classes)}
    if opts.img_size:
        overrides["img_size"] = opts.img_size
    if opts.input_norm:
        overrides["input_norm"] = opts.input_norm
    cfg: MemoryMambaConfig = preset(opts.preset, opts.ablation, **overrides)
    log.info("data: %s (%d train, %d val, classes %s)", split.description, len(split.train), len(split.val), classes)

    train = preload(split.train, classes, cfg.img_size, cfg.color_mode, progress=not opts.quiet)
    val = preload(split.val, classes, cfg.img_size, cfg.color_mode, progress=not opts.quiet)
    if len(train.labels) < 2:
        raise ValueError(f"{opts.data}: fewer than 2 readable training images")
    counts = np.bincount(train.labels, minlength=len(classes))
    balanced = opts.balance == "on" or (
        opts.balance == "auto" and counts.max() > IMBALANCE_RATIO * max(1, counts[counts > 0].min())
    )

    cfg_dict = dataclasses.asdict(cfg)
    init_card: dict[str, Any] | None = None
    seed_everything(opts.seed)
    model = MemoryMamba(cfg).to(device)
    if opts.init is not None:
        if opts.init_head not in ("keep", "new"):
            raise ValueError(f"--init-head must be keep or new, got {opts.init_head!r}")
        init_weights, init_card = _load_init(Path(opts.init), cfg_dict, classes, new_head=opts.init_head == "new")
        missing, unexpected = model.load_state_dict(init_weights, strict=False)
        if unexpected or any(not k.startswith(HEAD_LAYER) for k in missing) or (missing and opts.init_head == "keep"):
            raise ValueError(f"--init {opts.init}: weights do not fit (missing {missing}, unexpected {unexpected})")
        log.info("initialised from %s (fresh optimizer and schedule)", opts.init)
    optimizer = torch.optim.AdamW(_param_groups(model, opts.weight_decay), lr=opts.lr)
    batch = min(opts.batch_size, len(train.labels))
    steps_per_epoch = max(1, len(train.labels) // batch)  # drop the last partial batch (InfoNCE needs >1)
    total_steps = steps_per_epoch * opts.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_linear_decay(total_steps, opts.warmup_frac))

    out = Path(opts.out)
    state_dir = _state_dir(out)
    state_dir.mkdir(parents=True, exist_ok=True)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    elapsed_before = 0.0
    commands = [opts.command]
    state_path = state_dir / STATE_FILE
    if opts.resume and state_path.exists():
        state = load_training_state(state_path)
        if json.loads(state["config"]) != json.loads(json.dumps(cfg_dict)):
            raise ValueError(f"{state_path}: saved for another model configuration; use a new --out or drop --resume")
        if int(state["total_steps"]) != total_steps:
            raise ValueError(f"{state_path}: saved for a run of {state['total_steps']} steps, this one has {total_steps}; keep --epochs/--batch-size")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch = int(state["epoch"]) + 1
        history = json.loads(state["history"])
        for record in history:
            record.setdefault("crop", state.get("crop", "scale"))
        elapsed_before = float(state.get("elapsed", 0.0))
        commands = json.loads(state.get("commands", "[]")) + [opts.command]
        log.info("resumed from %s at epoch %d", state_path, start_epoch + 1)

    aug = AugmentConfig(crop=opts.crop)
    progress = Progress(total=total_steps, desc="train classifier", disable=opts.quiet)
    progress.update(start_epoch * steps_per_epoch)
    t0 = time.monotonic()
    for epoch in range(start_epoch, opts.epochs):
        seed_everything(opts.seed * 100_003 + epoch)
        rng = np.random.default_rng([opts.seed, epoch])
        gen = torch.Generator().manual_seed(opts.seed * 100_003 + epoch)
        order = _epoch_order(train.labels, len(classes), balanced, rng)
        model.train()
        sums = {"total": 0.0, "cls": 0.0, "coarse": 0.0, "fine": 0.0}
        correct = 0
        seen = 0
        for step in range(steps_per_epoch):
            idx = order[step * batch : (step + 1) * batch]
            x = torch.from_numpy(train.images[idx]).float().div_(255.0)
            x = augment_batch(x, aug, gen).to(device)
            y = torch.from_numpy(train.labels[idx]).to(device)
            out_ = model.forward_with_aux(x)
            parts = memory_mamba_loss(out_, y, cfg)
            optimizer.zero_grad(set_to_none=True)
            parts.total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            scheduler.step()
            f = parts.as_floats()
            if not math.isfinite(f["total"]):
                raise FloatingPointError(f"loss became {f['total']} at epoch {epoch + 1}, step {step + 1}")
            for k in sums:
                sums[k] += f[k]
            correct += int((out_.logits.argmax(1) == y).sum())
            seen += len(idx)
            progress.update(1, epoch=epoch + 1, loss=f["total"], lr=scheduler.get_last_lr()[0])
        record: dict[str, Any] = {"epoch": epoch + 1, **{f"loss_{k}": v / steps_per_epoch for k, v in sums.items()}}
        record["train_acc"] = correct / max(1, seen)
        record["crop"] = opts.crop
        if len(val.labels) and ((epoch + 1) % opts.eval_every == 0 or epoch + 1 == opts.epochs):
            rep = _report(model, val, classes, device)
            record.update(val_acc=rep["accuracy"], val_f1=rep["f1"])
        record["seconds"] = elapsed_before + time.monotonic() - t0
        history.append(record)
        with open(state_dir / "history.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        progress.bar.write(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
        save_training_state(
            state_path,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "total_steps": total_steps,
                "config": json.dumps(cfg_dict),
                "history": json.dumps(history),
                "elapsed": record["seconds"],
                "crop": opts.crop,
                "commands": json.dumps(commands),
            },
        )
    progress.close()

    final = _report(model, val, classes, device, opts.tta) if len(val.labels) else {}
    plain = _report(model, val, classes, device) if len(val.labels) and opts.tta != "none" else final
    card = {
        "model": MODEL_NAME,
        "family": "classifier",
        "task": "surface-defect image classification",
        "classes": classes,
        "input_size": [cfg.img_size, cfg.img_size],
        "color_mode": cfg.color_mode,
        "normalisation": {
            "input_range": [0.0, 1.0],
            **_normalisation_card(cfg),
            "resize": "whole image to input_size x input_size (area when shrinking, bilinear when enlarging)",
            "channels": "RGB to gray with BT.601 luma" if cfg.in_chans == 1 else "gray replicated to RGB",
        },
        "preset": opts.preset,
        "ablation": opts.ablation,
        "data": {
            "root": str(opts.data),
            "split": split.description,
            "train_images": int(len(train.labels)),
            "val_images": int(len(val.labels)),
            "train_counts": {c: int(n) for c, n in zip(classes, counts)},
            "unreadable": train.failures + val.failures,
            "balanced_sampling": bool(balanced),
        },
        "training": {
            "epochs": opts.epochs,
            "batch_size": batch,
            "optimizer": "AdamW",
            "lr": opts.lr,
            "weight_decay": opts.weight_decay,
            "schedule": f"linear warm-up {opts.warmup_frac:.0%} then linear decay",
            "augmentation": dataclasses.asdict(aug),
            "crop_per_epoch": [r.get("crop", opts.crop) for r in history],
            "seed": opts.seed,
            "device": str(device),
            "threads": opts.threads,
            "seconds": history[-1]["seconds"] if history else 0.0,
            "initialisation": _initialisation(opts.init, init_card, opts.init_head),
            "host": platform.machine(),
        },
        "command": opts.command,
        "commands": commands,  # every invocation of a resumed run, in order
        **({"init_model": _init_record(opts.init, init_card)} if init_card is not None else {}),
        "test_time_augmentation": opts.tta,
        "metrics": {
            "val": {k: final[k] for k in ("accuracy", "precision", "recall", "f1", "count")},
            "val_without_tta": {k: plain[k] for k in ("accuracy", "precision", "recall", "f1", "count")},
        } if final else {},
        "confusion_matrix_val": final.get("confusion_matrix"),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "licence": "weights trained on the data named under 'data'; see that data set's licence (research use)",
        "paper": "Wang, Hu, Zhou: MemoryMamba: Memory-Augmented State Space Model for Defect Recognition (2024)",
    }
    save_model(out, MODEL_NAME, model, cfg, card)
    log.info("saved model to %s (val accuracy %.4f)", out, final.get("accuracy", float("nan")))
    return out
