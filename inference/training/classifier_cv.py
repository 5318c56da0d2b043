"""Group cross-validation inside the classifier's training images: the choices a run makes, made honestly.

Why: every earlier classifier choice (epochs, test-time views) was read off the validation split
that was then reported, and figures picked that way flatter (issue 19). Here the training images
are split into folds that keep whole groups together (capture sessions, lots: the grouping rule
of ``simple_answers``, the one home it has), a network is trained on each fold's complement with
the run's own schedule, and its predictions on the left-out fold are kept at a few checkpoints
of that schedule and under every test-time view. The pooled out-of-fold predictions choose the
stopping epoch and the test-time augmentation; their score at that choice is the CV estimate the
card carries. A held-out split (``val/`` of a split tree) is never read here.

Each finished fold's out-of-fold logits are kept under ``<out>/training/cv/``, so an interrupted
run repeats at most one fold on ``--resume``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from inference.classifier_predict import TTA_MODES, tta_views
from inference.training.classifier_data import Preloaded
from inference.training.classifier_metrics import classification_report, confusion_matrix
from inference.training.common import signature_text
from inference.training.groups import assign_groups, group_folds, group_key

CV_DIR = "cv"
CV_REPORT = "report.json"


@dataclass(frozen=True)
class CvPlan:
    """The folds of one run: which rule made the groups, and (train, left-out) index pairs."""

    rule: str
    groups: list[str]
    folds: list[tuple[np.ndarray, np.ndarray]]

    def describe(self) -> dict[str, Any]:
        return {"rule": self.rule, "groups": len(set(self.groups)), "folds": len(self.folds),
                "fold_sizes": [int(len(te)) for _tr, te in self.folds]}


@dataclass(frozen=True)
class CvChoice:
    epochs: int
    tta: str
    report: dict[str, Any]              # pooled out-of-fold report at the chosen epoch and views
    table: list[dict[str, Any]]         # every (epoch, views) candidate's pooled accuracy and F1
    classes: tuple[str, ...] = ()       # the confusion matrix's row/column order

    def card(self, plan: CvPlan) -> dict[str, Any]:
        keep = ("accuracy", "precision", "recall", "f1", "count")
        return {**plan.describe(), "chosen_epochs": self.epochs, "chosen_test_time_augmentation": self.tta,
                "selected_by": "pooled out-of-fold macro F1, then accuracy; ties go to fewer epochs and fewer views",
                **{k: self.report[k] for k in keep}, "classes": list(self.classes),
                "confusion_matrix": self.report["confusion_matrix"],
                "candidates": self.table}


def plan_folds(paths: Sequence[Path], root: Path, labels: np.ndarray, classes: Sequence[str],
               folds: int, rule: str = "auto", seed: int = 0) -> CvPlan:
    """Group-aware, class-stratified folds over the training images (no group is split)."""
    names = [group_key(p, root) for p in paths]
    groups, used = assign_groups(names, [classes[i] for i in labels], rule, folds)
    return CvPlan(used, groups, group_folds(labels, groups, folds, seed))


def checkpoints(epochs: int, every: int = 0) -> list[int]:
    """The epochs at which fold networks are scored: every ``every`` (0: about six points) and the last."""
    step = every if every > 0 else max(1, round(epochs / 6))
    return sorted({e for e in range(step, epochs + 1, step)} | {epochs})


def _view_index() -> dict[str, list[int]]:
    """Which of the eight d4 views make up each test-time mode (found on a probe, not assumed)."""
    probe = torch.arange(16.0).view(1, 1, 4, 4)
    d4 = tta_views(probe, "d4")
    return {m: [next(i for i, v in enumerate(d4) if torch.equal(v, w)) for w in tta_views(probe, m)] for m in TTA_MODES}


VIEW_INDEX = _view_index()


def view_logits(model: torch.nn.Module, data: Preloaded, device: torch.device, batch_size: int = 64) -> np.ndarray:
    """(8, n, classes) logits of every image under each of the eight d4 views (eval mode)."""
    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(data.labels), batch_size):
            x = torch.from_numpy(data.images[s:s + batch_size]).to(device).float().div_(255.0)
            views = tta_views(x, "d4")
            out.append(model(torch.cat(views)).view(len(views), x.shape[0], -1).float().cpu().numpy())
    return np.concatenate(out, axis=1)


def mode_logits(views: np.ndarray, mode: str) -> np.ndarray:
    """Mean logits over the views of ``mode``, as ``tta_logits`` averages them."""
    return views[VIEW_INDEX[mode]].mean(0)


def subset(data: Preloaded, idx: np.ndarray) -> Preloaded:
    return Preloaded(data.images[idx], data.labels[idx], [data.paths[i] for i in idx])


FoldTrainer = Callable[[int, Preloaded, Callable[[int, torch.nn.Module], None]], None]


def run_folds(plan: CvPlan, data: Preloaded, points: Sequence[int], work: Path, signature: dict[str, Any],
              train_fold: FoldTrainer, device: torch.device) -> dict[int, np.ndarray]:
    """Out-of-fold view logits per checkpoint: {epoch: (8, n, classes)} over all training images.

    ``train_fold(k, fold_train, at_epoch)`` trains fold k's network and calls ``at_epoch(e, model)``
    after each epoch; the logits of the left-out images are taken at the checkpoint epochs.
    A fold whose logits are already in ``work`` for the same ``signature`` is not trained again.
    """
    work.mkdir(parents=True, exist_ok=True)
    n_classes = None
    pooled: dict[int, np.ndarray] = {}
    sig = signature_text(signature)
    for k, (tr, te) in enumerate(plan.folds):
        cache = work / f"fold{k}.npz"
        found: dict[int, np.ndarray] = {}
        if cache.is_file():
            with np.load(cache) as stored:
                if str(stored["signature"]) == sig and np.array_equal(stored["left_out"], te):
                    found = {e: stored[f"epoch{e}"] for e in points if f"epoch{e}" in stored.files}
        if len(found) < len(points):
            found = {}
            left_out = subset(data, te)

            def at_epoch(epoch: int, model: torch.nn.Module, left_out: Preloaded = left_out,
                         found: dict[int, np.ndarray] = found) -> None:
                if epoch in points:
                    found[epoch] = view_logits(model, left_out, device)

            train_fold(k, subset(data, tr), at_epoch)
            arrays: dict[str, np.ndarray] = {"signature": np.asarray(sig), "left_out": te,
                                             **{f"epoch{e}": v for e, v in found.items()}}
            np.savez(cache, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
        for e in points:
            if n_classes is None:
                n_classes = found[e].shape[-1]
            pooled.setdefault(e, np.zeros((8, len(data.labels), n_classes), dtype=np.float32))[:, te] = found[e]
    return pooled


def choose(pooled: dict[int, np.ndarray], labels: np.ndarray, classes: Sequence[str],
           modes: Sequence[str] = TTA_MODES) -> CvChoice:
    """The (epoch, views) with the best pooled out-of-fold macro F1, then accuracy; ties: fewer epochs, fewer views."""
    table: list[dict[str, Any]] = []
    best: tuple[tuple[float, float, int, int], int, str, dict[str, Any]] | None = None
    for e in sorted(pooled):
        for m in modes:
            pred = mode_logits(pooled[e], m).argmax(1)
            rep = classification_report(confusion_matrix(labels, pred, len(classes)), list(classes))
            table.append({"epochs": e, "test_time_augmentation": m, "accuracy": rep["accuracy"], "f1": rep["f1"]})
            key = (round(rep["f1"], 6), round(rep["accuracy"], 6), -e, -len(VIEW_INDEX[m]))
            if best is None or key > best[0]:
                best = (key, e, m, rep)
    if best is None:
        raise ValueError("cross-validation produced no checkpoint to choose from")
    return CvChoice(best[1], best[2], best[3], table, tuple(classes))
