"""Two recipes' fold networks as one ensemble, under leave-scene-out CV (issue 19; segmenter-pair.md).

Fold k's frames are scored by the mean of the two recipes' fold-k probability maps, each with the
view set ``--views`` (the maps ``segmenter_views_cv.py`` cached, or computed and cached here the same
way); the threshold is cross-fitted on the other folds' maps (``segmenter_cv.cross_fitted``), as every
view row is. The row is written in ``segmenter_views_cv.py``'s JSON shape, so ``segmenter_seed_mean.py``
compares it with a single recipe's rows. val.txt is never read.

    PYTHONPATH=. python benchmarks/segmenter_pair_cv.py --data SIRST --member /tmp/ctx2p_s60:ctx2phase \
        --member /tmp/paste_s60:paste --views h --row "four views" --json OUT.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.segmenter_scene_cv import recipe_dir  # noqa: E402
from benchmarks.segmenter_views_cv import finish, row_line, view_maps  # noqa: E402

VIEWS = {"1": False, "h": ["h"], "v": ["v"], "hv": ["hv"], "4": True}


def pair_maps(members: list[tuple[Path, str]], frames_by_fold: list[list[Any]], views: str, folds: int,
              group_by: str) -> dict[str, np.ndarray]:
    """Per frame stem: the mean of the members' out-of-fold maps with ``views`` (the product's ensemble)."""
    flips = VIEWS[views]
    tag = "1" if flips is False else "4" if flips is True else "2" + views
    each = [view_maps([recipe_dir(work, recipe, k) / "final" for k in range(folds)], frames_by_fold, flips,
                      work / "maps" / f"{recipe}_{group_by}{folds}_views{tag}") for work, recipe in members]
    return {stem: np.mean([m[stem] for m in each], axis=0).astype(np.float32) for stem in each[0]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from inference.training.segmenter_cv import cross_fitted, cv_parts
    from inference.training.segmenter_data import SegTree, load_frames

    tree = SegTree.open(args.data)
    parts = cv_parts(args.data, args.folds, args.group_by)
    frames_by_fold = [load_frames(tree, list(p), 1)[0] for p in parts]
    members = [(Path(m.split(":", 1)[0]), m.split(":", 1)[1]) for m in args.member]
    t0 = time.monotonic()
    maps = pair_maps(members, frames_by_fold, args.views, args.folds, args.group_by)
    use = set() if VIEWS[args.views] is False else {"flips"}
    row = {**cross_fitted(frames_by_fold, {bool(use): maps}, use), "members": args.member, "views_each": args.views,
           "passes_per_frame": len(members) * {"1": 1, "4": 4}.get(args.views, 2),
           "seconds": round(time.monotonic() - t0, 1)}
    print(row_line(f"{args.row}:", row, width=0))
    return {"members": args.member, "folds": args.folds, "group_by": args.group_by, "rows": {args.row: row}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--member", action="append", required=True,
                   help="WORK:RECIPE, a segmenter_scene_cv.py work folder and recipe (twice or more)")
    p.add_argument("--views", default="h", choices=tuple(VIEWS), help="each member's views: 1, h, v, hv or 4")
    p.add_argument("--row", default="four views", help="the row name the JSON gives the result (seed_mean compares by name)")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--group-by", default="scene", choices=("scene", "none", "frame"))
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if len(args.member) < 2:
        p.error("give --member at least twice")
    return finish(run(args), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
