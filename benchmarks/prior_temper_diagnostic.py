"""How much accuracy would macro F1 cost, or the other way round, if the retrained head's class-mix prior were
tempered towards equal classes? A diagnostic (session 41, information for issue 20 item 1; nothing chosen) on runs
the retrain command already made on ``lnclasses.split``'s train-only splits: the command's head on ``defect_bank`` at
the run's C, its prior (the folder's mix q by adjusted classify-and-count, ADR 0045) raised to a power t and
renormalised: t 1 is the command's, t 0 the balanced fit's own.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/prior_temper_diagnostic.py RUN.json ...

Nothing here reads ``val``.
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.prior_diagnostic import arguments, out_of_fold, run_labels, tiles  # noqa: E402

POWERS = (1.0, 0.75, 0.5, 0.25, 0.0)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv, __doc__, "lnclasses_command.py JSON files")
    warnings.filterwarnings("ignore")
    from sklearn.metrics import f1_score

    from inference.training.classifier_head import adjusted_shares, fit_linear_head, folder_shares, with_prior

    t = tiles(args.data, args.cache)
    k = len(t.classes)
    res: dict[tuple[str, int], dict[float, list[tuple[float, float]]]] = {}
    for f in args.runs:
        r = run_labels(t, json.loads(Path(f).read_text()))
        def fit(idx: np.ndarray, c: float = r.c):  # noqa: ANN202 - a LinearHead
            return fit_linear_head(t.x[idx], t.y[idx], k, c)
        oof = out_of_fold(fit, t.x, r)
        head = fit(r.labelled)
        predicted = (np.bincount(head.predict(t.x[r.sample]), minlength=k) + 1.0) / (len(r.sample) + k)
        q = folder_shares(adjusted_shares(predicted, t.y[r.labelled], oof, len(r.sample)), r.counts, len(r.unlabelled))
        row = res.setdefault((r.order, r.per_class), {p: [] for p in POWERS})
        y = t.y[r.scored]
        for p in POWERS:
            qt = q ** p
            pred = np.asarray(with_prior(head, qt / qt.sum()).predict(t.x[r.scored]))
            row[p].append((float((pred == y).mean()), float(f1_score(y, pred, average="macro"))))
        print(f"{Path(f).name}: " + ", ".join(f"t {p:g} {v[-1][0]:.3f}/{v[-1][1]:.3f}" for p, v in row.items()),
              flush=True)
    print("\n| order | labels per class | runs | " + " | ".join(f"t {p:g}" for p in POWERS) + " |\n|---|---|---|"
          + "---|" * len(POWERS))
    for (order, per), row in sorted(res.items()):
        cells = [f"{np.array(v)[:, 0].mean():.3f} / {np.array(v)[:, 1].mean():.3f}" for v in row.values()]
        print(f"| {order} | {per} | {len(row[1.0])} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
