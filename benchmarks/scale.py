"""A folder of 10k, 100k or 1M images: is the station still instant? (issue 22)

Builds a folder of N synthetic PNG files (a few hundred distinct contents under N names, as
``gui_gallery.py`` does, but small pictures so a million fit on disk), indexes it like a real
folder into SQLite (or the PostgreSQL database ``--url`` names), stores a prediction per image
and model family, then measures in this one process, with a real gallery view offscreen:

- index time (first index: hash + insert) and re-open time of the unchanged folder (stats only);
- first paint after opening: the queue controller reads the count and the first page and the
  gallery paints it (the folder's per-state counts follow from a helper thread: their arrival);
- each sort and each filter change, until the gallery has painted the new first page, and
  until the exact row count has come (it follows the first page from a helper thread);
- page scrolling: page-down steps and random jumps, each until the rows on screen are read
  and painted (median and worst);
- label save: save through the review service, fetch the saved row, update the cell and the
  counts, as the review controller does (p50 and p99);
- N across pages: every image but one in 5,000 (by name) is marked reviewed, then N / Shift+N
  from the current image until the gallery selects the next unreviewed one (a page not read
  yet: the database's whole queue answers, off the GUI thread), under several sorts;
- the process's memory (RSS) before the gallery opens, at the end, and its peak (which
  includes indexing and seeding: a GUI opening an indexed folder does not pay that).

    QT_QPA_PLATFORM=offscreen python benchmarks/scale.py --images 100000 [--url postgresql+psycopg://...]
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.gui_gallery import make_images, offscreen_gallery  # noqa: E402


def seed(db, folder_id: int) -> None:
    """A prediction per image and family (bulk, in chunks: a million rows)."""
    from database.dto import PredictionIn
    from database.review_queue import QueueQuery, queue_rows
    mv = {f: db.model_versions.register(f, f"bench-{f}", "/none", activate=True).id
          for f in ("classifier", "segmenter", "anomaly")}
    rng = random.Random(1)
    ids = [r.image_id for r in queue_rows(db, QueueQuery(folder_id=folder_id), page_size=50_000)]
    for k in range(0, len(ids), 20_000):
        preds = []
        for i in ids[k:k + 20_000]:
            preds += [PredictionIn(i, mv["classifier"], predicted_class="abc"[i % 3], confidence=rng.random()),
                      PredictionIn(i, mv["segmenter"], target_count=rng.randrange(4)),
                      PredictionIn(i, mv["anomaly"], anomaly_score=rng.random())]
        db.predictions.upsert_many(preds)


def n_across_pages(app, db, svc, queue, model, base, spacing: int = 5000, presses: int = 10) -> None:
    """Time N / Shift+N when the next unreviewed image lies pages away (issue: N must search the
    whole queue). States are set by one UPDATE (a benchmark shortcut: no label revisions)."""
    from sqlalchemy import update

    from database.models import Image
    ids = [it.image_id for it in svc.queue(base)]  # by name
    sparse = ids[spacing - 1::spacing] or ids[-1:]
    with db.session(write=True) as s:
        s.execute(update(Image).where(Image.folder_id == base.folder_id).values(review_state="accepted"))
        s.execute(update(Image).where(Image.id.in_(sparse)).values(review_state="unreviewed"))
    for flt, delta in ((base, 1), (base, -1), (base.with_(sort="anomaly"), 1), (base.with_(sort="uncertainty"), 1),
                       (base.with_(sort="name", descending=True), 1)):
        queue.set_filter(flt)
        while not getattr(queue, "count_is_exact", lambda: True)():  # the exact count first (not timed)
            app.processEvents()
            time.sleep(0.001)
        times = []
        for _ in range(presses):
            before = queue.current_id()
            t = time.perf_counter()
            queue.next_unreviewed(delta)
            end = t + 30
            while (queue.current_id() == before or queue._seeking) and time.perf_counter() < end:
                app.processEvents()
                time.sleep(0.0005)
            times.append(time.perf_counter() - t)
        what = f"sort={flt.sort}{' desc' if flt.descending else ''} {'N' if delta > 0 else 'Shift+N'}"
        print(f"N across pages ({len(sparse)} unreviewed, one in {spacing}) {what} x{presses}: "
              f"median {ms(statistics.median(times))}, worst {ms(max(times))}")


def rss_mib() -> float:
    """Resident memory now (Linux /proc; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def peak_mib() -> float:
    """The process's peak resident memory so far (Linux: KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--url", help="database URL (default: a new SQLite file in the temporary folder)")
    ap.add_argument("--side", type=int, default=48, help="picture side in pixels")
    ap.add_argument("--keep", help="folder to keep the images and database in (re-used when present)")
    ap.add_argument("--rounds", type=int, default=3, help="times through the sorts and filters (median, worst)")
    args = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="scale-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ["INSPECTION_STATION_HOME"] = str(tmp / "home")

    from PySide6.QtCore import QPoint
    from PySide6.QtWidgets import QApplication

    from app.gui.queue_controller import QueueController
    from app.services.artifacts import ArtifactStore
    from app.services.review import ReviewService
    from app.services.review_types import LabelState, QueueFilter
    from app.services.station import open_station

    app = QApplication([])
    images = tmp / "images"
    if not (images / "done").exists():
        t = time.perf_counter()
        make_images(images, args.images, distinct=300, side=args.side)
        (images / "done").write_text("")
        print(f"wrote {args.images} images in {time.perf_counter() - t:.1f} s")
    url = args.url or f"sqlite:///{(tmp / 'bench.sqlite').as_posix()}"
    db = open_station(url)
    svc = ReviewService(db, artifacts=ArtifactStore(tmp / "artifacts"))
    fresh = svc.folder_by_path(images) is None
    t = time.perf_counter()
    info = svc.open_folder(images)
    print(f"{'indexed' if fresh else 're-indexed'} {info.image_count} images in {time.perf_counter() - t:.1f} s "
          f"({db.engine.dialect.name}); peak memory of the process so far {peak_mib():.0f} MiB")
    if fresh:
        t = time.perf_counter()
        seed(db, info.id)
        print(f"stored {3 * info.image_count} predictions in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    svc.open_folder(images)
    print(f"re-opened the unchanged folder (stats only) in {time.perf_counter() - t:.1f} s; "
          f"peak memory so far {peak_mib():.0f} MiB")

    print(f"memory before the gallery opens: {rss_mib():.0f} MiB")
    cache, model, view = offscreen_gallery()
    queue = QueueController(svc, model, view)
    app.processEvents()

    def on_screen_loaded() -> bool:
        vp = view.viewport().rect()
        rows = {view.indexAt(QPoint(x, y)).row() for x in range(5, vp.width(), 60) for y in range(5, vp.height(), 60)}
        return all(model.item_at(r) is not None for r in rows if r >= 0)

    def settle(deadline_s: float = 30.0) -> None:
        """Until the rows on screen are read and painted."""
        end = time.perf_counter() + deadline_s
        while True:
            app.processEvents()
            if on_screen_loaded() or time.perf_counter() > end:
                break
            time.sleep(0.001)
        view.viewport().repaint()

    # (a queue controller from before ADR 0024 always counts exactly first: the same script times both)
    count_is_exact = getattr(queue, "count_is_exact", lambda: True)

    def exact_count(t: float, deadline_s: float = 120.0) -> str:
        """Until the exact row count of a new view has come (it follows the first page: ADR 0024)."""
        end = time.perf_counter() + deadline_s
        while not count_is_exact() and time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.001)
        return f"exact count {model.rowCount()} after {ms(time.perf_counter() - t)}"

    base = QueueFilter(folder_id=info.id)
    t = time.perf_counter()
    queue.set_filter(base)
    settle()
    painted = time.perf_counter() - t
    counts_known = getattr(queue, "counts_known", lambda: True)  # before issue 22's last step: read at once
    while not counts_known() and time.perf_counter() - t < 60:
        app.processEvents()
        time.sleep(0.001)
    counted = time.perf_counter() - t
    print(f"first paint after opening: {ms(painted)} ({model.rowCount()} rows); per-state counts after "
          f"{ms(counted)}; {exact_count(t)}")

    changes = [("sort", base.with_(sort=s)) for s in ("uncertainty", "anomaly", "targets", "state", "name")]
    changes.append(("sort", base.with_(sort="name", descending=True)))
    changes += [("filter", base.with_(states=frozenset({"unreviewed"}))), ("filter", base.with_(flagged_only=True)),
                ("filter", base.with_(class_name="b")), ("filter", base.with_(score_min=0.4, score_max=0.6)),
                ("filter", base.with_(text="part_0001")), ("filter", base)]
    firsts: dict[str, list[float]] = {}
    exacts: dict[str, list[float]] = {}
    for _round in range(args.rounds):  # the whole sequence again: a median per change on a busy machine
        for kind, flt in changes:
            what = f"{kind} " + (f"sort={flt.sort}{' desc' if flt.descending else ''}" if kind == "sort" else
                                 str({k: v for k, v in vars(flt).items() if v != getattr(base, k)} or "none"))
            t = time.perf_counter()
            queue.set_filter(flt)
            settle()
            firsts.setdefault(what, []).append(time.perf_counter() - t)
            rows = model.rowCount()
            counted = exact_count(t)
            exacts.setdefault(what, []).append(time.perf_counter() - t)
            print(f"  {what}: {ms(firsts[what][-1])} ({rows} rows); {counted}")
    for what, times in firsts.items():
        print(f"{what} x{len(times)}: first page median {ms(statistics.median(times))}, worst {ms(max(times))}; "
              f"exact count median {ms(statistics.median(exacts[what]))}, worst {ms(max(exacts[what]))} "
              f"({model.rowCount() if what == 'filter none' else '-'} rows)")

    bar = view.verticalScrollBar()
    steps, jumps = [], []
    for _ in range(300):
        t = time.perf_counter()
        bar.setValue(bar.value() + bar.pageStep())
        settle()
        steps.append(time.perf_counter() - t)
    rng = random.Random(2)
    for _ in range(30):
        t = time.perf_counter()
        bar.setValue(rng.randrange(bar.maximum() + 1))
        settle()
        jumps.append(time.perf_counter() - t)
    print(f"page down x{len(steps)}: median {ms(statistics.median(steps))}, worst {ms(max(steps))}")
    print(f"jump to a random position x{len(jumps)}: median {ms(statistics.median(jumps))}, "
          f"worst {ms(max(jumps))}")

    saves = []
    queue.set_filter(base)
    settle()
    exact_count(time.perf_counter())
    ids = [it.image_id for it in model.items()]
    for k in range(200):
        image_id = ids[k % len(ids)]
        state = LabelState(class_name="abc"[k % 3], review_state=("accepted", "rejected", "corrected")[k % 3])
        t = time.perf_counter()
        if hasattr(svc, "save"):  # as ReviewController._after_save: the row, then the counts' move
            saved = svc.save(image_id, state, "benchmark")
            queue.update_item(svc.item(image_id))
            queue.apply_move(saved.moved)
        else:  # before issue 22's moved counts: the row (counts moved from the gallery's copy), a recount
            svc.save_label(image_id, state, "benchmark")
            queue.update_item(svc.item(image_id))
            queue.update_counts()
        app.processEvents()
        saves.append(time.perf_counter() - t)
    saves.sort()
    print(f"label save + row + counts x{len(saves)}: p50 {ms(saves[len(saves) // 2])}, "
          f"p99 {ms(saves[int(len(saves) * 0.99) - 1])}")
    n_across_pages(app, db, svc, queue, model, base)
    peak = peak_mib()
    print(f"memory of this process: {rss_mib():.0f} MiB now (gallery open, after all the above); "
          f"peak {peak:.0f} MiB (includes indexing and seeding in this same process)")
    queue.close()
    cache.shutdown()
    db.close()
    if not args.keep:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
