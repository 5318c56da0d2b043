"""How the image logit enters the shown map of the bundled tile model (pixel net + descriptor image head), by
group cross-validation on the TRAINING data only (issue 19; rule in benchmarks/results/tile-map-rule.md, written
before the run).

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 5 python benchmarks/tile_map_rule.py --data /tmp/mt_split \\
        --cache /tmp/tile_planes.npz --json benchmarks/results/tile-map-rule/cv.jsonl

tile-defect-localise.md compared the rules ("sum", "veto", "gate") with the linear pixel head and the image head of
that time; the bundled model now has the learned pixel net and the descriptor image head (ADR 0057). Here each
tile's pixel map is the out-of-fold map of a net trained without its fold (``out_of_fold_net_maps``, seed 0, as the
fit makes its pixel threshold) and its image logit the out-of-fold logit of the image head (``tile_image_net.
image_logits`` on the rows with the descriptors), under the session folds and the physical-tile folds; every rule
is scored from the same maps and logits: pooled pixel AUROC (every 2nd cell, the card's figure), per type, and what
an inspector sees at the good tiles' 99.9 % quantile (``tile_defect_localise.localisation``: region IoU, recall,
false area, the share of defect tiles flooded over half their background, good tiles with a region). One JSON line
per (grouping, rule). The test split is never read.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RULES = (("sum", 2.0, 0.0), ("veto", 2.0, 0.0), ("gate", 2.0, 0.0), ("gate", 2.0, 1.0), ("gate", 2.0, 2.0))


def main(argv: list[str] | None = None) -> int:
    from benchmarks.tile_defect_localise import planes_arguments

    p = planes_arguments(__doc__, "tile_net_bank")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import torch

    from benchmarks.tile_anomaly_cv import emit
    from benchmarks.tile_defect_localise import localisation, planes_for
    from benchmarks.tile_image_net import image_logits
    from inference.models.tile_defect import PRESETS, combined_map
    from inference.training.groups import name_group_function
    from inference.training.tile_defect_fit import IMAGE_C, figures, fold_groupings, good_knn_stats, image_rows
    from inference.training.tile_pixel_net_fit import half_inputs, out_of_fold_net_maps

    torch.set_num_threads(1)
    cfg = PRESETS[args.preset]
    planes = planes_for(args, cfg)
    stats = good_knn_stats(planes)
    rows = image_rows(cfg, planes, stats)
    feats, targets, usable = half_inputs(cfg, planes, stats)
    for gname, (groups, k) in fold_groupings(planes, name_group_function(args.group_by), args.group_by, args.folds).items():
        t0 = time.monotonic()
        print(f"{gname} ({k} folds): nets", flush=True)
        pix = out_of_fold_net_maps(planes, feats, targets, usable, groups, k, args.seed)
        logits = image_logits(rows, planes.labels, groups, k, IMAGE_C)
        for mode, w, gate in RULES:
            res = figures(planes, pix, logits, w, mode, gate)
            emit({"grouping": gname, "folds": k, "offset": mode, "weight": w, "gate": gate, "seed": args.seed,
                  "pixel_auroc": res["pixel_auroc"], "image_auroc": res["image_auroc"],
                  "pixel_auroc_by_type": res["pixel_auroc_by_type"], "seconds": round(time.monotonic() - t0, 1)}
                 | localisation(combined_map(pix, logits[:, None, None], w, mode, gate), planes.labels, planes.masks),
                 args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
