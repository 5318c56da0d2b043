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

from benchmarks.prior_diagnostic import arguments, tiles  # noqa: E402

THUMB_C = 1.0


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv, __doc__, "lnclasses_command.py JSON files (random order)")
    warnings.filterwarnings("ignore")
    from sklearn.metrics import f1_score

    from benchmarks.lnclasses import split
    from inference.training.classifier_head import (
        LinearHead,
        adjusted_shares,
        fit_linear_head,
        folder_shares,
        with_prior,
    )
    from inference.training.groups import group_folds
    from inference.training.simple_answers import thumbnails

    t = tiles(args.data, args.cache)
    paths, y, rel, sess, x = t.paths, t.y, t.rel, t.sess, t.x
    thumb_cache = args.cache.with_name(args.cache.stem + "_thumbs.npy")
    if thumb_cache.exists():
        th = np.load(thumb_cache)
    else:
        th = thumbnails(paths)
        np.save(thumb_cache, th)
    both = np.hstack([x, th]).astype(np.float64)
    k = len(t.classes)
    res: dict[str, list[tuple[float, float]]] = {}

    def mean_head(a: LinearHead, b: LinearHead) -> LinearHead:
        return LinearHead(np.hstack([a.coef, b.coef]) / 2, (a.intercept + b.intercept) / 2, a.c)

    for f in args.runs:
        d = json.loads(Path(f).read_text())
        scored = split("magnetic_tile", paths, int(d["seed"]))
        sc = np.flatnonzero(scored)
        lab = np.array([rel[r] for r in d["labelled_files"]])
        unl = np.setdiff1d(np.flatnonzero(~scored), lab)
        sample = np.random.default_rng(0).permutation(unl)[:200]
        counts = np.bincount(y[lab], minlength=k)
        folds = list(group_folds(y[lab], list(sess[lab]), 5, 0))
        c = float(d["card_training"]["head"].get("C") or 10.0)
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
            oof = np.zeros(len(lab), int)
            for tr, te in folds:
                oof[te] = fit(lab[tr]).predict(feats[lab[te]])
            cv_f1[name] = float(f1_score(y[lab], oof, average="macro"))
            head = fit(lab)
            predicted = (np.bincount(head.predict(feats[sample]), minlength=k) + 1.0) / (len(sample) + k)
            q = folder_shares(adjusted_shares(predicted, y[lab], oof, len(sample)), counts, len(unl))
            pred = with_prior(head, q).predict(feats[sc])
            v = (float((pred == y[sc]).mean()), float(f1_score(y[sc], pred, average="macro")))
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
