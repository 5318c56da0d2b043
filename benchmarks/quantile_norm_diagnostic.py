"""Would the few-label head do better on features scaled by the folder's own quantiles? Stage 1 of the rule in
benchmarks/results/quantile-norm.md (session 39, issue 20 item 1): a diagnostic on runs the retrain command already
made on ``lnclasses.split``'s train-only splits.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/quantile_norm_diagnostic.py benchmarks/results/refit/per-class_d_s*.json \\
        benchmarks/results/selectfor/per-class_d_s*.json        # and the label-next runs; --all-labels for the CV rows

``none``: the command's kind of head on ``defect_bank`` as it is; ``qn``: on ``defect_bank`` mapped through the
quantiles of the run's folder (its labelled and unlabelled images, never its scored sessions) to normal scores. The
head (the run's C, class-balanced) and the prior (the folder's mix by adjusted classify-and-count) as the command has
them. Nothing here reads ``val``.
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.prior_diagnostic import (  # noqa: E402
    all_labels_cv,
    folder_prior_scores,
    linear_variant,
    out_of_fold,
    print_variant_table,
    run_labels,
    runs_or_all_labels,
    tiles,
)

QUANTILES = 101  # fixed in quantile-norm.md before any run


def normal_scores(x: np.ndarray, folder: np.ndarray) -> np.ndarray:
    """Every row of ``x`` mapped, feature by feature, through the quantiles of ``x[folder]`` to normal scores."""
    from sklearn.preprocessing import QuantileTransformer

    qt = QuantileTransformer(n_quantiles=min(QUANTILES, len(folder)), output_distribution="normal")
    return qt.fit(x[folder]).transform(x).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    known, args = runs_or_all_labels(argv, __doc__)
    warnings.filterwarnings("ignore")

    t = tiles(args.data, args.cache)
    if known.all_labels:
        everything = np.arange(len(t.y))
        return all_labels_cv(t, {"none": linear_variant(t.x, t), "qn": linear_variant(normal_scores(t.x, everything), t)})
    res: dict[tuple[str, int], dict[str, list[tuple[float, float]]]] = {}
    for f in args.runs:
        r = run_labels(t, json.loads(Path(f).read_text()))
        row = res.setdefault((r.order, r.per_class), {"none": [], "qn": []})
        sets = {"none": t.x, "qn": normal_scores(t.x, np.concatenate([r.labelled, r.unlabelled]))}
        for name, x in sets.items():
            fit = linear_variant(x, t)[1](r.c)
            row[name].append(folder_prior_scores(fit(r.labelled), x, t, r, out_of_fold(fit, x, r)))
        print(f"{Path(f).name}: " + ", ".join(f"{n} {v[-1][0]:.3f}/{v[-1][1]:.3f}" for n, v in row.items()), flush=True)
    print_variant_table(res, ["none", "qn"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
