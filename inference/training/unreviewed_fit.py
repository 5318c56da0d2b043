"""A retrained feature head that also learns the folder's dominant class from the folder's unreviewed images.

Why: from a few dozen labels per class the head sees a few dozen free tiles, while the folder shows the free surface
in every lighting the line has; free tiles under a lighting the labelled ones do not cover were called `break` or
`uneven` (benchmarks/results/pu.md). The command already reads a pool of unreviewed images and estimates their class
mix q_U (adjusted classify-and-count, ADR 0045). When most of them are one class d (q_U[d] >= 0.5), they stand for
that class after their other classes' share is taken out: the non-negative positive-unlabelled risk of Kiryo et al.
(2017), applied to d's loss only,

    R_d = (1 - u) E_labelled d[CE(z, d)] + u max(0, (E_U[CE(z, d)] - sum_{c != d} q_U[c] E_labelled c[CE(z, d)]) / q_U[d]),

every other class's loss as the class-balanced regression has it. ``u`` falls to 0 as far as "label next" chose the
labels: its unreviewed images are the ones it left, the easy ones, and they pulled d to its centre (pu.md).
"""
from __future__ import annotations

from collections.abc import Set as AbstractSet

import numpy as np

from inference.training.classifier_head import ABSENT_CLASS_BIAS, LinearHead, fit_linear_head

DOMINANT_SHARE = 0.5   # the pool's estimated share a class needs for its images to stand for it


def dominant_class(pool_shares: np.ndarray, labels: np.ndarray, allowed: AbstractSet[int] | None = None) -> int | None:
    """The class most of the unreviewed pool is estimated to be, if at least ``DOMINANT_SHARE`` of it and labelled,
    and one of ``allowed`` (the classes the project calls not a defect; None: any). From a weak head the estimate can
    name a defect class (pu.md: `break`, `uneven` at 10 labels per class), and the pool would then teach it."""
    d = int(np.argmax(pool_shares))
    if allowed is not None and d not in allowed:
        return None
    return d if float(pool_shares[d]) >= DOMINANT_SHARE and bool((labels == d).any()) else None


def fit_with_unreviewed(features: np.ndarray, labels: np.ndarray, num_classes: int, c: float, pool: np.ndarray,
                        pool_shares: np.ndarray, weight: float, allowed: AbstractSet[int] | None = None,
                        start: LinearHead | None = None) -> tuple[LinearHead, int | None]:
    """The class-balanced regression of ``fit_linear_head`` on standardised ``features`` (the unreviewed ``pool``
    standardised alike), with the dominant class's loss taking ``weight`` (u above) from the pool; the head and the
    dominant class (None, and the plain fit, where no class of ``allowed`` dominates, ``weight`` is 0 or the pool is
    empty). ``start``: that plain fit when the caller has made it already (the same rows, C and balance)."""
    from scipy.optimize import minimize

    labels = np.asarray(labels, np.int64)
    base = start if start is not None else fit_linear_head(features, labels, num_classes, c)
    d = dominant_class(pool_shares, labels, allowed)
    if d is None or weight <= 0.0 or len(pool) == 0:
        return base, None
    x, xu = np.asarray(features, np.float64), np.asarray(pool, np.float64)
    n, dim = x.shape
    k = num_classes
    present = np.bincount(labels, minlength=k) > 0
    onehot = np.eye(k)[labels]
    per_class = np.bincount(labels, minlength=k).astype(np.float64)
    row_w = 1.0 / (present.sum() * per_class[labels])        # scikit-learn's "balanced", summing to 1
    row_w[labels == d] *= 1.0 - weight
    share_d = float(pool_shares[d])
    # each labelled image's part in the estimate of the pool's other classes: q_U[c] / n_c for c != d
    other = np.where(labels != d, np.asarray(pool_shares, np.float64)[labels] / per_class[labels], 0.0)
    w_d = weight / present.sum()
    e_d = np.eye(k)[d]
    scale = 1.0 / (2.0 * c * n)

    def logits(m: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = m @ w.T + b
        z[:, ~present] = -np.inf
        lse = np.logaddexp.reduce(z, axis=1)
        return z, lse

    def risk(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[: k * dim].reshape(k, dim), params[k * dim:]
        z, lse = logits(x, w, b)
        p = np.exp(z - lse[:, None])
        value = float(row_w @ (lse - z[np.arange(n), labels]))
        gz = row_w[:, None] * (p - onehot)
        gw_u, gb_u = np.zeros((k, dim)), np.zeros(k)
        zu, lse_u = logits(xu, w, b)
        estimate = (float((lse_u - zu[:, d]).mean()) - float(other @ (lse - z[:, d]))) / share_d
        if estimate > 0.0:   # the non-negative correction: an estimate below zero counts as zero
            value += w_d * estimate
            gzu = w_d * (np.exp(zu - lse_u[:, None]) - e_d) / (len(xu) * share_d)
            gz = gz - (w_d / share_d) * other[:, None] * (p - e_d)
            gw_u, gb_u = gzu.T @ xu, gzu.sum(0)
        gw = gz.T @ x + gw_u + 2.0 * scale * w
        gb = gz.sum(0) + gb_u
        gw[~present], gb[~present] = 0.0, 0.0
        value += scale * float((w * w).sum())
        return value, np.concatenate([gw.ravel(), gb])

    # from the plain fit (its standardisation of already standardised features is the identity to 1e-6)
    x0 = np.concatenate([base.coef.ravel(), np.where(present, base.intercept, 0.0)])
    res = minimize(risk, x0, jac=True, method="L-BFGS-B", options={"maxiter": 3000})
    w, b = res.x[: k * dim].reshape(k, dim), res.x[k * dim:].copy()
    w[~present], b[~present] = 0.0, ABSENT_CLASS_BIAS
    return LinearHead(w, b, c), d
