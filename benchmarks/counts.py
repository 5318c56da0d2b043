"""Counts at a million images (issue 22): exact filtered counts, and what a save's counts cost.

Opens the database a ``benchmarks/scale.py --keep DIR`` run left (``DIR/bench.sqlite``, or
``--url``) and, in this one process, alternating "before" and "after" so both see the same load:

- ``--filters``: the exact row count of each filter (what the gallery's counter thread reads
  after the first page): "before" = the join of every image of the folder with its prediction
  (``queue_count`` with the index-range path switched off), "after" = this tree's ``queue_count``
  (a folder's class or score range alone: index ranges, ``_indexed_count``). Median / worst of
  ``--rounds``, and that both give the same number;
- ``--saves N``: label save + row + counts, p50 / p99, in blocks of 25 alternating:
  "before" = every save asks for a whole-folder recount of the review states on a helper thread
  (as the review controller did: one counter, a new request replacing a queued one), "after" =
  the save's state move is applied, and one recount at most every ``RECOUNT_MS`` (the queue
  controller's check). The saves themselves are the same code; what differs is the counting
  beside them. ``--gap-ms``: pause between saves (an inspector's pace; 0: back to back).

    python benchmarks/counts.py DIR [--url URL] [--filters] [--rounds 5] [--saves 400] [--gap-ms 0]
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * q) - 1)]


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def filters(svc, folder_id: int, rounds: int) -> None:
    import database.review_queue as rq
    from app.services.review_types import QueueFilter
    base = QueueFilter(folder_id=folder_id)
    cases = {"class b": base.with_(class_name="b"), "score 0.4-0.6": base.with_(score_min=0.4, score_max=0.6),
             "score 0.55-0.6": base.with_(score_min=0.55, score_max=0.6), "score >= 0.9": base.with_(score_min=0.9),
             "text part_0001": base.with_(text="part_0001"), "text part_ (every name)": base.with_(text="part_"),
             "unreviewed": base.with_(states=frozenset({"unreviewed"})), "none": base,
             "class b + unreviewed": base.with_(class_name="b", states=frozenset({"unreviewed"}))}
    indexed = rq._indexed_count
    for name, flt in cases.items():
        times: dict[str, list[float]] = {"before": [], "after": []}
        counts: dict[str, set[int]] = {"before": set(), "after": set()}
        for r in range(rounds):
            for mode in (("before", "after") if r % 2 == 0 else ("after", "before")):
                rq._indexed_count = indexed if mode == "after" else (lambda qq: None)  # type: ignore[assignment]
                t = time.perf_counter()
                counts[mode].add(svc.queue_count(flt))
                times[mode].append(time.perf_counter() - t)
        rq._indexed_count = indexed  # type: ignore[assignment]
        same = counts["before"] == counts["after"] and len(counts["after"]) == 1
        path = "index ranges" if indexed(svc.queue_query(flt)) is not None else "join (unchanged)"
        print(f"  {name:26s} {sorted(counts['after'])[0]:>8d} rows ({path}; same count: {same}): before median "
              f"{ms(statistics.median(times['before']))}, worst {ms(max(times['before']))}; after median "
              f"{ms(statistics.median(times['after']))}, worst {ms(max(times['after']))}  [load {load()}]")


class Tally:
    """A helper thread counting the folder's review states, as the queue controller's: one
    count at a time, a request while one runs is kept (one), more requests coalesce."""

    def __init__(self, svc, folder_id: int) -> None:
        self.svc, self.folder_id = svc, folder_id
        self.wanted, self.stop, self.done = threading.Event(), False, 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while True:
            self.wanted.wait()
            if self.stop:
                return
            self.wanted.clear()
            self.svc.counts(self.folder_id)
            self.done += 1

    def close(self) -> None:
        self.stop = True
        self.wanted.set()
        self.thread.join()


def saves(svc, folder_id: int, n: int, gap_s: float, recount_s: float) -> None:
    from app.services.review_types import LabelState, QueueFilter
    page = svc.queue_page(QueueFilter(folder_id=folder_id), 5000)
    rng = random.Random(22)
    ids = [it.image_id for it in rng.sample(page.items, min(len(page.items), n + 40))]
    tally = Tally(svc, folder_id)
    t = time.perf_counter()
    svc.counts(folder_id)
    print(f"  one whole-folder count of the review states: {ms(time.perf_counter() - t)}")
    shown = svc.counts(folder_id)
    times: dict[str, list[float]] = {"before": [], "after": []}
    last_check = 0.0
    for k, image_id in enumerate(ids):
        mode = "before" if (k // 25) % 2 == 0 else "after"
        state = LabelState(class_name="abc"[k % 3], review_state=("accepted", "rejected", "corrected")[k % 3])
        t = time.perf_counter()
        saved = svc.save(image_id, state, "benchmark")
        svc.item(image_id)
        if mode == "before":
            tally.wanted.set()  # every save: a whole-folder recount on the helper thread
        else:
            if saved.moved is not None:
                shown = saved.moved.applied(shown, folder_id)
            if t - last_check >= recount_s:  # the check: at most one every RECOUNT_MS
                last_check = t
                tally.wanted.set()
        if k >= 40:  # the first 40: warm-up
            times[mode].append(time.perf_counter() - t)
        if gap_s:
            time.sleep(gap_s)
    tally.close()
    for mode in ("before", "after"):
        v = times[mode]
        print(f"  {mode}: save + row + counts x{len(v)}: p50 {ms(pct(v, 0.5))}, p99 {ms(pct(v, 0.99))}, "
              f"mean {ms(statistics.mean(v))}")
    b, a = times["before"], times["after"]
    print(f"  after / before: p50 {pct(a, 0.5) / pct(b, 0.5):.2f}, p99 {pct(a, 0.99) / pct(b, 0.99):.2f}, "
          f"mean {statistics.mean(a) / statistics.mean(b):.2f}; recounts run: {tally.done}  [load {load()}]")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", help="the --keep folder of a benchmarks/scale.py run")
    ap.add_argument("--url", help="database URL (default: DIR/bench.sqlite)")
    ap.add_argument("--filters", action="store_true")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--saves", type=int, default=0)
    ap.add_argument("--gap-ms", type=float, default=0.0)
    args = ap.parse_args()
    from app.gui.queue_controller import RECOUNT_MS
    from benchmarks.scale_save import open_kept

    opened = open_kept(Path(args.dir), args.url)
    if opened is None:
        return 1
    db, svc, info = opened
    print(f"{db.dialect}, {info.image_count} images; load {load()}")
    if args.filters:
        print(f"exact counts, {args.rounds} rounds each mode:")
        filters(svc, info.id, args.rounds)
    if args.saves:
        print(f"saves ({args.saves}, gap {args.gap_ms:.0f} ms, blocks of 25 alternating):")
        saves(svc, info.id, args.saves, args.gap_ms / 1000, RECOUNT_MS / 1000)
    print(f"load at the end {load()}")
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
