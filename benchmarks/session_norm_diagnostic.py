"""Would standardising each image's features against its capture session's images lift few-label retraining? A
diagnostic on runs the retrain command already made on ``lnclasses.split``'s train-only splits (their
``labelled_files``), nothing chosen (session 30, information for issue 20 item 1).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/session_norm_diagnostic.py benchmarks/results/refit/per-class_d_s*.json \\
        benchmarks/results/selectfor/per-class_d_s*.json

choice.md and the confusion of those runs say most errors are free tiles called defective (531 of 696 at 40 per class,
random order: 204 "uneven", 170 "break"), and every capture session is one lighting. Each variant subtracts from every
tile's ``defect_bank`` features a statistic of all tiles of its capture session (unlabelled: no label is read; a
session's own tiles, the scored ones included, as a station would have a lot's images), then refits the command's
kind of head (the run's C, the folder's mix by adjusted classify-and-count) and scores the run's held-out sessions:
``none`` (as the command does), ``mean``, ``median``, ``mean_std`` (the mean subtracted and divided by the std).
``--sample N``: each session's statistic from N of its tiles drawn at random (what a lot's first images give).
``--all-labels``: no runs; the bundled tile classifier's setting (every training tile labelled), CV by capture
session against CV by physical tile.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.prior_diagnostic import (  # noqa: E402
    all_labels_cv,
    linear_variant,
    runs_or_all_labels,
    tiles,
    variants_on_runs,
)

MODES = ("none", "mean", "median", "mean_std")


def session_normalised(x: np.ndarray, sess: np.ndarray, mode: str, sample: int = 0) -> np.ndarray:
    """``x`` with each session's statistic taken out (``MODES``); ``sample`` > 0: the statistic of that many of the
    session's tiles drawn at random (seed 0; a lot's first images), else of all of them."""
    out = x.astype(np.float64).copy()
    if mode == "none":
        return out
    rng = np.random.default_rng(0)
    for s in np.unique(sess):
        m = np.flatnonzero(sess == s)
        ref = x[rng.choice(m, sample, replace=False)] if 0 < sample < len(m) else x[m]
        out[m] = x[m] - (np.median(ref, 0) if mode == "median" else ref.mean(0))
        if mode == "mean_std":
            out[m] /= ref.std(0) + 1e-6
    return out


def main(argv: list[str] | None = None) -> int:
    known, args = runs_or_all_labels(argv, __doc__, lambda pre: pre.add_argument(
        "--sample", type=int, default=0, help="each session's statistic from this many of its tiles"))
    warnings.filterwarnings("ignore")

    t = tiles(args.data, args.cache)
    variants = {m: linear_variant(session_normalised(t.x, t.sess, m, known.sample), t) for m in MODES}
    if known.all_labels:
        return all_labels_cv(t, variants)
    res: dict[str, list[tuple[float, float]]] = {m: [] for m in MODES}
    for row in variants_on_runs(t, args.runs, variants).values():
        for m, v in row.items():
            res[m] += v
    base = np.array(res["none"])
    print("\n| features | runs | accuracy | macro F1 | accuracy above `none` in |\n|---|---|---|---|---|")
    for m, v in res.items():
        a = np.array(v)
        print(f"| {m} | {len(a)} | {a[:, 0].mean():.3f} | {a[:, 1].mean():.3f} | {int((a[:, 0] > base[:, 0]).sum())} of {len(a)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
