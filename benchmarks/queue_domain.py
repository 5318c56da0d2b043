"""The queue's reads of an answer's domain (``QueueQuery.domain_below``): the score sorts' first page, a page at the
middle and N (and by target count or anomaly score a page in the stretch out of domain, near the end), the class
filter's and the score range's first page and count, with and without the threshold, on copies of one database that
differ in their indexes only (0018 vs 0019_queue_domain, or 0019's anomaly and target indexes as 442a9da6 wrote them:
``--as-442a9da6``; its domain index without the folder: ``--domain-unfoldered``). Each case is timed on every copy in
turn (best of a few, twice, alternating), so the machine's load hits them alike; the rows must agree.
benchmarks/results/queue-domain-index.md.

    python benchmarks/queue_domain.py --build URL [--images N]     # N images, an answer of each family each, 2% out
    ... --build URL --images N --cross-folder M                    # and a second folder, M images, every answer out
    python benchmarks/queue_domain.py --as-442a9da6 URL            # the anomaly/target indexes without in_domain
    python benchmarks/queue_domain.py --domain-unfoldered URL      # ix_predictions_queue_domain without folder_id
    python benchmarks/queue_domain.py before=URL after=URL [...]   # the first is the ratios' reference
    python benchmarks/queue_domain.py --explain URL                # each case's statements and their plans
    ... [--only WORD]                                              # only the cases whose name holds WORD

The cases read the first folder (the second, ``--cross-folder``, is another line's: its answers out of domain must
cost the first folder's queue nothing). Opened without migrating (``migrate=False``): a copy kept at 0018 stays there.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event, text  # noqa: E402

from database import Database, open_database  # noqa: E402
from database.dto import FileEntry, PredictionIn  # noqa: E402
from database.review_queue import QueueQuery, next_unreviewed, queue_count, queue_page  # noqa: E402

BELOW = 0.5  # inference.domain.OUT_OF_DOMAIN_BELOW, as the service passes it


def build(url: str, images: int, cross_folder: int = 0) -> None:
    db = open_database(url)
    folder = db.folders.add("/data/big")
    db.images.sync(folder.id, [FileEntry(f"lot{i // 1000:03d}/part_{i:07d}.png", 10, 1) for i in range(images)])
    mv = db.model_versions.register("classifier", "c", "/m")
    seg = db.model_versions.register("segmenter", "s", "/m")
    ano = db.model_versions.register("anomaly", "a", "/m")
    for version in (mv, seg, ano):
        db.model_versions.activate(version.id)
    rng = random.Random(0)

    def domain() -> float:
        return 0.1 if rng.random() < 0.02 else 0.9

    for k in range(1, images + 1, 20000):
        db.predictions.upsert_many([
            PredictionIn(i, mv.id, predicted_class=rng.choice("abcd"), confidence=rng.random(), in_domain=domain())
            for i in range(k, min(k + 20000, images + 1))])
        db.predictions.upsert_many([
            PredictionIn(i, seg.id, target_count=rng.randint(0, 6), in_domain=domain())
            for i in range(k, min(k + 20000, images + 1))])
        db.predictions.upsert_many([
            PredictionIn(i, ano.id, anomaly_score=rng.random(), in_domain=domain())
            for i in range(k, min(k + 20000, images + 1))])
    if cross_folder:  # another line (infrared frames through the steel models): every answer out of domain
        other = db.folders.add("/data/infrared")
        for k in range(0, cross_folder, 20000):
            db.images.sync(other.id, [FileEntry(f"ir_{i:07d}.png", 10, 1) for i in range(min(k + 20000, cross_folder))])
        first = images + 1
        for k in range(first, first + cross_folder, 20000):
            ids = range(k, min(k + 20000, first + cross_folder))
            db.predictions.upsert_many([PredictionIn(i, mv.id, predicted_class="a", confidence=1.0, in_domain=0.01)
                                        for i in ids])
            db.predictions.upsert_many([PredictionIn(i, seg.id, target_count=2, in_domain=0.01) for i in ids])
            db.predictions.upsert_many([PredictionIn(i, ano.id, anomaly_score=0.9, in_domain=0.01) for i in ids])
    db.close()


# The indexes 23cbd2ef's amended 0019 ends in ``in_domain``, as 442a9da6 wrote them.
AS_442A9DA6 = {"ix_predictions_queue_anomaly": "current_family, anomaly_score DESC, name_key, image_id",
            "ix_predictions_queue_targets": "current_family, target_count DESC, name_key, image_id",
            "ix_predictions_folder_anomaly": "current_family, folder_id, anomaly_score"}


# ix_predictions_queue_domain as 442a9da6 wrote it (and 23cbd2ef kept it): no folder, so a folder's stretch out of
# domain was every folder's, sorted, then filtered.
UNFOLDERED = {"ix_predictions_queue_domain": "current_family, in_domain, name_key, image_id"}


def reindex(url: str, indexes: dict[str, str]) -> None:
    """Make a copy's ``indexes`` these (name -> columns): a reference for the amended 0019."""
    db = open_database(url, migrate=False)
    with db.engine.begin() as c:
        for name, columns in indexes.items():
            c.execute(text(f"DROP INDEX {name}"))
            c.execute(text(f"CREATE INDEX {name} ON predictions ({columns})"))
    db.close()


def cases(folder_id: int, images: int) -> list[tuple[str, Callable[[Database], Any], int]]:
    out: list[tuple[str, Callable[[Database], Any], int]] = []
    for below in (None, BELOW):
        for sort in ("uncertainty", "confidence"):
            qq = QueueQuery(folder_id=folder_id, sort=sort, domain_below=below)
            out += [(f"{sort} first page below={below}", partial(_page, qq=qq), 5),
                    (f"{sort} page at 50% below={below}", partial(_page, qq=qq, offset=images // 2), 3),
                    (f"{sort} next_unreviewed below={below}", partial(_next, qq=qq), 3)]
        qq = QueueQuery(folder_id=folder_id, class_name="a", domain_below=below)
        out += [(f"class first page below={below}", partial(_page, qq=qq), 5),
                (f"class count below={below}", partial(_count, qq=qq), 5)]
        for sort in ("targets", "anomaly"):  # the stretch out of domain: after the values, before "no value"
            qq = QueueQuery(folder_id=folder_id, sort=sort, domain_below=below)
            out += [(f"{sort} first page below={below}", partial(_page, qq=qq), 5),
                    (f"{sort} page at 50% below={below}", partial(_page, qq=qq, offset=images // 2), 3),
                    (f"{sort} page at 99% below={below}", partial(_page, qq=qq, offset=images * 99 // 100), 3),
                    (f"{sort} next_unreviewed below={below}", partial(_next, qq=qq), 3)]
        qq = QueueQuery(folder_id=folder_id, score_min=0.3, score_max=0.5, domain_below=below)
        out += [(f"score range first page below={below}", partial(_page, qq=qq), 5),
                (f"score range count below={below}", partial(_count, qq=qq), 5)]
    return out


def _page(db: Database, qq: QueueQuery, offset: int = 0) -> Any:
    return queue_page(db, qq, 60, offset=offset)


def _next(db: Database, qq: QueueQuery) -> Any:
    return next_unreviewed(db, qq, 5)


def _count(db: Database, qq: QueueQuery) -> int:
    return queue_count(db, qq)


def _best(work: Callable[[Database], Any], db: Database, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        work(db)
        best = min(best, time.perf_counter() - start)
    return best * 1000


def compare(variants: list[tuple[str, str]], only: str = "") -> None:
    dbs = {label: open_database(url, migrate=False) for label, url in variants}
    first = next(iter(dbs.values()))
    folder_id = first.folders.list()[0].id
    todo = [case for case in cases(folder_id, _folder_size(first, folder_id)) if only in case[0]]
    for name, work, _reps in todo:  # the same answers on every copy
        answers = [work(db) for db in dbs.values()]
        assert all(a == answers[0] for a in answers), name
    labels = [label for label, _ in variants]
    print(f"{'case':42s}" + "".join(f"{label:>12s}" for label in labels)
          + "".join(f"{'ratio ' + label:>14s}" for label in labels[1:]))
    for name, work, reps in todo:
        times = {label: _best(work, dbs[label], reps) for label in labels}
        for label in reversed(labels):
            times[label] = min(times[label], _best(work, dbs[label], reps))
        ref = times[labels[0]]
        print(f"{name:42s}" + "".join(f"{times[label]:10.1f}ms" for label in labels)
              + "".join(f"{times[label] / ref:13.2f}x" for label in labels[1:]), flush=True)
    for db in dbs.values():
        db.close()


def _folder_size(db: Database, folder_id: int) -> int:
    return queue_count(db, QueueQuery(folder_id=folder_id))


def explain(url: str, only: str = "") -> None:
    """Each case's statements (with ``below``) and the database's plan for each: SQLite's ``EXPLAIN QUERY PLAN``,
    PostgreSQL's ``EXPLAIN`` (parallel workers off, as the queue's own reads)."""
    db = open_database(url, migrate=False)
    folder_id = db.folders.list()[0].id
    seen: list[tuple[str, Any]] = []

    def grab(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "sqlite_master" not in statement:
            seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", grab)
    for name, work, _reps in cases(folder_id, _folder_size(db, folder_id)):
        if f"below={BELOW}" not in name or only not in name:
            continue
        seen.clear()
        work(db)
        print("=" * 8, name)
        for statement, parameters in list(seen):
            if "FROM folders ORDER BY" in statement:
                continue
            print("--", " ".join(statement.split())[:300])
            with db.engine.connect() as c:
                raw = c.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                if db.dialect == "sqlite":
                    raw.execute("EXPLAIN QUERY PLAN " + statement, parameters)
                    for row in raw.fetchall():
                        print("   ", row[3])
                else:
                    raw.execute("SET max_parallel_workers_per_gather = 0")
                    raw.execute("EXPLAIN " + statement, parameters)
                    for row in raw.fetchall():
                        print("   ", row[0])
    db.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", metavar="URL")
    ap.add_argument("--images", type=int, default=200_000)
    ap.add_argument("--explain", metavar="URL")
    ap.add_argument("--cross-folder", type=int, default=0, metavar="M")
    ap.add_argument("--as-442a9da6", metavar="URL")
    ap.add_argument("--domain-unfoldered", metavar="URL")
    ap.add_argument("--only", default="")
    ap.add_argument("variants", nargs="*", metavar="LABEL=URL")
    args = ap.parse_args()
    if args.build:
        build(args.build, args.images, args.cross_folder)
    elif args.as_442a9da6:
        reindex(args.as_442a9da6, AS_442A9DA6)
    elif args.domain_unfoldered:
        reindex(args.domain_unfoldered, UNFOLDERED)
    elif args.explain:
        explain(args.explain, args.only)
    else:
        compare([(v.split("=", 1)[0], v.split("=", 1)[1]) for v in args.variants], args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
