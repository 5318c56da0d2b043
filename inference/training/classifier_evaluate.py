"""Evaluating a saved classifier on a class-folder tree, matching classes by name."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.checkpoints import LoadedModel
from inference.classifier_predict import model_classes, model_tta, predict_logits
from inference.training.classifier_data import DataTreeError, evaluation_items, preload
from inference.training.classifier_metrics import classification_report, confusion_matrix
from inference.training.common import Progress


@dataclass
class Evaluation:
    report: dict[str, Any]
    source: str
    failures: list[str]


def evaluate_model(loaded: LoadedModel, data: Path, batch_size: int = 32, tta: str | None = None,
                   progress: bool = False) -> Evaluation:
    """Every image of ``data`` (or its test/ / val/ split) through the model; metrics over its classes.

    ``tta`` None uses the card's test-time augmentation, as the application does; ``progress``
    shows a bar with an ETA over the batches.
    """
    items, source = evaluation_items(Path(data))
    classes = list(model_classes(loaded))
    unknown = sorted({it.label for it in items} - set(classes))
    if unknown:
        raise DataTreeError(
            f"{source}: class folder(s) {', '.join(unknown)} unknown to the model (it knows: {', '.join(classes)})"
        )
    cfg = loaded.config
    pre = preload(items, classes, cfg.img_size, cfg.color_mode)
    bar = Progress(len(pre.labels), "evaluate classifier") if progress else None
    preds = []
    for s in range(0, len(pre.labels), batch_size):
        preds.append(predict_logits(loaded, pre.images[s : s + batch_size].astype(np.float32) / 255.0, tta).argmax(1))
        if bar is not None:
            bar.update(len(preds[-1]))
    if bar is not None:
        bar.close()
    pred = np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)
    report = classification_report(confusion_matrix(pre.labels, pred, len(classes)), classes)
    report["data"] = source
    report["test_time_augmentation"] = model_tta(loaded) if tta is None else tta
    report["unreadable"] = pre.failures
    return Evaluation(report, source, pre.failures)
