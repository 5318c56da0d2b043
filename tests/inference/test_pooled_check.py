"""The retrain command's check on every label: nested out-of-fold predictions make the choice without the fold
they predict (inference/training/pooled_check.py)."""
from __future__ import annotations

import numpy as np

from inference.training.pooled_check import Procedure, nested_predictions, pooled_check
from inference.training.simple_answers import group_folds, score

CLASSES = ["a", "b"]


def _groups_and_labels(n_groups: int = 4, per_group: int = 6) -> tuple[np.ndarray, np.ndarray]:
    groups = np.repeat(np.arange(n_groups), per_group)
    labels = np.tile(np.array([0, 1]), n_groups * per_group // 2)
    return groups, labels


def _fold_sets(groups: np.ndarray, labels: np.ndarray):
    def make(rows: np.ndarray):
        folds = group_folds(labels[rows], [str(g) for g in groups[rows]], 5, 0)
        return [[(rows[a], rows[b]) for a, b in folds]]
    return make


def test_the_choice_for_a_fold_is_made_without_that_fold() -> None:
    """``first`` is right on groups 0 and 1 only, ``second`` on groups 2 and 3 only: on every row they tie and the
    first of equals would be chosen (right on half the rows). Nested, each group is predicted by what the other
    three chose, and there its own pair is the minority: every row is predicted wrong. A choice that saw the fold
    it predicts could not do that."""
    groups, labels = _groups_and_labels()

    def first(_tr: np.ndarray, te: np.ndarray) -> np.ndarray:
        return np.where(groups[te] < 2, labels[te], 1 - labels[te])

    def second(_tr: np.ndarray, te: np.ndarray) -> np.ndarray:
        return np.where(groups[te] >= 2, labels[te], 1 - labels[te])

    proc = Procedure({"first": first, "second": second}, _fold_sets(groups, labels))
    everything = np.arange(len(labels))
    assert proc.choose(everything, labels, CLASSES) == "first"
    outer = _fold_sets(groups, labels)(everything)[0]
    assert sorted(len(set(groups[te])) for _tr, te in outer) == [1, 1, 1, 1]  # one group per outer fold
    pred = nested_predictions(proc, labels, outer, CLASSES)
    assert pred is not None and (pred != labels).all()


def test_a_fold_that_leaves_one_group_to_choose_in_falls_back_with_a_note() -> None:
    groups, labels = _groups_and_labels(n_groups=2)
    proc = Procedure({"constant": lambda _tr, te: np.zeros(len(te), np.int64)}, _fold_sets(groups, labels))
    outer = _fold_sets(groups, labels)(np.arange(len(labels)))[0]
    assert nested_predictions(proc, labels, outer, CLASSES) is None
    check = pooled_check(proc, proc, labels, outer, CLASSES, np.array([0, 1]), np.array([0, 1]), np.array([0, 0]))
    assert not check.made and not check.wins() and "held-out part alone decides" in check.note
    assert "new" not in check.as_dict()


def test_pooled_figures_read_the_out_of_fold_rows_and_the_held_out_ones() -> None:
    """A perfect head against a constant simple answer: the pooled figures score all 24 + 4 labels."""
    groups, labels = _groups_and_labels()
    perfect = Procedure({"perfect": lambda _tr, te: labels[te]}, _fold_sets(groups, labels))
    constant = Procedure({"majority": lambda _tr, te: np.zeros(len(te), np.int64)}, _fold_sets(groups, labels))
    outer = _fold_sets(groups, labels)(np.arange(len(labels)))[0]
    held = np.array([0, 1, 1, 1])
    check = pooled_check(perfect, constant, labels, outer, CLASSES, held, np.array([0, 1, 1, 0]), np.zeros(4, np.int64))
    truth = np.concatenate([labels, held])
    assert check.images == 28 and check.wins()
    assert check.new == score(truth, np.concatenate([labels, [0, 1, 1, 0]]), CLASSES)
    assert check.simple == score(truth, np.zeros(28, np.int64), CLASSES)
    assert check.as_dict()["new"] == check.new.as_dict()
