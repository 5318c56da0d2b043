"""A classifier version from a few dozen labels: the active backbone, frozen, with a new linear head.

Full transfer training of MemoryMamba on 218 reviewed magnetic tiles scored 0.355 on independent
tiles, below a constant answer (benchmarks/RESULTS.md): a few hundred images do not hold enough
signal to move a whole network. A linear head fitted on the frozen backbone's pooled features
(class-balanced logistic regression, averaged over the flip views the card asks the engine for)
needs seconds and uses only what the backbone already computes. The head is written into the
model's own two-layer head (first layer an exact pass-through, see ``write_linear_head``), so the
result is an ordinary MemoryMamba directory that the station loads and runs unchanged.

The second candidate needs no backbone: the same class-balanced logistic regression on the
184 texture features of ``inference.texture_features`` (what "label next" embeds with), written
as a ``texture_linear`` model. On magnetic tiles those features carry the classes far better than
the NEU backbone's pooled features (benchmarks/results/texture-head.md). The third, ``defect``,
fits the same regression on the small-defect statistics of ``inference.texture_features`` (own
aspect, up to 256 px, ADR 0027), also written as a ``texture_linear`` model; on magnetic tiles it
beats both (benchmarks/results/tiles-classifier.md).

The fourth and fifth, ``bank`` and ``defect_bank``, fit it on classical texture descriptors
(``inference.texture_bank``: multi-scale LBP, Gabor, GLCM, band-pass statistics), alone or beside the
defect statistics; every feature candidate also has a ``mix`` twin whose biases carry the labels'
class mix (ADR 0033). From a few dozen labels per class they beat the others on magnetic tiles and
NEU (benchmarks/results/fewlabel.md).

``compare_candidates`` scores the candidates and the simple answers (majority, kNN, logistic
regression on thumbnails and on plain embeddings) by group-aware cross-validation inside the
reviewed training labels, then once on the held-out reviewed labels. The texture regression is a
candidate, never a simple answer: it is what the station registers when it wins.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, cast

import numpy as np
import torch

from inference.checkpoints import LoadedModel, save_model
from inference.classifier_predict import resize_to_model_input, tta_views
from inference.imageio import read_image
from inference.models.memory_mamba import MemoryMamba
from inference.models.texture_linear import TextureLinear, feature_config
from inference.texture_features import FEATURE_SETS
from inference.training.classifier_data import class_folders
from inference.training.pooled_check import PooledCheck, Predict, Procedure, pooled_check
from inference.training.simple_answers import (
    FOLDS,
    SIMPLE_MODELS,
    Estimator,
    Score,
    assign_groups,
    best_name,
    cross_validated,
    fit_predict,
    group_folds,
    mean_score,
    out_of_fold_predictions,
    score,
    thumbnails,
)

HEAD_VIEWS = "flips"        # the new version's test-time augmentation; its features are averaged over these views
HEAD_C = (0.1, 1.0, 10.0, 100.0)  # inverse regularisation strengths tried for the head (chosen by group CV)
PASS_THROUGH_FLOOR = 8.0    # GELU(z) = z to float precision for z >= 8: the head's first layer shifts features above it
ABSENT_CLASS_BIAS = -30.0   # a class with no training image in a fold/fit is never predicted
# texture first: on a tie the cheapest version wins (texture features, then defect statistics, the
# descriptor bank, both together, then a network)
CANDIDATE_KINDS = ("texture", "defect", "bank", "defect_bank", "backbone")
# feature set -> candidate name stem
FEATURE_KINDS = {"texture": "texture_linear", "defect": "defect_linear", "bank": "bank_linear",
                 "defect_bank": "defect_bank_linear"}
AUGMENT_VIEWS = ("hflip", "vflip", "rot180")  # label-preserving views a candidate may also train on (ADR 0033)
AUGMENT_MARK = "_flips"                       # in a candidate's name: it trained on the views too
# Flipped copies of the labelled images did not lift the chosen candidate on magnetic tiles (group CV picked
# them in 9 of 24 runs, the independent figures moved within the seeds' spread) and cost 4 x the feature
# extraction: the retrain command does not try them; benchmarks/fewlabel.py --augment flips does.
CANDIDATE_AUGMENT: tuple[str, ...] = ("none",)
# The feature candidates are many and a few labels make one fold split noisy: their CV scores are
# averaged over this many group-aware fold sets (ADR 0033).
CV_REPEATS = 3
PRIOR_MARK = "_mix"  # in a candidate's name: its class biases carry the labels' class mix (not a balanced prior)
CANDIDATE_PRIORS = ("balanced", "mix")
# The head fitted on a feature set: "lr", the class-balanced logistic regression at each C of the grid, and
# "lda", linear discriminant analysis with Ledoit-Wolf shrinkage of the pooled covariance (no C; ADR 0043).
HEAD_KINDS = ("lr", "lda")
LDA_MARK = "_lda"   # in a candidate's name, in place of "_C<value>": the shrinkage discriminant
CANDIDATE_C = HEAD_C  # the C grid of the command's feature candidates
CANDIDATE_HEADS: tuple[str, ...] = ("lr",)


def embed(loaded: LoadedModel, paths: Sequence[Path], views: str = HEAD_VIEWS, batch: int = 32) -> np.ndarray:
    """(n_views, n, C) pooled backbone features of each image under each test-time view (eval mode)."""
    model, cfg = cast(MemoryMamba, loaded.model.eval()), loaded.config  # the backbone: a classifier network
    device = next(model.parameters()).device
    out: list[np.ndarray] = []
    with torch.no_grad():
        for s in range(0, len(paths), batch):
            arr = np.stack([resize_to_model_input(read_image(p, cfg.color_mode), cfg.img_size, cfg.in_chans)
                            for p in paths[s:s + batch]])
            vs = tta_views(torch.from_numpy(arr).to(device), views)
            feats = model.features(torch.cat(vs))[0]
            out.append(feats.view(len(vs), len(arr), -1).float().cpu().numpy())
    return np.concatenate(out, axis=1) if out else np.zeros((1, 0, 0), np.float32)


VIEW_FLIPS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": lambda a: a, "hflip": lambda a: a[:, ::-1], "vflip": lambda a: a[::-1], "rot180": lambda a: a[::-1, ::-1]}


def texture_matrix(paths: Sequence[Path], features: str = "texture", view: str = "none") -> np.ndarray:
    """(n, dim) feature vectors (``FEATURE_SETS[features]``) of image files, decoded as the engine decodes them
    (gray), under one label-preserving ``view`` (``VIEW_FLIPS``)."""
    dim, fn = FEATURE_SETS[features]
    flip = VIEW_FLIPS[view]
    out = np.empty((len(paths), dim), dtype=np.float32)
    for i, path in enumerate(paths):
        out[i] = fn(np.ascontiguousarray(flip(read_image(path, "gray"))))
    return out


def feature_matrices(paths: Sequence[Path], sets: Sequence[str], view: str = "none") -> dict[str, np.ndarray]:
    """{set: (n, dim)} of several feature sets, each image decoded once (``defect_bank`` reuses the
    ``defect`` and ``bank`` vectors when those are asked for too)."""
    parts = {"defect_bank": ("defect", "bank")}
    base = list(dict.fromkeys(p for s in sets for p in parts.get(s, (s,))))
    flip = VIEW_FLIPS[view]
    out = {b: np.empty((len(paths), FEATURE_SETS[b][0]), np.float32) for b in base}
    for i, path in enumerate(paths):
        img = np.ascontiguousarray(flip(read_image(path, "gray")))
        for b in base:
            out[b][i] = FEATURE_SETS[b][1](img)
    return {s: np.concatenate([out[p] for p in parts[s]], axis=1) if s in parts else out[s] for s in sets}


@dataclass(frozen=True)
class LightCandidate:
    """One texture_linear candidate: a feature set, a C, whether it trains on flipped views too, and its prior.

    Every candidate is a class-balanced regression; a ``mix`` candidate then adds the log of the
    labels' class shares to the class biases, i.e. it assumes that the images to come have the class
    mix of the labels (an inspector labelling a stream) instead of equal classes.
    """
    name: str
    feature_set: str
    c: float                      # the regression's C (0 for the discriminant, which has none)
    views: dict[str, np.ndarray]  # view -> (n, dim) training features; "none" always, AUGMENT_VIEWS when augmented
    mix: bool = False
    head: str = "lr"              # HEAD_KINDS

    def rows(self, idx: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The training rows of images ``idx`` (every view) and their labels."""
        x = np.concatenate([v[idx] for v in self.views.values()])
        return x, np.tile(labels[idx], len(self.views))


def light_candidates(sets: dict[str, dict[str, np.ndarray]], cs: Sequence[float] = CANDIDATE_C,
                     augment: Sequence[str] = CANDIDATE_AUGMENT,
                     priors: Sequence[str] = CANDIDATE_PRIORS,
                     heads: Sequence[str] = CANDIDATE_HEADS) -> dict[str, LightCandidate]:
    """Every (feature set, head and C, augmentation, prior) candidate; ``sets``: feature set -> view -> training
    features (the flipped views are needed only for ``augment`` "flips"). Cheapest first, so ties keep it:
    the regressions in the order of ``cs``, then the discriminant when ``heads`` holds "lda"."""
    out: dict[str, LightCandidate] = {}
    for mode in augment:
        for feature_set, views in sets.items():
            if mode == "flips" and not all(v in views for v in AUGMENT_VIEWS):
                continue
            keep = {"none": views["none"], **({v: views[v] for v in AUGMENT_VIEWS} if mode == "flips" else {})}
            for prior in priors:
                fits = [("lr", c) for c in cs] if "lr" in heads else []
                for head, c in fits + ([("lda", 0.0)] if "lda" in heads else []):
                    name = texture_name(c, feature_set, mode == "flips", prior == "mix", head)
                    out[name] = LightCandidate(name, feature_set, c, keep, prior == "mix", head)
    return out


def with_label_mix(head: "LinearHead", labels: np.ndarray) -> "LinearHead":
    """``head`` with log(class share of ``labels``) added to the biases of the classes the labels hold."""
    counts = np.bincount(labels, minlength=len(head.intercept)).astype(np.float64)
    present = counts > 0
    shift = np.zeros(len(head.intercept))
    shift[present] = np.log(counts[present] / counts.sum() * present.sum())
    return dataclasses.replace(head, intercept=head.intercept + shift)


POOL_SAMPLE = 200  # unlabelled images whose predicted classes give the pool's class mix (classify-and-count)


def pool_shares(head: "LinearHead", pool_features: np.ndarray) -> np.ndarray:
    """The pool's class shares by classify-and-count: ``head``'s predictions on the unlabelled ``pool_features``,
    add-one smoothed, (counts + 1) / (M + k): never zero, and leaning to equal shares when the head errs."""
    k = len(head.intercept)
    counts = np.bincount(head.predict(pool_features), minlength=k).astype(np.float64) if len(pool_features) else np.zeros(k)
    return (counts + 1.0) / (counts.sum() + k)


def pool_matrix(paths: Sequence[Path], feature_set: str,
                progress: Callable[[str, int, int], None] | None = None) -> np.ndarray:
    """(m, dim) ``feature_set`` vectors of the pool images that can be read (an unreadable one is left out:
    the pool only gives the class mix)."""
    from inference.imageio import ImageReadError

    rows = []
    for i, path in enumerate(paths):
        try:
            rows.append(feature_matrices([path], [feature_set])[feature_set][0])
        except (ImageReadError, ValueError, OSError):
            pass
        if progress:
            progress("pool", i + 1, len(paths))
    return np.stack(rows) if rows else np.zeros((0, FEATURE_SETS[feature_set][0]), np.float32)


def adjusted_shares(predicted: np.ndarray, true_labels: np.ndarray, out_of_fold: np.ndarray, pool_size: int,
                    trust: np.ndarray | None = None) -> np.ndarray:
    """Adjusted classify-and-count (Forman 2008): the pool's true class shares q from its ``predicted`` shares and
    the head's out-of-fold confusion on the reviewed labels, M[i, j] = P(predicted j | true i) (each labelled class's
    row add-one smoothed; a class without labels maps to itself), solving predicted = M^T q for q >= 0, sum 1 by
    non-negative least squares with the sum as a heavily weighted extra row; then add-one smoothed over the
    ``pool_size`` images as the plain count is, so no class is driven to zero (benchmarks/results/accmix.md).

    ``trust`` (per class, in [0, 1]; None: all 1): how far class i's labels were drawn like the pool's images of
    class i, e.g. the share of them *not* chosen by "label next", which picks the images the head is unsure of (their
    out-of-fold errors are far above the pool's). Row i becomes trust_i * M[i] + (1 - trust_i) * e_i: with no
    trusted label the class is counted as predicted (plain classify-and-count), with all of them as before (ADR 0049)."""
    from scipy.optimize import nnls

    k = len(predicted)
    conf = np.zeros((k, k))
    np.add.at(conf, (np.asarray(true_labels, np.int64), np.asarray(out_of_fold, np.int64)), 1.0)
    rows = conf.sum(1) > 0
    m = np.eye(k)
    m[rows] = (conf[rows] + 1.0) / (conf[rows] + 1.0).sum(1, keepdims=True)
    if trust is not None:
        w = np.clip(np.asarray(trust, np.float64)[:k], 0.0, 1.0)[:, None]
        m = w * m + (1.0 - w) * np.eye(k)
    weight = 1e3
    a = np.vstack([m.T, np.full((1, k), weight)])
    b = np.concatenate([np.asarray(predicted, np.float64), [weight]])
    q, _ = nnls(a, b)
    q = q / max(q.sum(), 1e-12)
    n = max(int(pool_size), 0)
    return (q * n + 1.0) / (n + k)


def folder_shares(pool_q: np.ndarray, reviewed_counts: np.ndarray, unreviewed: int) -> np.ndarray:
    """The reviewed folder's class mix: its reviewed labels per class plus the pool's shares ``pool_q`` spread over
    its ``unreviewed`` images (the images the classifier will meet are the folder's kind, not only the ones left
    unlabelled, which "label next" and flagged-first reviewing leave poorer in defects)."""
    counts = np.asarray(reviewed_counts, np.float64)[: len(pool_q)]
    counts = np.pad(counts, (0, len(pool_q) - len(counts)))
    n = max(int(unreviewed), 0)
    return (counts + pool_q * n) / max(counts.sum() + n, 1e-12)


# How far the folder's estimated class mix is tempered towards equal classes when "label next" chose all the reviewed
# labels: q ** (1 - LABEL_NEXT_TEMPER * share chosen), renormalised (benchmarks/results/temper.md; 0: never tempered).
LABEL_NEXT_TEMPER = 0.5
# How much of the folder's dominant class's loss its unreviewed images carry (``unreviewed_fit``) when "label next"
# chose none of the reviewed labels: UNREVIEWED_WEIGHT * (1 - share chosen) (benchmarks/results/pu.md; 0: never).
UNREVIEWED_WEIGHT = 0.5


@dataclass(frozen=True)
class FolderMix:
    """What the folder's class mix is estimated from (``retrain --class-mix acc-folder``): the reviewed labels the
    head was chosen on and its out-of-fold predictions of them, every reviewed label per class, the unreviewed count,
    and per class how many reviewed labels "label next" chose (``chosen``; None: none known); ``temper_max``: the
    temper at labels all chosen by label next (``temper``; 0 for ``--class-mix acc-folder-full``);
    ``unreviewed_weight_max``: the unreviewed images' part in the dominant class's loss at labels none of which label
    next chose (``unreviewed_weight``; 0 for ``--no-unreviewed-in-fit``)."""
    labels: np.ndarray
    out_of_fold: np.ndarray
    reviewed_counts: np.ndarray
    unreviewed: int
    chosen: np.ndarray | None = None
    temper_max: float = LABEL_NEXT_TEMPER
    unreviewed_weight_max: float = UNREVIEWED_WEIGHT

    @property
    def trust(self) -> np.ndarray | None:
        """Per class, the share of its reviewed labels not chosen by "label next" (``adjusted_shares``'s trust)."""
        if self.chosen is None:
            return None
        reviewed = np.asarray(self.reviewed_counts, np.float64)
        chosen = np.minimum(np.asarray(self.chosen, np.float64), reviewed)
        return np.where(reviewed > 0, 1.0 - chosen / np.maximum(reviewed, 1.0), 1.0)

    @property
    def chosen_share(self) -> float:
        """The share of all reviewed labels "label next" chose (0 where none is known)."""
        if self.chosen is None:
            return 0.0
        reviewed = float(np.asarray(self.reviewed_counts, np.float64).sum())
        chosen = float(np.minimum(np.asarray(self.chosen, np.float64), self.reviewed_counts).sum())
        return chosen / reviewed if reviewed > 0 else 0.0

    @property
    def temper(self) -> float:
        """The power the estimated mix is raised to: 1 - temper_max * (the share of all reviewed labels "label next"
        chose). Label next picks the images the head is unsure of, and the estimate still leans to the majority class
        there (prior-diagnostic.md, prior-temper.md); 1 (the mix as estimated) where no label was chosen that way."""
        return 1.0 - self.temper_max * self.chosen_share

    @property
    def unreviewed_weight(self) -> float:
        """The unreviewed images' part in the dominant class's loss (``unreviewed_fit``): unreviewed_weight_max * (1 -
        the share label next chose). Label next leaves the easy images unreviewed, and they pulled the class to its
        centre (benchmarks/results/pu.md)."""
        return self.unreviewed_weight_max * (1.0 - self.chosen_share)

    def pool_estimate(self, head: "LinearHead", pool_features: np.ndarray) -> np.ndarray:
        """The unreviewed pool's class mix by adjusted classify-and-count (before it is merged with the labels)."""
        return adjusted_shares(pool_shares(head, pool_features), self.labels, self.out_of_fold, len(pool_features),
                               self.trust)

    def estimate(self, head: "LinearHead", pool_features: np.ndarray) -> np.ndarray:
        """The folder's class mix as estimated (before the temper)."""
        return self.from_pool(self.pool_estimate(head, pool_features))

    def from_pool(self, q_pool: np.ndarray) -> np.ndarray:
        """The folder's class mix from the pool's (``pool_estimate``) and the reviewed labels."""
        return folder_shares(q_pool, self.reviewed_counts, self.unreviewed)

    def tempered(self, q: np.ndarray) -> np.ndarray:
        """``q`` raised to ``temper`` and renormalised (``q`` itself, to the bit, at temper 1)."""
        t = self.temper
        if t >= 1.0:
            return q
        q = np.power(np.maximum(q, 1e-12), t)
        return q / q.sum()


def _unreviewed_in_fit(z: np.ndarray, labels: np.ndarray, classes: Sequence[str], c: float, pool_z: np.ndarray,
                       q_pool: np.ndarray, weight: float, normal: Sequence[str] | None,
                       start: "LinearHead") -> tuple["LinearHead", dict[str, Any]]:
    """The class-balanced regression refitted with the unreviewed pool in its dominant class's loss
    (``unreviewed_fit``; ``start``: the plain fit on the same rows, not made twice), and what the card says of it;
    ``normal``: the class names the dominant class must be one of (the project's classes that are not a defect,
    ``inference.normal_classes``; None: any)."""
    from inference.normal_classes import is_normal_class
    from inference.training.unreviewed_fit import DOMINANT_SHARE, fit_with_unreviewed

    allowed = None if normal is None else {i for i, name in enumerate(classes) if is_normal_class(name, normal)}
    head, d = fit_with_unreviewed(z, labels, len(classes), c, pool_z, q_pool, weight, allowed, start)
    said: dict[str, Any] = {"weight": round(float(weight), 4), "pool_images": int(len(pool_z)),
                            "pool_shares": {name: round(float(q), 4) for name, q in zip(classes, q_pool)}}
    top = int(np.argmax(q_pool))
    if d is None:
        said["class"] = None
        if weight <= 0:
            why = "'label next' chose every reviewed label"
        elif allowed is not None and top not in allowed:
            why = f"the pool's largest class, '{classes[top]}', is not one the project calls not a defect " \
                  f"({', '.join(normal or ())})"
        else:
            why = f"no class is {DOMINANT_SHARE:.0%} or more of the unreviewed pool (or it has no label)"
        said["note"] = "not used: " + why
    else:
        said["class"] = classes[d]
        said["note"] = (f"the unreviewed pool, less its estimated other classes, carried this weight of the "
                        f"'{classes[d]}' loss (a non-negative positive-unlabelled risk; {UNREVIEWED_WEIGHT:g} x the "
                        "share of labels 'label next' did not choose; benchmarks/results/pu.md)")
    return head, said


def pool_prior_head(head: "LinearHead", pool_features: np.ndarray, fitted_labels: np.ndarray | None = None) -> "LinearHead":
    """``head`` with the pool's class mix (``pool_shares``) as its prior (``with_prior``)."""
    return with_prior(head, pool_shares(head, pool_features), fitted_labels)


def with_prior(head: "LinearHead", q: np.ndarray, fitted_labels: np.ndarray | None = None) -> "LinearHead":
    """``head`` with class shares ``q`` as its prior: log q - log p added to the biases, p the prior it was fitted
    with (equal shares; the labels' shares for a ``mix`` head, ``fitted_labels``). Classes the head never predicts
    (no training image) keep their bias."""
    live = ~((head.coef == 0).all(1) & (head.intercept == ABSENT_CLASS_BIAS))  # classes the head was fitted on
    if fitted_labels is None:
        p = np.full(len(q), 1.0 / max(int(live.sum()), 1))
    else:
        counts = np.bincount(fitted_labels, minlength=len(q)).astype(np.float64)
        p = counts / max(counts.sum(), 1.0)
    shift = np.zeros(len(q))
    ok = live & (p > 0)
    shift[ok] = np.log(q[ok]) - np.log(p[ok])
    return dataclasses.replace(head, intercept=head.intercept + shift)


# Self-training on the unreviewed pool (not adopted: benchmarks/fewtiles.py ways D, E only; benchmarks/results/selftrain.md): up to SELF_TRAIN_POOL unreviewed images are read; per class,
# the pool images the registered head gives that class with probability >= SELF_TRAIN_THRESHOLD, most confident
# first and at most as many as the class has reviewed labels, join the fit weighing SELF_TRAIN_WEIGHT each.
SELF_TRAIN_POOL = 1000
SELF_TRAIN_THRESHOLD = 0.9
SELF_TRAIN_WEIGHT = 0.5
# The command's default rounds: 0, the pool gives the class mix only. One and two rounds lowered accuracy on held-out
# tiles in the train-only simulation (wrong pseudo-labels of the defect classes; benchmarks/results/selftrain.md).
SELF_TRAIN_ROUNDS = 0


def pseudo_labels(head: "LinearHead", pool_features: np.ndarray, caps: np.ndarray,
                  threshold: float = SELF_TRAIN_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """(pool rows, classes) of the pseudo-labels ``head`` gives: per class c, the pool rows it predicts as c with
    probability >= ``threshold``, most confident first (the lower row on a tie), at most ``caps[c]`` of them."""
    if not len(pool_features):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    probs = head.proba(pool_features)
    pred = probs.argmax(1)
    conf = probs[np.arange(len(pred)), pred]
    rows: list[np.ndarray] = []
    for c in range(probs.shape[1]):
        members = np.flatnonzero((pred == c) & (conf >= threshold))
        cap = int(caps[c]) if c < len(caps) else 0
        rows.append(members[np.argsort(-conf[members], kind="stable")][:max(cap, 0)])
    idx = np.concatenate(rows).astype(np.int64)
    return idx, pred[idx].astype(np.int64)


def self_trained_head(head: "LinearHead", features: np.ndarray, labels: np.ndarray, c: float,
                      pool_features: np.ndarray, mix: bool = False, rounds: int = SELF_TRAIN_ROUNDS,
                      threshold: float = SELF_TRAIN_THRESHOLD,
                      weight: float = SELF_TRAIN_WEIGHT) -> tuple["LinearHead", dict[str, Any]]:
    """The head to register from ``head`` (the class-balanced regression at ``c`` fitted on ``features`` /
    ``labels``, with the labels' mix when ``mix``) and the unreviewed ``pool_features``, and what was done.

    Each round, the current registered head (its prior the pool's class mix, ``pool_prior_head``) gives the
    pool's ``pseudo_labels`` (per class at most that class's reviewed count); the regression is refitted on the
    reviewed labels plus those (each weighing ``weight``, classes balanced on the weighted counts; a round's
    pseudo-labels replace the previous round's) and takes the pool's class mix again. ``rounds`` 0: the
    pool's class mix only (ADR 0043). The reviewed labels are never changed; ``info["shares"]`` is the last
    classify-and-count estimate, ``info["pseudo_labels"]`` the per-round counts per class index, ``info["rows"]`` /
    ``info["classes"]`` the last round's pseudo-labelled pool rows and their classes."""
    k = len(head.intercept)
    fitted = labels if mix else None
    shares = pool_shares(head, pool_features)
    out = pool_prior_head(head, pool_features, fitted)
    caps = np.bincount(labels, minlength=k)
    per_round: list[list[int]] = []
    idx, pl = np.zeros(0, np.int64), np.zeros(0, np.int64)
    for _ in range(rounds):
        idx, pl = pseudo_labels(out, pool_features, caps, threshold)
        per_round.append([int(n) for n in np.bincount(pl, minlength=k)])
        if not len(idx):
            break
        x = np.concatenate([features, pool_features[idx]])
        y = np.concatenate([labels, pl])
        w = np.concatenate([np.ones(len(labels)), np.full(len(idx), weight)])
        refit = fit_linear_head(x, y, k, c, weights=w)
        refit = with_label_mix(refit, labels) if mix else refit
        shares = pool_shares(refit, pool_features)
        out = pool_prior_head(refit, pool_features, fitted)
    return out, {"rounds": rounds, "pool_images": int(len(pool_features)), "threshold": threshold,
                 "weight": weight, "pseudo_labels": per_round, "shares": shares, "rows": idx, "classes": pl}


def fit_candidate(cand: LightCandidate, labels: np.ndarray, num_classes: int,
                  idx: np.ndarray | None = None) -> "LinearHead":
    """The candidate's regression fitted on images ``idx`` (default all), with their views when augmented."""
    idx = np.arange(len(labels)) if idx is None else idx
    x, y = cand.rows(idx, labels)
    head = fit_head(x, y, num_classes, cand.c, cand.head)
    return with_label_mix(head, labels[idx]) if cand.mix else head


def repeated_folds(labels: np.ndarray, groups: Sequence[str], seed: int = 0,
                   repeats: int = CV_REPEATS) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """Up to ``repeats`` distinct group-aware fold sets (``group_folds`` with seeds seed, seed + 1, ...; a
    handful of groups often allows one partition only, which is then scored once)."""
    out: list[list[tuple[np.ndarray, np.ndarray]]] = []
    seen: set[tuple[bytes, ...]] = set()
    for r in range(repeats):
        folds = group_folds(labels, groups, FOLDS, seed + r)
        key = tuple(sorted(np.sort(te).tobytes() for _tr, te in folds))
        if key not in seen:
            seen.add(key)
            out.append(folds)
    return out


def light_predictors(candidates: Mapping[str, LightCandidate], labels: np.ndarray,
                     num_classes: int) -> dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    """Per candidate, ``predict(train_idx, test_idx)``: fitted on the train images (and their views), predicting
    the test images' own view. A candidate and its ``mix`` twin share one fit per training set."""
    fits: dict[tuple[str, str, float, int, bytes], LinearHead] = {}

    def make(cand: LightCandidate) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        def predict(tr: np.ndarray, te: np.ndarray) -> np.ndarray:
            key = (cand.feature_set, cand.head, cand.c, len(cand.views), tr.tobytes())
            if key not in fits:
                fits[key] = fit_head(*cand.rows(tr, labels), num_classes, cand.c, cand.head)
            head = with_label_mix(fits[key], labels[tr]) if cand.mix else fits[key]
            return head.predict(cand.views["none"][te])
        return predict

    return {name: make(cand) for name, cand in candidates.items()}


def choose_candidate(candidates: dict[str, LightCandidate], labels: np.ndarray,
                     fold_sets: Sequence[Sequence[tuple[np.ndarray, np.ndarray]]],
                     classes: Sequence[str],
                     out_of_fold: dict[str, np.ndarray] | None = None,
                     predictors: Mapping[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] | None = None,
                     ) -> tuple[str, dict[str, Score]]:
    """Group-CV of every candidate (trained on the other folds' images and their views, scored on the
    held-out fold's own images), accuracy and macro F1 averaged over the repeated fold sets; the best
    by macro F1, then accuracy, the first of equals. A candidate and its ``mix`` twin share one fit per fold.
    ``out_of_fold``: filled with each candidate's out-of-fold predictions on the first fold set;
    ``predictors``: ``light_predictors`` of the candidates, whose fits a later caller reuses."""
    cv: dict[str, Score] = {}
    predictors = predictors if predictors is not None else light_predictors(candidates, labels, len(classes))
    for name, predict in predictors.items():
        preds = [out_of_fold_predictions(predict, len(labels), folds) for folds in fold_sets]
        runs = [score(labels, pred, classes) for pred in preds]
        if out_of_fold is not None:
            out_of_fold[name] = preds[0]
        cv[name] = mean_score(runs)
    return (best_name(cv) if cv else ""), cv


@dataclass(frozen=True)
class LinearHead:
    """Class logits = features @ coef.T + intercept, over all classes of the data."""
    coef: np.ndarray       # (k, C)
    intercept: np.ndarray  # (k,)
    c: float

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.argmax(features @ self.coef.T + self.intercept, axis=1)

    def proba(self, features: np.ndarray) -> np.ndarray:
        """(n, k) class probabilities: the softmax of the logits (under the head's own prior)."""
        z = features @ self.coef.T + self.intercept
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return np.asarray(z / z.sum(axis=1, keepdims=True))


def fit_linear_head(features: np.ndarray, labels: np.ndarray, num_classes: int, c: float,
                    balanced: bool = True, weights: np.ndarray | None = None) -> LinearHead:
    """Class-balanced (``balanced``; else every image weighs the same) logistic regression on standardised
    features, folded back into raw-feature weights. ``weights``: a weight per row, scaling that row's loss
    (pseudo-labels weigh less, ``self_trained_head``); the class balance is then kept on the weighted counts: the
    sum of the weights is shared out equally among the classes (all weights 1: exactly scikit-learn's "balanced")."""
    from sklearn.linear_model import LogisticRegression

    mu, sd = features.mean(0), features.std(0) + 1e-6
    coef = np.zeros((num_classes, features.shape[1]))
    intercept = np.full(num_classes, ABSENT_CLASS_BIAS)
    present = np.unique(labels)
    if len(present) == 1:
        intercept[present[0]] = 0.0
        return LinearHead(coef, intercept, c)
    weight: str | None = "balanced" if balanced else None
    row_weights = None
    if weights is not None:
        row_weights = np.asarray(weights, dtype=np.float64)
        if balanced:
            totals = np.bincount(labels, weights=row_weights, minlength=num_classes)
            row_weights = row_weights * totals.sum() / (len(present) * totals[labels])
        weight = None
    lr = LogisticRegression(C=c, class_weight=weight, max_iter=3000).fit((features - mu) / sd, labels,
                                                                         sample_weight=row_weights)
    w, b = lr.coef_, lr.intercept_
    if len(present) == 2:  # scikit-learn gives one row (logit of the second class): split it symmetrically
        w, b = np.vstack([-w[0] / 2, w[0] / 2]), np.array([-b[0] / 2, b[0] / 2])
    for row, cls in enumerate(lr.classes_):
        coef[cls] = w[row] / sd
        intercept[cls] = b[row] - coef[cls] @ mu
    return LinearHead(coef, intercept, c)


def fit_lda_head(features: np.ndarray, labels: np.ndarray, num_classes: int) -> LinearHead:
    """Linear discriminant analysis on standardised features, the pooled covariance shrunk by Ledoit-Wolf,
    equal class priors (a balanced rule, like the class-balanced regression), folded back into raw-feature
    weights. Few labels in many dimensions: the shrinkage is what keeps the covariance invertible and stable."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    mu, sd = features.mean(0), features.std(0) + 1e-6
    coef = np.zeros((num_classes, features.shape[1]))
    intercept = np.full(num_classes, ABSENT_CLASS_BIAS)
    present = np.unique(labels)
    if len(present) == 1 or len(labels) <= len(present):
        if len(present) == 1:
            intercept[present[0]] = 0.0
            return LinearHead(coef, intercept, 0.0)
        return fit_linear_head(features, labels, num_classes, 1.0)  # one image a class: no covariance to pool
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto", priors=np.full(len(present), 1.0 / len(present)))
    lda.fit((features - mu) / sd, labels)
    w, b = lda.coef_, lda.intercept_
    if len(present) == 2:  # one row (the second class against the first): split it symmetrically
        w, b = np.vstack([-w[0] / 2, w[0] / 2]), np.array([-b[0] / 2, b[0] / 2])
    for row, cls in enumerate(lda.classes_):
        coef[cls] = w[row] / sd
        intercept[cls] = b[row] - coef[cls] @ mu
    return LinearHead(coef, intercept, 0.0)


def fit_head(features: np.ndarray, labels: np.ndarray, num_classes: int, c: float, head: str = "lr") -> LinearHead:
    """The candidate's head: the class-balanced regression at ``c`` ("lr") or the shrinkage discriminant ("lda")."""
    if head == "lda":
        return fit_lda_head(features, labels, num_classes)
    if head != "lr":
        raise ValueError(f"unknown head {head!r}; choose from {', '.join(HEAD_KINDS)}")
    return fit_linear_head(features, labels, num_classes, c)


def write_linear_head(loaded: LoadedModel, head: LinearHead, features: np.ndarray, classes: Sequence[str],
                      out: Path, card: dict[str, Any]) -> Path:
    """A MemoryMamba directory: the parent's backbone, a head computing exactly ``head`` on pooled features.

    The model's head is Linear(C, H) → GELU → Dropout → Linear(H, k). The first layer becomes an
    identity on the first C units plus a per-feature shift that puts every training feature at or
    above PASS_THROUGH_FLOOR, where GELU is the identity to float precision; the last layer holds
    the fitted weights, its bias compensating the shift. Needs H >= C (true of every preset).
    """
    cfg = dataclasses.replace(loaded.config, num_classes=len(classes))
    width, hidden = features.shape[1], cfg.head_hidden
    if hidden < width:
        raise ValueError(f"the head's hidden width {hidden} is below the feature width {width}: no pass-through")
    model = MemoryMamba(cfg)
    backbone = {k: v for k, v in loaded.model.state_dict().items() if not k.startswith("head.")}
    missing, unexpected = model.load_state_dict(backbone, strict=False)
    if unexpected or any(not k.startswith("head.") for k in missing):
        raise ValueError(f"backbone weights do not fit (missing {missing}, unexpected {unexpected})")
    lo, hi = features.min(0), features.max(0)
    shift = PASS_THROUGH_FLOOR - lo + (hi - lo)  # a margin of one training range below the lowest seen value
    first, last = cast(torch.nn.Linear, model.head[0]), cast(torch.nn.Linear, model.head[3])
    with torch.no_grad():
        first.weight.zero_()
        first.weight[:width, :width] = torch.eye(width)
        first.bias.zero_()
        first.bias[:width] = torch.from_numpy(shift).float()
        last.weight.zero_()
        last.weight[:, :width] = torch.from_numpy(head.coef).float()
        last.bias.copy_(torch.from_numpy(head.intercept - head.coef @ shift).float())
    card = {**card, "classes": list(classes), "test_time_augmentation": HEAD_VIEWS,
            "parameters": int(sum(p.numel() for p in model.parameters()))}
    return save_model(out, loaded.name, model, cfg, card)


def write_texture_linear(features: np.ndarray, labels: np.ndarray, classes: Sequence[str], c: float, out: Path,
                         card: dict[str, Any], feature_set: str = "texture", mix: bool = False,
                         balanced: bool = True, head_kind: str = "lr", pool_features: np.ndarray | None = None,
                         self_train_rounds: int = SELF_TRAIN_ROUNDS, folder: FolderMix | None = None,
                         normal: Sequence[str] | None = None) -> Path:
    """A ``texture_linear`` directory: the training features' mean and scale, then the fitted regression
    on the standardised features (the same fit ``fit_linear_head`` makes under cross-validation; ``mix``:
    the biases carry the labels' class mix, ``with_label_mix``; ``balanced``: class-balanced weights;
    ``head_kind`` "lda": the shrinkage discriminant of ``fit_lda_head`` instead of the regression;
    ``pool_features``: unlabelled images' features whose class mix, by classify-and-count, becomes the prior,
    ``pool_prior_head``; the card's ``training.pool_prior`` records it; ``self_train_rounds``: with pool features
    and a class-balanced regression, that many rounds of ``self_trained_head`` on them, ``training.self_training``;
    ``folder``: the prior is the folder's mix by adjusted classify-and-count, ``FolderMix``, and the unreviewed pool
    joins the fit of the class most of it is, one of ``normal`` (``unreviewed_fit``, ADR 0075))."""
    mu, sd = features.mean(0), features.std(0) + 1e-6
    z = (features - mu) / sd
    head = fit_lda_head(z, labels, len(classes)) if head_kind == "lda" else fit_linear_head(z, labels, len(classes), c, balanced)
    plain = head   # the fit itself, before any prior goes into its biases
    if mix:
        head = with_label_mix(head, labels)
    if pool_features is not None and len(pool_features):
        pool_z = (pool_features - mu) / sd
        training = dict(card.get("training", {}))
        in_fit: dict[str, Any] | None = None
        if head_kind == "lr" and balanced and self_train_rounds > 0:
            head, done = self_trained_head(head, z, labels, c, pool_z, mix, self_train_rounds)
            shares = done["shares"]
            training["self_training"] = {
                "rounds": self_train_rounds, "pool_images": done["pool_images"], "threshold": done["threshold"],
                "weight": done["weight"],
                "pseudo_labels": [{name: n for name, n in zip(classes, counts)} for counts in done["pseudo_labels"]],
                "note": "per class, the unreviewed images the head (with the pool's class mix) gives that class with "
                        "probability >= threshold, at most as many as the class has reviewed labels, joined the fit "
                        "with this weight; refitted, then the pool's class mix re-estimated; the held-out check and "
                        "metrics.val scored the model fitted on the reviewed labels alone"}
        else:
            if folder is None:
                estimated = pool_shares(head, pool_z)
            else:
                q_pool = folder.pool_estimate(head, pool_z)
                estimated = folder.from_pool(q_pool)
                if head_kind == "lr" and balanced and folder.unreviewed_weight_max > 0:
                    # a mix head is the same balanced fit with the labels' mix in its biases (with_prior takes it out)
                    head, in_fit = _unreviewed_in_fit(z, labels, classes, c, pool_z, q_pool, folder.unreviewed_weight,
                                                      normal, plain)
                    head = with_label_mix(head, labels) if mix else head
                elif head_kind == "lr" and balanced:
                    in_fit = {"weight": 0.0, "class": None, "note": "not used (--no-unreviewed-in-fit)"}
            shares = estimated if folder is None else folder.tempered(estimated)
            head = with_prior(head, shares, labels if mix else None)
        training["pool_prior"] = {
            "images": int(len(pool_features)),
            "method": "classify-and-count, add-one smoothed" if folder is None else
                      "the folder's mix: its reviewed labels, and its unreviewed images by adjusted classify-and-count "
                      "(the head's out-of-fold confusion on the reviewed labels), add-one smoothed",
            "class_mix": "pool" if folder is None else "acc-folder" if folder.temper_max > 0 else "acc-folder-full",
            "shares": {name: round(float(q), 4) for name, q in zip(classes, shares)},
            "note": ("the class mix of unreviewed images of the reviewed folder, as the fitted head predicts them"
                     if folder is None else "the reviewed folder's class mix")
                    + ", replaces the fit's prior (log q - log p added to the biases); the held-out check and "
                      "metrics.val scored the model without it"}
        if folder is not None:
            training["pool_prior"]["folder"] = {
                "reviewed": {name: int(n) for name, n in zip(classes, folder.reviewed_counts)},
                "unreviewed": folder.unreviewed}
            if folder.chosen is not None:
                training["pool_prior"]["folder"]["chosen_by_label_next"] = {
                    name: int(n) for name, n in zip(classes, folder.chosen)}
                training["pool_prior"]["folder"]["temper"] = round(folder.temper, 4)
                training["pool_prior"]["folder"]["estimated_shares"] = {
                    name: round(float(q), 4) for name, q in zip(classes, estimated)}
                training["pool_prior"]["folder"]["note"] = (
                    "a class's out-of-fold errors correct its count only as far as its labels were not chosen by "
                    "'label next' (ADR 0049); " + (
                        f"that estimate (estimated_shares) is then raised to the power 'temper', 1 - "
                        f"{folder.temper_max:g} x the share of labels 'label next' chose, and renormalised: the shares "
                        "given to the head lean towards equal classes, a better decision rule there, not a better "
                        "estimate of the mix (benchmarks/results/temper.md, ADR 0074)" if folder.temper_max > 0 else
                        "the estimate is given untempered (--class-mix acc-folder-full)"))
            if in_fit is not None:
                training["pool_prior"]["folder"]["unreviewed_in_fit"] = in_fit
        card = {**card, "training": training}
    cfg = feature_config(feature_set, len(classes))
    model = TextureLinear(cfg)
    with torch.no_grad():
        model.mean.copy_(torch.from_numpy(mu).float())
        model.scale.copy_(torch.from_numpy(sd).float())
        model.linear.weight.copy_(torch.from_numpy(head.coef).float())
        model.linear.bias.copy_(torch.from_numpy(head.intercept).float())
    card = {**card, "classes": list(classes), "test_time_augmentation": "none",
            "parameters": int(sum(p.numel() for p in model.parameters()))}
    return save_model(out, "texture_linear", model, cfg, card)


@dataclass
class Comparison:
    """Every candidate's group-CV score, the chosen head and the best simple answer on the held-out part."""
    classes: list[str]
    groups: dict[str, Any]
    cv: dict[str, Score]
    chosen: str
    best_simple: str
    held_out: dict[str, Score] = field(default_factory=dict)  # chosen and best simple answer
    held_out_images: int = 0
    pooled: PooledCheck | None = None  # both procedures on every label: nested out of fold + held out (ADR 0072)

    @property
    def held_out_wins(self) -> bool:
        """The chosen head is at least as good as the best simple answer in accuracy and macro F1 on the held-out part."""
        return self.chosen in self.held_out and self.held_out[self.chosen].beats_or_ties(self.held_out[self.best_simple])

    @property
    def wins(self) -> bool:
        """The verdict: the check on every label where it could be made, else the held-out part's (ADR 0072: the
        held-out fifth alone refused 6 of 30 truly better versions, benchmarks/results/verdict-pooled.md)."""
        if self.pooled is not None and self.pooled.made:
            return self.pooled.wins()
        return self.held_out_wins

    def as_dict(self) -> dict[str, Any]:
        return {"cv": {k: v.as_dict() for k, v in self.cv.items()}, "groups": self.groups, "chosen": self.chosen,
                "best_simple": self.best_simple, "held_out_images": self.held_out_images,
                "held_out": {k: v.as_dict() for k, v in self.held_out.items()}, "wins": self.wins,
                "held_out_wins": self.held_out_wins,
                **({"pooled": self.pooled.as_dict()} if self.pooled is not None else {})}


def split_items(root: Path, part: str, classes: Sequence[str] | None = None) -> tuple[list[Path], np.ndarray, list[str]]:
    """Paths, class indices and class names of one part (train/ or val/) of an exported class-folder tree."""
    folders = class_folders(root / part) if (root / part).is_dir() else {}
    names = list(classes) if classes is not None else sorted(folders)
    paths = [p for name in names for p in folders.get(name, [])]
    labels = np.array([i for i, name in enumerate(names) for _ in folders.get(name, [])], dtype=np.int64)
    return paths, labels, names


def head_name(c: float) -> str:
    return f"linear_head_C{c:g}"


def texture_name(c: float, features: str = "texture", augmented: bool = False, mix: bool = False,
                 head: str = "lr") -> str:
    end = LDA_MARK if head == "lda" else f"_C{c:g}"
    return f"{FEATURE_KINDS[features]}{AUGMENT_MARK if augmented else ''}{PRIOR_MARK if mix else ''}{end}"


_LIGHT_NAME = re.compile(rf"^(?P<stem>[a-z_]+?)(?P<aug>{AUGMENT_MARK})?(?P<mix>{PRIOR_MARK})?"
                         rf"(?:_C[0-9.e+-]+|(?P<lda>{LDA_MARK}))$")


def candidate_features(name: str) -> str | None:
    """The feature set of a texture_linear candidate (``defect_linear_C1``, ``bank_linear_flips_mix_C10`` →
    defect, bank), None for a backbone head."""
    m = _LIGHT_NAME.match(name)
    return next((k for k, stem in FEATURE_KINDS.items() if m and m["stem"] == stem), None)


def candidate_augmented(name: str) -> bool:
    """Whether a texture_linear candidate trained on the flipped views of its images too."""
    m = _LIGHT_NAME.match(name)
    return bool(m and m["aug"] and candidate_features(name))


def candidate_mix(name: str) -> bool:
    """Whether a texture_linear candidate's biases carry the labels' class mix."""
    m = _LIGHT_NAME.match(name)
    return bool(m and m["mix"] and candidate_features(name))


def candidate_head(name: str) -> str:
    """"lda" for a shrinkage-discriminant candidate (``defect_bank_linear_lda``), else "lr"."""
    m = _LIGHT_NAME.match(name)
    return "lda" if m and m["lda"] and candidate_features(name) else "lr"


def candidate_c(name: str) -> float:
    """The regularisation strength in a candidate's name (``linear_head_C10``, ``texture_linear_C0.1``; 0 for
    a discriminant, which has none)."""
    return 0.0 if candidate_head(name) == "lda" else float(name.rpartition("_C")[2])


def compare_candidates(loaded: LoadedModel | None, root: Path, group_rule: str = "auto", seed: int = 0,
                       progress: Callable[[str, int, int], None] | None = None,
                       kinds: Sequence[str] = CANDIDATE_KINDS,
                       augment: Sequence[str] = CANDIDATE_AUGMENT) -> tuple[Comparison, dict[str, np.ndarray]]:
    """Group-CV of the simple answers and of the candidates of ``kinds`` on root/train; held-out on root/val.

    ``kinds``: "texture" (linear on texture features), "defect" (linear on the small-defect
    statistics), "bank" / "defect_bank" (linear on the LBP / Gabor / GLCM descriptors, alone or beside
    the defect statistics; ADR 0033) and/or "backbone" (linear head on the frozen
    backbone of ``loaded``; skipped when ``loaded`` has none, e.g. a texture_linear version); empty:
    only the simple answers. Returns the comparison and the arrays a caller needs to write the
    chosen candidate (``train_features``: its training features, ``labels``, ``head_c``).
    """
    def tick(done: int) -> None:
        if progress:
            progress("candidates", done, 4)

    backbone = loaded if loaded is not None and hasattr(loaded.model, "features") else None
    paths, y, classes = split_items(root, "train")
    val_paths, y_val, _ = split_items(root, "val", classes)
    names = [p.name for p in paths]
    groups, rule = assign_groups(names, [classes[i] for i in y], group_rule)
    folds = group_folds(y, groups, FOLDS, seed)
    features: dict[str, tuple[np.ndarray, np.ndarray]] = {"thumbnail": (thumbnails(paths), thumbnails(val_paths))}
    tick(1)
    if backbone is not None:
        views_emb, val_views_emb = embed(backbone, paths), embed(backbone, val_paths)
        features["embedding"] = (views_emb[0], val_views_emb[0])
        tick(2)
    cv: dict[str, Score] = {}
    simple_predictors: dict[str, Predict] = {}
    for kind, (x, _xv) in features.items():
        for model_name, make in SIMPLE_MODELS.items():
            if kind == "embedding" and model_name == "majority":
                continue  # the same constant answer as on thumbnails
            key = f"{kind}_{model_name}" if model_name != "majority" else "majority"
            def simple(tr: np.ndarray, te: np.ndarray, x: np.ndarray = x, make: Callable[[int], Estimator] = make) -> np.ndarray:
                return fit_predict(make, x[tr], y[tr], x[te])

            simple_predictors[key] = simple
            cv[key] = cross_validated(simple, y, folds, classes)
    best_simple = best_name(cv)
    wanted = [fs for fs in FEATURE_KINDS if fs in kinds]
    views = ["none", *(AUGMENT_VIEWS if "flips" in augment else ())]
    by_view = {v: feature_matrices(paths, wanted, v) for v in views} if wanted else {}
    val_sets = feature_matrices(val_paths, wanted, "none") if wanted else {}
    light = light_candidates({fs: {v: by_view[v][fs] for v in views} for fs in wanted}, CANDIDATE_C, augment)
    fold_sets = [folds, *(f for f in repeated_folds(y, groups, seed, CV_REPEATS)[1:])]
    out_of_fold: dict[str, np.ndarray] = {}
    head_predictors: dict[str, Predict] = light_predictors(light, y, len(classes))
    _, heads = choose_candidate(light, y, fold_sets, classes, out_of_fold, head_predictors)
    emb_avg: tuple[np.ndarray, np.ndarray] | None = None  # pooled backbone features averaged over the views
    if "backbone" in kinds and backbone is not None:
        emb_avg = (views_emb.mean(0), val_views_emb.mean(0))
        for c in HEAD_C:
            def linear(tr: np.ndarray, te: np.ndarray, x: np.ndarray = emb_avg[0], c: float = c) -> np.ndarray:
                return fit_linear_head(x[tr], y[tr], len(classes), c).predict(x[te])

            head_predictors[head_name(c)] = linear
            runs = [cross_validated(linear, y, f, classes) for f in fold_sets]  # the same fold sets as above
            heads[head_name(c)] = mean_score(runs)
    cv.update(heads)
    tick(3)
    chosen = best_name(heads) if heads else ""  # the first of equals: the cheapest candidate
    held_out: dict[str, Score] = {}
    head: LinearHead | None = None
    if chosen in light:
        head = fit_candidate(light[chosen], y, len(classes))
    elif chosen and emb_avg is not None:
        head = fit_linear_head(emb_avg[0], y, len(classes), candidate_c(chosen))
    pooled: PooledCheck | None = None
    if len(y_val):
        kind, _, model_name = best_simple.partition("_")
        x, xv = features[kind if model_name else "thumbnail"]
        simple_val = fit_predict(SIMPLE_MODELS[model_name or "majority"], x, y, xv)
        held_out[best_simple] = score(y_val, simple_val, classes)
        if head is not None:
            xv = val_sets[light[chosen].feature_set] if chosen in light else emb_avg[1] if emb_avg else xv
            head_val = head.predict(xv)
            held_out[chosen] = score(y_val, head_val, classes)

            def inner(rows: np.ndarray) -> list[list[tuple[np.ndarray, np.ndarray]]]:
                """One group fold set inside (the command's choice averages three: five times the fits again)."""
                return [[(rows[a], rows[b]) for a, b in group_folds(y[rows], [groups[i] for i in rows], FOLDS, seed)]]

            pooled = pooled_check(Procedure(head_predictors, inner), Procedure(simple_predictors, inner),
                                  y, folds, classes, y_val, head_val, simple_val)
    arrays: dict[str, np.ndarray] = {}
    if chosen in light:
        rows, row_labels = light[chosen].rows(np.arange(len(y)), y)
        arrays = {"train_features": rows, "head_c": np.array(light[chosen].c), "labels": row_labels,
                  "images": np.array(len(y)), "out_of_fold": out_of_fold[chosen]}  # first fold set (ACC, ADR 0045)
        if not candidate_augmented(chosen):  # the held-out rows, for the refit on all labels (no flipped views there)
            arrays |= {"held_out_features": val_sets[light[chosen].feature_set], "held_out_labels": y_val}
    elif chosen and emb_avg is not None:
        arrays = {"train_features": emb_avg[0], "head_c": np.array(candidate_c(chosen)), "labels": y,
                  "images": np.array(len(y)), "held_out_features": emb_avg[1], "held_out_labels": y_val}
    tick(4)
    n_groups = len(set(groups))
    return Comparison(classes, {"rule": rule, "groups": n_groups, "folds": len(folds)}, cv, chosen, best_simple,
                      held_out, int(len(y_val)), pooled), arrays


def can_refit_on_all(arrays: dict[str, np.ndarray]) -> bool:
    """Whether ``compare_candidates`` kept held-out rows the chosen candidate can be refitted with."""
    return "held_out_features" in arrays and len(arrays["held_out_labels"]) > 0


def write_chosen_head(loaded: LoadedModel | None, comparison: Comparison, arrays: dict[str, np.ndarray], out: Path,
                      parent_card: dict[str, Any], command: str, all_labels: bool = False,
                      pool_features: np.ndarray | None = None, self_train_rounds: int = SELF_TRAIN_ROUNDS,
                      unreviewed: int | None = None, chosen: Mapping[str, int] | None = None,
                      temper: bool = True, unreviewed_in_fit: bool = True,
                      normal: Sequence[str] | None = None) -> Path:
    """Refit the chosen candidate on every training image and write it as a model directory with its card.

    ``all_labels``: on the training images *and* the held-out ones (``can_refit_on_all``), with the same
    feature set, head, C and prior; the card's held-out figure stays the one of the fit on the training
    images alone (the refusal check's), and ``training.refit`` says so (ADR 0043). ``pool_features`` (a feature
    candidate only): the chosen feature set's vectors of unreviewed images, whose class mix becomes the written
    head's prior (``write_texture_linear``), and with ``self_train_rounds`` > 0 its pseudo-labels (``self_trained_head``).
    ``unreviewed`` (the folder's unreviewed images; needs the chosen candidate's ``out_of_fold`` predictions): the
    prior is the whole folder's mix by adjusted classify-and-count (``FolderMix``); ``chosen``: per class name, the
    reviewed labels "label next" chose (the database's ``labels.chosen_by_label_next``), whose out-of-fold errors the
    estimate does not read as the folder's, and which temper the mix towards equal classes (``temper``; False:
    ``--class-mix acc-folder-full``); ``unreviewed_in_fit``: the pool joins the dominant class's loss as far as label
    next did not choose the labels (``unreviewed_fit``; False: ``--no-unreviewed-in-fit``), if that class is one of
    ``normal`` (the project's classes that are not a defect; None: any).
    """
    features, labels = arrays["train_features"], arrays["labels"]
    images = int(arrays["images"]) if "images" in arrays else len(labels)
    folder = None
    if unreviewed is not None and "out_of_fold" in arrays:
        reviewed = np.concatenate([labels[:images], arrays.get("held_out_labels", np.zeros(0, np.int64))]).astype(np.int64)
        folder = FolderMix(labels[:images], arrays["out_of_fold"],
                           np.bincount(reviewed, minlength=len(comparison.classes)), int(unreviewed),
                           None if not chosen else np.array([int(chosen.get(c, 0)) for c in comparison.classes]),
                           LABEL_NEXT_TEMPER if temper else 0.0, UNREVIEWED_WEIGHT if unreviewed_in_fit else 0.0)
    checked_on = images
    if all_labels:
        if not can_refit_on_all(arrays):
            raise ValueError("no held-out rows to refit the chosen candidate with")
        features = np.concatenate([features, arrays["held_out_features"]])
        labels = np.concatenate([labels[:images], arrays["held_out_labels"]])
        images = len(labels)
    c = float(arrays["head_c"])
    feature_set = candidate_features(comparison.chosen)
    head_kind = candidate_head(comparison.chosen)
    texture = feature_set is not None
    # a texture_linear version owes nothing to the parent's network: only the task's facts carry over
    keep = ("family", "task") if texture else (
        "model", "family", "task", "input_size", "color_mode", "normalisation", "preset", "ablation", "licence", "paper")
    held = comparison.held_out.get(comparison.chosen)
    if texture:
        kind = ("linear discriminant analysis with Ledoit-Wolf covariance shrinkage and equal class priors, "
                "on standardised features") if head_kind == "lda" else "class-balanced logistic regression on standardised features"
        training = {"initialisation": f"none: a linear layer on the {feature_set} features (inference.texture_features)",
                    "head": {"kind": kind, "C": c if head_kind == "lr" else None,
                             "features": f"{features.shape[1]} {feature_set} features of the gray image",
                             "augmentation": ("the horizontal, vertical and 180-degree flips of every image too"
                                              if candidate_augmented(comparison.chosen) else "none"),
                             "prior": ("the labels' class mix (log class shares added to the biases)"
                                       if candidate_mix(comparison.chosen) else "balanced classes"),
                             "selected_by": "group cross-validation"}, "seconds": None}
    else:
        training = {"initialisation": "frozen backbone of the parent, linear head fitted on its pooled features",
                    "head": {"kind": "class-balanced logistic regression", "C": c, "features": f"pooled backbone "
                             f"features averaged over the '{HEAD_VIEWS}' test-time views", "selected_by": "group cross-validation"},
                    "seconds": None}
    if all_labels:
        training["refit"] = (f"refitted on all {images} reviewed images (the {checked_on} it was chosen and checked on "
                             f"and the {images - checked_on} held out) after the held-out check; metrics.val is the "
                             f"check's model, fitted on the {checked_on} alone")
    card = {
        **{k: parent_card[k] for k in keep if k in parent_card},
        "data": {"train_images": images, "val_images": comparison.held_out_images,
                 "train_counts": {c: int(n) for c, n in zip(comparison.classes,
                                                            np.bincount(labels[:images], minlength=len(comparison.classes)))},
                 **({"checked_on_images": checked_on, "held_out_in_fit": True} if all_labels else {})},
        "training": training,
        "command": command,
        "init_model": {"path": str(loaded.path) if loaded is not None and loaded.path else None,
                       "metrics": parent_card.get("metrics", {})},
        "metrics": {"val": {**held.as_dict(), "count": comparison.held_out_images}} if held else {},
    }
    if feature_set is not None:
        return write_texture_linear(features, labels, comparison.classes, c, out, card, feature_set,
                                    candidate_mix(comparison.chosen), head_kind=head_kind, pool_features=pool_features,
                                    self_train_rounds=self_train_rounds, folder=folder, normal=normal)
    if loaded is None:
        raise ValueError("a frozen-backbone head needs the parent model")
    head = fit_linear_head(features, labels, len(comparison.classes), c)
    return write_linear_head(loaded, head, features, comparison.classes, out, card)
