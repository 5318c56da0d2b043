"""The queue's statements alone, without the GUI: ``queue_count`` and pages of each sort and
filter on a database ``benchmarks/scale.py`` left behind (``--keep DIR``: ``DIR/bench.sqlite``).
Isolates a query plan from the gallery's costs (issue 22).

    python benchmarks/queue_queries.py sqlite:////tmp/keep/bench.sqlite [--walk] [--explain]

``--walk``: also 300 keyset pages of 60 rows by name, by anomaly score and by name under a class
filter (median / worst), the gallery's scrolling without the gallery. ``--explain``: the database's
plan for the first page under a score range (PostgreSQL: ``EXPLAIN ANALYZE``; SQLite: ``EXPLAIN
QUERY PLAN``). Works with the code before ADR 0058 too (its ``QueueQuery`` took the active versions'
ids): copy the script into such a checkout to compare.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402

from database import open_database  # noqa: E402
from database.review_queue import QueueQuery, queue_count, queue_page  # noqa: E402

T = TypeVar("T")
CASES = [("name", {}), ("targets", {}), ("anomaly", {}), ("uncertainty", {}), ("state", {}),
         ("name", {"class_name": "b"}), ("name", {"score_min": 0.4, "score_max": 0.6}),
         ("name", {"path_contains": "part_0001"}), ("name", {"states": ("unreviewed",)}), ("name", {"flagged": True})]


def _timed(work: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float]:
    start = time.perf_counter()
    return work(*args, **kwargs), time.perf_counter() - start


def _models(db: Any) -> dict[str, int]:
    """The active versions' ids as ``QueueQuery`` fields where it still has them (before ADR 0058)."""
    if "classifier_id" not in {f.name for f in dataclasses.fields(QueueQuery)}:
        return {}
    with db.engine.connect() as c:
        return {f"{f}_id": int(i) for f, i in c.execute(text("SELECT family, id FROM model_versions WHERE active"))}


def _walk(db: Any, folder_id: int, models: dict[str, int]) -> None:
    for sort, flt in (("name", {}), ("anomaly", {}), ("name", {"class_name": "b"})):
        qq = QueueQuery(folder_id=folder_id, sort=sort, **models, **flt)  # type: ignore[arg-type]
        after, times = None, []
        for _ in range(300):
            page, t = _timed(queue_page, db, qq, 60, after=after)
            times.append(t)
            after = page.cursor
        print(f"walk {sort:8s} {str(flt):20s} 300 pages of 60: median {statistics.median(times) * 1000:.2f} ms, "
              f"worst {max(times) * 1000:.1f} ms")


def _explain(db: Any, folder_id: int, models: dict[str, int]) -> None:
    from database import review_queue as rq
    qq = rq._narrowed(db, QueueQuery(folder_id=folder_id, score_min=0.4, score_max=0.6, **models))  # type: ignore[arg-type]
    shape = rq._Shape(qq)
    seg = shape.segments()[0]
    stmt = (rq._rows_select(shape, seg.inner).where(*shape.conditions(), *seg.conditions)
            .order_by(*(e.asc() if a else e.desc() for e, a in seg.order)).limit(60))
    sql = str(stmt.compile(db.engine, compile_kwargs={"literal_binds": True}))
    postgres = db.engine.dialect.name == "postgresql"
    with db.engine.connect() as c:
        if postgres:
            c.execute(text("SET max_parallel_workers_per_gather = 0"))  # as the queue's own reads (_walks_only)
        for row in c.execute(text(("EXPLAIN ANALYZE " if postgres else "EXPLAIN QUERY PLAN ") + sql)):
            print("plan:", row[-1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--walk", action="store_true")
    ap.add_argument("--explain", action="store_true")
    args = ap.parse_args()
    db = open_database(args.url)
    with db.engine.connect() as c:
        folder_id = c.execute(text("SELECT min(id) FROM folders")).scalar()
    models = _models(db)
    if args.explain:
        _explain(db, folder_id, models)
    if args.walk:
        _walk(db, folder_id, models)
    for sort, flt in CASES:
        qq = QueueQuery(folder_id=folder_id, sort=sort, **models, **flt)  # type: ignore[arg-type]
        n, counted = _timed(queue_count, db, qq)
        _page, first = _timed(queue_page, db, qq, 60)
        _page, middle = _timed(queue_page, db, qq, 60, offset=n // 2)
        print(f"{sort:12s} {str(flt):45s} count {n:8d} {counted * 1000:7.0f} ms  page {first * 1000:6.0f} ms  "
              f"mid {middle * 1000:6.0f} ms")
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
