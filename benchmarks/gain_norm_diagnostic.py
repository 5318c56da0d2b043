"""Would the few-label head do better on features of each tile brought to one exposure (its median grey at
``TARGET_MEDIAN``)? A diagnostic on runs the retrain command already made on ``lnclasses.split``'s train-only splits,
stage 1 of the rule in benchmarks/results/gain-norm.md (session 36, issue 20 item 1).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/gain_norm_diagnostic.py benchmarks/results/refit/per-class_d_s*.json \\
        benchmarks/results/selectfor/per-class_d_s*.json        # and the label-next runs; --all-labels for the CV rows

``none``: the command's kind of head on ``defect_bank`` as it is; ``gn``: on ``defect_bank`` of the tile scaled to a
median grey of ``TARGET_MEDIAN``; ``both``: the two side by side. The head (the run's C, class-balanced) and the
prior (the folder's mix by adjusted classify-and-count) as the command has them. Nothing here reads ``val``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.prior_diagnostic import compare_feature_sets, tile_matrix  # noqa: E402

TARGET_MEDIAN = 0.4  # fixed in gain-norm.md before any run


def at_median(image: np.ndarray, target: float = TARGET_MEDIAN) -> np.ndarray:
    """``image`` (float grey in [0, 1]) scaled so its median grey is ``target``, as a camera would give it."""
    median = float(np.median(image))
    gain = target / median if median > 1e-3 else 1.0
    return (np.round(np.clip(image * gain, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def feature_sets(t, cache: Path) -> dict[str, np.ndarray]:  # noqa: ANN001 - prior_diagnostic.Tiles
    from inference.imageio import read_image
    from inference.texture_features import image_defect_bank

    gn = tile_matrix(t, cache, "_median04", lambda paths: np.stack(
        [image_defect_bank(at_median(read_image(q, "gray"))) for q in paths]).astype(np.float32))
    from inference.texture_features import DEFECT_DIM
    d = DEFECT_DIM  # defect_bank = the small-defect statistics, then the texture bank
    return {"none": t.x, "gn": gn, "both": np.concatenate([t.x, gn], axis=1),
            "gn_defect": np.concatenate([gn[:, :d], t.x[:, d:]], axis=1),   # the second look (gain-norm.md)
            "gn_bank": np.concatenate([t.x[:, :d], gn[:, d:]], axis=1)}


def main(argv: list[str] | None = None) -> int:
    return compare_feature_sets(argv, __doc__, feature_sets)


if __name__ == "__main__":
    raise SystemExit(main())
