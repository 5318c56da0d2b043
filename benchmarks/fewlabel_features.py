"""Per-image feature cache for the few-label benchmarks (``benchmarks/fewlabel.py``).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/fewlabel_features.py --cache /tmp/fewlabel/cache \
        --trees ../shared/datasets/magnetic_tile/train ../shared/datasets/magnetic_tile/val [--sets defect bank] \
        [--views none hflip vflip rot180]

Each image's vector of each feature set under each label-preserving view is stored once, keyed by
the file's content hash (``<cache>/<set>-<view>/<sha1>.npy``), so the curves can be rerun, and
more seeds added, without decoding an image again.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.imageio import is_image_file, read_image  # noqa: E402
from inference.texture_features import FEATURE_SETS  # noqa: E402
from inference.training.classifier_head import VIEW_FLIPS  # noqa: E402

VIEWS = VIEW_FLIPS  # the label-preserving views the retrain command's augmented candidates train on


def tree(root: Path) -> tuple[list[Path], list[str]]:
    """Files and their class (parent folder name) of a class-folder tree, sorted by path."""
    paths = sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p))
    return paths, [p.parent.name for p in paths]


def content_key(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def thumbnail_set(image: np.ndarray) -> np.ndarray:
    import cv2

    from inference.training.simple_answers import THUMBNAIL
    gray = image if image.ndim == 2 else image[..., 0]
    return cv2.resize(np.ascontiguousarray(gray), (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA).reshape(-1)


def feature_fn(name: str):
    return thumbnail_set if name == "thumbnail" else FEATURE_SETS[name][1]


def matrix(paths: list[Path], name: str, view: str, cache: Path | None) -> np.ndarray:
    """(n, dim) vectors of ``name`` under ``view``, computed for the files the cache lacks."""
    fn, flip = feature_fn(name), VIEWS[view]
    rows = []
    for path in paths:
        file = cache / f"{name}-{view}" / f"{content_key(path)}.npy" if cache else None
        if file is not None and file.is_file():
            rows.append(np.load(file))
            continue
        img = read_image(path, "gray")
        img = img[..., 0] if img.ndim == 3 else img
        vec = np.asarray(fn(np.ascontiguousarray(flip(img))), np.float32)
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            np.save(file, vec)
        rows.append(vec)
    return np.stack(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", required=True, type=Path)
    ap.add_argument("--trees", required=True, type=Path, nargs="+")
    ap.add_argument("--sets", nargs="+", default=["thumbnail", "texture", "defect", "bank"])
    ap.add_argument("--views", nargs="+", default=["none"], choices=sorted(VIEWS))
    args = ap.parse_args()
    for root in args.trees:
        paths, _ = tree(root)
        for view in args.views:
            for name in args.sets:
                t0 = time.monotonic()
                matrix(paths, name, view, args.cache)
                print(f"{root} {name}-{view}: {len(paths)} images, {time.monotonic() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
