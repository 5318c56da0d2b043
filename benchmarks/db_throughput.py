"""Database throughput: indexing a large folder, the review-queue query, job claims, label saves.

    PYTHONPATH=. python benchmarks/db_throughput.py [--db URL] [--files 20000]

Indexing is reported against a baseline in the same process: the same rows added one ORM object
at a time (what a naive indexer would do), so the figure is a ratio that holds across machines.
Without --db a temporary SQLite file is used; a PostgreSQL URL must name an empty database.
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from database import FileEntry, ImageQuery, LabelChange, PredictionIn, ReviewState, new_worker_id, open_database
from database.models import Image, utcnow


def _entries(n: int, salt: str) -> list[FileEntry]:
    return [FileEntry(f"{salt}/line{i % 7}/part_{i:06d}.png", 40_000 + i, 1_700_000_000_000_000_000 + i,
                      content_hash=f"{i:064x}") for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", help="database URL (default: a temporary SQLite file)")
    ap.add_argument("--files", type=int, default=20_000)
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    url = args.db or f"sqlite:///{Path(tmp.name) / 'bench.sqlite'}"
    db = open_database(url)
    n, base_n = args.files, max(500, args.files // 10)

    folder = db.folders.add("/bench/baseline")
    t = time.perf_counter()
    for e in _entries(base_n, "baseline"):  # baseline: one ORM object and one transaction per file
        with db.session(write=True) as s:
            s.add(Image(folder_id=folder.id, rel_path=e.rel_path, size_bytes=e.size_bytes, mtime_ns=e.mtime_ns,
                        content_hash=e.content_hash, added_at=utcnow(), updated_at=utcnow()))
    per_row = (time.perf_counter() - t) / base_n

    folder = db.folders.add("/bench/big")
    entries = _entries(n, "big")
    t = time.perf_counter()
    ids = list(db.images.sync(folder.id, entries).added_ids)
    bulk = time.perf_counter() - t
    t = time.perf_counter()
    res = db.images.sync(folder.id, entries)
    resync = time.perf_counter() - t
    assert res.unchanged == n
    print(f"index {n} new files: {bulk:.2f} s ({n / bulk:,.0f} files/s), "
          f"{per_row * n / bulk:.0f}x faster than one-row-at-a-time ({1 / per_row:,.0f} files/s)")
    print(f"re-index {n} unchanged files: {resync:.2f} s")

    mv = db.model_versions.register("anomaly", "bench", "/ckpt", activate=True)
    rnd = random.Random(0)
    t = time.perf_counter()
    for start in range(0, n, 1000):
        db.predictions.upsert_many([PredictionIn(i, mv.id, anomaly_score=rnd.random(), flags=("x",))
                                    for i in ids[start:start + 1000]])
    print(f"store {n} predictions in batches of 1000: {time.perf_counter() - t:.2f} s")

    q = ImageQuery(folder_id=folder.id, states=(ReviewState.UNREVIEWED,), model_version_id=mv.id,
                   min_anomaly_score=0.5, sort="anomaly_score", descending=True, limit=100)
    db.images.query(q)
    t = time.perf_counter()
    for _ in range(10):
        page = db.images.query(q)
        db.images.count(q)
        db.images.state_counts(folder.id)
    print(f"review-queue page (100 of {n}, filtered, score-sorted) + count + state counts: "
          f"{(time.perf_counter() - t) / 10 * 1000:.1f} ms")

    t = time.perf_counter()
    for im in page:
        db.labels.append(im.id, LabelChange(ReviewState.CORRECTED, class_name="scratch"), "bench")
    print(f"label save: {(time.perf_counter() - t) / len(page) * 1000:.1f} ms each")

    job = db.jobs.create("prelabel", {}, ids)
    w = new_worker_id()
    t = time.perf_counter()
    claimed = 0
    while (b := db.jobs.claim_items(w, 16)) is not None:
        db.jobs.complete_items(w, [i.id for i in b.items])
        claimed += len(b.items)
    took = time.perf_counter() - t
    assert claimed == n and db.jobs.get(job.id).finished
    print(f"claim + complete {n} job items in batches of 16: {took:.2f} s ({n / took:,.0f} items/s)")
    db.close()


if __name__ == "__main__":
    main()
