"""How much a busy pre-label worker slows the station's window (issue 21: lanes and the auto rule).

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/gui_latency.py [--seconds 30] [--json FILE]

The window's thread is stood in for by a probe in this process (priority 0, like the station): every
20 ms it wakes and does about a frame's worth of work a review does (a 1024² grey image shrunk to a
256² thumbnail and a 512² view, one OpenCV thread), and records its response time — from when it should
have woken to when the work is done (ideal: the work alone, a few ms). An inspector feels the slow tail,
so p95, p99 and the worst are given beside the median.

Configurations, each for ``--seconds`` after the worker has loaded its models and finished a batch:
no worker; the station's own worker process (``main.py worker``, all three bundled families on their
default profiles, a folder of synthetic 256² images) with ``--threads 1``, ``2`` (two lanes) or
``auto``, at ``--nice 0`` or ``--nice N``; each without and with one busy-loop process (another
program holding a core). The worker's images/s over the window and the niceness of its threads are
recorded beside each.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import inference  # noqa: E402,F401 - first: it sets OpenCV's pixel limit, which cv2 reads at its import

# isort: split
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from app.services.json_files import write_json_atomic  # noqa: E402
from benchmarks.speed_profiles import load_average, part_images  # noqa: E402

PERIOD_S = 0.020
CONFIGS = (  # (name, worker threads or None, nice, burners)
    ("no worker", None, 0, 0), ("2 lanes, nice 0", "2", 0, 0), ("2 lanes, nice 10", "2", 10, 0),
    ("auto, nice 0", "auto", 0, 0), ("auto, nice 10", "auto", 10, 0),
    ("no worker + busy program", None, 0, 1), ("1 thread, nice 0 + busy program", "1", 0, 1),
    ("2 lanes, nice 0 + busy program", "2", 0, 1), ("2 lanes, nice 10 + busy program", "2", 10, 1),
    ("auto, nice 0 + busy program", "auto", 0, 1), ("auto, nice 10 + busy program", "auto", 10, 1),
)


def probe(seconds: float) -> dict[str, float]:
    """Response times (ms) of a 20 ms periodic task doing a review frame's image work."""
    cv2.setNumThreads(1)
    img = (np.random.default_rng(0).random((1024, 1024)) * 255).astype(np.uint8)
    times: list[float] = []
    start = time.perf_counter()
    due = start
    while due - start < seconds:
        due += PERIOD_S
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        cv2.resize(img, (256, 256), interpolation=cv2.INTER_AREA)
        cv2.resize(img, (512, 512), interpolation=cv2.INTER_AREA)
        done = time.perf_counter()
        times.append((done - due) * 1000)
        if done > due + PERIOD_S:  # a missed period is not made up: the next is due from now
            due = done
    a = np.array(times)
    return {"ticks": int(a.size), "median_ms": round(float(np.median(a)), 2), "p95_ms": round(float(np.percentile(a, 95)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2), "max_ms": round(float(a.max()), 2),
            "over_100ms": int((a > 100).sum())}


def thread_niceness(pid: int) -> list[int]:
    out = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            out.append(int(stat.read_text().rsplit(")", 1)[1].split()[16]))
        except (OSError, IndexError, ValueError):
            pass
    return sorted(set(out))


def run_config(url: str, db, job: int, tmp: Path, threads: str | None, nice: int, seconds: float) -> dict:
    from app.services.prelabel import job_status, start_worker_process

    if threads is None:
        return {"probe": probe(seconds)}
    handle = start_worker_process(url, "cpu", log_path=tmp / "worker.log",
                                  extra_args=["--threads", threads, "--nice", str(nice), "--batch-size", "8"])
    try:
        first = job_status(db, job).done
        while job_status(db, job).done < first + 8:  # models loaded and one batch stored
            if not handle.alive():
                raise RuntimeError(f"the worker stopped; see {tmp / 'worker.log'}")
            time.sleep(0.2)
        niceness = thread_niceness(handle.pid)
        before, t0 = job_status(db, job).done, time.perf_counter()
        result = probe(seconds)
        rate = (job_status(db, job).done - before) / (time.perf_counter() - t0)
    finally:
        handle.stop()
    return {"probe": result, "worker_images_per_second": round(rate, 2), "worker_thread_niceness": niceness}


def main() -> None:
    from app.services.indexing import index_folder
    from app.services.prelabel import submit_prelabel
    from database.engine import open_database

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gui-latency-"))
    part_images(tmp / "parts", args.images)
    url = f"sqlite:///{tmp / 'station.sqlite'}"
    db = open_database(url)
    rows = {}
    try:
        job = submit_prelabel(db, folder_id=index_folder(db, tmp / "parts").folder_id)
        assert job is not None
        for name, threads, nice, burners in CONFIGS:
            procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(burners)]
            try:
                row = run_config(url, db, job, tmp, threads, nice, args.seconds)
            finally:
                for p in procs:
                    p.kill()
                    p.wait()
            row["load_average"] = load_average()
            rows[name] = row
            p = row["probe"]
            extra = (f"; worker {row['worker_images_per_second']:.2f} img/s, thread niceness {row['worker_thread_niceness']}"
                     if "worker_images_per_second" in row else "")
            print(f"{name:34s} response median {p['median_ms']:6.1f} ms, p95 {p['p95_ms']:6.1f}, p99 {p['p99_ms']:6.1f}, "
                  f"max {p['max_ms']:6.1f}, over 100 ms {p['over_100ms']}{extra}; load {row['load_average']}", flush=True)
    finally:
        db.close()
    if args.json:
        write_json_atomic(Path(args.json), {"seconds": args.seconds, "period_ms": PERIOD_S * 1000, "rows": rows})


if __name__ == "__main__":
    main()
