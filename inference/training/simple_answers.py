"""The simple answers a retrained classifier has to beat, and the group-aware folds that score them.

A retrained model earns its place only if it beats what anyone could fit on the same reviewed
labels in a second: the majority class, k nearest neighbours and logistic regression on tiny
gray thumbnails or on the backbone's embeddings (magnetic tile, 218 labels: a transferred
MemoryMamba scored 0.355 on independent tiles, a constant answer about 0.7 and logistic
regression on 12×12 thumbnails 0.762; benchmarks/RESULTS.md). Torch-free (numpy, OpenCV,
scikit-learn), so the same code scores thumbnails, embeddings and a model's predictions.

Cross-validation folds keep whole *groups* (capture sessions, lots) together (``groups``, the
rule's one home, shared with ``train classifier --cv-folds``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

import cv2
import numpy as np
from numpy.typing import ArrayLike

from inference.training.classifier_metrics import classification_report, confusion_matrix
from inference.training.groups import (  # noqa: F401  (re-exported: the rule's home is groups.py)
    EXPORT_SEPARATOR,
    FOLDS,
    GROUP_RULES,
    assign_groups,
    group_folds,
    image_group,
)

THUMBNAIL = 12  # side of the gray thumbnail (12×12 = 144 numbers per image)


def thumbnails(paths: Sequence[Path], size: int = THUMBNAIL) -> np.ndarray:
    """(n, size*size) float32 gray thumbnails in [0, 1] (area-resized); an unreadable file raises ValueError."""
    from inference.imageio import ImageReadError, read_image, to_uint8

    out = np.empty((len(paths), size * size), dtype=np.float32)
    for i, path in enumerate(paths):
        # The station's own reader (one preprocessing home): cv2.imread turned a JPEG by its EXIF orientation, which
        # the station and its models do not, and cut 16-bit images to 8 (a session-43 probe)
        try:
            img = read_image(path, "gray")
        except ImageReadError as exc:
            raise ValueError(f"{path}: not a readable image ({exc})") from None
        out[i] = cv2.resize(to_uint8(img), (size, size), interpolation=cv2.INTER_AREA).reshape(-1) / 255.0
    return out


def _standardised(estimator):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), estimator)


def _majority():
    from sklearn.dummy import DummyClassifier

    return DummyClassifier(strategy="most_frequent")


def _knn(n_train: int):
    from sklearn.neighbors import KNeighborsClassifier

    return _standardised(KNeighborsClassifier(n_neighbors=max(1, min(5, n_train))))


def _logreg():
    from sklearn.linear_model import LogisticRegression

    return _standardised(LogisticRegression(max_iter=2000))


class Estimator(Protocol):
    """The part of scikit-learn's estimator API the simple answers use (sklearn ships no types)."""

    classes_: np.ndarray  # set by fit: the class of each predict_proba column

    def fit(self, x: np.ndarray, y: ArrayLike) -> object: ...

    def predict(self, x: np.ndarray) -> np.ndarray: ...

    def predict_proba(self, x: np.ndarray) -> np.ndarray: ...


# name -> maker(n_train) of an unfitted scikit-learn estimator
SIMPLE_MODELS: dict[str, Callable[[int], Estimator]] = {
    "majority": lambda n: _majority(),
    "knn": _knn,
    "logreg": lambda n: _logreg(),
}


def fit_predict(make: Callable[[int], Estimator], x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """Fit a fresh estimator on the training rows and predict the test rows (class indices)."""
    if len(np.unique(y_train)) < 2:  # a fold with one class: that class is every answer
        return np.full(len(x_test), y_train[0] if len(y_train) else 0, dtype=np.int64)
    est = make(len(y_train))
    est.fit(x_train, y_train)
    return np.asarray(est.predict(x_test), dtype=np.int64)


@dataclass(frozen=True)
class Score:
    accuracy: float
    f1: float  # macro F1 over the classes present (classifier_metrics' convention)

    def as_dict(self) -> dict[str, float]:
        return {"accuracy": round(self.accuracy, 4), "f1": round(self.f1, 4)}

    def beats_or_ties(self, other: "Score") -> bool:
        return self.accuracy >= other.accuracy - 1e-9 and self.f1 >= other.f1 - 1e-9


def score(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> Score:
    report = classification_report(confusion_matrix(y_true, y_pred, len(classes)), list(classes))
    return Score(float(report["accuracy"]), float(report["f1"]))


def mean_score(runs: Sequence[Score]) -> Score:
    """Accuracy and macro F1 averaged over repeated cross-validation runs (fold sets)."""
    return Score(float(np.mean([r.accuracy for r in runs])), float(np.mean([r.f1 for r in runs])))


def out_of_fold_predictions(predict: Callable[[np.ndarray, np.ndarray], np.ndarray], n: int,
                            folds: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Each of the ``n`` items predicted by ``predict(train_idx, test_idx)`` from the fold it is held out in."""
    pred = np.empty(n, dtype=np.int64)
    for tr, te in folds:
        pred[te] = predict(tr, te)
    return pred


def cross_validated(predict: Callable[[np.ndarray, np.ndarray], np.ndarray], labels: np.ndarray,
                    folds: Sequence[tuple[np.ndarray, np.ndarray]], classes: Sequence[str]) -> Score:
    """Pooled out-of-fold predictions of ``predict(train_idx, test_idx)`` scored once."""
    return score(labels, out_of_fold_predictions(predict, len(labels), folds), classes)


def best_name(scores: dict[str, Score]) -> str:
    """The best by macro F1, then accuracy (a constant answer wins accuracy on skewed data, never F1)."""
    return max(scores, key=lambda k: (scores[k].f1, scores[k].accuracy))
