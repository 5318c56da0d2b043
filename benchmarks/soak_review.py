"""Soak check: does the window keep telling the truth through a long review session?

The real main window runs offscreen while a simulated inspector reviews with the keyboard at
inspector speed (QTest key presses on the gallery: accept, classes, verdicts, reject, flag,
undo/redo, clear, navigation) and a pre-label job over a few hundred images runs in the real
worker process (re-submitted whenever it ends, so one is always running). Once, when the job
is part-way, the worker is killed with SIGKILL; the window must notice and restart it.

Every ``--sample-s`` seconds it checks, and records:
- the Jobs panel equals the database: one row per job the database lists (newest 20), each
  row's state and counts those of the job's row at that moment (the panel polls every 0.5 s,
  so it is given up to ``--match-s`` to catch up with a moving count; the lag is recorded);
- no human label is lost: every revision a save returned is still in that image's history;
- the station's memory (RSS of the GUI process, and of the worker).

    QT_QPA_PLATFORM=offscreen python benchmarks/soak_review.py [--minutes 30] [--images 300]

``--models tiny`` (default) runs randomly initialised test_tiny models (the worker's claim,
predict, commit and restart paths are the same as with real ones, at a fraction of the CPU);
``--models bundled`` runs the bundled checkpoints. Exit status 1 when any check failed.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The inspector's key cycle: (key, modifiers). Auto-advance moves on after accept/reject.
KEYS = ("2", "A", "D", "N", "X", "ctrl+Z", "A", "1", "G", "ctrl+shift+Z", "F", "J", "A", "K",
        "ctrl+Backspace", "3", "N", "A")


def rss_mb(pid: int | str = "self") -> float | None:
    """Resident memory of a process from /proc (Linux); None elsewhere or when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def make_images(folder: Path, n: int, size: int = 64, first: int = 0) -> None:
    import cv2
    import numpy as np
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(first)
    for i in range(first, first + n):
        img = (rng.random((size, size)) * 80 + 60).astype(np.uint8)
        cv2.circle(img, (int(rng.integers(8, size - 8)), int(rng.integers(8, size - 8))), 4, 255, -1)
        cv2.imwrite(str(folder / f"part_{i:05d}.png"), img)


def expected_text(job) -> str:
    """The start of a row's text for this job row (the panel's own wording)."""
    if job.finished:
        return f"{job.status.value}: {job.progress_done}/{job.progress_total}"
    state = "cancelling" if job.cancel_requested else job.status.value
    return f"{state}: {job.progress_done + job.progress_failed}/{job.progress_total}"


def panel_mismatches(win, db) -> list[str]:
    from app.services.prelabel import PRELABEL
    rows = win.jobs_panel.rows
    jobs = db.jobs.list(kind=PRELABEL, limit=win.ctx.jobs.HISTORY)
    out = []
    if set(rows) != {j.id for j in jobs}:
        out.append(f"rows {sorted(rows)} != database jobs {sorted(j.id for j in jobs)}")
    for j in jobs:
        row = rows.get(j.id)
        if row is not None and not row.info.text().startswith(expected_text(j)):
            out.append(f"job {j.id}: panel {row.info.text()!r}, database {expected_text(j)!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--more", type=int, default=100, help="images added to the folder each time a job ends")
    ap.add_argument("--sample-s", type=float, default=5.0)
    ap.add_argument("--key-s", type=float, default=1.5, help="seconds between key presses (inspector speed)")
    ap.add_argument("--match-s", type=float, default=3.0, help="time the panel gets to catch up with a moving count")
    ap.add_argument("--kill-at", type=float, default=0.3, help="kill the worker once this fraction of the first job is done")
    ap.add_argument("--models", choices=("tiny", "bundled"), default="tiny")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    os.environ["INSPECTION_STATION_HOME"] = str(tmp / "home")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from app.commands.gui import build_window
    from app.gui.settings_store import StationSettings
    from app.services.indexing import index_folder
    from app.services.station import open_station

    app = QApplication.instance() or QApplication([])
    url = f"sqlite:///{(tmp / 'station.sqlite').as_posix()}"
    db = open_station(url)
    if args.models == "tiny":
        from tests.tiny_models import save_tiny_models
        for family, path in save_tiny_models(tmp / "models").items():
            card = json.loads((path / "card.json").read_text())
            db.model_versions.register(family, f"{family}-tiny", str(path), card=card, activate=True)
    make_images(tmp / "parts", args.images)

    win = build_window(db, StationSettings(reviewer="soak"), url, interactive=False,
                       worker_args=("--batch-size", str(args.batch_size)))
    win.show()
    win.open_folder(str(tmp / "parts"))
    saved: list[tuple[int, int]] = []   # (image, revision) of every label the station saved
    service = win.ctx.review
    save_label = service.save_label

    def recording_save(image_id, state, changed=""):
        out = save_label(image_id, state, changed)
        saved.append((image_id, out.revision))
        return out
    service.save_label = recording_save

    mods = {"ctrl": Qt.KeyboardModifier.ControlModifier, "shift": Qt.KeyboardModifier.ShiftModifier}

    def press(spec: str) -> None:
        *mod_names, key = spec.split("+")
        mod = Qt.KeyboardModifier.NoModifier
        for m in mod_names:
            mod |= mods[m]
        code = getattr(Qt.Key, f"Key_{key}")
        win.activateWindow()
        win.gallery.setFocus()
        QTest.keyClick(win.gallery, code, mod)

    def spin(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.01)

    [job] = win.jobs.prelabel_folder()
    jobs_run, killed_pid, kill_seen_s, added = [job], None, None, 0
    samples, lags, mismatches, lost, keys = [], [], [], [], 0
    start = time.monotonic()
    next_key, next_sample = start, start
    duration = args.minutes * 60
    rss0 = rss_mb()
    worst_key = 0.0
    last_action, worst_gap, worst_after, prev = "start", 0.0, "", time.monotonic()
    while time.monotonic() - start < duration:
        app.processEvents()
        now = time.monotonic()
        if now - prev > worst_gap:  # the longest the event loop did not turn, and what came before
            worst_gap, worst_after = now - prev, last_action
        prev = now
        if now >= next_key:
            last_action = f"key {KEYS[keys % len(KEYS)]}"
            press(KEYS[keys % len(KEYS)])
            keys += 1
            next_key = now + args.key_s
            prev = time.monotonic()
            worst_key = max(worst_key, prev - now)
        else:
            last_action = "events"
        current = db.jobs.get(jobs_run[-1])
        if killed_pid is None and current.progress_done >= args.kill_at * current.progress_total:
            workers = db.jobs.workers()
            if workers:
                killed_pid = workers[0].pid
                os.kill(killed_pid, signal.SIGKILL)
                kill_at = time.monotonic()
        if killed_pid is not None and kill_seen_s is None and "exit code -9" in win.jobs_panel.worker_line.text():
            kill_seen_s = time.monotonic() - kill_at
        if current.finished and jobs_run[-1] not in win.jobs.active:
            # Keep the worker busy for the whole soak: new images arrive, "pre-label new" runs them.
            added += args.more
            make_images(tmp / "parts", args.more, first=args.images + added - args.more)
            index_folder(db, tmp / "parts")
            jobs_run += win.jobs.prelabel_folder(only_new=True)
            prev = time.monotonic()  # the harness's own indexing is not the window's stall
        if now >= next_sample:
            last_action = "sample"
            next_sample = now + args.sample_s
            t0 = time.monotonic()
            problems = panel_mismatches(win, db)
            while problems and time.monotonic() - t0 < args.match_s:
                spin(0.05)
                problems = panel_mismatches(win, db)
            lag = time.monotonic() - t0
            lags.append(lag)
            if problems:
                mismatches.append({"t_s": round(now - start, 1), "problems": problems})
            history: dict[int, set[int]] = {}
            for image_id, revision in saved:
                if image_id not in history:
                    history[image_id] = {r.revision for r in db.labels.history(image_id)}
                if revision not in history[image_id]:
                    lost.append((image_id, revision))
            worker = db.jobs.workers()
            samples.append({"t_s": round(now - start, 1), "gui_rss_mb": rss_mb(),
                            "worker_rss_mb": rss_mb(worker[0].pid) if worker else None,
                            "match_lag_s": round(lag, 2), "revisions_saved": len(saved),
                            "job": jobs_run[-1], "job_processed": current.progress_done + current.progress_failed})
            print(json.dumps(samples[-1]), flush=True)
            prev = time.monotonic()
        time.sleep(0.01)

    rss = [s["gui_rss_mb"] for s in samples if s["gui_rss_mb"] is not None]
    half = rss[len(rss) // 2:]
    finished_jobs = [db.jobs.get(j) for j in jobs_run]
    result = {
        "minutes": args.minutes, "images": args.images, "models": args.models, "key_presses": keys,
        "revisions_saved": len(saved), "revisions_lost": len(lost), "samples": len(samples),
        "panel_mismatches": len(mismatches), "mismatch_examples": mismatches[:5],
        "panel_match_lag_s": {"median": round(statistics.median(lags), 2) if lags else None,
                              "max": round(max(lags), 2) if lags else None},
        "worker_killed_pid": killed_pid, "kill_on_screen_after_s": None if kill_seen_s is None else round(kill_seen_s, 1),
        "longest_event_loop_gap_s": round(worst_gap, 2), "gap_came_after": worst_after,
        "slowest_key_press_s": round(worst_key, 2),
        "jobs_run": len(jobs_run), "images_in_folder": args.images + added, "jobs_done": sum(1 for j in finished_jobs if j.status.value == "done"),
        "images_predicted": sum(j.progress_done for j in finished_jobs),
        "gui_rss_mb": {"start": rss0, "first_sample": rss[0] if rss else None, "max": max(rss) if rss else None,
                       "end": rss[-1] if rss else None,
                       "second_half_growth": round(half[-1] - half[0], 1) if len(half) > 1 else None},
    }
    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps({"result": result, "samples": samples}, indent=1))
    win.close()
    db.close()
    ok = not lost and not mismatches and killed_pid is not None and kill_seen_s is not None
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
