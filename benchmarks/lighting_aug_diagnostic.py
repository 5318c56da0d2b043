"""Would giving the few-label head each labelled tile at other exposures lift retraining? A diagnostic on runs the
retrain command already made on ``lnclasses.split``'s train-only splits (their ``labelled_files``), stage 1 of the
rule in benchmarks/results/lighting-aug.md (session 36, issue 20 item 1).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/lighting_aug_diagnostic.py benchmarks/results/refit/per-class_d_s*.json \\
        benchmarks/results/selectfor/per-class_d_s*.json        # and the label-next runs; --all-labels for the CV rows

``none``: the command's kind of head on the run's labels (``defect_bank``, the run's C, class-balanced, the folder's
mix by adjusted classify-and-count). ``gain4``: the same head fitted on each labelled tile and its copies at the
gains ``GAINS`` (pixels multiplied, clipped to [0, 1], rounded to 8 bits); out-of-fold folds keep a tile's copies
with it; scored and pool images are read as they are. Nothing here reads ``val`` or the test split.
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
    arguments,
    folder_prior_scores,
    run_labels,
    tile_matrix,
    tiles,
)

GAINS = (0.55, 0.75, 1.33, 1.8)  # fixed in lighting-aug.md before any run


def exposed(image: np.ndarray, gain: float) -> np.ndarray:
    """``image`` (float grey in [0, 1]) as the camera would give it at ``gain`` times the exposure."""
    return (np.round(np.clip(image * gain, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def gain_matrices(t, cache: Path) -> list[np.ndarray]:  # noqa: ANN001 - prior_diagnostic.Tiles
    """One (n, dim) ``defect_bank`` matrix per gain, every training tile (cached beside the features)."""
    from inference.imageio import read_image
    from inference.texture_features import image_defect_bank

    def compute(g: float):
        return lambda paths: np.stack([image_defect_bank(exposed(read_image(q, "gray"), g)) for q in paths]
                                      ).astype(np.float32)
    return [tile_matrix(t, cache, f"_gain{g:g}", compute(g)) for g in GAINS]


def stacked(x: np.ndarray, copies: list[np.ndarray], idx: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of tiles ``idx`` and their exposure copies, with their labels."""
    return np.concatenate([x[idx], *[c[idx] for c in copies]]), np.tile(y[idx], 1 + len(copies))


def all_labels_cv(t, copies: list[np.ndarray]) -> int:  # noqa: ANN001
    """Every training tile labelled: CV by capture session and by physical tile, ``none`` against ``gain4``."""
    from sklearn.metrics import f1_score

    from inference.training.classifier_head import fit_linear_head
    from inference.training.groups import group_folds, series_groups

    groupings = {"capture session": list(t.sess), "physical tile": series_groups([q.name for q in t.paths])}
    print("| features | CV by capture session | CV by physical tile |\n|---|---|---|")
    for name, cps in (("none", []), ("gain4", copies)):
        cells = []
        for groups in groupings.values():
            pred = np.zeros(len(t.y), int)
            for tr, te in group_folds(t.y, groups, 5, 0):
                xs, ys = stacked(t.x, cps, tr, t.y)
                pred[te] = fit_linear_head(xs, ys, len(t.classes), 10.0).predict(t.x[te])
            cells.append(f"{(pred == t.y).mean():.3f} / {f1_score(t.y, pred, average='macro'):.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--all-labels", action="store_true")
    known, rest = pre.parse_known_args(argv)
    if known.all_labels and not [a for a in rest if not a.startswith("-")]:
        rest = [*rest, "-"]
    args = arguments(rest, __doc__, "lnclasses_command.py JSON files")
    warnings.filterwarnings("ignore")
    from inference.training.classifier_head import fit_linear_head

    t = tiles(args.data, args.cache)
    copies = gain_matrices(t, args.cache)
    if known.all_labels:
        return all_labels_cv(t, copies)
    y, k = t.y, len(t.classes)
    res: dict[tuple[str, int], dict[str, list[tuple[float, float]]]] = {}
    for f in args.runs:
        r = run_labels(t, json.loads(Path(f).read_text()))
        row = res.setdefault((r.order, r.per_class), {"none": [], "gain4": []})
        line = []
        for name, cps in (("none", []), ("gain4", copies)):
            def fit(idx: np.ndarray, cps: list[np.ndarray] = cps, c: float = r.c):
                xs, ys = stacked(t.x, cps, idx, y)
                return fit_linear_head(xs, ys, k, c)
            oof = np.zeros(len(r.labelled), int)
            for tr, te in r.folds:
                oof[te] = fit(r.labelled[tr]).predict(t.x[r.labelled[te]])
            row[name].append(folder_prior_scores(fit(r.labelled), t.x, t, r, oof))
            line.append(f"{name} {row[name][-1][0]:.3f}/{row[name][-1][1]:.3f}")
        print(f"{Path(f).name}: " + ", ".join(line), flush=True)
    print("\n| order | labels per class | runs | none | gain4 | gain4 accuracy above none in |\n|---|---|---|---|---|---|")
    for (order, per), row in sorted(res.items()):
        a, b = np.array(row["none"]), np.array(row["gain4"])
        print(f"| {order} | {per} | {len(a)} | {a[:, 0].mean():.3f} / {a[:, 1].mean():.3f} | "
              f"{b[:, 0].mean():.3f} / {b[:, 1].mean():.3f} | {int((b[:, 0] > a[:, 0]).sum())} of {len(a)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
