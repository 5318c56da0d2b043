"""Would the few-label head do better if the features that move with the capture session weighed less? Stage 1 of
the rule in benchmarks/results/stable.md (session 41, issue 20 item 1): a diagnostic on runs the retrain command
already made on ``lnclasses.split``'s train-only splits.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/stable_diagnostic.py RUN.json ...   # --all-labels for the CV rows
    PYTHONPATH=. python benchmarks/stable_diagnostic.py --eta     # eta^2 of each feature over every training tile

``none``: the command's kind of head on ``defect_bank`` as it is; ``stable`` / ``stable2``: the same head with each
standardised feature scaled by sqrt(1 - eta^2) / (1 - eta^2), eta^2 its between-session share of variance over every
tile of the sessions the fit's labels come from (labels unused). Nothing here reads ``val``.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.prior_diagnostic import (  # noqa: E402
    Tiles,
    Variant,
    all_labels_cv,
    linear_variant,
    print_variant_table,
    runs_or_all_labels,
    tiles,
    variants_on_runs,
)

MIN_SESSION = 10


def session_share(x: np.ndarray, sessions: np.ndarray) -> np.ndarray:
    """Each column's between-session share of variance (eta^2) over the rows; sessions under MIN_SESSION rows left
    out; zeros with fewer than two sessions."""
    names, counts = np.unique(sessions, return_counts=True)
    keep = np.isin(sessions, names[counts >= MIN_SESSION])
    x, sessions = x[keep], sessions[keep]
    if len(np.unique(sessions)) < 2:
        return np.zeros(x.shape[1])
    z = (x - x.mean(0)) / (x.std(0) + 1e-6)
    between = sum((sessions == s).sum() * z[sessions == s].mean(0) ** 2 for s in np.unique(sessions))
    return np.clip(between / len(z), 0.0, 1.0)


def weighted_head(x: np.ndarray, y: np.ndarray, k: int, c: float, w: np.ndarray) -> Any:
    """fit_linear_head with each standardised column scaled by ``w`` (a per-feature L2 strength), folded back."""
    from sklearn.linear_model import LogisticRegression

    from inference.training.classifier_head import ABSENT_CLASS_BIAS, LinearHead

    mu, sd = x.mean(0), x.std(0) + 1e-6
    coef = np.zeros((k, x.shape[1]))
    intercept = np.full(k, ABSENT_CLASS_BIAS)
    present = np.unique(y)
    if len(present) == 1:
        intercept[present[0]] = 0.0
        return LinearHead(coef, intercept, c)
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=3000).fit((x - mu) / sd * w, y)
    cw, b = lr.coef_, lr.intercept_
    if len(present) == 2:
        cw, b = np.vstack([-cw[0] / 2, cw[0] / 2]), np.array([-b[0] / 2, b[0] / 2])
    for row, cls in enumerate(lr.classes_):
        coef[cls] = cw[row] * w / sd
        intercept[cls] = b[row] - coef[cls] @ mu
    return LinearHead(coef, intercept, c)


def stable_variant(x: np.ndarray, t: Tiles, power: float) -> Variant:
    """The head with w = (1 - eta^2) ** power, eta^2 over every tile of the sessions the fit's labels come from."""
    def fit_for(c: float) -> Callable[[np.ndarray], Any]:
        def fit(idx: np.ndarray) -> Any:
            pool = np.isin(t.sess, np.unique(t.sess[idx]))
            w = (1.0 - session_share(x[pool], t.sess[pool])) ** power
            return weighted_head(x[idx], t.y[idx], len(t.classes), c, w)
        return fit
    return x, fit_for


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--eta" in argv and all(a.startswith("-") for a in argv):
        argv.append("-")   # no run is read
    known, args = runs_or_all_labels(argv, __doc__, lambda p: p.add_argument(
        "--eta", action="store_true", help="instead: percentiles of each feature's eta^2 over every training tile"))
    warnings.filterwarnings("ignore")
    t = tiles(args.data, args.cache)
    if known.eta:   # the look stable.md's rule cites (labels unused)
        q = (0, 25, 50, 75, 90, 99, 100)
        eta = np.percentile(session_share(t.x, t.sess), q)
        print("eta^2 percentiles " + ", ".join(f"{p}: {v:.3f}" for p, v in zip(q, eta)))
        return 0
    compared = {"none": linear_variant(t.x, t), "stable": stable_variant(t.x, t, 0.5),
                "stable2": stable_variant(t.x, t, 1.0)}
    if known.all_labels:
        return all_labels_cv(t, compared)
    print_variant_table(variants_on_runs(t, args.runs, compared), list(compared))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
