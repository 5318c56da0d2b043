"""What re-flagging a project costs: the Settings dialog's threshold change (``change_flag_settings``: every
folder re-flagged from the stored predictions, no model run) on a database ``benchmarks/scale.py`` left behind.

Two settings alternate, so each run rewrites flags; one process, timed per run:

    python benchmarks/reflag.py sqlite:////tmp/copy.sqlite [--runs 3] [--profile]

``--profile``: one more run under cProfile, its top entries by cumulative time (where the time goes).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.services.flags import FlagSettings  # noqa: E402
from app.services.project_settings import change_flag_settings  # noqa: E402
from database import open_database  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    db = open_database(args.url)
    images = sum(db.images.state_counts().values())
    times = []
    for k in range(args.runs):
        settings = FlagSettings(min_confidence=0.3 if k % 2 else 0.9, min_targets=1 if k % 2 else 3)
        t = time.perf_counter()
        n = change_flag_settings(db, settings, by="bench")
        times.append(time.perf_counter() - t)
        print(f"run {k + 1}: {n.summary()} of {images} images in the database, in {times[-1] * 1000:.0f} ms")
    print(f"median {statistics.median(times) * 1000:.0f} ms")
    if args.profile:
        import cProfile
        import pstats
        prof = cProfile.Profile()
        prof.runcall(change_flag_settings, db, FlagSettings(min_confidence=0.5, min_targets=2), by="bench")
        pstats.Stats(prof).sort_stats("cumulative").print_stats(15)
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
