"""Classification metrics against hand-computed cases and scikit-learn."""
from __future__ import annotations

import numpy as np
import pytest

from inference.training.classifier_metrics import classification_report, confusion_matrix, format_report


def test_hand_computed_three_class_case():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    cm = confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    r = classification_report(cm, ["a", "b", "c"])
    assert r["accuracy"] == pytest.approx(4 / 6)
    # precision: a 2/2, b 1/2, c 1/2; recall: a 2/3, b 1/2, c 1/1
    assert r["precision"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert r["recall"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    f1 = [2 * 1 * (2 / 3) / (1 + 2 / 3), 0.5, 2 * 0.5 * 1 / 1.5]
    assert r["f1"] == pytest.approx(sum(f1) / 3)
    assert r["per_class"]["a"]["support"] == 3
    text = format_report(r)
    assert "accuracy 0.6667 on 6 images" in text and "confusion matrix" in text


def test_absent_classes_do_not_count_in_macro_average_and_match_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 50)  # class 4 of 5 never occurs
    y_pred = np.where(rng.random(50) < 0.7, y_true, rng.integers(0, 4, 50))
    r = classification_report(confusion_matrix(y_true, y_pred, 5), list("abcde"))
    assert r["precision"] == pytest.approx(metrics.precision_score(y_true, y_pred, average="macro", zero_division=0))
    assert r["recall"] == pytest.approx(metrics.recall_score(y_true, y_pred, average="macro", zero_division=0))
    assert r["f1"] == pytest.approx(metrics.f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert r["per_class"]["e"]["support"] == 0


def test_empty_input():
    r = classification_report(confusion_matrix(np.array([], int), np.array([], int), 2), ["x", "y"])
    assert r["accuracy"] == 0.0 and r["count"] == 0
