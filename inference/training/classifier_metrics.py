"""Classification metrics as the paper reports them: accuracy, macro precision/recall/F1, confusion.

Macro averages run over the classes that occur in the ground truth or the predictions (the
convention of scikit-learn's ``average="macro"``), so evaluating on a subset of a model's
classes does not count absent classes as zeros.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows = true class, columns = predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)


def classification_report(cm: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    cm = np.asarray(cm, dtype=np.int64)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    present = (support > 0) | (predicted > 0)
    total = cm.sum()
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "precision": float(precision[present].mean()) if present.any() else 0.0,
        "recall": float(recall[present].mean()) if present.any() else 0.0,
        "f1": float(f1[present].mean()) if present.any() else 0.0,
        "count": int(total),
        "classes": list(classes),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(classes)
        },
        "confusion_matrix": cm.tolist(),
    }


def format_report(report: dict[str, Any]) -> str:
    """A plain-text table: per-class rows, macro summary, then the confusion matrix."""
    classes = report["classes"]
    width = max(12, *(len(c) for c in classes)) + 1
    lines = [f"{'class':<{width}} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}"]
    for name in classes:
        r = report["per_class"][name]
        lines.append(f"{name:<{width}} {r['precision']:>9.4f} {r['recall']:>9.4f} {r['f1']:>9.4f} {r['support']:>8d}")
    lines.append(f"{'macro':<{width}} {report['precision']:>9.4f} {report['recall']:>9.4f} {report['f1']:>9.4f} {report['count']:>8d}")
    lines.append(f"accuracy {report['accuracy']:.4f} on {report['count']} images")
    lines.append("")
    lines.append("confusion matrix (rows = true, columns = predicted):")
    short = [c[:8] for c in classes]
    lines.append(" " * width + " ".join(f"{s:>8}" for s in short))
    for name, row in zip(classes, report["confusion_matrix"]):
        lines.append(f"{name:<{width}}" + " ".join(f"{v:>8d}" for v in row))
    return "\n".join(lines)
