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

import json
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.prior_diagnostic import arguments, folder_prior_scores, out_of_fold, run_labels, tiles  # noqa: E402

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


def all_labels_cv(t, feats: dict[str, np.ndarray]) -> int:  # noqa: ANN001 - prior_diagnostic.Tiles
    """Every training tile labelled (the bundled classifier's setting): does centring help a new lighting (folds by
    capture session) or a new physical tile (folds by ``series_groups``)?"""
    from sklearn.metrics import f1_score

    from inference.training.classifier_head import fit_linear_head
    from inference.training.groups import group_folds, series_groups

    groupings = {"capture session": list(t.sess), "physical tile": series_groups([q.name for q in t.paths])}
    print("| features | CV by capture session | CV by physical tile |\n|---|---|---|")
    for m, x in feats.items():
        cells = []
        for groups in groupings.values():
            pred = np.zeros(len(t.y), int)
            for tr, te in group_folds(t.y, groups, 5, 0):
                pred[te] = fit_linear_head(x[tr], t.y[tr], len(t.classes), 10.0).predict(x[te])
            cells.append(f"{(pred == t.y).mean():.3f} / {f1_score(t.y, pred, average='macro'):.3f}")
        print(f"| {m} | " + " | ".join(cells) + " |", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--sample", type=int, default=0, help="each session's statistic from this many of its tiles")
    pre.add_argument("--all-labels", action="store_true",
                     help="instead of the runs: the bundled tile classifier's head (defect_bank, C 10) on every "
                          "training tile, 5-fold CV by capture session and by physical tile")
    known, rest = pre.parse_known_args(argv)
    if known.all_labels and not [a for a in rest if not a.startswith("-")]:
        rest = [*rest, "-"]  # the runs argument is required; with --all-labels no run is read
    args = arguments(rest, __doc__, "lnclasses_command.py JSON files")
    warnings.filterwarnings("ignore")
    from inference.training.classifier_head import fit_linear_head

    t = tiles(args.data, args.cache)
    y, k = t.y, len(t.classes)
    feats = {m: session_normalised(t.x, t.sess, m, known.sample) for m in MODES}
    if known.all_labels:
        return all_labels_cv(t, feats)
    res: dict[str, list[tuple[float, float]]] = {m: [] for m in MODES}
    for f in args.runs:
        r = run_labels(t, json.loads(Path(f).read_text()))
        line = []
        for m, x in feats.items():
            oof = out_of_fold(lambda idx, x=x, c=r.c: fit_linear_head(x[idx], y[idx], k, c), x, r)
            res[m].append(folder_prior_scores(fit_linear_head(x[r.labelled], y[r.labelled], k, r.c), x, t, r, oof))
            line.append(f"{m} {res[m][-1][0]:.3f}/{res[m][-1][1]:.3f}")
        print(f"{Path(f).name}: " + ", ".join(line), flush=True)
    base = np.array(res["none"])
    print("\n| features | runs | accuracy | macro F1 | accuracy above `none` in |\n|---|---|---|---|---|")
    for m, v in res.items():
        a = np.array(v)
        print(f"| {m} | {len(a)} | {a[:, 0].mean():.3f} | {a[:, 1].mean():.3f} | {int((a[:, 0] > base[:, 0]).sum())} of {len(a)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
