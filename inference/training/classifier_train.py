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
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from inference.checkpoints import CheckpointError, load_model, save_model
from inference.classifier_predict import TTA_MODES, tta_logits
from inference.models.memory_mamba import MemoryMamba, MemoryMambaConfig, preset
from inference.training.classifier_cv import (
    CV_DIR,
    CV_REPORT,
    CvChoice,
    CvPlan,
    checkpoints,
    choose,
    plan_folds,
    run_folds,
)
from inference.training.classifier_data import (
    AUGMENTATIONS,
    AugmentConfig,
    Preloaded,
    augment_batch,
    balanced_sample_weights,
    fit_split,
    is_split_tree,
    preload,
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
SNAPSHOTS = "snapshots"  # the final network's weights at the CV checkpoint epochs
SNAPSHOT = "epoch{}.safetensors"
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
    # The protocol (docs/protocol.md): with cv_folds >= 2 the stopping epoch and (tta "auto") the
    # test-time views are chosen by group cross-validation inside the training images, and a held-out
    # split is only scored once at the end. 0 keeps the old fixed run (programmatic callers, retraining).
    cv_folds: int = 0
    group_by: str = "auto"  # groups.GROUP_RULES
    cv_every: int = 0  # fold networks are scored every this many epochs (0: about six points)
    augment: str = "basic"  # classifier_data.AUGMENTATIONS
    cv_only: bool = False  # stop after the CV report: compare recipes without training a final model
    quiet: bool = False
    command: str = ""


SUMMARY = ("accuracy", "precision", "recall", "f1", "count")


def _protocol_card(opts: TrainOptions, cv: tuple[CvPlan, CvChoice] | None, split: str, held_out: bool) -> dict[str, Any]:
    """How this run made its choices, so a reader knows which figure is an estimate and which a test."""
    if cv is None:
        return {"cross_validation": None,
                "choices": f"fixed by the command line: {opts.epochs} epochs, test-time views {opts.tta}",
                "held_out": f"{split}: scored after every epoch (figures may flatter)" if held_out else None}
    return {"cross_validation": cv[1].card(cv[0]),
            "choices": "stopping epoch" + (" and test-time views" if opts.tta == "auto" else "")
                       + " chosen by group cross-validation inside the training images",
            "held_out": f"{split}: the frozen test, scored once after every choice was fixed (metrics.val)" if held_out else None}


def _write_cv_report(out: Path, opts: TrainOptions, plan: CvPlan, choice: CvChoice) -> None:
    """The CV result on its own (``<out>/training/cv/report.json``), for comparing recipes before any final run."""
    path = _state_dir(out) / CV_DIR / CV_REPORT
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"command": opts.command, **choice.card(plan)}, indent=2), encoding="utf-8")


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


def _train_epoch(model: MemoryMamba, cfg: MemoryMambaConfig, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, train: Preloaded, batch: int, balanced: bool,
                 aug: AugmentConfig, seed: int, epoch: int, device: torch.device, progress: Progress) -> dict[str, Any]:
    """One pass of ``len(train) // batch`` augmented steps; randomness from (seed, epoch), so resuming repeats it."""
    steps_per_epoch = max(1, len(train.labels) // batch)  # drop the last partial batch (InfoNCE needs >1)
    seed_everything(seed * 100_003 + epoch)
    rng = np.random.default_rng([seed, epoch])
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = _epoch_order(train.labels, cfg.num_classes, balanced, rng)
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
    return record


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


def _network(cfg: MemoryMambaConfig, opts: TrainOptions, classes: list[str], seed: int,
             device: torch.device) -> tuple[MemoryMamba, dict[str, Any] | None]:
    """A fresh network seeded with ``seed`` (with ``--init``: started from that model's weights) and the init card."""
    seed_everything(seed)
    model = MemoryMamba(cfg).to(device)
    if opts.init is None:
        return model, None
    if opts.init_head not in ("keep", "new"):
        raise ValueError(f"--init-head must be keep or new, got {opts.init_head!r}")
    init_weights, init_card = _load_init(Path(opts.init), dataclasses.asdict(cfg), classes, new_head=opts.init_head == "new")
    missing, unexpected = model.load_state_dict(init_weights, strict=False)
    if unexpected or any(not k.startswith(HEAD_LAYER) for k in missing) or (missing and opts.init_head == "keep"):
        raise ValueError(f"--init {opts.init}: weights do not fit (missing {missing}, unexpected {unexpected})")
    log.info("initialised from %s (fresh optimizer and schedule)", opts.init)
    return model, init_card


def _optimisation(model: MemoryMamba, opts: TrainOptions, n_train: int) -> tuple[torch.optim.Optimizer, Any, int, int]:
    """AdamW, warm-up + linear decay over ``opts.epochs`` epochs, the batch and the schedule's step count."""
    optimizer = torch.optim.AdamW(_param_groups(model, opts.weight_decay), lr=opts.lr)
    batch = min(opts.batch_size, n_train)
    total_steps = max(1, n_train // batch) * opts.epochs
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_linear_decay(total_steps, opts.warmup_frac)), batch, total_steps


def _is_balanced(labels: np.ndarray, num_classes: int, mode: str) -> bool:
    counts = np.bincount(labels, minlength=num_classes)
    return mode == "on" or (mode == "auto" and counts.max() > IMBALANCE_RATIO * max(1, counts[counts > 0].min()))


def _cross_validate(opts: TrainOptions, cfg: MemoryMambaConfig, classes: list[str], train: Preloaded,
                    root: Path, device: torch.device) -> tuple[CvPlan, CvChoice]:
    """Group CV inside the training images: fold networks on the run's own schedule choose epochs and views."""
    plan = plan_folds(train.paths, root, train.labels, classes, opts.cv_folds, opts.group_by, opts.seed)
    points = checkpoints(opts.epochs, opts.cv_every)
    aug = AugmentConfig(crop=opts.crop, **AUGMENTATIONS[opts.augment])
    log.info("group CV: %d folds over %d groups (rule %s), checkpoints at epochs %s",
             len(plan.folds), len(set(plan.groups)), plan.rule, points)

    def train_fold(k: int, part: Preloaded, at_epoch: Callable[[int, torch.nn.Module], None]) -> None:
        model, _card = _network(cfg, opts, classes, opts.seed + 1000 * (k + 1), device)
        optimizer, scheduler, batch, total = _optimisation(model, opts, len(part.labels))
        balanced = _is_balanced(part.labels, len(classes), opts.balance)
        progress = Progress(total=total, desc=f"CV fold {k + 1}/{len(plan.folds)}", disable=opts.quiet)
        for epoch in range(opts.epochs):
            _train_epoch(model, cfg, optimizer, scheduler, part, batch, balanced, aug, opts.seed + 1000 * (k + 1), epoch, device, progress)
            at_epoch(epoch + 1, model)
        progress.close()

    signature = {"config": dataclasses.asdict(cfg), "epochs": opts.epochs, "batch": opts.batch_size, "lr": opts.lr,
                 "weight_decay": opts.weight_decay, "augment": opts.augment, "crop": opts.crop, "balance": opts.balance,
                 "seed": opts.seed, "init": str(opts.init), "init_head": opts.init_head}
    work = _state_dir(Path(opts.out)) / CV_DIR
    if not opts.resume:  # a fresh run trains its folds afresh; --resume reuses the folds already done
        for old in work.glob("fold*.npz"):
            old.unlink()
    pooled = run_folds(plan, train, points, work, json.loads(json.dumps(signature)), train_fold, device)
    modes = TTA_MODES if opts.tta == "auto" else (opts.tta,)
    return plan, choose(pooled, train.labels, classes, modes)


def train_classifier(opts: TrainOptions) -> Path:
    if opts.tta not in (*TTA_MODES, "auto"):
        raise ValueError(f"--tta must be one of {TTA_MODES} or auto, got {opts.tta!r}")
    if opts.augment not in AUGMENTATIONS:
        raise ValueError(f"--augment must be one of {tuple(AUGMENTATIONS)}, got {opts.augment!r}")
    if opts.cv_folds == 1 or opts.cv_folds < 0:
        raise ValueError("--cv-folds must be 0 (no cross-validation) or at least 2")
    set_threads(opts.threads)
    device = pick_device(opts.device)
    split = fit_split(opts.data, val_frac=opts.val_frac, seed=opts.seed, cv_folds=opts.cv_folds)
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
    balanced = _is_balanced(train.labels, len(classes), opts.balance)

    # With CV the final network (all training images) runs the whole schedule first and keeps its
    # weights at the checkpoint epochs; the fold networks then choose which of them becomes the model.
    # Same cost as training it afterwards for the chosen epochs, and a resumed run loses nothing.
    use_cv = opts.cv_folds >= 2
    points = checkpoints(opts.epochs, opts.cv_every) if use_cv else []
    stop_epoch = 0 if opts.cv_only else opts.epochs

    cfg_dict = dataclasses.asdict(cfg)
    model, init_card = _network(cfg, opts, classes, opts.seed, device)
    optimizer, scheduler, batch, total_steps = _optimisation(model, opts, len(train.labels))
    steps_per_epoch = total_steps // opts.epochs

    out = Path(opts.out)
    state_dir = _state_dir(out)
    state_dir.mkdir(parents=True, exist_ok=True)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    elapsed_before = 0.0
    commands = [opts.command]
    state_path = state_dir / STATE_FILE
    snapshot_dir = state_dir / SNAPSHOTS
    data_key = {"root": str(Path(opts.data).resolve()), "classes": list(classes)}  # what a resume must be on
    if opts.resume and state_path.exists():
        state = load_training_state(state_path)
        if json.loads(state["config"]) != json.loads(json.dumps(cfg_dict)):
            raise ValueError(f"{state_path}: saved for another model configuration; use a new --out or drop --resume")
        if int(state["total_steps"]) != total_steps:
            raise ValueError(f"{state_path}: saved for a run of {state['total_steps']} steps, this one has {total_steps}; keep --epochs/--batch-size")
        # the data and its classes too (a session-46 probe resumed 134 epochs of one folder on another without a word,
        # the card naming the last folder alone); a state saved before it recorded them is taken as before
        saved_data = state.get("data")
        was = json.loads(str(saved_data)) if saved_data is not None else None
        if was is not None and was != data_key:
            raise ValueError(f"{state_path}: saved for a run on {was.get('root')} (classes "
                             f"{', '.join(was.get('classes', []))}), not {Path(opts.data).resolve()} (classes "
                             f"{', '.join(classes)}); give that --data, or a new --out without --resume")
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
    else:  # a fresh run's log starts anew: a rerun into the same --out appended to the earlier run's (a session-49 audit)
        (state_dir / "history.jsonl").unlink(missing_ok=True)

    aug = AugmentConfig(crop=opts.crop, **AUGMENTATIONS[opts.augment])
    progress = Progress(total=stop_epoch * steps_per_epoch, desc="train classifier", disable=opts.quiet)
    progress.update(start_epoch * steps_per_epoch)
    t0 = time.monotonic()
    for epoch in range(start_epoch, stop_epoch):
        record = _train_epoch(model, cfg, optimizer, scheduler, train, batch, balanced, aug, opts.seed, epoch, device, progress)
        record["crop"] = opts.crop
        # Under the protocol the held-out split is the frozen test: scored once, after the run, never per epoch.
        if len(val.labels) and not use_cv and ((epoch + 1) % opts.eval_every == 0 or epoch + 1 == opts.epochs):
            rep = _report(model, val, classes, device)
            record.update(val_acc=rep["accuracy"], val_f1=rep["f1"])
        record["seconds"] = elapsed_before + time.monotonic() - t0
        history.append(record)
        with open(state_dir / "history.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        progress.bar.write(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
        if epoch + 1 in points:
            snapshot_dir.mkdir(parents=True, exist_ok=True)
            save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                      str(snapshot_dir / SNAPSHOT.format(epoch + 1)))
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
                "data": json.dumps(data_key),
            },
        )
    progress.close()

    cv: tuple[CvPlan, CvChoice] | None = None
    if use_cv:
        train_root = Path(opts.data) / "train" if is_split_tree(opts.data) else Path(opts.data)
        cv = _cross_validate(opts, cfg, classes, train, train_root, device)
        log.info("group CV chose %d of %d epochs and test-time views %r (CV accuracy %.4f, macro F1 %.4f)",
                 cv[1].epochs, opts.epochs, cv[1].tta, cv[1].report["accuracy"], cv[1].report["f1"])
        _write_cv_report(out, opts, *cv)
        if opts.cv_only:
            return state_dir / CV_DIR / CV_REPORT
        chosen = snapshot_dir / SNAPSHOT.format(cv[1].epochs)
        if not chosen.is_file():  # a resumed run whose first part kept other checkpoints (another --cv-every)
            raise ValueError(f"{chosen}: the final network's weights at the chosen epoch were not kept; "
                             "resume with the first run's --cv-every, or start afresh without --resume")
        model.load_state_dict(load_file(str(chosen)))
    tta = cv[1].tta if cv else ("d4" if opts.tta == "auto" else opts.tta)
    final = _report(model, val, classes, device, tta) if len(val.labels) else {}
    plain = _report(model, val, classes, device) if len(val.labels) and tta != "none" else final
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
            **({"val_copies_of_train": split.copies} if split.copies else {}),
        },
        "training": {
            "epochs": cv[1].epochs if cv else opts.epochs,
            "schedule_epochs": opts.epochs,  # the schedule's length; with CV the model is its chosen epoch's weights
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
        "test_time_augmentation": tta,
        "protocol": _protocol_card(opts, cv, split.description, bool(len(val.labels))),
        "metrics": {
            **({"cv": {k: cv[1].report[k] for k in SUMMARY}} if cv else {}),
            **({"val": {k: final[k] for k in SUMMARY}, "val_without_tta": {k: plain[k] for k in SUMMARY}} if final else {}),
        },
        "confusion_matrix_val": final.get("confusion_matrix"),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "licence": "weights trained on the data named under 'data'; see that data set's licence (research use)",
        "paper": "Wang, Hu, Zhou: MemoryMamba: Memory-Augmented State Space Model for Defect Recognition (2024)",
    }
    save_model(out, MODEL_NAME, model, cfg, card)
    log.info("saved model to %s (%s)", out, f"val accuracy {final['accuracy']:.4f}" if final.get("accuracy") is not None
             else "no val/ folder: not scored")  # it read "val accuracy nan" (a session-47 audit)
    return out
