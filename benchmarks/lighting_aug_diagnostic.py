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

import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.prior_diagnostic import (  # noqa: E402
    all_labels_cv,
    runs_or_all_labels,
    tile_matrix,
    tiles,
    variants_on_runs,
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


def variants(t, copies: list[np.ndarray]) -> dict:  # noqa: ANN001 - prior_diagnostic.Tiles
    """``none`` and ``gain4``: the command's kind of head on each labelled tile, and also on its exposure copies."""
    from inference.training.classifier_head import fit_linear_head

    def with_copies(cps: list[np.ndarray]):
        return t.x, lambda c: lambda idx: fit_linear_head(*stacked(t.x, cps, idx, t.y), len(t.classes), c)
    return {"none": with_copies([]), "gain4": with_copies(copies)}


def main(argv: list[str] | None = None) -> int:
    known, args = runs_or_all_labels(argv, __doc__)
    warnings.filterwarnings("ignore")

    t = tiles(args.data, args.cache)
    compared = variants(t, gain_matrices(t, args.cache))
    if known.all_labels:
        return all_labels_cv(t, compared)
    res = variants_on_runs(t, args.runs, compared)
    print("\n| order | labels per class | runs | none | gain4 | gain4 accuracy above none in |\n|---|---|---|---|---|---|")
    for (order, per), row in sorted(res.items()):
        a, b = np.array(row["none"]), np.array(row["gain4"])
        print(f"| {order} | {per} | {len(a)} | {a[:, 0].mean():.3f} / {a[:, 1].mean():.3f} | "
              f"{b[:, 0].mean():.3f} / {b[:, 1].mean():.3f} | {int((b[:, 0] > a[:, 0]).sum())} of {len(a)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
