"""The tile model's image head with the texture descriptors as inputs (B) against the shipped head (S),
by group cross-validation on the TRAINING data only (issue 19 item 4; rule in
benchmarks/results/tile-image-bank.md, written before the run).

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 5 python benchmarks/tile_image_bank.py --data /tmp/mt_split \\
        --cache /tmp/tile_planes.npz --json benchmarks/results/tile-image-bank/cv.jsonl

S: the image head's out-of-fold logits as shipped (``tile_image_net.image_logits`` on ``image_rows``).
B: the same head (same C) on the image rows plus the LBP / Gabor / co-occurrence / band-pass descriptors
of the tile (``texture_features.image_bank`` of the model's own gray input, what the bundled tile
classifier reads beside its defect statistics). One JSON line per (candidate, grouping): image AUROC
pooled and per type, and the flag rates of the Youden threshold on the out-of-fold scores. The test
split is never read.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def bank_rows(images: np.ndarray) -> np.ndarray:
    """(n, BANK_DIM) descriptors of the planes' gray images (what the model's input gives at inference)."""
    from inference.texture_features import image_bank

    return np.stack([image_bank(np.asarray(img, np.float32)) for img in images]).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.tile_defect_localise import planes_arguments

    p = planes_arguments(__doc__, "tile_net")
    args = p.parse_args(argv)

    from benchmarks.tile_anomaly_cv import emit
    from benchmarks.tile_defect_localise import planes_for
    from benchmarks.tile_image_net import image_figures, image_logits
    from inference.models.tile_defect import PRESETS
    from inference.training.groups import name_group_function
    from inference.training.tile_defect_fit import IMAGE_C, fold_groupings, good_knn_stats, image_rows

    cfg = PRESETS[args.preset]
    t0 = time.monotonic()
    planes = planes_for(args, cfg)
    print(f"{int((~planes.labels).sum())} good, {int(planes.labels.sum())} defect tiles "
          f"({time.monotonic() - t0:.0f} s)", flush=True)
    rows = image_rows(cfg, planes, good_knn_stats(planes))
    t1 = time.monotonic()
    bank = bank_rows(planes.images)
    print(f"descriptors {bank.shape} in {time.monotonic() - t1:.1f} s", flush=True)
    groupings = fold_groupings(planes, name_group_function(args.group_by), args.group_by, args.folds)
    for name, x in (("S", rows), ("B", np.hstack([rows, bank]).astype(np.float32))):
        for gname, (groups, k) in groupings.items():
            emit({"candidate": name, "grouping": gname, "folds": k, "inputs": int(x.shape[1])}
                 | image_figures(planes.labels, planes.types, image_logits(x, planes.labels, groups, k, IMAGE_C)),
                 args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
