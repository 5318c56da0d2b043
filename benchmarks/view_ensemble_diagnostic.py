"""Would a second view of the tile — its 12×12 thumbnail — beside the ``defect_bank`` features lift the random
order's accuracy? A diagnostic on runs the retrain command already made on ``lnclasses.split``'s train-only splits
(their ``labelled_files``), nothing chosen (session 30, information for issue 20 item 1: 0.85 at 40 labels per class
in the random order is not met; nonlinear-diagnostic.md found the features, not the head, hold it near 0.83).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/view_ensemble_diagnostic.py benchmarks/results/refit/per-class_d_s*.json \\
        benchmarks/results/selectfor/per-class_d_s*.json

For each run, on its scored sessions, with the command's kind of prior (the folder's mix by adjusted
classify-and-count from 200 unlabelled images, ADR 0045) for every head:

- ``linear``: the class-balanced regression on ``defect_bank`` with the run's C (nonlinear-diagnostic.md's row);
- ``thumb``: the same kind of regression (C 1) on the 12×12 thumbnails (what the simple answer reads);
- ``mean``: the mean of the two heads' logits (itself a linear head on both feature sets side by side);
- ``concat``: one regression with the run's C on both feature sets side by side;
- ``pick``: ``mean`` or ``linear``, whichever has the higher macro F1 of out-of-fold predictions by the capture-session
  folds inside the run's labels (how the command chooses among its candidates), scored like the others.

A head that wins here would still have to be written as a candidate and decided on fresh seeds with the real
command; the independent val is not read.
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.prior_diagnostic import (  # noqa: E402
    arguments,
    folder_prior_scores,
    out_of_fold,
    run_labels,
    tile_matrix,
    tiles,
)

THUMB_C = 1.0


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv, __doc__, "lnclasses_command.py JSON files (random order)")
    warnings.filterwarnings("ignore")
    from sklearn.metrics import f1_score

    from inference.training.classifier_head import LinearHead, fit_linear_head
    from inference.training.simple_answers import thumbnails

    t = tiles(args.data, args.cache)
    y, x = t.y, t.x
    th = tile_matrix(t, args.cache, "_thumbs", thumbnails)
    both = np.hstack([x, th]).astype(np.float64)
    k = len(t.classes)
    res: dict[str, list[tuple[float, float]]] = {}

    def mean_head(a: LinearHead, b: LinearHead) -> LinearHead:
        return LinearHead(np.hstack([a.coef, b.coef]) / 2, (a.intercept + b.intercept) / 2, a.c)

    for f in args.runs:
        r = run_labels(t, json.loads(Path(f).read_text()))
        c = r.c
        fits: dict[str, tuple[np.ndarray, Callable[[np.ndarray], LinearHead]]] = {
            "linear": (x, lambda idx, c=c: fit_linear_head(x[idx], y[idx], k, c)),
            "thumb": (th, lambda idx: fit_linear_head(th[idx], y[idx], k, THUMB_C)),
            "mean": (both, lambda idx, c=c: mean_head(fit_linear_head(x[idx], y[idx], k, c),
                                                 fit_linear_head(th[idx], y[idx], k, THUMB_C))),
            "concat": (both, lambda idx, c=c: fit_linear_head(both[idx], y[idx], k, c)),
        }
        line = []
        cv_f1: dict[str, float] = {}
        for name, (feats, fit) in fits.items():
            oof = out_of_fold(fit, feats, r)
            cv_f1[name] = float(f1_score(y[r.labelled], oof, average="macro"))
            v = folder_prior_scores(fit(r.labelled), feats, t, r, oof)
            res.setdefault(name, []).append(v)
            line.append(f"{name} {v[0]:.3f}/{v[1]:.3f}")
        pick = "mean" if cv_f1["mean"] > cv_f1["linear"] else "linear"  # as the command picks: group-CV macro F1
        res.setdefault("pick", []).append(res[pick][-1])
        line.append(f"pick {pick}")
        print(f"{Path(f).name}: " + ", ".join(line), flush=True)

    print("\n| head | runs | accuracy | macro F1 | accuracy above linear in |\n|---|---|---|---|---|")
    base = np.array([a for a, _ in res["linear"]])
    for name, v in res.items():
        acc = np.array([a for a, _ in v])
        print(f"| {name} | {len(v)} | {acc.mean():.3f} | {np.mean([b for _, b in v]):.3f} | "
              f"{int((acc > base).sum())} of {len(v)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
