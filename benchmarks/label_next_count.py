"""One "label next" recount (batch + counter) of a station folder with the shipped
``label_next.nearest_distances`` against the numpy broadcasting it replaced (session 19), alternating
in one process, with the peak memory each adds.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/label_next_count.py --tree ../shared/datasets/magnetic_tile/train \\
        [--images 862] [--copies 6] [--labelled 1000] [--rounds 3] [--compare distances|spaces]

``--compare spaces`` (ADR 0073) times the same recount choosing in the cheap ``texture`` embedding (before) and in
the retrainer's features (shipped), alternating, after a first count of each has filled its cache.

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
from collections.abc import Callable
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
    p.add_argument("--compare", choices=("distances", "spaces"), default="distances")
    args = p.parse_args(argv)

    import cv2

    import app.services.label_next as label_next
    from app.services.image_embedding import embedding_source
    from app.services.indexing import index_folder
    from app.services.label_next_folder import LabelNextResult, label_next_for_folder
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
        texture = embedding_source("texture")
        ways: dict[str, Callable[[], LabelNextResult]] = {}
        if args.compare == "spaces":
            ways = {"texture (before)": lambda: label_next_for_folder(db, folder_id, cache_root=root, source=texture),
                    "retrainer's (shipped)": lambda: label_next_for_folder(db, folder_id, cache_root=root)}
        else:
            ways = {"broadcast (before)": lambda: label_next_for_folder(db, folder_id, cache_root=root),
                    "cdist (shipped)": lambda: label_next_for_folder(db, folder_id, cache_root=root)}
        distances = {"broadcast (before)": broadcast_nearest}
        first = {}
        for name, count in ways.items():
            t0 = time.perf_counter()
            first[name] = count()
            print(f"{len(images)} images, {args.labelled} labelled; first count, {name} (every vector computed): "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
        times: dict[str, list[float]] = {name: [] for name in ways}
        peaks: dict[str, float] = {}
        for r in range(args.rounds):
            for name, count in ways.items():
                label_next.nearest_distances = distances.get(name, shipped)
                if r == 0:
                    tracemalloc.start()
                t0 = time.perf_counter()
                got = count()
                times[name].append(time.perf_counter() - t0)
                if r == 0:
                    peaks[name] = tracemalloc.get_traced_memory()[1] / 2**20
                    tracemalloc.stop()
                assert got.proposal == first[name].proposal and got.needed == first[name].needed, name
        label_next.nearest_distances = shipped
        med = {k: float(np.median(v)) for k, v in times.items()}
        for k, v in times.items():
            print(f"recount, {k:22s} median {med[k]:.3f} s ({', '.join(f'{x:.3f}' for x in v)}); "
                  f"peak Python allocation {peaks[k]:.0f} MiB (first round, traced)")
        base, new = (med[k] for k in ways)
        print(f"ratio before / shipped: {base / new:.2f}x; each way the same batch and counter in every round")
        db.close()
    finally:
        label_next.nearest_distances = shipped
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
