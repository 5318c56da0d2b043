"""Where a label save's time goes (issue 22: save p99 <= 20 ms at a million images).

Opens the database a ``benchmarks/scale.py --keep DIR`` run left (``DIR/bench.sqlite``, or
``--url``), and for ``--saves`` images of its folder times, without a GUI:

- ``save``: ``ReviewService.save_label`` (the revision, the image's state and class);
- ``row``: ``ReviewService.item`` (the saved row, as the review controller re-reads it);
- the SQL statements each save + row sends (an engine event counts them);
- with ``--profile``, a cProfile of the same loop (top functions by own and cumulative time);
- with ``--compare``, the code before ADR 0034 against this one, alternating in blocks in this
  one process: "before" pings the server on every pool checkout (``pool_pre_ping``), inserts
  the revision and updates the image in two statements, and reads the active model versions
  and the row in two transactions, as the code before did.

    python benchmarks/scale_save.py DIR [--saves 300] [--profile] [--compare] [--url URL]
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * q) - 1)] * 1000


def open_kept(tmp: Path, url: str | None):
    """The database, review service and folder a ``scale.py --keep tmp`` run left (None, said
    why, when there is no such folder)."""
    os.environ["INSPECTION_STATION_HOME"] = str(tmp / "home")
    from app.services.artifacts import ArtifactStore
    from app.services.review import ReviewService
    from app.services.station import open_station

    db = open_station(url or f"sqlite:///{(tmp / 'bench.sqlite').as_posix()}")
    svc = ReviewService(db, artifacts=ArtifactStore(tmp / "artifacts"))
    info = svc.folder_by_path(tmp / "images")
    if info is None:
        print(f"no indexed folder {tmp / 'images'}: run benchmarks/scale.py --keep {tmp} first")
        db.close()
        return None
    return db, svc, info


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", help="the --keep folder of a benchmarks/scale.py run")
    ap.add_argument("--url", help="database URL (default: DIR/bench.sqlite)")
    ap.add_argument("--saves", type=int, default=300)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--compare", action="store_true", help="before/after ADR 0034, alternating")
    args = ap.parse_args()
    from sqlalchemy import event

    from app.services.review_types import LabelState, QueueFilter

    opened = open_kept(Path(args.dir), args.url)
    if opened is None:
        return 1
    db, svc, info = opened
    page = svc.queue_page(QueueFilter(folder_id=info.id), 5000)
    rng = random.Random(3)
    ids = [rng.choice(page.items).image_id for _ in range(args.saves)]
    statements = [0]
    event.listen(db.engine, "before_cursor_execute", lambda *a, **k: statements.__setitem__(0, statements[0] + 1))

    def one(k: int, image_id: int) -> tuple[float, float]:
        state = LabelState(class_name="abc"[k % 3], review_state=("accepted", "rejected", "corrected")[k % 3])
        t0 = time.perf_counter()
        svc.save_label(image_id, state, "benchmark")
        t1 = time.perf_counter()
        svc.item(image_id)
        return t1 - t0, time.perf_counter() - t1

    if args.compare:  # distinct images for each mode
        return compare(db, svc, [it.image_id for it in rng.sample(page.items, min(len(page.items), 2 * args.saves))])
    for k, i in enumerate(ids[:20]):  # warm the caches and the connection pool
        one(k, i)
    statements[0] = 0
    saves, rows, both = [], [], []
    for k, i in enumerate(ids):
        a, b = one(k, i)
        saves.append(a)
        rows.append(b)
        both.append(a + b)
    print(f"{info.image_count} images ({db.engine.dialect.name}), {len(ids)} saves, load {os.getloadavg()[0]:.2f}")
    for what, v in (("save", saves), ("row", rows), ("save + row", both)):
        print(f"  {what}: p50 {pct(v, 0.5):.1f} ms, p99 {pct(v, 0.99):.1f} ms, mean {statistics.mean(v) * 1000:.1f} ms")
    print(f"  SQL statements per save + row: {statements[0] / len(ids):.1f}")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        for k, i in enumerate(ids):
            one(k, i)
        prof.disable()
        st = pstats.Stats(prof)
        st.sort_stats("cumulative").print_stats(30)
        st.sort_stats("tottime").print_stats(20)
    db.close()
    return 0


def compare(db, svc, ids: list[int], block: int = 50) -> int:
    """Before (ping on every checkout, row in two transactions) and after, alternating blocks."""
    import database.labels as labels_mod
    from app.services.review_types import LabelState
    from database.review_queue import queue_row
    new_append = labels_mod._append

    def old_append(s, image_id, trace, prev, author, label, state, from_prediction_id, note):  # noqa: ANN001
        """``database/labels._append`` before: the revision's INSERT, then the image's UPDATE."""
        from types import SimpleNamespace
        from typing import Any, cast

        from sqlalchemy import insert

        from database.models import utcnow
        values = {**labels_mod._revision_values(image_id, prev, label, state, author, from_prediction_id, note,
                                                trace), "created_at": utcnow()}
        new_id = cast(Any, s.execute(insert(labels_mod._REVISIONS).values(values))).inserted_primary_key[0]
        labels_mod.set_label_keys(s, [image_id], state, values["class_name"])
        return labels_mod.revision_dto(SimpleNamespace(id=new_id, **values))

    def old_item(image_id: int) -> None:  # ReviewService.item before: active ids, then the row (two transactions)
        db.model_versions.active_ids()
        queue_row(db, image_id)

    times: dict[str, list[float]] = {"before": [], "after": []}
    load = [os.getloadavg()[0]]
    k = 0
    for n, start in enumerate(range(0, len(ids), 2 * block)):
        # each mode its own images (a save warms its image's pages), first one mode then the other
        for mode, part in zip(("before", "after")[::1 if n % 2 == 0 else -1],
                              (ids[start:start + block], ids[start + block:start + 2 * block])):
            db.engine.pool._pre_ping = mode == "before"  # the pool's own ping on every checkout
            labels_mod._append = old_append if mode == "before" else new_append
            for j, image_id in enumerate(part):
                k += 1
                state = LabelState(class_name="abc"[k % 3], review_state=("accepted", "rejected", "corrected")[k % 3])
                t = time.perf_counter()
                svc.save_label(image_id, state, "benchmark")
                old_item(image_id) if mode == "before" else svc.item(image_id)
                if j >= 3:  # the first saves of a block: the other mode's pool state
                    times[mode].append(time.perf_counter() - t)
        load.append(os.getloadavg()[0])
    print(f"{db.engine.dialect.name}, {len(ids) // 2} saves per mode in blocks of {block}, "
          f"load {min(load):.2f}-{max(load):.2f}")
    for mode, v in times.items():
        print(f"  {mode}: save + row p50 {pct(v, 0.5):.1f} ms, p99 {pct(v, 0.99):.1f} ms, "
              f"mean {statistics.mean(v) * 1000:.1f} ms (n={len(v)})")
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
