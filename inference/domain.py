"""What a model was trained on, as statistics of its backbone's pooled embeddings, and how far an
image lies from it (plain numpy in, numpy out; no torch, no Qt, no SQLAlchemy).

Why: every family runs on any image it is handed, and a model trained from scratch on steel
textures answers "scratches 100 %" for an infrared sky frame. The station needs to say "this
image is nothing like what the model learnt from" instead of showing a confident answer.

The description (ADR 0021) is a probabilistic-PCA Gaussian of the embeddings of the training
images: their mean, the top ``k`` principal directions with their variances and one shared
variance for the remaining directions. The distance of an embedding is its Mahalanobis distance
under that Gaussian (per dimension, so models of different widths read alike). It is compact
(k x d floats, a few tens of kB), needs no training images at prediction time and is exact
enough for the question asked (near the training cloud or not).

The threshold is chosen on training images only: the statistics are fitted ``folds`` times
without one fold and each held-out image is scored by the fit that did not see it; the threshold
is a high quantile of those out-of-fold distances. A fit scored on its own images would give
smaller distances than new in-domain images get, and the threshold would flag them.

The in-domain score stored with each prediction is ``0.5 ** (distance / threshold)``: 1 at the
centre, 0.5 at the threshold, falling towards 0 far outside; below ``OUT_OF_DOMAIN_BELOW`` (0.5)
an image is out of domain. Files: ``domain.safetensors`` (the arrays) and ``domain.json`` (the
rest), read with the bounds of ``inference.model_limits`` before anything is allocated.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from .model_limits import ModelLimitError, read_json_bounded, read_safetensors_header

DOMAIN_WEIGHTS = "domain.safetensors"
DOMAIN_JSON = "domain.json"
DOMAIN_FORMAT = 1
OUT_OF_DOMAIN_BELOW = 0.5  # in-domain score at the threshold distance
DEFAULT_QUANTILE = 0.99
DEFAULT_COMPONENTS = 32
DEFAULT_FOLDS = 5
MAX_DIM = 4096  # embedding width accepted from a file
MAX_COMPONENTS = 256
MIN_IMAGES = 8  # fewer cannot say what a domain is (nor give a quantile)
SHRINK = 1e-3  # variance floor, as a fraction of the mean variance: a flat direction is not infinitely sure


class DomainError(ValueError):
    """Domain statistics that cannot be fitted or read, with the reason."""


@dataclass(frozen=True)
class DomainStats:
    """A Gaussian description of the embeddings of a model's training images, and its threshold."""

    mean: np.ndarray          # (d,) float32
    components: np.ndarray    # (k, d) float32, orthonormal rows: the principal directions
    variances: np.ndarray     # (k,) float32, variance along each component (floored)
    residual_variance: float  # variance of each remaining direction
    threshold: float          # distance above which an embedding is out of domain
    quantile: float           # of the out-of-fold training distances the threshold is
    images: int               # how many training images were described
    embedding: str = ""       # what was embedded ("classifier: pooled final-stage features, ...")

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def distances(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, d) embeddings -> (n,) Mahalanobis distance per dimension (about 1 inside the domain)."""
        x = _as_matrix(embeddings, self.dim) - self.mean.astype(np.float64)
        comps = self.components.astype(np.float64)
        proj = x @ comps.T
        inside = (proj ** 2 / self.variances.astype(np.float64)).sum(axis=1)
        residual = np.maximum((x ** 2).sum(axis=1) - (proj ** 2).sum(axis=1), 0.0)
        out = np.sqrt((inside + residual / self.residual_variance) / self.dim)
        return np.where(np.isfinite(out), out, np.inf)

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, d) embeddings -> (n,) in-domain scores in [0, 1] (see ``in_domain_score``)."""
        return in_domain_score(self.distances(embeddings), self.threshold)


def in_domain_score(distances: np.ndarray, threshold: float) -> np.ndarray:
    """``0.5 ** (distance / threshold)``: 1 at the centre, ``OUT_OF_DOMAIN_BELOW`` at the threshold."""
    return np.power(0.5, np.asarray(distances, np.float64) / threshold)


def is_out_of_domain(score: float | None) -> bool:
    """True for a stored in-domain score below the threshold's; None (no statistics) is never out."""
    return score is not None and score < OUT_OF_DOMAIN_BELOW


def _as_matrix(embeddings: np.ndarray, dim: int | None = None) -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
        want = f"(n, {dim})" if dim is not None else "(n, d)"
        raise DomainError(f"embeddings must be a {want} array, got shape {x.shape}")
    return x


def _gaussian(x: np.ndarray, components: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Mean, top components, their (floored) variances and the residual variance of ``x``."""
    n, d = x.shape
    mean = x.mean(axis=0)
    centred = x - mean
    # SVD of the centred data: eigenvectors of the covariance without forming it (d may exceed n).
    _, sing, vt = np.linalg.svd(centred, full_matrices=False)
    eig = sing ** 2 / max(n - 1, 1)
    floor = SHRINK * max(float(np.sum(eig)) / d, 1e-12)
    k = max(1, min(components, len(eig) - 1 if len(eig) > 1 else 1, d))
    rest = d - k
    residual = float(np.sum(eig[k:])) / rest if rest else floor
    return mean, vt[:k], np.maximum(eig[:k], floor), max(residual, floor)


def _stats(x: np.ndarray, components: int, threshold: float, quantile: float, embedding: str) -> DomainStats:
    mean, comps, var, residual = _gaussian(x, components)
    return DomainStats(mean.astype(np.float32), comps.astype(np.float32), var.astype(np.float32), residual,
                       float(threshold), float(quantile), int(x.shape[0]), embedding)


def out_of_fold_distances(embeddings: np.ndarray, components: int = DEFAULT_COMPONENTS,
                          folds: int = DEFAULT_FOLDS, seed: int = 0) -> np.ndarray:
    """Each training embedding's distance under statistics fitted without its fold."""
    x = _as_matrix(embeddings)
    n = x.shape[0]
    folds = max(2, min(folds, n // 2))
    order = np.random.default_rng(seed).permutation(n)
    out = np.empty(n, np.float64)
    for f in range(folds):
        held = order[f::folds]
        keep = np.setdiff1d(order, held)
        part = _stats(x[keep], components, 1.0, 0.0, "")
        out[held] = part.distances(x[held])
    return out


def fit_domain(embeddings: np.ndarray, quantile: float = DEFAULT_QUANTILE, components: int = DEFAULT_COMPONENTS,
               folds: int = DEFAULT_FOLDS, seed: int = 0, embedding: str = "") -> DomainStats:
    """Statistics of the training ``embeddings`` (n, d) with a threshold at ``quantile`` of their
    out-of-fold distances (chosen on these training images only)."""
    x = _as_matrix(embeddings)
    if x.shape[0] < MIN_IMAGES:
        raise DomainError(f"{x.shape[0]} training images cannot describe a domain (at least {MIN_IMAGES})")
    if not np.isfinite(x).all():
        raise DomainError("the embeddings hold NaN or infinite values")
    if not 0.5 <= quantile < 1.0:
        raise DomainError(f"quantile must be within [0.5, 1), got {quantile}")
    oof = out_of_fold_distances(x, components, folds, seed)
    threshold = float(np.quantile(oof, quantile))
    return _stats(x, components, max(threshold, 1e-6), quantile, embedding)


# -- files ------------------------------------------------------------------------------------
def save_domain(directory: str | Path, stats: DomainStats, extra: dict[str, Any] | None = None) -> None:
    """Write ``domain.safetensors`` + ``domain.json`` into the model directory."""
    d = Path(directory)
    weights = d / DOMAIN_WEIGHTS
    save_file({"mean": stats.mean.astype(np.float32), "components": stats.components.astype(np.float32),
               "variances": stats.variances.astype(np.float32)}, str(weights))
    os.chmod(weights, 0o644)  # readable like the model's own files (safetensors writes 0600)
    meta = {"format": DOMAIN_FORMAT, "dim": stats.dim, "components": int(stats.components.shape[0]),
            "residual_variance": stats.residual_variance, "threshold": stats.threshold,
            "quantile": stats.quantile, "images": stats.images, "embedding": stats.embedding,
            "score": "in_domain = 0.5 ** (distance / threshold); out of domain below 0.5"}
    meta.update(extra or {})
    (d / DOMAIN_JSON).write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")


def has_domain(directory: str | Path) -> bool:
    d = Path(directory)
    return (d / DOMAIN_WEIGHTS).is_file() and (d / DOMAIN_JSON).is_file()


def _positive(meta: dict[str, Any], key: str, upper: float) -> float:
    v = meta.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 < v <= upper:
        raise DomainError(f"{DOMAIN_JSON}: {key} must be a positive number up to {upper:g}, got {str(v)[:40]}")
    return float(v)


def load_domain(directory: str | Path) -> DomainStats | None:
    """The directory's statistics, None when it has none; DomainError when they are damaged.

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
    if not isinstance(meta, dict) or meta.get("format") != DOMAIN_FORMAT:
        raise DomainError(f"{d / DOMAIN_JSON}: not domain statistics of format {DOMAIN_FORMAT}")
    dim = int(_positive(meta, "dim", MAX_DIM))
    k = int(_positive(meta, "components", MAX_COMPONENTS))
    want = {"mean": (dim,), "components": (k, dim), "variances": (k,)}
    if set(header) != set(want) or any(header[n].shape != s or header[n].dtype != "F32" for n, s in want.items()):
        got = {n: (e.dtype, e.shape) for n, e in header.items()}
        raise DomainError(f"{d / DOMAIN_WEIGHTS}: expected float32 mean {want['mean']}, components "
                          f"{want['components']}, variances {want['variances']}; the file holds {got}")
    try:
        arrays = load_file(str(d / DOMAIN_WEIGHTS))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise DomainError(f"{d / DOMAIN_WEIGHTS}: unreadable ({exc})") from None
    if not all(np.isfinite(a).all() for a in arrays.values()) or not (arrays["variances"] > 0).all():
        raise DomainError(f"{d / DOMAIN_WEIGHTS}: holds non-finite values or variances that are not positive")
    quantile = meta.get("quantile")
    images = meta.get("images")
    embedding = meta.get("embedding", "")
    return DomainStats(
        arrays["mean"], arrays["components"], arrays["variances"],
        _positive(meta, "residual_variance", 1e12), _positive(meta, "threshold", 1e12),
        float(quantile) if isinstance(quantile, (int, float)) else math.nan,
        int(images) if isinstance(images, int) else 0,
        str(embedding)[:200] if isinstance(embedding, str) else "")


__all__ = ["DomainStats", "DomainError", "ModelLimitError", "fit_domain", "out_of_fold_distances", "load_domain",
           "save_domain", "has_domain", "in_domain_score", "is_out_of_domain", "OUT_OF_DOMAIN_BELOW"]
