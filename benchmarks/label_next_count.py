"""One "label next" recount (batch + counter) of a station folder with the shipped
``label_next.nearest_distances`` against the numpy broadcasting it replaced (session 19), alternating
in one process, with the peak memory each adds.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/label_next_count.py --tree ../shared/datasets/magnetic_tile/train \\
        [--images 862] [--copies 6] [--labelled 1000] [--rounds 3]

The folder: up to ``--images`` files of the class-folder tree, each written ``--copies`` times with
one pixel changed (distinct contents: a larger folder than the tree holds), indexed into a fresh
SQLite station in a temporary directory; ``--labelled`` of them (a seeded draw) labelled with their
folder's class. A first count computes every vector (cached on disk), so what is timed is a recount
after a save: the queue reads, the vector reads, the batch and the counter's fits. Both ways must
give the same batch and counter in every round.
"""
from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def broadcast_nearest(points: np.ndarray, anchors: np.ndarray, block: int = 512) -> np.ndarray:
    """The distance code before session 19 (the baseline): a (points, block, dim) difference array."""
    nearest = np.full(len(points), np.inf)
    for start in range(0, len(anchors), block):
        b = anchors[start:start + block]
        d = np.sqrt(np.maximum(((points[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0.0))
        nearest = np.minimum(nearest, d.min(axis=1))
    return nearest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tree", required=True)
    p.add_argument("--images", type=int, default=862)
    p.add_argument("--copies", type=int, default=6)
    p.add_argument("--labelled", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)

    import cv2

    import app.services.label_next as label_next
    from app.services.indexing import index_folder
    from app.services.label_next_folder import label_next_for_folder
    from database.dto import LabelChange
    from database.engine import open_database
    from database.states import ReviewState
    from inference.imageio import is_image_file

    files = sorted(f for f in Path(args.tree).rglob("*") if f.is_file() and is_image_file(f))
    random.Random(0).shuffle(files)
    files = files[:args.images]
    work = Path(tempfile.mkdtemp(prefix="label_next_count_"))
    shipped = label_next.nearest_distances
    try:
        folder = work / "parts"
        folder.mkdir()
        for f in files:
            img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
            for c in range(args.copies):
                img.flat[c] = (int(img.flat[c]) + 1 + c) % 256
                cv2.imwrite(str(folder / f"{f.parent.name}__c{c}_{f.stem}.png"), img)
        db = open_database(f"sqlite:///{work / 'station.sqlite'}")
        folder_id = index_folder(db, folder).folder_id
        images = db.images.query()
        for im in random.Random(1).sample(images, min(args.labelled, len(images))):
            db.labels.append(im.id, LabelChange(ReviewState.CORRECTED, class_name=im.rel_path.split("__")[0]), "bench")
        root = work / "cache"
        t0 = time.perf_counter()
        first = label_next_for_folder(db, folder_id, cache_root=root)
        print(f"{len(images)} images, {args.labelled} labelled; first count (every vector computed): "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        times: dict[str, list[float]] = {"broadcast (before)": [], "cdist (shipped)": []}
        peaks: dict[str, float] = {}
        for r in range(args.rounds):
            for name, fn in (("broadcast (before)", broadcast_nearest), ("cdist (shipped)", shipped)):
                label_next.nearest_distances = fn
                if r == 0:
                    tracemalloc.start()
                t0 = time.perf_counter()
                got = label_next_for_folder(db, folder_id, cache_root=root)
                times[name].append(time.perf_counter() - t0)
                if r == 0:
                    peaks[name] = tracemalloc.get_traced_memory()[1] / 2**20
                    tracemalloc.stop()
                assert got.proposal == first.proposal and got.needed == first.needed, name
        label_next.nearest_distances = shipped
        med = {k: float(np.median(v)) for k, v in times.items()}
        for k, v in times.items():
            print(f"recount, {k:20s} median {med[k]:.3f} s ({', '.join(f'{x:.3f}' for x in v)}); "
                  f"peak Python allocation {peaks[k]:.0f} MiB (first round, traced)")
        base, new = med["broadcast (before)"], med["cdist (shipped)"]
        print(f"ratio before / shipped: {base / new:.2f}x; the same batch and counter in every round")
        db.close()
    finally:
        label_next.nearest_distances = shipped
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
