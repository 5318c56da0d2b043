"""How many more labels the next retraining is likely to need: a learning curve, extrapolated.

The retrain command registers a version only if it beats the best simple answer under group
cross-validation (docs/retraining.md), and the issue's bar for a useful classifier is an
accuracy of about 0.85. Neither can be known before the labels exist, but the trend can: the
retrainer's own kind of head (class-balanced logistic regression, C 10, on the 418 ``defect_bank``
numbers it chooses on magnetic tiles and NEU) is scored by group-aware CV on nested subsets of the
labels given so far (40, 60, 80 and 100 %), and a power law
``acc(n) = a - b * n^-c`` (the usual shape of a learning curve, ``a`` its ceiling) is fitted to
those points and solved for the target. The answer is an estimate with stated inputs, not a
promise: few labels give a noisy curve, and a curve that levels off below the target says so
instead of inventing a number. The retrainer's own minimum (two classes with ``MIN_PER_CLASS``
reviewed images, any other ``KEEP_MIN_PER_CLASS``) is a floor on the answer.

Why the retrainer's head and not the cheaper regression on the "label next" embedding the counter
used before: against the retrain command's own accuracy on sessions it never saw, that one was
0.11 low on average (it estimated a weaker model than the inspector gets, and said "hundreds more"
where the next retraining already passed); this one is 0.06 off, with no bias to speak of
(benchmarks/results/counter.md, decided on a train-only split; weighting its recalls by the folder's
class mix was tried and lost).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.services.retraining import KEEP_MIN_PER_CLASS, MIN_PER_CLASS
from app.services.wording import plural

TARGET_ACCURACY = 0.85
FRACTIONS = (0.4, 0.6, 0.8, 1.0)
MIN_LABELS_FOR_CURVE = 20   # fewer: the CV points are noise, only the per-class minimum is counted
MAX_EXTRAPOLATION = 10      # an answer beyond 10x the labels so far is only "more than that"


@dataclass(frozen=True)
class LabelsNeeded:
    """The counter's figure and how it was obtained (plain data for the status line and docs)."""

    more: int | None              # labels still needed; None: unknown (see ``text``)
    labelled: int
    target: float
    accuracy_now: float | None    # group-CV accuracy of the simple answer on all labels so far
    ceiling: float | None         # the fitted curve's ceiling ``a``
    points: tuple[tuple[int, float], ...] = ()   # (training labels, CV accuracy) the fit used
    text: str = ""
    at_least: bool = False        # ``more`` is only the retrainer's minimum (no curve yet)
    pending: int = 0              # labelled images whose features are still being read (no count yet)
    none_left: bool = False       # the target needs labels the folder no longer holds (every image labelled)
    beyond_pool: bool = False     # the estimate is more than the unlabelled images left: ``more`` is that count

    @property
    def short(self) -> str:
        """For a status bar: "≈ 120 more labels", "≥ 10 more labels", "label target reached"…"""
        if self.pending:
            return f"counting… ({self.labelled - self.pending} of {self.labelled} labelled images read)"
        if self.none_left:
            now = f"accuracy about {self.accuracy_now:.2f}, " if self.accuracy_now is not None else ""
            return f"no image left to label here ({now}target {self.target:.2f})"
        if self.more == 0:
            return "label target reached"
        if self.more is None:
            if self.ceiling is not None and self.ceiling <= self.target:
                return f"accuracy levels off near {self.ceiling:.2f} (target {self.target:.2f})"
            return "more labels: no estimate yet"
        if self.beyond_pool:
            # seen under Xvfb (session 41): 40 imported labels of 160 tiles read "≥ 120 more labels" — every image
            # left, and more, said as if 120 would do
            return f"more labels than the {self.more} left here (target {self.target:.2f})"
        return f"{'≥' if self.at_least else '≈'} {self.more} more labels"


def minimum_shortfall(labels: Sequence[str]) -> int:
    """Labels missing before the retrainer accepts the classes seen so far: two classes with
    ``MIN_PER_CLASS`` each (the two largest so far, or new ones), every other class ``KEEP_MIN_PER_CLASS``."""
    sizes = sorted((labels.count(c) for c in set(labels)), reverse=True)
    sizes += [0] * max(0, 2 - len(sizes))
    return (sum(max(0, MIN_PER_CLASS - n) for n in sizes[:2])
            + sum(max(0, KEEP_MIN_PER_CLASS - n) for n in sizes[2:]))


def fit_power_law(n: np.ndarray, acc: np.ndarray) -> tuple[float, float, float] | None:
    """(a, b, c) of ``acc = a - b n^-c`` by least squares over a grid of ceilings ``a`` (a straight
    line in log-log for each); None when the points do not rise (no trend to extrapolate)."""
    if len(n) < 3 or acc[-1] <= acc[0] + 1e-6:
        return None
    best: tuple[float, float, float, float] | None = None
    for a in np.linspace(acc.max() + 0.005, 1.0, 60):
        gap = a - acc
        if (gap <= 0).any():
            continue
        slope, icept = np.polyfit(np.log(n), np.log(gap), 1)
        c, b = -slope, math.exp(icept)
        if c <= 0:
            continue
        err = float(((a - b * n ** -c - acc) ** 2).sum())
        if best is None or err < best[0]:
            best = (err, float(a), float(b), float(c))
    return None if best is None else best[1:]


COUNTER_FEATURES = "defect_bank"  # the embedding source the counter reads (app.services.image_embedding)
HEAD_C = 10.0  # the retrainer's regularisation chosen most often on magnetic tiles (counter.md)


def _head_predict(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, k: int, c: float = HEAD_C) -> np.ndarray:
    """The retrainer's head kind: class-balanced logistic regression on standardised features."""
    from inference.training.classifier_head import fit_linear_head

    return fit_linear_head(x_tr, y_tr, k, c).predict(x_te)


def _cv_points(x: np.ndarray, y: np.ndarray, groups: list[str], seed: int) -> list[tuple[int, float]]:
    from inference.training.simple_answers import group_folds, out_of_fold_predictions

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    classes = np.unique(y)
    codes = np.searchsorted(classes, y)
    points = []
    for frac in FRACTIONS:
        idx = np.sort(order[: max(2, int(round(frac * len(y))))])
        try:
            folds = group_folds(codes[idx], [groups[i] for i in idx], seed=seed)
        except ValueError:
            continue
        xs, ys = x[idx], codes[idx]

        def predict(tr: np.ndarray, te: np.ndarray, xs: np.ndarray = xs, ys: np.ndarray = ys) -> np.ndarray:
            return _head_predict(xs[tr], ys[tr], xs[te], len(classes))
        pred = out_of_fold_predictions(predict, len(ys), folds)
        trained = int(round(len(idx) * (1 - 1 / len(folds))))  # each fold trains on the others
        points.append((trained, float((ys == pred).mean())))
    return points


def labels_needed(x: np.ndarray, labels: Sequence[str], file_names: Sequence[str],
                  target: float = TARGET_ACCURACY, pool: int | None = None, seed: int = 0) -> LabelsNeeded:
    """The estimate for the labelled rows ``x`` (their ``COUNTER_FEATURES`` vectors) with ``labels`` and
    their file names (capture groups as the retrain command forms them); ``pool``: unlabelled images left."""
    from inference.training.simple_answers import assign_groups

    labels = [str(c) for c in labels]
    floor = minimum_shortfall(labels)
    n = len(labels)
    if n < MIN_LABELS_FOR_CURVE or len(set(labels)) < 2:
        least = max(floor, MIN_LABELS_FOR_CURVE - n, 1)
        return LabelsNeeded(least, n, target, None, None,
                            text=f"at least {least} more labels before a learning curve can be fitted "
                                 f"({n} so far, {plural(len(set(labels)), 'class', 'classes')}; the retrainer needs two classes with "
                                 f"{MIN_PER_CLASS} each and keeps a class from {KEEP_MIN_PER_CLASS})", at_least=True)
    # ``auto`` skips file-name groups that are the classes (NEU's "crazing_12.png"): every fold would miss one
    groups, rule = assign_groups(list(file_names), labels, "auto")
    points = _cv_points(np.asarray(x, dtype=np.float64), np.asarray(labels), groups, seed)
    if not points:
        return LabelsNeeded(floor or None, n, target, None, None,
                            text="the labels fall into too few capture groups for cross-validation",
                            at_least=bool(floor))
    now = points[-1][1]
    folds = "image by image: no capture groups found" if rule == "none" else f"groups by {rule}"
    source = (f"{'CV' if rule == 'none' else 'group-CV'} accuracy of the retrainer's head (balanced logistic "
              f"regression, C {HEAD_C:g}, on {COUNTER_FEATURES} features; {len(points)} subsets, {folds}): "
              + ", ".join(f"{acc:.2f} at {k}" for k, acc in points))
    if now >= target:
        return LabelsNeeded(floor, n, target, now, None, tuple(points), f"target {target:.2f} reached; {source}")
    fit = fit_power_law(np.asarray([p[0] for p in points], float), np.asarray([p[1] for p in points], float))
    if fit is None:
        return LabelsNeeded(None, n, target, now, None, tuple(points),
                            f"no rising trend yet, so no estimate; {source}")
    a, b, c = fit
    if a <= target:
        return LabelsNeeded(None, n, target, now, a, tuple(points),
                            f"the curve levels off at about {a:.2f}, below the target {target:.2f}: more labels of "
                            f"this kind are unlikely to get there; {source}")
    # in logs, bounded: a flat curve (c near 0) puts the answer beyond any float (OverflowError in the
    # counter, found by counter_study.py); anything past e^40 is "more than the cap" below anyway
    trained_needed = math.exp(min((math.log(b) - math.log(a - target)) / c, 40.0))
    fold_share = points[-1][0] / n  # CV trains on (k-1)/k of the labels: scale back to labels given
    more = max(floor, int(math.ceil(trained_needed / fold_share)) - n)
    text = f"≈ {more} more labels to reach accuracy {target:.2f} (curve ceiling {a:.2f}); {source}"
    # Beyond ten times the labels so far the curve's answer is only "a lot": the window always passes the folder's
    # unlabelled images as ``pool``, and taking that alone as the cap showed "≈ 1562 more labels" at 30 labels in a
    # folder of thousands (a session-50 audit). The smaller bound is said; the pool's words where it is the pool.
    bound = MAX_EXTRAPOLATION * n
    cap = bound if pool is None else min(pool, bound)
    beyond_pool = pool is not None and pool <= bound
    if more > 0 and cap == 0:
        # seen under Xvfb (session 38): 100 imported tiles, all labelled, accuracy 0.66: the line said "label target
        # reached", because "more than the 0 images left" came out as 0 more labels
        return LabelsNeeded(None, n, target, now, a, tuple(points),
                            f"about {more} more labels to reach accuracy {target:.2f}, and every image of this folder "
                            f"is labelled: add images of this kind to label (curve ceiling {a:.2f}); {source}",
                            none_left=True)
    if more > cap:  # far beyond the points: the number itself means nothing, only "a lot"
        text = (f"more than {cap} more labels to reach accuracy {target:.2f}"
                + (f" (more than the {pool} unlabelled images left)" if beyond_pool else "")
                + f"; curve ceiling {a:.2f}; {source}")
        return LabelsNeeded(cap, n, target, now, a, tuple(points), text, at_least=True, beyond_pool=beyond_pool)
    return LabelsNeeded(more, n, target, now, a, tuple(points), text)
