"""Which unlabelled images to label next: uncertain ones, spread over the embedding space.

Uncertainty alone picks twenty copies of the same confusing tile; diversity alone (farthest
points) spends labels on easy outliers. The batch here is a greedy *weighted k-center*: each
pick maximises (distance to the nearest labelled or already picked image) x (0.1 + uncertainty²)
x typicality (1 in a crowd, less far out), so a pick is far from what the model has seen, where
the model hesitates, and like many other images. Once the refitted regression gives the
uncertainty, up to a quarter of the batch first goes to classes with fewer than ``COVERAGE_MIN``
labels (``thin_class_picks``): without it about half the picks on magnetic tile were ``free`` and
fray got 4-9 labels of 240, below the retrain command's class minimum (benchmarks/results/lnclasses.md,
lnab.md). Out-of-domain
images (the prediction's ``out_of_domain`` flag, once the out-of-domain work provides it) come
first: no amount of labels elsewhere tells the model what they are.

Uncertainty is the margin between the two most probable classes of a logistic regression fitted
on the labelled images' embeddings (the "simple answer" of the retraining comparison, refitted
in milliseconds: it follows every new label, the registered classifier does not); with too few
labels for that, the active classifier's own class scores; with neither, none (pure k-center,
the cold start). Qt-free, torch-free: it runs on a helper thread of the GUI and in benchmarks.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

BATCH = 20               # proposals per batch: about one sitting of the inspector
UNCERTAINTY_FLOOR = 0.1  # a certain but far-away image still counts a little (new territory)
UNCERTAINTY_POWER = 2    # squared margin: hesitation weighs more than distance (tuned on magnetic tile)
MIN_FIT_PER_CLASS = 2    # labels per class (two classes) before the refitted regression's uncertainty is trusted
DENSITY_NEIGHBOURS = 10  # typicality: mean distance to this many nearest unlabelled images
DENSITY_POWER = 2.0      # typicality = (median k-NN distance / the image's own) ** this, capped at 1
COVERAGE_MIN = 10   # labels a class needs before it is off the quota (twice the retrain command's 5 per class)
COVERAGE_SHARE = 4  # a quarter of the batch at most goes to thin classes


@dataclass(frozen=True)
class Candidate:
    """One image as "label next" sees it (plain data: it crosses threads)."""

    image_id: int
    label: str | None = None                  # the reviewed class; None: not labelled yet
    class_scores: dict[str, float] = field(default_factory=dict)  # the active classifier's
    out_of_domain: bool = False
    rejected: bool = False                    # unusable: neither labelled nor proposed


@dataclass(frozen=True)
class Proposal:
    """The batch to label, best first, and why each image is in it."""

    image_ids: tuple[int, ...]
    reasons: dict[int, str] = field(default_factory=dict)
    uncertainty_from: str = "none"            # "labels" | "classifier" | "anomaly" (label_next_anomaly) | "none"


def margin_uncertainty(probs: np.ndarray) -> np.ndarray:
    """1 - (top probability - second): 1 where two classes tie, 0 where one class is certain."""
    if probs.ndim != 2 or probs.shape[1] < 2:
        return np.zeros(len(probs), dtype=np.float64)
    top2 = np.sort(probs, axis=1)[:, -2:]
    return np.asarray(np.clip(1.0 - (top2[:, 1] - top2[:, 0]), 0.0, 1.0), dtype=np.float64)


def standardise(x: np.ndarray) -> np.ndarray:
    """Columns to zero mean, unit spread (constant columns stay 0, a column with no value at all too): distances
    weigh every feature."""
    with warnings.catch_warnings():  # an all-NaN column (a feature no image has yet) is 0, said nowhere else
        warnings.simplefilter("ignore", RuntimeWarning)
        mu = np.nanmean(x, axis=0)
        sd = np.nanstd(x, axis=0)
    return np.asarray(np.nan_to_num((x - mu) / np.where(sd > 1e-9, sd, 1.0)), dtype=np.float64)


def fitted_probabilities(x: np.ndarray, labels: Sequence[str | None]) -> tuple[np.ndarray, list[str]] | None:
    """(n, classes) probabilities, for every row, of the retraining comparison's ``logreg`` simple
    answer fitted on the labelled rows; None while fewer than two classes have ``MIN_FIT_PER_CLASS``
    labels. Not class-balanced: on magnetic tile a balanced fit's margins sent the batches to the
    rare classes only and the curve fell below a random order's (benchmarks/results/label-next.md)."""
    from inference.training.simple_answers import SIMPLE_MODELS

    idx = [i for i, lab in enumerate(labels) if lab is not None]
    y = [str(labels[i]) for i in idx]
    if sum(1 for c in set(y) if y.count(c) >= MIN_FIT_PER_CLASS) < 2:
        return None
    model = SIMPLE_MODELS["logreg"](len(y))
    model.fit(x[idx], y)
    return model.predict_proba(x), [str(c) for c in model.classes_]


def thin_class_picks(probs: np.ndarray, classes: Sequence[str], labels: Sequence[str | None], pool: np.ndarray,
                     size: int) -> list[tuple[int, str, int]]:
    """While a labelled class has fewer than ``COVERAGE_MIN`` labels: up to a quarter of the batch
    (of ``size``), round-robin over those thin classes (thinnest first, ties by name), each turn the
    pool row the regression finds most probable for that class and not yet picked. Returns
    (row, class, its labels). Why: uncertainty and spread alone fed the boundary of the big classes
    and left a rare class under the retrain command's minimum, which then leaves it out; chosen by
    two rules fixed before their runs, the real command on fresh seeds deciding
    (benchmarks/results/lnclasses.md, lnab.md)."""
    counts = {c: sum(1 for lab in labels if lab == c) for c in classes}
    thin = sorted((n, c) for c, n in counts.items() if 0 < n < COVERAGE_MIN)
    if not thin or len(pool) == 0 or size < 1:
        return []
    quota = min(math.ceil(size / COVERAGE_SHARE), len(pool))
    order = {c: pool[np.argsort(-probs[pool, list(classes).index(c)], kind="stable")].tolist() for _, c in thin}
    picks: list[tuple[int, str, int]] = []
    taken: set[int] = set()
    while len(picks) < quota:
        before = len(picks)
        for n, c in thin:
            if len(picks) >= quota:
                break
            nxt = next((i for i in order[c] if i not in taken), None)
            if nxt is not None:
                picks.append((nxt, c, n))
                taken.add(nxt)
        if len(picks) == before:
            break
    return picks


def _scores_matrix(candidates: Sequence[Candidate]) -> np.ndarray | None:
    names = sorted({k for c in candidates for k in c.class_scores})
    if len(names) < 2:
        return None
    return np.asarray([[c.class_scores.get(k, 0.0) for k in names] for c in candidates], dtype=np.float64)


def typicality(xp: np.ndarray, k: int = DENSITY_NEIGHBOURS) -> np.ndarray:
    """1 for an image in a crowd, less for one far out: (median k-NN distance / its own)², capped at 1.

    Without it the k-center half goes for the far-out images first (on NEU: 184 of the 192
    "patches" tiles within the first 480 picks), which teaches the model little about the
    crowds it will meet; with it, a far-out image still comes, later."""
    if len(xp) < 3:
        return np.ones(len(xp))
    from sklearn.neighbors import NearestNeighbors

    kk = min(k, len(xp) - 1)
    dist, _ = NearestNeighbors(n_neighbors=kk + 1).fit(xp).kneighbors(xp)  # chunked: bounded memory
    knn = dist[:, 1:].mean(axis=1)
    return np.asarray(np.minimum((np.median(knn) / np.maximum(knn, 1e-9)) ** DENSITY_POWER, 1.0), dtype=np.float64)


def nearest_distances(points: np.ndarray, anchors: np.ndarray, block: int = 512) -> np.ndarray:
    """Each point's Euclidean distance to its nearest anchor (rows of both). scipy's ``cdist`` sums
    each pair in C, ``block`` anchors at a time: broadcasting a (points, anchors, dim) difference array
    took 3 GB and 10 s at 4,000 x 512 x 184 numbers (benchmarks/label_next_count.py)."""
    from scipy.spatial.distance import cdist

    nearest = np.full(len(points), np.inf)
    for start in range(0, len(anchors), block):
        nearest = np.minimum(nearest, cdist(points, anchors[start:start + block]).min(axis=1))
    return nearest


def weighted_k_center(x: np.ndarray, anchors: np.ndarray, pool: np.ndarray, weight: np.ndarray,
                      size: int) -> list[int]:
    """Greedy picks from ``pool`` (row indices of ``x``): each maximises distance to the nearest
    anchor or earlier pick, times its ``weight`` (aligned with ``pool``). No anchors: the first
    pick is the pool's most central, highest-weighted image (a typical one, not an outlier)."""
    pool = np.asarray(pool, dtype=np.int64)
    if size <= 0 or len(pool) == 0:
        return []
    xp = x[pool]
    if len(anchors):
        nearest = nearest_distances(xp, x[np.asarray(anchors, dtype=np.int64)])
    else:
        centre = xp.mean(axis=0)
        nearest = np.full(len(pool), np.inf)
        first = int(np.argmax(weight / (1.0 + np.linalg.norm(xp - centre, axis=1))))
        nearest = np.minimum(nearest, np.linalg.norm(xp - xp[first], axis=1))
        picks = [first]
        nearest[first] = -1.0
        return [int(pool[i]) for i in _greedy(xp, nearest, weight, size - 1, picks)]
    return [int(pool[i]) for i in _greedy(xp, nearest, weight, size, [])]


def _greedy(xp: np.ndarray, nearest: np.ndarray, weight: np.ndarray, size: int, picks: list[int]) -> list[int]:
    for _ in range(min(size, len(xp) - len(picks))):
        gain = np.where(nearest >= 0, nearest * weight, -np.inf)
        i = int(np.argmax(gain))
        if not np.isfinite(gain[i]):
            break
        picks.append(i)
        nearest = np.minimum(nearest, np.linalg.norm(xp - xp[i], axis=1))
        nearest[picks] = -1.0
    return picks


@dataclass(frozen=True)
class ScoredPool:
    """What a batch is chosen from (``scored_pool``): rows index the candidates."""

    x: np.ndarray                 # standardised embeddings (NaN rows: unreadable)
    labels: list[str | None]      # each candidate's usable label
    labelled: np.ndarray          # rows with a label
    pool: np.ndarray              # unlabelled, usable rows
    probs: np.ndarray | None      # class probabilities per row (from the labels, else the classifier)
    source: str                   # "labels" | "classifier" | "none"
    classes: list[str]            # ``probs``' columns when from the labels
    unc: np.ndarray               # margin uncertainty of the pool rows
    weight: np.ndarray            # their selection weight: uncertainty x typicality
    ood: np.ndarray               # which pool rows are out of domain


def scored_pool(candidates: Sequence[Candidate], embeddings: np.ndarray) -> ScoredPool | None:
    """The pool and its weights as ``propose`` uses them (None: nothing left to propose); one home for
    benchmarks that try another selection rule on the same pool (benchmarks/lnclasses.py)."""
    usable = np.isfinite(embeddings).all(axis=1)
    x = standardise(np.where(usable[:, None], embeddings, np.nan))
    labels = [c.label if ok and not c.rejected else None for c, ok in zip(candidates, usable)]
    labelled = np.asarray([i for i, lab in enumerate(labels) if lab is not None], dtype=np.int64)
    pool = np.asarray([i for i, c in enumerate(candidates) if c.label is None and not c.rejected and usable[i]],
                      dtype=np.int64)
    if len(pool) == 0:
        return None
    probs, source, classes = None, "none", []
    fitted = fitted_probabilities(x[usable], [lab for lab, ok in zip(labels, usable) if ok]) if len(labelled) else None
    if fitted is not None:
        probs = np.full((len(candidates), fitted[0].shape[1]), np.nan)
        probs[usable] = fitted[0]
        source, classes = "labels", fitted[1]
    else:
        probs = _scores_matrix(candidates)
        source = "classifier" if probs is not None else "none"
    unc = margin_uncertainty(probs[pool]) if probs is not None else np.ones(len(pool))
    weight = (UNCERTAINTY_FLOOR + unc ** UNCERTAINTY_POWER) * typicality(x[pool])
    ood = np.asarray([candidates[i].out_of_domain for i in pool], dtype=bool)
    return ScoredPool(x, labels, labelled, pool, probs, source, classes, unc, weight, ood)


def propose(candidates: Sequence[Candidate], embeddings: np.ndarray, size: int = BATCH) -> Proposal:
    """The next ``size`` images to label among the unlabelled, usable candidates whose embedding
    row (aligned with ``candidates``; NaN: unreadable) is finite. Out-of-domain ones first."""
    sp = scored_pool(candidates, embeddings)
    if sp is None:
        return Proposal(())
    x, labels, labelled, pool, probs, source = sp.x, sp.labels, sp.labelled, sp.pool, sp.probs, sp.source
    classes, unc, weight, ood = sp.classes, sp.unc, sp.weight, sp.ood
    picks: list[int] = []
    if ood.any():  # out of domain first, spread among themselves
        picks = weighted_k_center(x, labelled, pool[ood], weight[ood], size)
    thin: dict[int, str] = {}
    if source == "labels" and probs is not None:  # then a quarter at most for classes still thin
        for row, cls, n in thin_class_picks(probs, classes, labels, pool[~ood], size - len(picks)):
            picks.append(row)
            thin[row] = f"for thin class {cls} ({n} label{'s' if n != 1 else ''})"
    keep = ~ood & ~np.isin(pool, picks)
    rest = weighted_k_center(x, np.concatenate([labelled, np.asarray(picks, np.int64)]), pool[keep],
                             weight[keep], size - len(picks))
    ordered = picks + rest
    unc_of = dict(zip(pool.tolist(), unc.tolist()))
    reasons = {}
    for i in ordered:
        c = candidates[i]
        why = "out of domain" if c.out_of_domain else thin.get(i) or _spread_or_uncertain(
            None if source == "none" else 1 - unc_of[i])
        reasons[c.image_id] = why
    return Proposal(tuple(candidates[i].image_id for i in ordered), reasons, source)


SURE_MARGIN = 0.5   # a top class this far ahead of the next is no "uncertain" pick: it was chosen for being unlike


def _spread_or_uncertain(margin: float | None) -> str:
    """Why a pick that is neither out of domain nor for a thin class was proposed. Seen under Xvfb (session 41): on
    the demo the first pick read "uncertain (margin 1.00)", a steel strip the classifier was sure of, chosen by the
    batch's spread; a pick the model is sure of is said to be unlike the others, with its margin."""
    if margin is None:
        return "unlike the images labelled so far"
    if margin >= SURE_MARGIN:
        return f"unlike the images labelled or proposed so far (the model is sure of it: margin {margin:.2f})"
    return f"uncertain (margin {margin:.2f})"


def verdict_batch(reviewed: Sequence[bool], foreign: Sequence[bool], closeness: Sequence[float],
                  embeddings: np.ndarray, size: int) -> list[int]:
    """Rows (aligned with the arguments) of the next ``size`` unreviewed images to review where a model gives a
    verdict rather than a class (the anomaly model's, the segmenter's): out of its domain first (weight 2), then
    by ``closeness`` to its decision (floored at ``UNCERTAINTY_FLOOR``: a sure one still counts a little), times
    typicality, spread by weighted k-center from the reviewed images; walked out of domain first, then surest
    help first. Unreadable images (NaN rows) are left out."""
    x = np.asarray(embeddings, dtype=np.float64)
    n = len(reviewed)
    readable = np.zeros(n, dtype=bool)
    if x.ndim == 2 and len(x) == n:
        readable = np.asarray(np.isfinite(x).all(axis=1), dtype=bool)
    pool = np.array([i for i in range(n) if not reviewed[i] and readable[i]], dtype=np.int64)
    anchors = [i for i in range(n) if reviewed[i] and readable[i]]
    if not len(pool) or size <= 0:
        return []
    xs = np.zeros_like(x)
    xs[readable] = standardise(x[readable])
    weight = np.array([2.0 if foreign[i] else max(UNCERTAINTY_FLOOR, float(closeness[i])) for i in pool])
    crowd = typicality(xs[pool])
    crowd[~(crowd > 0)] = 1.0   # images alike (distance 0 to their neighbours) are in a crowd, not out of it
    weight = weight * crowd
    picks = weighted_k_center(xs, np.asarray(anchors, dtype=np.int64), pool, weight, size)
    at = {int(i): k for k, i in enumerate(pool)}
    # out of domain first, then the surest help (k-center chose which; this is the order they are walked in)
    return sorted(picks, key=lambda i: (not foreign[i], -weight[at[i]]))
