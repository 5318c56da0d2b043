"""Shared pieces of the worker tests: a database with tiny active models, a folder of images."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from database.engine import open_database


def make_db(url: str, models: dict[str, Path]):
    db = open_database(url)
    for family, path in models.items():
        if db.model_versions.active(family) is None:
            db.model_versions.register(family, f"{family}-tiny", str(path), activate=True)
    return db


def good_images(folder: Path, n: int, size: int = 32, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"img_{i:03d}.png"
        assert cv2.imwrite(str(p), rng.integers(0, 255, (size, size), dtype=np.uint8))
        out.append(p)
    return out


def run_worker_once(db, tmp_path: Path) -> None:
    """An in-process worker runs every queued item once (CPU, batches of 4), artifacts under ``tmp_path``."""
    from app.services.artifacts import ArtifactStore
    from app.worker import Worker, WorkerOptions
    Worker(db, WorkerOptions(device="cpu", batch_size=4, poll_s=0.05),
           artifacts=ArtifactStore(tmp_path / "artifacts")).run(once=True)


def cpu_worker(db, tmp_path: Path):
    """An in-process worker (CPU, batches of 4) whose maps go under ``tmp_path``; not run yet."""
    from app.services.artifacts import ArtifactStore
    from app.worker import Worker, WorkerOptions
    return Worker(db, WorkerOptions(device="cpu", batch_size=4, poll_s=0.05), artifacts=ArtifactStore(tmp_path / "a"))
