"""A magnified test-time view beside the flips, under leave-scene-out CV (issue 19; segmenter-scale.md).

The shipped ``accurate`` profile averages the network's logits over the frame and its three flips. A
faint target of two or three pixels is the one a new scene loses; the networks were trained on crops
zoomed by 0.8–1.25 (``CropSampler.scale``), so the frame enlarged by ``--scale`` (inside that range) is a
view they know, in which such a target covers more cells. Here fold k's frames are scored by fold k's
network at ``--scale`` (bilinear on the standardised frame; the logit map brought back to the frame's
size by area averaging) and that logit joins the cached four flip views' mean logit with weight 1/5 (each
view one vote, as the flips are averaged). The threshold (and nothing else) is cross-fitted on the other
folds' maps (``segmenter_cv.cross_fitted`` with flips as the only addition), as every view row is; the
JSON has ``segmenter_views_cv.py``'s shape, so ``segmenter_seed_mean.py`` compares its rows with the
adopted rows. val.txt is never read.

    PYTHONPATH=. python benchmarks/segmenter_scale_cv.py --data SIRST --work /tmp/ep80s60 --recipe clutter \
        [--scale 1.25] [--json OUT]
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
from benchmarks.segmenter_views_cv import finish, fold_network_arguments, row_line, view_maps  # noqa: E402

EPS = 1e-7  # probabilities are clipped this far from 0 and 1 before they are turned back into logits


def logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p.astype(np.float64), EPS, 1 - EPS)
    return np.log(q / (1 - q))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))).astype(np.float32)


def scaled_logits(model: Any, frame: np.ndarray, scale: float) -> np.ndarray:
    """The network's logit map of the standardised (c, h, w) ``frame`` enlarged by ``scale``, at the frame's size."""
    import cv2
    import torch

    from inference.segmenter_predict import _logits

    c, h, w = frame.shape
    big = np.stack([cv2.resize(ch, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_LINEAR)
                    for ch in frame]).astype(np.float32)
    z = _logits(model, big, torch.device("cpu"), False)
    return cv2.resize(z, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)


def scale_maps(networks: list[Path], frames_by_fold: list[list[Any]], scale: float, cache: Path) -> dict[str, np.ndarray]:
    """Out-of-fold logit maps at ``scale`` per frame stem, kept as ``<cache>_fold<k>.npz`` and reused."""
    import torch

    from inference.checkpoints import load_model

    out: dict[str, np.ndarray] = {}
    for k, frames in enumerate(frames_by_fold):
        file = cache.parent / f"{cache.name}_fold{k}.npz"
        if file.is_file():
            with np.load(file) as stored:
                if sorted(stored.files) == sorted(f.stem for f in frames):
                    out.update({s: stored[s] for s in stored.files})
                    continue
        model = load_model(networks[k], map_location="cpu", family="segmenter").model
        model.eval()
        with torch.no_grad():
            found = {f.stem: scaled_logits(model, f.image, scale) for f in frames}
        file.parent.mkdir(parents=True, exist_ok=True)
        np.savez(file, **found)  # type: ignore[arg-type]  # numpy's stub checks **arrays against allow_pickle
        out.update(found)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from inference.training.segmenter_cv import cross_fitted, cv_parts
    from inference.training.segmenter_data import SegTree, load_frames

    tree = SegTree.open(args.data)
    parts = cv_parts(args.data, args.folds, args.group_by)
    frames_by_fold = [load_frames(tree, list(p), 1)[0] for p in parts]
    networks = [recipe_dir(args.work, args.recipe, k) / "final" for k in range(args.folds)]
    prefix = f"{args.recipe}_{args.group_by}{args.folds}"
    t0 = time.monotonic()
    four = view_maps(networks, frames_by_fold, True, args.work / "maps" / f"{prefix}_views4")
    one = view_maps(networks, frames_by_fold, False, args.work / "maps" / f"{prefix}_views1")
    big = scale_maps(networks, frames_by_fold, args.scale, args.work / "maps" / f"{prefix}_scale{args.scale:g}")
    sets = {
        "four views": (four, 4),  # the adopted row again, from the same cache (a check against its recorded figure)
        f"four views + {args.scale:g}x": ({s: sigmoid((4 * logit(four[s]) + big[s]) / 5) for s in four}, 4 + args.scale ** 2),
        f"frame + {args.scale:g}x": ({s: sigmoid((logit(one[s]) + big[s]) / 2) for s in one}, 1 + args.scale ** 2),
        f"{args.scale:g}x alone": ({s: sigmoid(big[s]) for s in big}, args.scale ** 2),
    }
    rows: dict[str, Any] = {}
    for name, (maps, passes) in sets.items():
        rows[name] = {**cross_fitted(frames_by_fold, {True: maps}, {"flips"}), "scale": args.scale,
                      "passes_per_frame": round(passes, 3), "seconds": round(time.monotonic() - t0, 1)}
        print(row_line(name, rows[name]), flush=True)
    return {"recipe": args.recipe, "folds": args.folds, "group_by": args.group_by, "scale": args.scale, "rows": rows}


def main() -> int:
    p = fold_network_arguments(__doc__, "clutter")
    p.add_argument("--scale", type=float, default=1.25)
    args = p.parse_args()
    if not 1.0 < args.scale <= 2.0:
        p.error("--scale must be above 1 and at most 2")
    return finish(run(args), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
