"""The retrain command's check on every reviewed label: the whole procedure, choice included, out of fold.

Why: the command registers a retrained classifier only if it is at least as good as the best simple answer in
accuracy and macro F1. Read on the held-out fifth alone (24–48 labels at a few dozen per class), one image
decides either figure, and a truly better version was refused in about one run in six
(benchmarks/results/verdict.md). The other four fifths cannot simply be scored by the chosen head's group-CV
figure: that head was picked as the best of 32 by that very figure, so it is lifted by its own choice.

Nested cross-validation removes the lift: for each outer group fold the choice is made again on the other folds
alone (the same candidates, the same rule, over one group fold set inside them where the command's own choice
averages three: a fifth of the cost, benchmarks/results/verdict-pooled.md), the chosen candidate is fitted there
and predicts the outer fold. The simple answers are nested the same way. Those out-of-fold
predictions, pooled with the held-out part's, give each side one figure on every label.

No torch and no model here: candidates are callables ``predict(train_idx, test_idx) -> classes of test_idx`` over
one index space (rows of the reviewed training labels).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from inference.training.simple_answers import Score, best_name, mean_score, score

Predict = Callable[[np.ndarray, np.ndarray], np.ndarray]
Folds = list[tuple[np.ndarray, np.ndarray]]
FoldSets = Callable[[np.ndarray], list[Folds]]  # rows -> repeated group fold sets over those rows (their indices)


@dataclass(frozen=True)
class Procedure:
    """A choice among ``predictors`` by cross-validation: mean accuracy and macro F1 over the fold sets that
    ``fold_sets`` makes for the rows at hand, the best by macro F1, then accuracy, the first of equals."""
    predictors: Mapping[str, Predict]
    fold_sets: FoldSets

    def choose(self, rows: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> str:
        scores: dict[str, Score] = {}
        sets = self.fold_sets(rows)
        for name, predict in self.predictors.items():
            runs = []
            for folds in sets:
                idx = np.concatenate([te for _tr, te in folds])
                pred = np.concatenate([predict(tr, te) for tr, te in folds])
                runs.append(score(labels[idx], pred, classes))
            scores[name] = mean_score(runs)
        return best_name(scores)


def nested_predictions(procedure: Procedure, labels: np.ndarray, outer: Folds,
                       classes: Sequence[str]) -> np.ndarray | None:
    """Each row predicted by the candidate ``procedure`` chooses without its outer fold, fitted without it;
    None where an outer fold leaves too few groups to choose by cross-validation."""
    pred = np.full(len(labels), -1, dtype=np.int64)
    for tr, te in outer:
        try:
            name = procedure.choose(tr, labels, classes)
        except ValueError:   # fewer than two groups inside: no choice can be cross-validated there
            return None
        pred[te] = procedure.predictors[name](tr, te)
    return pred if (pred >= 0).all() else None


@dataclass(frozen=True)
class PooledCheck:
    """The chosen procedure and the simple answers' on every label; ``note`` says why it fell back, if it did."""
    new: Score | None
    simple: Score | None
    images: int
    seconds: float
    note: str = ""

    @property
    def made(self) -> bool:
        return self.new is not None and self.simple is not None

    def wins(self) -> bool:
        return self.new is not None and self.simple is not None and self.new.beats_or_ties(self.simple)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"images": self.images, "seconds": round(self.seconds, 2)}
        if self.new is not None and self.simple is not None:
            out |= {"new": self.new.as_dict(), "simple": self.simple.as_dict(), "wins": self.wins()}
        if self.note:
            out["note"] = self.note
        return out


def pooled_check(heads: Procedure, simple: Procedure, labels: np.ndarray, outer: Folds, classes: Sequence[str],
                 held_labels: np.ndarray, held_new: np.ndarray, held_simple: np.ndarray) -> PooledCheck:
    """Nested out-of-fold predictions of both procedures on the training rows, pooled with the held-out part's
    predictions (the chosen head's and the best simple answer's, fitted on every training row)."""
    t0 = time.monotonic()
    new_oof = nested_predictions(heads, labels, outer, classes)
    simple_oof = nested_predictions(simple, labels, outer, classes) if new_oof is not None else None
    if new_oof is None or simple_oof is None:
        return PooledCheck(None, None, 0, time.monotonic() - t0,
                           "an outer fold leaves fewer than two groups to choose in: the held-out part alone decides")
    truth = np.concatenate([labels, held_labels])
    return PooledCheck(score(truth, np.concatenate([new_oof, held_new]), classes),
                       score(truth, np.concatenate([simple_oof, held_simple]), classes),
                       len(truth), time.monotonic() - t0)
