"""Issue 21's done-means, measured: pre-label end to end per speed profile, today's path beside it.

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 PYTHONPATH=. python benchmarks/speed_profiles.py \\
        [--images 40] [--rounds 3] [--frames 3] [--engine fast ...] [--per-family] [--json FILE]
    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 PYTHONPATH=. python benchmarks/speed_profiles.py \\
        --memory 2000 [--json FILE]

Rates (default mode), all three bundled families at 256², batch 8, 1 torch/numba thread:
- ``today``: the accurate profile (every card's own settings) with issue 21's faster paths
  switched off (``inference.ssm.speed``: scan epilogue, memory-bank pass, OpenCV blur);
- ``accurate``: the same settings with the faster paths;
- ``fast``: the cards' ``fast`` profiles (segmenter: the main network alone, no flips;
  classifier: no test-time views; the anomaly model has no profile and runs as it is).
Each is the real worker (claims, decode, models, mask PNGs, map files, SQLite writes) on a folder
of its own, timed from the end of its first batch (model loading left out) to its last; the
configurations alternate round by round, so load drift on the shared machine hits all of them.
Beside those named by ``--engine`` (default: fast), the bare engine on the same files (batch 8,
decode prefetch) gives the in-app ratio.
Then one 512² infrared frame (a SIRST frame, enlarged) through the full segmenter, per profile,
alternating, best of ``--frames``.

``--per-family``: each family alone through the bare engine (batch 8, prefetch), per configuration.

``--memory N``: the worker process (``main.py worker --once``, the station's own) pre-labels N
synthetic 256² images with all three families and the project's ``fast`` profile (``--memory-profile``);
its resident memory (/proc/PID/status VmRSS) is sampled every second against the images done.
``--memory-threads N`` starts it with ``--threads N`` (N lanes per batch, ADR 0041; default: its own
default, ``auto``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.prelabel import images, model_dirs  # noqa: E402
from inference.device import set_threads  # noqa: E402
from inference.ssm import speed  # noqa: E402

CONFIGS = {"today": (None, False), "accurate": ("accurate", True), "fast": ("fast", True)}
SIRST = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "sirst" / "images"


def load_average() -> float:
    return round(os.getloadavg()[0], 1)


def worker_rate(db, folder: Path, profile: str | None, artifacts: Path, batch: int,
                threads: int | str | None = None, by_threads: dict[int, int] | None = None,
                stages: dict[str, float] | None = None, model_dirs: dict[str, Path] | None = None) -> tuple[float, int]:
    """(images/s after the first batch, images timed) of the in-process worker on ``folder``;
    with ``threads="auto"``, ``by_threads`` receives how many batches ran on each thread count;
    ``stages`` receives the worker's wall seconds per stage (``WorkerStats.seconds``, whole run);
    ``model_dirs``: families to run from these directories instead of the bundled defaults."""
    from app.services.artifacts import ArtifactStore
    from app.services.indexing import index_folder
    from app.services.prelabel import job_status, submit_prelabel
    from app.worker import Worker, WorkerOptions

    job = submit_prelabel(db, folder_id=index_folder(db, folder).folder_id, profile=profile or "", model_dirs=model_dirs)
    stamps: list[tuple[float, int]] = []

    def on_batch(claimed, results) -> None:
        stamps.append((time.perf_counter(), len(results)))

    w = Worker(db, WorkerOptions(device="cpu", batch_size=batch, poll_s=0.01, threads=threads),
               artifacts=ArtifactStore(artifacts))
    w.run(until=lambda: job_status(db, job).finished, on_batch=on_batch)
    status = job_status(db, job)
    assert status.state == "done" and status.failed == 0, status
    timed = sum(n for _, n in stamps[1:])
    if by_threads is not None:
        by_threads.update(w.stats.batches_by_threads)
    if stages is not None:
        stages.update(w.stats.seconds)
    return timed / (stamps[-1][0] - stamps[0][0]), timed


def engine_rate(dirs, paths: list[Path], profile: str | None, batch: int, lanes: int = 1) -> float:
    from inference.engine import InspectionEngine

    with InspectionEngine(dirs, device="cpu", profile=profile) as engine:
        list(engine.predict_files([(str(p), p) for p in paths[:batch]], batch, lanes=lanes))  # warm-up
        t = time.perf_counter()
        n = sum(len(r) for r in engine.predict_files([(str(p), p) for p in paths], batch, lanes=lanes))
        return n / (time.perf_counter() - t)


def ir_frame(side: int) -> np.ndarray:
    """A SIRST frame enlarged to side x side (gray float), or a synthetic sky with two point targets."""
    from inference.imageio import read_image

    files = sorted(SIRST.glob("*.png")) if SIRST.is_dir() else []
    if files:
        img = read_image(files[0], "gray")
        return cv2.resize(img, (side, side), interpolation=cv2.INTER_LINEAR)
    rng = np.random.default_rng(0)
    img = 0.3 + 0.05 * rng.standard_normal((side, side))
    img[side // 3, side // 2] = img[2 * side // 3, side // 4] = 1.0
    return np.clip(img, 0, 1).astype(np.float32)


def segmenter_frame_seconds(dirs, side: int, reps: int) -> dict[str, list[float]]:
    """Seconds per ``side``² frame through the full segmenter (standardise, networks, verifier), per config."""
    from inference.checkpoints import load_model
    from inference.profiles import apply_profile
    from inference.segmenter_predict import predict_masks

    loaded = load_model(dirs["segmenter"], family="segmenter")
    frame = ir_frame(side)
    out: dict[str, list[float]] = {c: [] for c in CONFIGS}
    runs = {c: apply_profile(loaded, p) for c, (p, _) in CONFIGS.items()}
    for c, model in runs.items():  # warm-up (numba compilation, allocator)
        speed.set_enabled(CONFIGS[c][1])
        predict_masks(model, [frame])
    for _ in range(reps):
        for c, model in runs.items():
            speed.set_enabled(CONFIGS[c][1])
            t = time.perf_counter()
            predict_masks(model, [frame])
            out[c].append(time.perf_counter() - t)
    speed.set_enabled(True)
    return out


def rates(args, tmp: Path) -> dict:
    from database.engine import open_database

    dirs, origin = model_dirs(tmp / "models")
    out: dict = {"images": args.images, "rounds": args.rounds, "side": 256, "batch_size": args.batch_size,
                 "threads": 1, "models": origin, "load_average": [load_average()], "rounds_detail": []}
    db = open_database(f"sqlite:///{tmp / 'bench.sqlite'}")
    try:
        for r in range(args.rounds):
            row: dict = {}
            for c, (profile, fast_paths) in CONFIGS.items():
                folder = tmp / f"r{r}-{c}"
                paths = images(folder, args.images)
                # Distinct pixels per folder: a copy of an image already predicted would be skipped.
                for i, p in enumerate(paths):
                    img = cv2.imread(str(p))
                    img[0, 0] = (r * 7 + i + len(c)) % 256
                    cv2.imwrite(str(p), img)
                speed.set_enabled(fast_paths)
                try:
                    rate, timed = worker_rate(db, folder, profile, tmp / "artifacts", args.batch_size)
                    bare = engine_rate(dirs, paths, profile, args.batch_size) if c in args.engine else None
                finally:
                    speed.set_enabled(True)
                row[c] = {"worker": round(rate, 3), "engine": None if bare is None else round(bare, 3), "timed": timed}
                print(f"round {r + 1} {c:>8}: worker {rate:6.2f} img/s"
                      + ("" if bare is None else f", bare engine {bare:6.2f} img/s") + f" (load {load_average()})", flush=True)
            out["rounds_detail"].append(row)
            out["load_average"].append(load_average())
    finally:
        db.close()
    summary = {}
    for c in CONFIGS:
        w = [row[c]["worker"] for row in out["rounds_detail"]]
        today = [row["today"]["worker"] for row in out["rounds_detail"]]
        summary[c] = {"worker_mean": round(float(np.mean(w)), 3),
                      "vs_today": round(float(np.mean([a / b for a, b in zip(w, today)])), 2)}
        line = f"{c:>8}: worker {summary[c]['worker_mean']:.2f} img/s ({summary[c]['vs_today']:.2f}x today, per-round ratios)"
        if c in args.engine:
            e = [row[c]["engine"] for row in out["rounds_detail"]]
            summary[c] |= {"engine_mean": round(float(np.mean(e)), 3), "in_app_ratio": round(float(np.mean(w) / np.mean(e)), 3)}
            line += f", bare engine {summary[c]['engine_mean']:.2f} img/s, in-app {summary[c]['in_app_ratio']:.0%}"
        print(line)
    out["summary"] = summary
    seconds = segmenter_frame_seconds(dirs, 512, args.frames)
    out["segmenter_512"] = {c: {"best_s": round(min(v), 3), "runs_s": [round(x, 3) for x in v]} for c, v in seconds.items()}
    for c, v in seconds.items():
        print(f"512² frame, full segmenter, {c:>8}: best {min(v):.2f} s of {', '.join(f'{x:.2f}' for x in v)}")
    out["load_average"].append(load_average())
    return out


def per_family(args, tmp: Path) -> dict:
    """Images/s of each family alone through the bare engine (batch 8, prefetch), per configuration,
    the configurations alternating round by round."""
    dirs, origin = model_dirs(tmp / "models")
    paths = images(tmp / "images", args.images)
    out: dict = {"images": args.images, "rounds": args.rounds, "models": origin, "load_average": [load_average()],
                 "images_per_second": {}}
    for family in ("classifier", "segmenter", "anomaly"):
        got: dict[str, list[float]] = {c: [] for c in CONFIGS}
        for _ in range(args.rounds):
            for c, (profile, fast_paths) in CONFIGS.items():
                speed.set_enabled(fast_paths)
                try:
                    got[c].append(engine_rate({family: dirs[family]}, paths, profile, args.batch_size))
                finally:
                    speed.set_enabled(True)
        out["images_per_second"][family] = {c: [round(v, 3) for v in vs] for c, vs in got.items()}
        print(f"{family:>10}: " + "; ".join(f"{c} {np.mean(v):.2f} img/s ({np.mean(v) / np.mean(got['today']):.2f}x)"
                                            for c, v in got.items()) + f" (load {load_average()})", flush=True)
    out["load_average"].append(load_average())
    return out


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def part_images(folder: Path, n: int) -> None:
    """``n`` grey 256² parts, smooth with a little noise: small PNGs, distinct pixels."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:256, 0:256]
    for i in range(n):
        base = 128 + 50 * np.sin(xx / (5 + i % 13)) + 30 * np.cos(yy / (7 + i % 11)) + rng.normal(0, 4, (256, 256))
        cv2.imwrite(str(folder / f"part_{i:05d}.png"), np.clip(base, 0, 255).astype(np.uint8))


def memory(args, tmp: Path) -> dict:
    from app.services.indexing import index_folder
    from app.services.prelabel import job_status, start_worker_process, submit_prelabel
    from app.services.project_settings import save_speed_profile
    from database.engine import open_database

    folder = tmp / "many"
    part_images(folder, args.memory)
    url = f"sqlite:///{tmp / 'memory.sqlite'}"
    db = open_database(url)
    samples: list[tuple[float, int, int]] = []  # (seconds, images processed, RSS KiB)
    try:
        save_speed_profile(db, args.memory_profile)
        job = submit_prelabel(db, folder_id=index_folder(db, folder).folder_id)
        assert job is not None
        extra = ["--threads", str(args.memory_threads)] if args.memory_threads else []
        handle = start_worker_process(url, "cpu", once=True, log_path=tmp / "worker.log", extra_args=extra)
        t0 = time.monotonic()
        while handle.alive():
            kib = rss_kib(handle.pid)
            s = job_status(db, job)
            if kib is not None:
                samples.append((round(time.monotonic() - t0, 1), s.done + s.failed, kib))
            time.sleep(1.0)
        status = job_status(db, job)
    finally:
        db.close()
    out = {"images": args.memory, "profile": args.memory_profile, "threads": args.memory_threads or "auto",
           "done": status.done, "failed": status.failed,
           "seconds": samples[-1][0] if samples else None, "load_average": load_average(), "samples": samples}
    marks = [m for m in (100, 250, 500, 1000, 1500, 2000, args.memory) if m <= args.memory]
    table = {}
    for m in sorted(set(marks)):
        after = [kib for _, n, kib in samples if n >= m]
        if after:
            table[m] = round(after[0] / 1024, 1)
    out["rss_mib_at_images"] = table
    print(f"{status.done} done, {status.failed} failed; RSS (MiB) at images processed: {table}; load {load_average()}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--frames", type=int, default=3, help="512² segmenter frames per configuration")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--engine", nargs="*", default=["fast"], choices=list(CONFIGS),
                    help="configurations also timed as the bare engine, for the in-app ratio (default: fast)")
    ap.add_argument("--memory", type=int, default=0, metavar="N", help="measure the worker's memory over N images instead")
    ap.add_argument("--memory-profile", default="fast", choices=["fast", "accurate"], help="the project's profile for --memory")
    ap.add_argument("--memory-threads", type=int, default=0, metavar="N", help="--threads N for the --memory worker (0: its default)")
    ap.add_argument("--per-family", action="store_true", help="each family alone through the bare engine instead")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    set_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="speed-profiles-"))
    out = memory(args, tmp) if args.memory else per_family(args, tmp) if args.per_family else rates(args, tmp)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
