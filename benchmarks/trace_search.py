"""The queue's text filter on a large folder with traces: finding a part by serial or lot.

Builds N image rows (no files: ``ImageRepository.sync`` with synthetic entries), gives each a
serial, lot and station, then times the first page and the count of the queue for a serial, a
lot and a name fragment, as the gallery asks them, and prints SQLite's plan of the filter (it
should walk a queue index, ``ix_images_queue_name`` or ``_state``, not scan the table).

    python benchmarks/trace_search.py --images 200000 [--url postgresql+psycopg://...]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    from sqlalchemy import false, func, select, text

    from database import open_database
    from database.dto import FileEntry
    from database.images import text_match
    from database.models import Image
    from database.review_queue import QueueQuery, queue_count, queue_page

    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200_000)
    ap.add_argument("--url", help="database URL (default: a new SQLite file in the temporary folder)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="trace_search_")
    db = open_database(args.url or f"sqlite:///{tmp}/station.sqlite")
    n = args.images
    folder = db.folders.add(f"{tmp}/parts")
    start = time.perf_counter()
    db.images.sync(folder.id, (FileEntry(f"L{i // 1000:04d}/SN{i:08d}_st{i % 4}.png", 100, i, content_hash=f"{i:064x}")
                               for i in range(n)))
    ids = [i for page in db.images.trace_rows(folder.id) for i, _, _ in page]
    for k in range(0, len(ids), 20_000):
        db.images.set_traces({image_id: (f"SN{j:08d}", f"L{j // 1000:04d}", f"st{j % 4}")
                              for j, image_id in enumerate(ids[k:k + 20_000], start=k)})
    print(f"{n} rows with traces in {time.perf_counter() - start:.1f} s")
    for label, needle in (("serial", f"SN{n // 2:08d}"), ("lot", f"L{n // 2000:04d}"), ("name", f"{n // 2:08d}_")):
        qq = QueueQuery(folder_id=folder.id, path_contains=needle)
        page_ms, count_ms = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            rows = queue_page(db, qq, 256).rows
            page_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            count = queue_count(db, qq)
            count_ms.append((time.perf_counter() - t) * 1000)
        print(f"{label:6s} {needle!r}: {len(rows)} rows on the first page, count {count}; "
              f"page {statistics.median(page_ms):.1f} ms, count {statistics.median(count_ms):.1f} ms (median of {args.repeat})")
    if db.dialect == "sqlite":
        stmt = (select(func.count(Image.id)).where(Image.folder_id == folder.id, Image.missing == false(),
                                                    text_match("SN00000001")))
        with db.engine.connect() as conn:
            compiled = stmt.compile(conn, compile_kwargs={"literal_binds": True})
            for row in conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}")):
                print("plan:", row[-1])
    db.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
