"""What a model was trained on, as statistics of its training images, and how far an image lies
from it (plain numpy in, numpy out; no torch, no Qt, no SQLAlchemy).

Why: every family runs on any image it is handed, and a model trained from scratch on steel
textures answers "scratches 100 %" for an infrared sky frame. The station needs to say "this
image is nothing like what the model learnt from" instead of showing a confident answer.

The description has one or two parts, each a probabilistic-PCA Gaussian of one kind of feature
of the training images (their mean, the top ``k`` principal directions with their variances and
one shared variance for the remaining directions):

- ``embedding``: the backbone's pooled embedding (ADR 0021);
- ``descriptor``: a compact description of the decoded image itself (``inference.image_descriptor``:
  the file's size and channels, grey levels, detail per scale and direction, evenness; ADR 0028),
  which a camera or scene change moves even where a backbone trained on one narrow data set does
  not, read as a Gaussian or as
- ``descriptor_range``: per-feature box: how far the most extreme feature lies beyond the range
  the training images span (one feature far out is enough; a Gaussian of 30 features dilutes it);
- ``symmetry``: a Gaussian of how the frame is arranged (its correlation with itself turned and
  mirrored, ``inference.image_descriptor.symmetry``; ADR 0067): a scene has a direction, a part seen
  from above on a fixture looks the same turned by a quarter.

A Gaussian part's distance is the Mahalanobis distance per dimension. With several parts, each
distance is divided by its median over the training images (out of fold) and the largest counts,
so any part alone can call an image foreign.

The threshold is chosen on training images only: the statistics are fitted ``folds`` times
without one fold (whole capture groups or scenes when the images have them, and mixed folds;
the larger; mixed only where a fold of whole groups would leave fewer than ``MIN_IMAGES`` to fit
on) and each held-out image is scored by the fit that did not see it; the threshold is a
high quantile of those out-of-fold distances. A fit scored on its own images would give smaller
distances than new in-domain images get, and the threshold would flag them. Which quantile
(ADR 0036): the smallest of ``THRESHOLD_QUANTILES`` whose group cross-validated own-image rate
(the whole rule refitted without one fold of whole groups, scoring that fold) is at most 1 %: a
0.99 quantile of a few hundred images promises 1 % and gave a new scene 1.5-3.5 %. From 200 images
on, that count must also bound the rate to at most 2 % with 95 % confidence (ADR 0070): 3 of 341
passes "1 %" and is too few to promise 2 %.

The in-domain score stored with each prediction is ``0.5 ** (distance / threshold)``: 1 at the
centre, 0.5 at the threshold, falling towards 0 far outside; below ``OUT_OF_DOMAIN_BELOW`` (0.5)
an image is out of domain. Files: ``domain.safetensors`` (the arrays) and ``domain.json`` (the
rest), read with the bounds of ``inference.model_limits`` before anything is allocated.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from safetensors.numpy import load_file, save_file

from .image_descriptor import FEATURES as DESCRIPTOR_FEATURES
from .image_descriptor import SYMMETRY_DIM
from .model_limits import ModelLimitError, read_json_bounded, read_safetensors_header

DOMAIN_WEIGHTS = "domain.safetensors"
DOMAIN_JSON = "domain.json"
DOMAIN_FORMAT = 2  # format 1: one embedding Gaussian, still read
OUT_OF_DOMAIN_BELOW = 0.5  # in-domain score at the threshold distance
DEFAULT_QUANTILE = 0.99  # the lowest quantile the default rule tries, and the floor's (ADR 0036)
# The default threshold rule (ADR 0036): the smallest of these quantiles of the out-of-fold
# distances whose group cross-validated own-image rate (``own_rates``: the whole rule refitted
# without one fold of whole capture groups, scoring that fold) is at most OWN_RATE_TARGET.
THRESHOLD_QUANTILES = (0.99, 0.995, 0.998, 1.0)
OWN_RATE_TARGET = 0.01
# And from MEDIAN_CAP_BELOW images on, the quantile's group-CV own-image count must also have a one-sided
# BOUND_CONFIDENCE Clopper-Pearson upper bound at most OWN_RATE_BOUND (ADR 0070, benchmarks/results/ood-bound.md):
# the smallest quantile whose noisy count came out under 1 % was the lucky one (SIRST: 0.59 % in CV, 4.7 % on test).
OWN_RATE_BOUND = 0.02
BOUND_CONFIDENCE = 0.95
DEFAULT_COMPONENTS = 32
DEFAULT_FOLDS = 5
MAX_DIM = 4096  # feature width accepted from a file
MAX_COMPONENTS = 256
MIN_IMAGES = 8  # fewer cannot say what a domain is (nor give a quantile)
SHRINK = 1e-3  # variance floor, as a fraction of the mean variance: a flat direction is not infinitely sure
# The parts a description may hold, in file order: part -> (the feature it reads, how it reads it).
# ``gaussian``: Mahalanobis distance under a probabilistic-PCA Gaussian (correlations between
# features); ``range``: the largest per-feature deviation from the median over that feature's
# largest deviation among the training images, floored (one feature outside the box the training
# images span is enough, however ordinary the others; ADR 0028).
PARTS: dict[str, tuple[str, str]] = {
    "embedding": ("embedding", "gaussian"),
    "descriptor": ("descriptor", "gaussian"),
    "descriptor_range": ("descriptor", "range"),
    "symmetry": ("symmetry", "gaussian"),
}
FEATURE_KINDS = ("embedding", "descriptor", "symmetry")
# Kinds read off the decoded image itself, no model needed (``inference.image_descriptor``, versioned together by
# its DESCRIPTOR_VERSION): a description reading only these can be scored without loading the model.
IMAGE_FEATURE_KINDS = ("descriptor", "symmetry")
# Absolute floor per part: descriptor features are expressed in units of the smallest change
# worth noticing (inference.image_descriptor), so no direction is surer than one unit.
MIN_VARIANCE = {"embedding": 0.0, "descriptor": 1.0, "descriptor_range": 1.0, "symmetry": 1.0}
RANGE_QUANTILE = 1.0  # the box the training images span (0.99 tried: a heavy-tailed feature then sets the threshold)
# The threshold is at most this many times the training images' median out-of-fold distance. With a few dozen
# images (a retraining's labels) the quantile is the single largest out-of-fold distance, and one odd training
# image (an unusually bright steel strip) then admitted a whole other line (magnetic tiles at "in domain 0.53").
# 4.9 is the largest ratio a well-sampled choosing set needed (SIRST training frames; MVTec bottle 1.76), so the cap
# binds only where few images make the quantile meaningless (benchmarks/results/ood-few.md, ADR 0063): below
# MEDIAN_CAP_BELOW images (the study's counts went to 160); a larger set's quantile stands (heavy-tailed features).
MEDIAN_CAP = 4.9
MEDIAN_CAP_BELOW = 200

Features = Mapping[str, np.ndarray]


class DomainError(ValueError):
    """Domain statistics that cannot be fitted or read, with the reason."""


@dataclass(frozen=True)
class Gaussian:
    """A probabilistic-PCA Gaussian of one kind of feature."""

    mean: np.ndarray          # (d,) float32
    components: np.ndarray    # (k, d) float32, orthonormal rows: the principal directions
    variances: np.ndarray     # (k,) float32, variance along each component (floored)
    residual_variance: float  # variance of each remaining direction

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def distances(self, x: np.ndarray) -> np.ndarray:
        """(n, d) features -> (n,) Mahalanobis distance per dimension (about 1 inside the cloud)."""
        x = _as_matrix(x, self.dim) - self.mean.astype(np.float64)
        comps = self.components.astype(np.float64)
        proj = x @ comps.T
        inside = (proj ** 2 / self.variances.astype(np.float64)).sum(axis=1)
        residual = np.maximum((x ** 2).sum(axis=1) - (proj ** 2).sum(axis=1), 0.0)
        out = np.sqrt((inside + residual / self.residual_variance) / self.dim)
        return np.where(np.isfinite(out), out, np.inf)


@dataclass(frozen=True)
class Range:
    """Per-feature centre and spread: an image is as far out as its most extreme feature."""

    center: np.ndarray  # (d,) float32, per-feature median
    spread: np.ndarray  # (d,) float32, per-feature largest |x - center| of the training images (floored)

    @property
    def dim(self) -> int:
        return int(self.center.shape[0])

    def distances(self, x: np.ndarray) -> np.ndarray:
        a = _as_matrix(x, self.dim)
        out = np.max(np.abs(a - self.center.astype(np.float64)) / self.spread.astype(np.float64), axis=1)
        return np.where(np.isfinite(out), out, np.inf)


Part = Gaussian | Range


@dataclass(frozen=True)
class DomainStats:
    """A description of a model's training images (one Gaussian per part) and its threshold."""

    parts: Mapping[str, Part]      # part name (PARTS) -> its fitted description
    threshold: float               # distance above which an image is out of domain
    quantile: float                # of the out-of-fold training distances the threshold is
    images: int                    # how many training images were described
    embedding: str = ""            # what was embedded ("classifier: pooled final-stage features, ...")
    scales: Mapping[str, float] = field(default_factory=dict)  # part -> divisor of its distance (1 if absent)
    descriptor: str = ""           # inference.image_descriptor.DESCRIPTOR_VERSION of the descriptor part
    own_rates: Mapping[float, float] = field(default_factory=dict)  # quantile -> its cross-validated own-image rate
    # The descriptor features (inference.image_descriptor.FEATURES names) the descriptor parts read,
    # in descriptor order; empty: all of them (every file before ADR 0038). A family describes its
    # domain by some of them (inference.families.Family.domain_descriptor_features).
    descriptor_features: tuple[str, ...] = ()
    capped: bool = False           # the threshold is MEDIAN_CAP x the median distance, below its quantile (ADR 0063)
    # The folds ``own_rates`` came from kept capture groups whole (True) or were mixed (False: no groups given, or too
    # few to fold by); None: not recorded (files before session 50). Said so, as "group cross-validation" of mixed
    # folds promised a new session's rate that nothing measured (a session-50 audit).
    grouped: bool | None = None

    @property
    def dim(self) -> int:
        """Width of the embedding part (0 without one)."""
        g = self.parts.get("embedding")
        return g.dim if g is not None else 0

    @property
    def features(self) -> tuple[str, ...]:
        """The kinds of feature (FEATURE_KINDS) the parts read."""
        return tuple(f for f in FEATURE_KINDS if any(PARTS[p][0] == f for p in self.parts))

    def part_distances(self, features: Features | np.ndarray) -> dict[str, np.ndarray]:
        """Each part's distance, divided by its scale (an array alone is the embedding)."""
        feats = _features(features)
        missing = [f for f in self.features if f not in feats]
        if missing:
            raise DomainError(f"features missing for: {', '.join(missing)}")
        if self.descriptor_features and "descriptor" in feats:
            feats["descriptor"] = select_descriptor(feats["descriptor"], self.descriptor_features)
        return {p: g.distances(feats[PARTS[p][0]]) / float(self.scales.get(p, 1.0)) for p, g in self.parts.items()}

    def distances(self, features: Features | np.ndarray) -> np.ndarray:
        """(n,) distance of each image: the largest of its parts' scaled distances."""
        return np.max(np.stack(list(self.part_distances(features).values())), axis=0)

    def scores(self, features: Features | np.ndarray) -> np.ndarray:
        """(n,) in-domain scores in [0, 1] (see ``in_domain_score``)."""
        return in_domain_score(self.distances(features), self.threshold)


def in_domain_score(distances: np.ndarray, threshold: float) -> np.ndarray:
    """``0.5 ** (distance / threshold)``: 1 at the centre, ``OUT_OF_DOMAIN_BELOW`` at the threshold."""
    return np.power(0.5, np.asarray(distances, np.float64) / threshold)


def is_out_of_domain(score: float | None) -> bool:
    """True for a stored in-domain score below the threshold's; None (no statistics) is never out."""
    return score is not None and score < OUT_OF_DOMAIN_BELOW


def descriptor_columns(names: Sequence[str]) -> np.ndarray:
    """Column indices of the named descriptor features (``inference.image_descriptor.FEATURES``);
    DomainError for a name the descriptor does not have or a repeated one."""
    unknown = [n for n in names if n not in DESCRIPTOR_FEATURES]
    if unknown or len(set(names)) != len(names) or not names:
        raise DomainError(f"descriptor features must be distinct names of {', '.join(DESCRIPTOR_FEATURES)}; "
                          f"got {', '.join(map(str, names))[:200] or 'none'}")
    return np.array([DESCRIPTOR_FEATURES.index(n) for n in names], np.int64)


def select_descriptor(x: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """The named columns of full (n, DESCRIPTOR_DIM) descriptors (all of them when ``names`` is empty)."""
    a = _as_matrix(x, len(DESCRIPTOR_FEATURES))
    return a if not names else a[:, descriptor_columns(names)]


def _features(features: Features | np.ndarray) -> dict[str, np.ndarray]:
    if isinstance(features, np.ndarray):
        return {"embedding": features}
    unknown = set(features) - set(FEATURE_KINDS)
    if unknown:
        raise DomainError(f"unknown kinds of feature: {', '.join(sorted(unknown))}")
    return dict(features)


def _as_matrix(x: np.ndarray, dim: int | None = None) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or (dim is not None and a.shape[1] != dim):
        want = f"(n, {dim})" if dim is not None else "(n, d)"
        raise DomainError(f"features must be a {want} array, got shape {a.shape}")
    return a


def fit_gaussian(x: np.ndarray, components: int, min_variance: float = 0.0) -> Gaussian:
    """Mean, top components, their (floored) variances and the residual variance of ``x``."""
    x = _as_matrix(x)
    n, d = x.shape
    mean = x.mean(axis=0)
    # SVD of the centred data: eigenvectors of the covariance without forming it (d may exceed n).
    _, sing, vt = np.linalg.svd(x - mean, full_matrices=False)
    eig = sing ** 2 / max(n - 1, 1)
    floor = max(SHRINK * max(float(np.sum(eig)) / d, 1e-12), min_variance)
    k = max(1, min(components, len(eig) - 1 if len(eig) > 1 else 1, d))
    rest = d - k
    residual = float(np.sum(eig[k:])) / rest if rest else floor
    return Gaussian(mean.astype(np.float32), vt[:k].astype(np.float32),
                    np.maximum(eig[:k], floor).astype(np.float32), max(residual, floor))


def fit_range(x: np.ndarray, min_spread: float = 0.0) -> Range:
    """Per-feature median and largest absolute deviation (``RANGE_QUANTILE``; floored at ``min_spread``)."""
    x = _as_matrix(x)
    center = np.median(x, axis=0)
    spread = np.maximum(np.quantile(np.abs(x - center), RANGE_QUANTILE, axis=0), max(min_spread, 1e-9))
    return Range(center.astype(np.float32), spread.astype(np.float32))


def fit_part(part: str, x: np.ndarray, components: int) -> Part:
    kind = PARTS[part][1]
    return fit_gaussian(x, components, MIN_VARIANCE[part]) if kind == "gaussian" else fit_range(x, MIN_VARIANCE[part])


def default_parts(features: Features) -> tuple[str, ...]:
    """Every part whose feature is given."""
    return tuple(p for p, (f, _) in PARTS.items() if f in features)


def _checked(features: Features | np.ndarray, parts: Sequence[str] | None) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    feats = {f: _as_matrix(v) for f, v in _features(features).items()}
    chosen = tuple(parts) if parts is not None else default_parts(feats)
    unknown = [p for p in chosen if p not in PARTS]
    if unknown or not chosen:
        raise DomainError(f"parts must be some of {', '.join(PARTS)}, got {', '.join(chosen) or 'none'}")
    missing = [PARTS[p][0] for p in chosen if PARTS[p][0] not in feats]
    if missing:
        raise DomainError(f"features missing for: {', '.join(sorted(set(missing)))}")
    return feats, chosen


def group_folds(n: int, folds: int = DEFAULT_FOLDS, seed: int = 0,
                groups: Sequence[str] | None = None) -> np.ndarray | None:
    """(n,) fold index of each image with whole ``groups`` in one fold (a capture session never
    spans two; fewer groups than folds give one fold per group), or None where groups cannot make
    the folds: fewer than two, or a fold would leave fewer than ``MIN_IMAGES`` images to fit without
    it (a retraining's 10 images in groups of 1 and 9 left one image to refit the threshold rule on,
    and no statistics were written: "IndexError: index -1 is out of bounds", a session-49 audit)."""
    if groups is None or len(set(groups)) < 2:
        return None
    rng = np.random.default_rng(seed)
    names, codes = np.unique(np.asarray(groups), return_inverse=True)
    k = min(folds, len(names))
    fold = (rng.permutation(len(names)) % k)[codes]
    return fold if n - int(np.bincount(fold).max()) >= MIN_IMAGES else None


def fold_of(n: int, folds: int = DEFAULT_FOLDS, seed: int = 0, groups: Sequence[str] | None = None) -> np.ndarray:
    """(n,) fold index of each image: ``group_folds``' where groups can make the folds, else mixed
    folds of about equal size."""
    grouped = group_folds(n, folds, seed, groups)
    if grouped is not None:
        return grouped
    rng = np.random.default_rng(seed)
    k = max(2, min(folds, n // 2))
    out = np.empty(n, np.int64)
    out[rng.permutation(n)] = np.arange(n) % k
    return out


def fold_fits(features: Features | np.ndarray, components: int = DEFAULT_COMPONENTS, folds: int = DEFAULT_FOLDS,
              seed: int = 0, groups: Sequence[str] | None = None,
              parts: Sequence[str] | None = None) -> tuple[np.ndarray, list[dict[str, Part]]]:
    """Each image's fold and, per fold, every part fitted without that fold."""
    feats, chosen = _checked(features, parts)
    n = next(iter(feats.values())).shape[0]
    if n < 2:   # holding its one fold out leaves nothing to fit (numpy's own words were an IndexError)
        raise DomainError(f"{n} image{'' if n == 1 else 's'} cannot be split into folds to fit without one "
                          "(at least 2)")
    fold = fold_of(n, folds, seed, groups)
    fits = [{p: fit_part(p, feats[PARTS[p][0]][fold != f], components) for p in chosen}
            for f in range(int(fold.max()) + 1)]
    return fold, fits


def out_of_fold_part_distances(features: Features | np.ndarray, components: int = DEFAULT_COMPONENTS,
                               folds: int = DEFAULT_FOLDS, seed: int = 0, groups: Sequence[str] | None = None,
                               parts: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Each training image's distance per part under the parts fitted without its fold."""
    feats, chosen = _checked(features, parts)
    fold, fits = fold_fits(feats, components, folds, seed, groups, chosen)
    out = {p: np.empty(fold.shape[0], np.float64) for p in chosen}
    for f, fit in enumerate(fits):
        held = fold == f
        for p, g in fit.items():
            out[p][held] = g.distances(feats[PARTS[p][0]][held])
    return out


def out_of_fold_distances(embeddings: np.ndarray, components: int = DEFAULT_COMPONENTS,
                          folds: int = DEFAULT_FOLDS, seed: int = 0) -> np.ndarray:
    """Each training embedding's distance under statistics fitted without its fold."""
    return out_of_fold_part_distances({"embedding": embeddings}, components, folds, seed)["embedding"]


def part_scales(oof: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Divisors that put the parts on one footing: each part's median out-of-fold distance (1 for a
    single part, whose distance then reads as before)."""
    if len(oof) == 1:
        return {p: 1.0 for p in oof}
    return {p: max(float(np.median(d[np.isfinite(d)])) if np.isfinite(d).any() else 1.0, 1e-6) for p, d in oof.items()}


def _combined(distances: Mapping[str, np.ndarray], scales: Mapping[str, float]) -> np.ndarray:
    return np.max(np.stack([distances[p] / scales[p] for p in distances]), axis=0)


def _rule(feats: dict[str, np.ndarray], chosen: tuple[str, ...], components: int, folds: int, seed: int,
          groups: Sequence[str] | None, quantiles: Sequence[float]) -> tuple[dict[str, float], np.ndarray, float]:
    """The parts' scales and the threshold at each of ``quantiles``: the larger of that quantile of
    the out-of-fold distances with folds of whole ``groups`` and with mixed folds. The scales (the
    parts' median out-of-fold distances) come from the mixed folds, so with the same scales and a
    threshold never below the mixed folds' one, grouping can only widen what is accepted — below
    ``MEDIAN_CAP_BELOW`` images, up to ``MEDIAN_CAP`` times the mixed folds' median distance (the cap is
    returned third; infinite where it does not apply)."""
    mixed = out_of_fold_part_distances(feats, components, folds, seed, None, chosen)
    scales = part_scales(mixed)
    thresholds = np.quantile(_combined(mixed, scales), quantiles)
    if group_folds(next(iter(feats.values())).shape[0], folds, seed, groups) is not None:
        grouped = out_of_fold_part_distances(feats, components, folds, seed, groups, chosen)
        thresholds = np.maximum(thresholds, np.quantile(_combined(grouped, scales), quantiles))
    cap = float("inf")
    if next(iter(feats.values())).shape[0] < MEDIAN_CAP_BELOW:  # see MEDIAN_CAP
        cap = MEDIAN_CAP * float(np.median(_combined(mixed, scales)))
        thresholds = np.minimum(thresholds, cap)
    return scales, np.maximum(np.asarray(thresholds, np.float64), 1e-6), cap


def own_rates(features: Features | np.ndarray, quantiles: Sequence[float] = THRESHOLD_QUANTILES,
              components: int = DEFAULT_COMPONENTS, folds: int = DEFAULT_FOLDS, seed: int = 0,
              groups: Sequence[str] | None = None, parts: Sequence[str] | None = None) -> dict[float, float]:
    """Group cross-validated own-image rate of the threshold rule at each quantile: the parts, their
    scales and the threshold (``_rule``) refitted without one fold of whole ``groups`` (a capture
    session or scene the fit has not seen), the share of that fold's images beyond the threshold.
    This is what a new session's or scene's in-domain images get; the out-of-fold quantile itself
    would promise 1 - q."""
    feats, chosen = _checked(features, parts)
    n = next(iter(feats.values())).shape[0]
    fold = fold_of(n, folds, seed, groups)
    flagged = np.zeros((len(quantiles), n), bool)
    for f in range(int(fold.max()) + 1):
        rest, held = fold != f, fold == f
        sub = {k: v[rest] for k, v in feats.items()}
        sub_groups = [g for g, r in zip(groups, rest) if r] if groups is not None else None
        scales, thresholds, _cap = _rule(sub, chosen, components, folds, seed, sub_groups, quantiles)
        fitted = {p: fit_part(p, sub[PARTS[p][0]], components) for p in chosen}
        d = _combined({p: g.distances(feats[PARTS[p][0]][held]) for p, g in fitted.items()}, scales)
        flagged[:, held] = d[None, :] > thresholds[:, None]
    return {float(q): float(r) for q, r in zip(quantiles, flagged.mean(axis=1))}


def rate_upper_bound(rate: float, n: int, confidence: float = BOUND_CONFIDENCE) -> float:
    """One-sided Clopper-Pearson upper bound of a rate measured as ``rate`` over ``n`` images: the largest true
    rate under which so few images (``round(rate * n)``) would come out beyond the threshold with probability
    ``1 - confidence``."""
    from scipy.stats import beta  # fitting only: the runtime never chooses a threshold

    k = int(round(rate * n))
    return 1.0 if k >= n else float(beta.ppf(confidence, k + 1, n - k))


def _pick(candidates: Sequence[float], rates: Mapping[float, float], n: int, bound: bool) -> int:
    """The index of the quantile the threshold is: the smallest whose group-CV own rate is at most
    ``OWN_RATE_TARGET`` (ADR 0036) and, with ``bound`` and at least ``MEDIAN_CAP_BELOW`` images, whose rate's upper
    bound is at most ``OWN_RATE_BOUND`` too; the largest when none is."""
    ok = [rates[q] <= OWN_RATE_TARGET for q in candidates]
    if bound and n >= MEDIAN_CAP_BELOW:
        ok = [good and rate_upper_bound(rates[q], n) <= OWN_RATE_BOUND for q, good in zip(candidates, ok)]
    return next((i for i, good in enumerate(ok) if good), len(candidates) - 1)


def fit_domain(features: Features | np.ndarray, quantile: float | None = None,
               components: int = DEFAULT_COMPONENTS, folds: int = DEFAULT_FOLDS, seed: int = 0,
               embedding: str = "", groups: Sequence[str] | None = None, descriptor: str = "",
               parts: Sequence[str] | None = None, descriptor_features: Sequence[str] = (),
               bound: bool = True) -> DomainStats:
    """Statistics of the training images' features ((n, d) per kind of feature; an array alone is
    the embedding), one fitted description per part (default: every part whose feature is given),
    and a threshold chosen on these training images only (ADR 0036): a quantile of their
    out-of-fold distances (folds of whole ``groups`` and mixed folds, the larger), the quantile
    ``quantile`` when given, else the smallest of ``THRESHOLD_QUANTILES`` whose group
    cross-validated own-image rate (``own_rates``) is at most ``OWN_RATE_TARGET`` and, from
    ``MEDIAN_CAP_BELOW`` images on unless ``bound`` is false, whose count bounds the rate to
    ``OWN_RATE_BOUND`` (ADR 0070; the largest when none is). ``descriptor_features``: the descriptor features the description reads (names of
    ``inference.image_descriptor.FEATURES``, given full descriptors; empty: all; ADR 0038)."""
    feats, chosen = _checked(features, parts)
    names: tuple[str, ...] = ()
    if descriptor_features and "descriptor" in feats:
        descriptor_columns(tuple(descriptor_features))  # checked: known and distinct
        names = tuple(n for n in DESCRIPTOR_FEATURES if n in set(descriptor_features))  # descriptor order
        feats["descriptor"] = select_descriptor(feats["descriptor"], names)
    sizes = {v.shape[0] for v in feats.values()}
    if len(sizes) != 1:
        raise DomainError(f"the features describe different numbers of images: {sorted(sizes)}")
    n = sizes.pop()
    if n < MIN_IMAGES:
        raise DomainError(f"{n} training images cannot describe a domain (at least {MIN_IMAGES})")
    if not all(np.isfinite(v).all() for v in feats.values()):
        raise DomainError("the features hold NaN or infinite values")
    if quantile is not None and not 0.5 <= quantile <= 1.0:
        raise DomainError(f"quantile must be within [0.5, 1], got {quantile}")
    if groups is not None and len(groups) != n:
        raise DomainError(f"{len(groups)} groups for {n} images")
    candidates = (float(quantile),) if quantile is not None else THRESHOLD_QUANTILES
    rates = own_rates(feats, candidates, components, folds, seed, groups, chosen)
    pick = _pick(candidates, rates, n, bound)
    scales, thresholds, cap = _rule(feats, chosen, components, folds, seed, groups, candidates)
    fitted = {p: fit_part(p, feats[PARTS[p][0]], components) for p in PARTS if p in chosen}
    uses_descriptor = any(PARTS[p][0] in IMAGE_FEATURE_KINDS for p in fitted)
    return DomainStats(fitted, float(thresholds[pick]), candidates[pick], int(n), embedding,
                       scales, descriptor if uses_descriptor else "", rates, names,
                       capped=bool(thresholds[pick] >= cap),
                       grouped=group_folds(n, folds, seed, groups) is not None)  # fold_of's own choice


# -- files ------------------------------------------------------------------------------------
def save_domain(directory: str | Path, stats: DomainStats, extra: dict[str, Any] | None = None) -> None:
    """Write ``domain.safetensors`` + ``domain.json`` into the model directory."""
    d = Path(directory)
    weights = d / DOMAIN_WEIGHTS
    arrays = {}
    parts: dict[str, Any] = {}
    for p, g in stats.parts.items():
        if isinstance(g, Gaussian):
            arrays.update({f"{p}.mean": g.mean.astype(np.float32), f"{p}.components": g.components.astype(np.float32),
                           f"{p}.variances": g.variances.astype(np.float32)})
            parts[p] = {"kind": "gaussian", "dim": g.dim, "components": int(g.components.shape[0]),
                        "residual_variance": g.residual_variance}
        else:
            arrays.update({f"{p}.center": g.center.astype(np.float32), f"{p}.spread": g.spread.astype(np.float32)})
            parts[p] = {"kind": "range", "dim": g.dim}
        parts[p]["scale"] = float(stats.scales.get(p, 1.0))
    save_file(arrays, str(weights))
    os.chmod(weights, 0o644)  # readable like the model's own files (safetensors writes 0600)
    meta = {"format": DOMAIN_FORMAT, "parts": parts, "threshold": stats.threshold,
            "quantile": stats.quantile, "images": stats.images, "embedding": stats.embedding,
            "descriptor": stats.descriptor,
            "own_rates_group_cv": {f"{q:g}": round(r, 5) for q, r in stats.own_rates.items()},
            "score": "distance = max over parts of (part distance / part scale); "
                     "in_domain = 0.5 ** (distance / threshold); out of domain below 0.5"}
    if stats.capped:  # absent: the quantile itself (every file before ADR 0063)
        meta["capped_at_median_times"] = MEDIAN_CAP
    if stats.grouped is not None:  # absent: not recorded (files before session 50)
        meta["own_rates_folds"] = "groups" if stats.grouped else "mixed"
    if stats.descriptor_features:  # absent: every descriptor feature (files before ADR 0038)
        meta["descriptor_features"] = list(stats.descriptor_features)
    meta.update(extra or {})
    (d / DOMAIN_JSON).write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")


def has_domain(directory: str | Path) -> bool:
    d = Path(directory)
    return (d / DOMAIN_WEIGHTS).is_file() and (d / DOMAIN_JSON).is_file()


def _positive(meta: dict[str, Any], key: str, upper: float, where: str = DOMAIN_JSON) -> float:
    v = meta.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 < v <= upper:
        raise DomainError(f"{where}: {key} must be a positive number up to {upper:g}, got {str(v)[:40]}")
    return float(v)


def _part_layout(meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Part name -> its kind and sizes from the JSON (format 1: one embedding Gaussian whose arrays
    carry no prefix)."""
    if meta.get("format") == 1:
        return {"embedding": {"kind": "gaussian", "dim": meta.get("dim"), "components": meta.get("components"),
                              "residual_variance": meta.get("residual_variance"), "scale": 1.0, "prefix": ""}}
    parts = meta.get("parts")
    if not isinstance(parts, dict) or not parts or set(parts) - set(PARTS):
        raise DomainError(f"{DOMAIN_JSON}: parts must name some of {', '.join(PARTS)}")
    for p, v in parts.items():
        if not isinstance(v, dict) or v.get("kind") != PARTS[p][1]:
            raise DomainError(f"{DOMAIN_JSON}: part {p} must be an object of kind {PARTS[p][1]}")
    return {p: {**v, "prefix": f"{p}."} for p, v in parts.items()}


def _expected_arrays(layout: dict[str, dict[str, Any]]) -> dict[str, tuple[int, ...]]:
    want: dict[str, tuple[int, ...]] = {}
    for p, v in layout.items():
        where, pre = f"{DOMAIN_JSON} part {p}", v["prefix"]
        dim = int(_positive(v, "dim", MAX_DIM, where))
        if v["kind"] == "gaussian":
            k = int(_positive(v, "components", MAX_COMPONENTS, where))
            want.update({f"{pre}mean": (dim,), f"{pre}components": (k, dim), f"{pre}variances": (k,)})
        else:
            want.update({f"{pre}center": (dim,), f"{pre}spread": (dim,)})
    return want


def _part(p: str, v: dict[str, Any], arrays: dict[str, np.ndarray]) -> Part:
    pre, where = v["prefix"], f"{DOMAIN_JSON} part {p}"
    positive = arrays[f"{pre}variances"] if v["kind"] == "gaussian" else arrays[f"{pre}spread"]
    if not (positive > 0).all():
        raise DomainError(f"{DOMAIN_WEIGHTS}: part {p} holds variances or spreads that are not positive")
    if v["kind"] == "gaussian":
        return Gaussian(arrays[f"{pre}mean"], arrays[f"{pre}components"], arrays[f"{pre}variances"],
                        _positive(v, "residual_variance", 1e12, where))
    return Range(arrays[f"{pre}center"], arrays[f"{pre}spread"])


def load_domain(directory: str | Path, descriptor_version: str | None = None) -> DomainStats | None:
    """The directory's statistics, None when it has none; DomainError when they are damaged (or
    hold a descriptor of another version than ``descriptor_version``, when given).

    Sizes come from the JSON and the safetensors header and are checked against fixed bounds
    and each other before the arrays are read, so a hostile file cannot ask for memory.
    """
    d = Path(directory)
    if not has_domain(d):
        return None
    try:
        meta = read_json_bounded(d / DOMAIN_JSON)
        header = read_safetensors_header(d / DOMAIN_WEIGHTS)
    except (OSError, ValueError) as exc:  # ModelLimitError is a ValueError
        raise DomainError(f"{d}: unreadable domain statistics ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") not in (1, DOMAIN_FORMAT):
        raise DomainError(f"{d / DOMAIN_JSON}: not domain statistics of format 1 or {DOMAIN_FORMAT}")
    layout = _part_layout(meta)
    chosen = _descriptor_features(meta, d)
    want = _expected_arrays(layout)
    if set(header) != set(want) or any(header[n].shape != s or header[n].dtype != "F32" for n, s in want.items()):
        got = {n: (e.dtype, e.shape) for n, e in header.items()}
        raise DomainError(f"{d / DOMAIN_WEIGHTS}: expected float32 arrays {want}; the file holds {got}")
    descriptor = meta.get("descriptor", "")
    descriptor = str(descriptor)[:80] if isinstance(descriptor, str) else ""
    uses_descriptor = any(PARTS[p][0] in IMAGE_FEATURE_KINDS for p in layout)
    if uses_descriptor and descriptor_version is not None and descriptor != descriptor_version:
        raise DomainError(f"{d / DOMAIN_JSON}: image descriptor {descriptor!r} is not this version's "
                          f"{descriptor_version!r}; fit the statistics again (python main.py domain fit)")
    try:
        arrays = load_file(str(d / DOMAIN_WEIGHTS))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise DomainError(f"{d / DOMAIN_WEIGHTS}: unreadable ({exc})") from None
    if not all(np.isfinite(a).all() for a in arrays.values()):
        raise DomainError(f"{d / DOMAIN_WEIGHTS}: holds non-finite values")
    parts = {p: _part(p, v, arrays) for p, v in layout.items()}
    for p, g in parts.items():
        if PARTS[p][0] == "symmetry" and g.dim != SYMMETRY_DIM:
            raise DomainError(f"{d / DOMAIN_JSON}: part {p} reads {g.dim} numbers, not the {SYMMETRY_DIM} of the symmetry")
        if chosen and PARTS[p][0] == "descriptor" and g.dim != len(chosen):
            raise DomainError(f"{d / DOMAIN_JSON}: part {p} reads {g.dim} descriptor features, "
                              f"not the {len(chosen)} it names")
    scales = {p: _positive(v, "scale", 1e12, f"{DOMAIN_JSON} part {p}") for p, v in layout.items()}
    quantile = meta.get("quantile")
    images = meta.get("images")
    embedding = meta.get("embedding", "")
    return DomainStats(
        {p: parts[p] for p in PARTS if p in parts}, _positive(meta, "threshold", 1e12),
        float(quantile) if isinstance(quantile, (int, float)) else math.nan,
        int(images) if isinstance(images, int) else 0,
        str(embedding)[:200] if isinstance(embedding, str) else "", scales, descriptor, _rates(meta), chosen,
        capped=meta.get("capped_at_median_times") is not None,
        grouped={"groups": True, "mixed": False}.get(str(meta.get("own_rates_folds"))))


def _descriptor_features(meta: dict[str, Any], d: Path) -> tuple[str, ...]:
    """``descriptor_features`` of the JSON (ADR 0038; absent in older files: all features)."""
    raw = meta.get("descriptor_features")
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw) or len(raw) > MAX_DIM:
        raise DomainError(f"{d / DOMAIN_JSON}: descriptor_features must be a list of feature names")
    try:
        descriptor_columns(raw)
    except DomainError as exc:
        raise DomainError(f"{d / DOMAIN_JSON}: {exc}") from None
    return tuple(raw)


def _rates(meta: dict[str, Any]) -> dict[float, float]:
    """``own_rates_group_cv`` of the JSON (files before ADR 0036 have none): a record, never needed."""
    raw = meta.get("own_rates_group_cv")
    out: dict[float, float] = {}
    for q, r in (raw.items() if isinstance(raw, dict) else ()):
        try:
            qf, rf = float(q), float(r)
        except (TypeError, ValueError):
            continue
        if 0 <= qf <= 1 and 0 <= rf <= 1 and len(out) < 16:
            out[qf] = rf
    return out


__all__ = ["DomainStats", "Gaussian", "Range", "DomainError", "ModelLimitError", "fit_domain", "fit_gaussian",
           "fit_range", "fold_of", "fold_fits", "own_rates", "THRESHOLD_QUANTILES", "OWN_RATE_TARGET", "out_of_fold_distances", "out_of_fold_part_distances", "load_domain",
           "save_domain", "has_domain", "in_domain_score", "is_out_of_domain", "OUT_OF_DOMAIN_BELOW", "PARTS",
           "FEATURE_KINDS", "IMAGE_FEATURE_KINDS", "descriptor_columns", "select_descriptor"]
