"""How many test-time flip views the segmenter needs, under leave-scene-out CV (issues 19 and 21).

The fold networks of ``segmenter_scene_cv.py train`` (``--recipe``) score their left-out scenes with
one view (the frame), two views (the frame and one flip: ``h``, ``v`` or ``hv``) and four views (all
flips), through the product's ``predict_probabilities``; each view set's threshold is cross-fitted on
the other folds' maps (``segmenter_cv.cross_fitted`` with flips as the only addition, as the additions
rule chose for four views). ``--candidate`` is the two-view set fixed before the run; the rule
(``segmenter_cv.wins``) keeps the two further views only if four views beat it. val.txt is never read.

    PYTHONPATH=. python benchmarks/segmenter_views_cv.py --data SIRST --work /tmp/scenecv40 --recipe base \
        [--candidate h] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.segmenter_scene_cv import recipe_dir  # noqa: E402

TWO_VIEWS = ("h", "v", "hv")


def row_line(name: str, row: dict[str, Any], width: int = 24) -> str:
    """One cross-fitted row as the segmenter studies print it: pooled IoU, nIoU, Pd (detected of all), Fa, per-fold IoU."""
    m = row["pooled"]
    return (f"{name.ljust(width)} IoU {m['iou']:.4f} nIoU {m['niou']:.4f} Pd {m['pd']:.4f} ({m['detected']}/{m['targets']}) "
            f"Fa {m['fa']:.2f}  per-fold IoU " + " ".join(f"{f['iou']:.3f}" for f in row["per_fold"]))


def view_maps(networks: list[Path], frames_by_fold: list[list[Any]], flips: Any, cache: Path) -> dict[str, np.ndarray]:
    """Out-of-fold probability maps of every frame with ``flips`` (False, True or one named view besides the
    frame), fold k scored by ``networks[k]``; kept beside ``cache`` (``segmenter_cv.scored_fold_maps``)."""
    from inference.training.segmenter_cv import scored_fold_maps

    key = flips[0] if isinstance(flips, list) else flips
    return scored_fold_maps([[n] for n in networks], frames_by_fold, cache, views=(key,))[key]


def run(args: argparse.Namespace) -> dict[str, Any]:
    from inference.training.segmenter_cv import cross_fitted, cv_parts, wins
    from inference.training.segmenter_data import SegTree, load_frames

    tree = SegTree.open(args.data)
    parts = cv_parts(args.data, args.folds, args.group_by)
    frames_by_fold = [load_frames(tree, list(p), 1)[0] for p in parts]
    networks = [recipe_dir(args.work, args.recipe, k) / "final" for k in range(args.folds)]
    sets: dict[str, Any] = {"one view": False, **{f"two views: frame + {v}": [v] for v in TWO_VIEWS}, "four views": True}
    rows: dict[str, Any] = {}
    for name, flips in sets.items():
        t0 = time.monotonic()
        tag = "1" if flips is False else "4" if flips is True else "2" + flips[0]
        maps = view_maps(networks, frames_by_fold, flips, args.work / "maps" / f"{args.recipe}_{args.group_by}{args.folds}_views{tag}")
        use = set() if flips is False else {"flips"}
        rows[name] = {**cross_fitted(frames_by_fold, {bool(use): maps}, use), "flips": flips,
                      "passes_per_frame": 1 + (3 if flips is True else 0 if flips is False else 1),
                      "seconds": round(time.monotonic() - t0, 1)}
        print(row_line(name, rows[name]), flush=True)
    candidate = f"two views: frame + {args.candidate}"
    keep_four = wins(rows["four views"], rows[candidate])
    verdict = ("four views win against the candidate: the profile keeps them" if keep_four else
               f"four views do not win against the candidate ({candidate}): the profile takes two views")
    print(verdict)
    return {"recipe": args.recipe, "folds": args.folds, "group_by": args.group_by, "candidate": candidate,
            "four_views_win": keep_four, "verdict": verdict, "rows": rows}


def fold_network_arguments(doc: str, recipe: str) -> argparse.ArgumentParser:
    """The command line of the studies that score ``segmenter_scene_cv.py``'s fold networks: ``--data``, ``--work``,
    ``--recipe``, ``--folds``, ``--group-by`` and ``--json``; a study adds its own options."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True, help="segmenter_scene_cv.py's work folder (fold networks)")
    p.add_argument("--recipe", default=recipe)
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--group-by", default="scene", choices=("scene", "none", "frame"))
    p.add_argument("--json", type=Path)
    return p


def main() -> int:
    p = fold_network_arguments(__doc__, "base")
    p.add_argument("--candidate", default="h", choices=TWO_VIEWS, help="the two-view set fixed before the run")
    args = p.parse_args()
    return finish(run(args), args.json)


def finish(report: dict[str, Any], path: Path | None) -> int:
    """Write a run's report where ``--json`` says (rows ``segmenter_seed_mean.py`` reads); exit status 0."""
    if path:
        path.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
