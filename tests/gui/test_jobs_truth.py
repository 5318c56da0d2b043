"""The window tells the truth about jobs (issue 16, items 1 and 5), driven with the REAL worker
process and tiny models: the Jobs panel equals the database's job rows while a job runs, while
its worker is killed with SIGKILL and restarted, and after; the queue badges and the open image
follow the predictions as they land, without reopening anything; a worker crash is on screen;
failed images are listed with their reasons and Retry runs them again; the job history is the
database's, so it survives a restart of the station.
"""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QTimer

pytest.importorskip("torch")
pytest.importorskip("app.services.prelabel")

from app.commands.gui import build_window  # noqa: E402
from app.gui.settings_store import StationSettings  # noqa: E402
from app.services.indexing import index_folder  # noqa: E402
from app.services.prelabel import submit_prelabel  # noqa: E402
from app.services.project_settings import save_auto_prelabel  # noqa: E402
from app.services.station import open_station  # noqa: E402
from tests.gui.conftest import wait_shown  # noqa: E402
from tests.worker.helpers import good_images  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")]
WORKER_S = 240_000  # ms: a worker's first batch includes importing torch on a loaded 2-core machine


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    import torch

    from tests.tiny_models import save_tiny_models
    torch.set_num_threads(1)
    return save_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def station(tmp_path, tiny_models, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")
    url = f"sqlite:///{(tmp_path / 'station.sqlite').as_posix()}"
    db = open_station(url)
    for family, path in tiny_models.items():
        card = json.loads((path / "card.json").read_text())
        db.model_versions.register(family, f"{family}-tiny", str(path), card=card, activate=True)
    # These tests submit their own jobs and count them: no automatic job on opening a folder.
    save_auto_prelabel(db, False)
    yield db, url
    db.close()


def _window(db, url, qtbot):
    win = build_window(db, StationSettings(reviewer="ann"), url, interactive=False,
                       worker_args=("--batch-size", "2"))
    qtbot.addWidget(win)
    win.show()
    return win


def _db_text(db, job_id: int) -> str:
    """What the row must say about the job's counts, straight from its row in the database."""
    j = db.jobs.get(job_id)
    if j.finished:
        return f"{j.status.value}: {j.progress_done}/{j.progress_total}"
    return f"{j.status.value}: {j.progress_done + j.progress_failed}/{j.progress_total}"


def test_panel_badges_and_label_follow_the_worker_through_a_kill(station, tmp_path, qtbot):
    db, url = station
    n = 160  # enough that the job is still running when the panel has caught up, on an idle machine too
    good_images(tmp_path / "imgs", n)
    win = _window(db, url, qtbot)
    win.open_folder(str(tmp_path / "imgs"))
    wait_shown(win, qtbot)
    opened = win.review.image_id
    assert win.label_panel.pred_class.text() == "not pre-labelled yet"
    seen: list[tuple[int, str, str]] = []  # (db processed, db status, row text), sampled
    with qtbot.waitSignal(win.jobs.submitted, timeout=10000) as queued:
        win.jobs.prelabel_folder()
    [job] = queued.args[0]
    row = win.jobs_panel.rows[job]

    def record() -> None:
        text = row.info.text()  # read before the database: the row may only lag behind it
        j = db.jobs.get(job)
        seen.append((j.progress_done + j.progress_failed, j.status.value, text))
    sampler = QTimer(win)  # dies with the window: a failed assertion leaves no timer firing into later tests
    sampler.timeout.connect(record)
    sampler.start(250)

    # The panel moves with the database while the first worker writes.
    qtbot.waitUntil(lambda: db.jobs.get(job).progress_done >= 4, timeout=WORKER_S)
    qtbot.waitUntil(lambda: row.info.text().startswith(_db_text(db, job)), timeout=5000)
    assert "running" in row.info.text()
    [worker] = db.jobs.workers()  # the worker process the window started, as it registered itself
    pid = worker.pid
    os.kill(pid, signal.SIGKILL)
    killed_at = len(seen)

    # The crash and the restart are on screen, not only in a log.
    qtbot.waitUntil(lambda: "stopped (exit code -9)" in win.statusBar().currentMessage(), timeout=10000)
    qtbot.waitUntil(lambda: "new one was started" in win.jobs_panel.worker_line.text(), timeout=10000)
    assert "exit code -9" in win.jobs_panel.worker_line.text()
    qtbot.waitUntil(lambda: any(w.pid != pid for w in db.jobs.workers()), timeout=WORKER_S)

    # The job finishes under the new worker, and the panel says what the database says.
    qtbot.waitUntil(lambda: db.jobs.get(job).finished, timeout=WORKER_S)
    qtbot.waitUntil(lambda: row.info.text() == f"done: {n}/{n}", timeout=5000)
    assert win.jobs_panel.summary.text() == "1 finished"
    assert job not in win.jobs.active
    sampler.stop()
    # While nothing moved after the kill, the row said why instead of counting an ETA up. The
    # first 2 s of samples may still show the last rate: the panel's poll runs off the GUI thread
    # every 500 ms, and on a loaded 2-core machine one poll can take a second or more.
    frozen = [text for processed, status, text in seen[killed_at:]
              if status == "running" and processed == seen[killed_at][0]]
    assert frozen and all("ETA" not in t for t in frozen[8:]), frozen
    assert any("worker restarting" in t for t in frozen), frozen
    # Every update showed the database's counts of that moment (or of the poll just before it).
    for processed, _status, text in seen:
        if text == "queued":  # the row before the panel's first poll answered (slow on a loaded machine): no count
            continue
        shown = int(text.split(": ", 1)[1].split("/", 1)[0].split(" ")[0])
        assert shown <= processed, (shown, processed, text)

    # Badges and the open image follow the predictions without reopening or re-selecting.
    qtbot.waitUntil(lambda: all(it.has_prediction for it in win.gallery_model.items()), timeout=10000)
    assert win.review.image_id == opened
    qtbot.waitUntil(lambda: win.review.detail.prediction is not None, timeout=10000)
    assert win.label_panel.pred_class.text() != "not pre-labelled yet"
    assert win.label_panel.pred_class.text().startswith("<b>")
    win.close()


def test_history_comes_from_the_database_across_restarts_and_stations(station, tmp_path, qtbot):
    db, url = station
    good_images(tmp_path / "imgs", 3)
    folder = index_folder(db, tmp_path / "imgs").folder_id
    # A job an earlier session (or the CLI, or another station) ran to the end.
    old = submit_prelabel(db, folder_id=folder, families=["anomaly"])
    db.jobs.request_cancel(old)
    win = _window(db, url, qtbot)
    qtbot.waitUntil(lambda: old in win.jobs_panel.rows, timeout=5000)
    qtbot.waitUntil(lambda: win.jobs_panel.rows[old].info.text() == "cancelled: 0/3", timeout=5000)
    assert win.jobs_panel.summary.text() == "1 finished"
    # A job queued elsewhere while the window is open appears by itself, and is followed.
    other = submit_prelabel(db, folder_id=folder, families=["anomaly"], only_missing=False)
    qtbot.waitUntil(lambda: other in win.jobs_panel.rows, timeout=5000)
    with qtbot.waitSignal(win.jobs.finished, timeout=WORKER_S,
                          check_params_cb=lambda p: p.job_id == other) as done:
        pass
    assert done.args[0].state == "done"
    qtbot.waitUntil(lambda: win.jobs_panel.rows[other].info.text() == "done: 3/3", timeout=5000)
    win.close()


def test_failed_images_are_listed_with_their_reason_and_retry_runs_them_again(station, tmp_path, qtbot):
    db, url = station
    good_images(tmp_path / "imgs", 4)
    broken = tmp_path / "imgs" / "zz_broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    win = _window(db, url, qtbot)
    win.open_folder(str(tmp_path / "imgs"))
    wait_shown(win, qtbot)
    broken_id = next(it.image_id for it in win.gallery_model.items() if it.name == "zz_broken.png")
    win.queue.select(broken_id)
    qtbot.waitUntil(lambda: win.review.image_id == broken_id, timeout=5000)
    with qtbot.waitSignal(win.jobs.submitted, timeout=10000) as queued:
        win.jobs.prelabel_folder()
    [job] = queued.args[0]
    row = win.jobs_panel.rows[job]
    qtbot.waitUntil(lambda: db.jobs.get(job).finished, timeout=WORKER_S)
    qtbot.waitUntil(lambda: row.info.text().startswith("done: 4/5 · 1 failed"), timeout=5000)

    # The panel lists the file and why; the image says it failed, with the reason.
    tree = win.jobs_panel.failures
    qtbot.waitUntil(lambda: tree.topLevelItemCount() == 1, timeout=5000)
    assert tree.isVisibleTo(win.jobs_panel)
    item = tree.topLevelItem(0)
    assert Path(item.text(1)) == broken
    assert "not a decodable image" in item.text(2)
    qtbot.waitUntil(lambda: "pre-labelling failed" in win.label_panel.pred_class.text(), timeout=10000)
    assert "not a decodable image" in win.label_panel.pred_class.text()
    assert row.retry.isVisibleTo(row)

    # Fixed on disk, Retry runs it again in the same job, and everything turns green.
    assert cv2.imwrite(str(broken.with_suffix(".tmp.png")), np.full((32, 32), 99, np.uint8))
    broken.with_suffix(".tmp.png").replace(broken)
    row.retry.click()
    qtbot.waitUntil(lambda: job in win.jobs.active or db.jobs.get(job).progress_failed == 0, timeout=5000)
    qtbot.waitUntil(lambda: db.jobs.get(job).finished and db.jobs.get(job).progress_done == 5, timeout=WORKER_S)
    qtbot.waitUntil(lambda: row.info.text() == "done: 5/5", timeout=5000)
    qtbot.waitUntil(lambda: tree.topLevelItemCount() == 0 and not tree.isVisibleTo(win.jobs_panel), timeout=5000)
    assert not row.retry.isVisibleTo(row)
    qtbot.waitUntil(lambda: win.label_panel.pred_class.text().startswith("<b>"), timeout=10000)
    win.close()
