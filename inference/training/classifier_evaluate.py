"""Evaluating a saved classifier on a class-folder tree, matching classes by name."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.checkpoints import LoadedModel
from inference.classifier_predict import model_classes, model_tta, predict_images, predict_logits
from inference.imageio import ImageReadError, read_image
from inference.training.classifier_data import DataTreeError, Item, evaluation_items, preload
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
    if callable(getattr(loaded.model, "image_input", None)):
        if tta not in (None, "none"):  # it was said and recorded as "d4" while no view ran (a session-45 probe)
            raise ValueError(f"{loaded.name} computes its own input from the picture: it takes no test-time "
                             f"views (--tta {tta}); score it with --tta none")
        tta = "none"
        labels, pred, failures = _own_input_predictions(loaded, items, classes)
    else:
        labels, pred, failures = _pixel_predictions(loaded, items, classes, batch_size, tta, progress)
    report = classification_report(confusion_matrix(labels, pred, len(classes)), classes)
    report["data"] = source
    report["test_time_augmentation"] = model_tta(loaded) if tta is None else tta
    report["unreadable"] = failures
    return Evaluation(report, source, failures)


def _pixel_predictions(loaded: LoadedModel, items: list[Item], classes: list[str], batch_size: int,
                       tta: str | None, progress: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A network's predictions on the preloaded, resized images (in batches, with the card's views)."""
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
    return pre.labels, pred, pre.failures


def _own_input_predictions(loaded: LoadedModel, items: list[Item], classes: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A model computing its own input from the picture (texture_linear) sees each file as the engine
    hands it over (full decoded image, its own aspect), through the application's predict path."""
    labels, images, failures = [], [], []
    for it in items:
        try:
            images.append(read_image(it.path, "gray"))
        except ImageReadError as exc:
            failures.append(str(exc))
            continue
        labels.append(classes.index(it.label))
    pred = [p.index for p in predict_images(loaded, images)]
    return np.asarray(labels, np.int64), np.asarray(pred, np.int64), failures
