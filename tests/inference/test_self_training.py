"""Self-training of a feature head on the unreviewed pool (``classifier_head.self_trained_head``; not the
command's default: benchmarks/results/selftrain.md)."""
from __future__ import annotations

import numpy as np
import pytest

from inference.training.classifier_head import (
    LinearHead,
    fit_linear_head,
    pool_prior_head,
    pseudo_labels,
    self_trained_head,
    with_label_mix,
)


def blobs(rng: np.random.Generator, counts: list[int], spread: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    centres = 4.0 * np.eye(3)
    y = np.repeat(np.arange(len(counts)), counts)
    return rng.standard_normal((len(y), 3)) * spread + centres[y], y


def test_pseudo_labels_keep_the_most_confident_above_the_threshold_at_most_the_cap() -> None:
    head = LinearHead(np.eye(3) * 2.0, np.zeros(3), 1.0)
    pool = np.array([[5.0, 0, 0], [3.0, 0, 0], [1.0, 0.8, 0], [4.0, 0, 0], [0, 6.0, 0], [0, 0, 0.5], [0, 0, 7.0]])
    probs = head.proba(pool)
    np.testing.assert_allclose(probs.sum(1), 1.0)
    idx, cls = pseudo_labels(head, pool, np.array([2, 5, 0]), threshold=0.9)
    # class 0: rows 0, 3 and 1 are above 0.9, the cap keeps the two most confident; row 2 is below the threshold
    # class 1: row 4 only; class 2: cap 0 (no reviewed label), so row 6 is never taken
    assert idx.tolist() == [0, 3, 4] and cls.tolist() == [0, 0, 1]
    assert (probs[idx, cls] >= 0.9).all()
    assert pseudo_labels(head, pool, np.array([9, 9, 9]), threshold=0.999)[0].tolist() == [0, 3, 4, 6]
    none, none_cls = pseudo_labels(head, pool[:0], np.array([1, 1, 1]))
    assert len(none) == 0 and len(none_cls) == 0


def test_weighted_fit_balances_the_weighted_counts() -> None:
    rng = np.random.default_rng(0)
    x, y = blobs(rng, [12, 6, 9])
    plain = fit_linear_head(x, y, 3, 1.0)
    ones = fit_linear_head(x, y, 3, 1.0, weights=np.ones(len(y)))  # all weights 1: scikit-learn's "balanced"
    np.testing.assert_allclose(ones.coef, plain.coef, atol=1e-4)
    np.testing.assert_allclose(ones.intercept, plain.intercept, atol=1e-4)
    # the classes are balanced on the weighted counts and a weight scales a row's loss: every row at half weight
    # is the plain fit at half the C (the data count half against the same penalty) ...
    half = fit_linear_head(x, y, 3, 1.0, weights=np.full(len(y), 0.5))
    np.testing.assert_allclose(half.coef, fit_linear_head(x, y, 3, 0.5).coef, atol=1e-4)
    # ... while half weight on some rows of a class moves the fit, and the class still gets its share
    some = fit_linear_head(x, y, 3, 1.0, weights=np.where(np.arange(len(y)) % 2 == 0, 0.5, 1.0))
    assert not np.allclose(some.coef, plain.coef, atol=1e-3)
    assert (some.predict(x) == y).mean() > 0.9 and set(some.predict(x)) == {0, 1, 2}


def test_self_training_adds_capped_pseudo_labels_and_never_changes_the_reviewed_ones() -> None:
    rng = np.random.default_rng(1)
    x, y = blobs(rng, [5, 5, 5])
    pool, truth = blobs(rng, [60, 10, 0])  # mostly class 0, no class 2
    x0, y0, pool0 = x.copy(), y.copy(), pool.copy()
    head = fit_linear_head(x, y, 3, 1.0)
    same, info0 = self_trained_head(head, x, y, 1.0, pool, rounds=0)  # no round: the pool's class mix only
    np.testing.assert_array_equal(same.intercept, pool_prior_head(head, pool).intercept)
    assert info0["pseudo_labels"] == [] and len(info0["rows"]) == 0
    out, info = self_trained_head(head, x, y, 1.0, pool, rounds=1, threshold=0.9, weight=0.5)
    counts = info["pseudo_labels"][0]
    assert len(info["pseudo_labels"]) == 1 and all(n <= 5 for n in counts)  # at most the reviewed count per class
    assert counts[0] == 5 and sum(counts) == len(info["rows"]) == len(set(info["rows"].tolist()))
    assert (truth[info["rows"]] == info["classes"]).mean() > 0.9
    # the head the pseudo-labels came from was the registered one (with the pool's mix), and they clear the threshold
    assert (pool_prior_head(head, pool).proba(pool)[info["rows"], info["classes"]] >= 0.9).all()
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(pool, pool0)
    assert info["shares"].sum() == pytest.approx(1.0) and info["pool_images"] == 70
    assert not np.allclose(out.coef, head.coef)  # refitted
    two, info2 = self_trained_head(head, x, y, 1.0, pool, rounds=2)
    assert len(info2["pseudo_labels"]) == 2 and all(n <= 5 for r in info2["pseudo_labels"] for n in r)


def test_with_nothing_confident_enough_self_training_is_the_pool_prior_alone() -> None:
    """A pool far from every class gives no pseudo-label: a ``mix`` head (its fitted prior the reviewed labels'
    shares) comes out exactly as C's pool-prior head, not refitted."""
    rng = np.random.default_rng(2)
    x, y = blobs(rng, [8, 4, 4])
    head = with_label_mix(fit_linear_head(x, y, 3, 1.0), y)
    far = rng.standard_normal((20, 3)) * 0.01 + np.array([2.0, 2.0, 2.0])  # equidistant: nothing near 0.99
    out, info = self_trained_head(head, x, y, 1.0, far, mix=True, rounds=1, threshold=0.99)
    assert info["pseudo_labels"] == [[0, 0, 0]]
    np.testing.assert_allclose(out.intercept, pool_prior_head(head, far, y).intercept)
