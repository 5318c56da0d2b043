"""The text and score-range filters' first read (a bounded count and a page, as the gallery
reads a new view), before and after ADR 0030, alternating in one process on one database that
``benchmarks/scale.py --keep`` left (issue 22).

"before" switches this tree's new paths off: PostgreSQL may not read the names' trigram index
of 0009 (``enable_bitmapscan = off`` for the text cases: a GIN index is read only by bitmap
scans), a score range always walks the names (``SCORE_CANDIDATES`` = -1), and page reads may use
parallel workers. SQLite's text filter is the same in both (its FTS5 path predates this).

    python benchmarks/queue_filters.py URL [--rounds 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402

import database.review_queue as rq  # noqa: E402
from database import open_database  # noqa: E402

BOUND = 9 * 256 + 1  # the gallery's bounded count of a new view (BOUND_PAGES past the first page)
CASES = [{"path_contains": "part_0001"}, {"path_contains": "part_00001"}, {"path_contains": "lot00"},
         {"score_min": 0.4, "score_max": 0.6}, {"score_min": 0.55, "score_max": 0.6},
         {"score_min": 0.595, "score_max": 0.6}, {"score_min": 0.5999, "score_max": 0.6}]


def _no_trigrams(s, db) -> None:
    if db.dialect == "postgresql":
        s.execute(text("SET LOCAL enable_bitmapscan = off"))


def _switch(after: bool, saved: dict[str, object], textual: bool) -> None:
    rq.SCORE_CANDIDATES = saved["SCORE_CANDIDATES"] if after else -1  # type: ignore[assignment]
    before = _no_trigrams if textual else (lambda s, db: None)
    rq._walks_only = saved["_walks_only"] if after else before  # type: ignore[assignment]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    db = open_database(args.url)
    with db.engine.connect() as c:
        folder_id = c.execute(text("SELECT min(id) FROM folders")).scalar()
    saved = {k: getattr(rq, k) for k in ("SCORE_CANDIDATES", "_walks_only")}
    times: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        for flt in CASES:
            for after in (False, True) if r % 2 == 0 else (True, False):
                _switch(after, saved, "path_contains" in flt)
                db.engine.dispose()  # new connections: no statement prepared under the other setting
                with db.engine.connect() as c:
                    c.execute(text("SELECT 1"))
                qq = rq.QueueQuery(folder_id=folder_id, **flt)  # type: ignore[arg-type]
                t = time.perf_counter()
                n = rq.queue_count(db, qq, at_most=BOUND)
                page = rq.queue_page(db, qq, 256)
                times.setdefault((str(flt), "after" if after else "before"), []).append(time.perf_counter() - t)
                if r == 0:
                    print(f"{flt} {'after' if after else 'before'}: {len(page.rows)} rows of {n}", flush=True)
    _switch(True, saved, False)
    for flt in CASES:
        b, a = (statistics.median(times[(str(flt), k)]) for k in ("before", "after"))
        print(f"{str(flt):45s} before {b * 1000:7.1f} ms  after {a * 1000:7.1f} ms  ({b / a:.1f}x)  "
              f"worst {max(times[(str(flt), 'before')]) * 1000:.0f} / {max(times[(str(flt), 'after')]) * 1000:.0f} ms")
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
