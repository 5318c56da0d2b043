"""Would the few-label head do better knowing which responses coincide at one place on the tile? Stage 1 of the rule
in benchmarks/results/cells.md (session 39, issue 20 item 1): a diagnostic on runs the retrain command already made
on ``lnclasses.split``'s train-only splits.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/cells_diagnostic.py benchmarks/results/refit/per-class_d_s*.json \\
        benchmarks/results/selectfor/per-class_d_s*.json        # and the label-next runs; --all-labels for the CV rows

``none``: the command's kind of head on ``defect_bank`` as it is; ``cells``: on ``cell_vector`` alone; ``both``: the
two side by side. The head (the run's C, class-balanced) and the prior (the folder's mix by adjusted
classify-and-count) as the command has them. Nothing here reads ``val``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.prior_diagnostic import compare_feature_sets, tile_matrix  # noqa: E402

CELL_SIGMAS = (1.0, 2.0, 4.0)
LEVEL_SIGMA = 8.0
CELL = 16           # px: a cell's side at the 256-px work size
STRIDE = 8
MARGIN = 8
TOP = 4             # cells averaged for the second descriptor
SPREAD = 8          # cells whose coordinates say line or spot
Z_FLOOR = 0.01
CELL_MAPS = 5 * len(CELL_SIGMAS) + 1
CELL_DIM = 2 * (2 * CELL_MAPS) + 5 + 3 + 2   # 74


def _maps(g: np.ndarray, med: float, mad: float) -> list[np.ndarray]:
    """The 16 response maps of cells.md on the standardised, de-striated tile (full size, not cut to the margin)."""
    from inference.texture_features import _hessian_ridges

    z = (g - med) / mad
    r = z - np.median(z, axis=0, keepdims=True)
    blurred = {s: cv2.GaussianBlur(r, (0, 0), s) for s in sorted({*CELL_SIGMAS, *(2 * s for s in CELL_SIGMAS)})}
    out: list[np.ndarray] = []
    for sigma in CELL_SIGMAS:
        fine = blurred[sigma]
        dog = fine - blurred[2 * sigma]
        dark_ridges, bright_ridges = _hessian_ridges(fine, sigma)   # the one home of the ridge responses
        gx = cv2.Sobel(fine, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(fine, cv2.CV_32F, 0, 1, ksize=3)
        out += [np.maximum(-dog, 0), np.maximum(dog, 0), dark_ridges, bright_ridges, np.sqrt(gx * gx + gy * gy) * sigma]
    out.append(np.abs(cv2.GaussianBlur(z, (0, 0), LEVEL_SIGMA)))
    return [np.asarray(m, np.float32) for m in out]


def _starts(n: int) -> list[int]:
    """Cell starts along a side of ``n`` inner pixels (one cell spanning a side shorter than CELL)."""
    if n <= CELL:
        return [0]
    return list(range(0, n - CELL + 1, STRIDE))


def cell_vector(gray: np.ndarray) -> np.ndarray:
    """The (CELL_DIM,) cell features of one gray image in [0, 1] (cells.md)."""
    from inference.texture_bank import shrunk_with_spread

    g, med, mad = shrunk_with_spread(gray, 256)
    h, w = g.shape
    m = MARGIN if min(h, w) > 4 * MARGIN else 0
    maps = [a[m:h - m, m:w - m] for a in _maps(g, med, mad)]
    ih, iw = maps[0].shape
    ys, xs = _starts(ih), _starts(iw)
    ch, cw = min(CELL, ih), min(CELL, iw)
    desc = np.empty((len(ys) * len(xs), 2 * len(maps)), np.float32)
    centres = np.empty((len(ys) * len(xs), 2), np.float32)
    i = 0
    for y in ys:
        for x in xs:
            for j, a in enumerate(maps):
                block = a[y:y + ch, x:x + cw]
                desc[i, j] = block.mean()
                desc[i, len(maps) + j] = block.max()
            centres[i] = (m + y + ch / 2, m + x + cw / 2)
            i += 1
    centre = np.median(desc, axis=0)
    spread = np.maximum(1.4826 * np.median(np.abs(desc - centre), axis=0), Z_FLOOR)
    zc = (desc - centre) / spread
    score = np.sqrt((np.maximum(zc, 0) ** 2).mean(axis=1))
    order = np.argsort(-score, kind="stable")
    top = order[:TOP]

    def slog(v: np.ndarray) -> np.ndarray:
        return np.sign(v) * np.log1p(np.abs(v))

    best = order[0]
    cy, cx = centres[best]
    pos = [min(cy, h - cy) / h, min(cx, w - cx) / w]
    pos.append(min(pos))
    pts = centres[order[:SPREAD]]
    if len(pts) > 1:
        ev = np.sort(np.linalg.eigvalsh(np.cov(pts.T)))[::-1]
        big, small = np.sqrt(max(ev[0], 0.0)), np.sqrt(max(ev[1], 0.0))
        shape = [big / float(np.hypot(h, w)), small / (big + 1e-6)]
    else:
        shape = [0.0, 0.0]
    extras = [np.log1p(score[best]), np.log1p(score[top].mean()),
              *((score > t).mean() for t in (2.0, 4.0, 8.0)), *pos, *shape]
    return np.concatenate([slog(zc[best]), slog(zc[top].mean(axis=0)),
                           np.asarray(extras, np.float32)]).astype(np.float32)


def feature_sets(t, cache: Path) -> dict[str, np.ndarray]:  # noqa: ANN001 - prior_diagnostic.Tiles
    from inference.imageio import read_image

    cells = tile_matrix(t, cache, "_cells", lambda paths: np.stack(
        [cell_vector(read_image(q, "gray")) for q in paths]).astype(np.float32))
    return {"none": t.x, "cells": cells, "both": np.concatenate([t.x, cells], axis=1)}


def main(argv: list[str] | None = None) -> int:
    return compare_feature_sets(argv, __doc__, feature_sets)


if __name__ == "__main__":
    raise SystemExit(main())
