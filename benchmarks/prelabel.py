"""Pre-labelling throughput: images/s per family and for all three, batch 1 vs batched, at 256².

    PYTHONPATH=. python benchmarks/prelabel.py [--images 24] [--batch-size 8] [--device cpu]
                                               [--threads 1] [--json FILE]

Each family runs its bundled checkpoint when present (resources/models/...), else its ``cpu``
preset with random weights (throughput does not depend on the weights; the output says which).
The baseline in the same process is batch 1 with no decode prefetch; the batched figure uses
the engine's prefetching decoder. The last line runs the real worker (claims, decoding, models,
prediction/artifact writes to a temporary SQLite database) to show what storing costs.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import inference  # noqa: E402,F401 - first: it sets OpenCV's pixel limit, which cv2 reads at its import

# isort: split
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from inference.bundled import bundled_model_dir  # noqa: E402
from inference.checkpoints import save_model  # noqa: E402
from inference.engine import InspectionEngine  # noqa: E402
from inference.models import registry  # noqa: E402
from inference.training.common import set_threads  # noqa: E402

MODELS = {"classifier": "memory_mamba", "segmenter": "mim_istd", "anomaly": "pattern_anomaly"}


def model_dirs(tmp: Path) -> tuple[dict[str, Path], dict[str, str]]:
    dirs, origin = {}, {}
    for family, name in MODELS.items():
        bundled = bundled_model_dir(family)
        if (bundled / "config.json").is_file():
            dirs[family], origin[family] = bundled, f"bundled {bundled.name}"
            continue
        spec = registry.spec(name)
        cfg = sys.modules[spec.model_cls.__module__].PRESETS["cpu"]
        dirs[family] = save_model(tmp / family, name, registry.build(name, cfg), cfg)
        origin[family] = f"{name} 'cpu' preset, random weights"
    return dirs, origin


def images(folder: Path, n: int, side: int = 256) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side]
    out = []
    for i in range(n):
        base = 128 + 60 * np.sin(xx / (7 + i % 5)) + 40 * np.cos(yy / 11) + rng.normal(0, 12, (side, side))
        img = np.clip(np.stack([base, base * 0.9, base * 1.1], axis=2), 0, 255).astype(np.uint8)
        p = folder / f"part_{i:04d}.png"
        cv2.imwrite(str(p), img)
        out.append(p)
    return out


def rate(engine: InspectionEngine, paths: list[Path], batch: int, prefetch: int, families) -> float:
    list(engine.predict_files([(str(p), p) for p in paths[:batch]], batch, families, prefetch))  # warm-up
    t = time.perf_counter()
    n = sum(len(r) for r in engine.predict_files([(str(p), p) for p in paths], batch, families, prefetch))
    return n / (time.perf_counter() - t)


def worker_rate(dirs: dict[str, Path], folder: Path, warm: Path, tmp: Path, device: str, batch: int) -> float:
    """Images/s of the worker on ``folder``, timed after a warm-up job (model loading excluded)."""
    from app.services.artifacts import ArtifactStore
    from app.services.indexing import index_folder
    from app.services.prelabel import job_status, submit_prelabel
    from app.worker import Worker, WorkerOptions
    from database.engine import open_database

    db = open_database(f"sqlite:///{tmp / 'bench.sqlite'}")
    try:
        first = submit_prelabel(db, folder_id=index_folder(db, warm).folder_id, model_dirs=dirs, priority=1)
        job = submit_prelabel(db, folder_id=index_folder(db, folder).folder_id, model_dirs=dirs)
        w = Worker(db, WorkerOptions(device=device, batch_size=batch, poll_s=0.01),
                   artifacts=ArtifactStore(tmp / "artifacts"))
        start: list[float] = []

        def on_batch(claimed, results) -> None:
            if claimed.job.id == first and not start and job_status(db, first).finished:
                start.append(time.perf_counter())

        w.run(once=True, on_batch=on_batch)
        seconds = time.perf_counter() - start[0]
        assert job_status(db, job).done == len(list(folder.glob("*.png")))
        return job_status(db, job).done / seconds
    finally:
        db.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--threads", type=int, default=1, help="torch/numba threads (the machine is shared)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    set_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="prelabel-bench-"))
    dirs, origin = model_dirs(tmp / "models")
    paths = images(tmp / "images", args.images)
    out: dict = {"images": args.images, "side": 256, "batch_size": args.batch_size, "device": args.device,
                 "threads": args.threads, "models": origin, "images_per_second": {}}
    with InspectionEngine(dirs, device=args.device) as engine:
        out["half_precision"] = {f: i.half for f, i in engine.loaded().items()}
        rows = [(f, [f]) for f in MODELS] + [("all three", list(MODELS))]
        print(f"{args.images} images of 256x256 on {engine.device} ({args.threads} thread(s)); models: "
              + "; ".join(f"{f}: {o}" for f, o in origin.items()))
        for label, fams in rows:
            one = rate(engine, paths, 1, 0, fams)
            many = rate(engine, paths, args.batch_size, 1, fams)
            out["images_per_second"][label] = {"batch1": round(one, 3), f"batch{args.batch_size}": round(many, 3)}
            print(f"{label:>10}: batch 1 {one:7.2f} img/s | batch {args.batch_size} + prefetch {many:7.2f} img/s "
                  f"({many / one:.2f}x)")
    engine_all = out["images_per_second"]["all three"][f"batch{args.batch_size}"]
    images(tmp / "warm-up", args.batch_size)
    w = worker_rate(dirs, tmp / "images", tmp / "warm-up", tmp, args.device, args.batch_size)
    out["images_per_second"]["worker (all three, stored)"] = round(w, 3)
    print(f"    worker: {w:7.2f} img/s with claims and storing ({w / engine_all:.2f}x of the engine alone)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
