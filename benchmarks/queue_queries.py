"""The queue's statements alone, without the GUI: ``queue_count`` and pages of each sort and
filter on a database ``benchmarks/scale.py`` left behind (``--keep DIR``: ``DIR/bench.sqlite``).
Isolates a query plan from the gallery's costs (issue 22).

    python benchmarks/queue_queries.py sqlite:////tmp/keep/bench.sqlite
"""
from __future__ import annotations

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


def main() -> int:
    db = open_database(sys.argv[1])
    with db.engine.connect() as c:
        folder_id = c.execute(text("SELECT min(id) FROM folders")).scalar()
    for sort, flt in CASES:
        qq = QueueQuery(folder_id=folder_id, sort=sort, **flt)  # type: ignore[arg-type]
        n, counted = _timed(queue_count, db, qq)
        _page, first = _timed(queue_page, db, qq, 60)
        _page, middle = _timed(queue_page, db, qq, 60, offset=n // 2)
        print(f"{sort:12s} {str(flt):45s} count {n:8d} {counted * 1000:7.0f} ms  page {first * 1000:6.0f} ms  "
              f"mid {middle * 1000:6.0f} ms")
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
