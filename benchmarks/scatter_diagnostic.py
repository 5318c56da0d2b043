"""Would the few-label head do better reading second-order texture (wavelet scattering)? Stage 1 of the rule in
benchmarks/results/scatter.md (session 41, issue 20 item 1): a diagnostic on runs the retrain command already made
on ``lnclasses.split``'s train-only splits.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/scatter_diagnostic.py RUN.json ...   # --all-labels for the CV rows

``none``: the command's kind of head on ``defect_bank`` as it is; ``scatter``: on ``scatter_vector`` alone; ``both``:
the two side by side. The head (the run's C, class-balanced) and the prior (the folder's mix by adjusted
classify-and-count) as the command has them. Nothing here reads ``val``. Needs kymatio (not a station dependency).
"""
from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.prior_diagnostic import compare_feature_sets, tile_matrix  # noqa: E402

SIDE = 256        # longer side, as bank and defect
J = 3
L = 8
STEP = 32         # each side a multiple of this (few distinct shapes: a transform is built per shape, ~3 s)
MIN_SIDE = 32
EPS = 1e-3
SCATTER_DIM = 2 + 3 * 2 * 2 + 3 * L * 2   # 62


@lru_cache(maxsize=64)
def _transform(h: int, w: int) -> Any:
    """kymatio's 2-D scattering for one shape (its top-level import fails with today's SciPy: the 2-D frontend only)."""
    import torch
    from kymatio.scattering2d.frontend.torch_frontend import ScatteringTorch2D

    torch.set_num_threads(1)
    return ScatteringTorch2D(J=J, shape=(h, w), L=L, max_order=2, out_type="list")


def _prepared(gray: np.ndarray) -> np.ndarray:
    """The tile as scatter.md has it: shrunk, standardised, de-striated, each side a multiple of STEP."""
    from inference.texture_bank import shrunk_with_spread

    g, med, mad = shrunk_with_spread(gray, SIDE)
    z = np.clip((g - med) / mad, -20, 20).astype(np.float32)
    z = z - np.median(z, axis=0, keepdims=True)
    h, w = z.shape
    nh, nw = (max(MIN_SIDE, int(round(s / STEP)) * STEP) for s in (h, w))
    if (nh, nw) != (h, w):
        z = cv2.resize(z, (nw, nh), interpolation=cv2.INTER_AREA if nh * nw < h * w else cv2.INTER_LINEAR)
    return np.ascontiguousarray(z, np.float32)


def scatter_vector(gray: np.ndarray) -> np.ndarray:
    """The (SCATTER_DIM,) scattering numbers of one gray image in [0, 1] (scatter.md)."""
    import torch

    z = _prepared(gray)
    with torch.no_grad():
        out = _transform(*z.shape)(torch.from_numpy(z)[None])
    s0: list[float] = []
    s1 = np.zeros((J, L, 2))
    s2 = np.zeros((J, J, L, 2))
    n2 = np.zeros((J, J, L))
    for c in out:
        m = c["coef"].numpy().reshape(-1)
        stats = (float(m.mean()), float(m.max()))
        if len(c["j"]) == 0:
            s0 += stats
        elif len(c["j"]) == 1:
            s1[c["j"][0], c["theta"][0]] = stats
        else:
            (j1, j2), (t1, t2) = c["j"], c["theta"]
            d = (t2 - t1) % L
            s2[j1, j2, d] += stats
            n2[j1, j2, d] += 1
    feats = list(s0)
    for j in range(J):
        feats += [s1[j, :, 0].mean(), s1[j, :, 0].max(), s1[j, :, 1].mean(), s1[j, :, 1].max()]
    for j1 in range(J):
        for j2 in range(j1 + 1, J):
            for d in range(L):
                feats += list(s2[j1, j2, d] / n2[j1, j2, d])
    return np.log(np.maximum(np.asarray(feats, np.float64), 0.0) + EPS).astype(np.float32)


def feature_sets(t, cache: Path) -> dict[str, np.ndarray]:  # noqa: ANN001 - prior_diagnostic.Tiles
    from inference.imageio import read_image

    sc = tile_matrix(t, cache, "_scatter", lambda paths: np.stack(
        [scatter_vector(read_image(q, "gray")) for q in paths]).astype(np.float32))
    return {"none": t.x, "scatter": sc, "both": np.concatenate([t.x, sc], axis=1)}


def main(argv: list[str] | None = None) -> int:
    return compare_feature_sets(argv, __doc__, feature_sets)


if __name__ == "__main__":
    raise SystemExit(main())
