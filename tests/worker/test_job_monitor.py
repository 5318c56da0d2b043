"""The GUI process stays responsive while a job runs in a worker process."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import QTimer  # noqa: E402

from app.gui.job_monitor import JobMonitor  # noqa: E402
from app.services.indexing import index_folder  # noqa: E402
from app.services.prelabel import job_status, start_worker_process, submit_prelabel  # noqa: E402
from tests.worker.helpers import good_images, make_db  # noqa: E402

pytestmark = pytest.mark.gui


def test_event_loop_keeps_turning_while_the_worker_runs(qtbot, tmp_path: Path, tiny_models,
                                                         single_thread_env) -> None:
    url = f"sqlite:///{tmp_path / 'station.sqlite'}"
    db = make_db(url, tiny_models)
    good_images(tmp_path / "imgs", 8)
    job = submit_prelabel(db, folder_id=index_folder(db, tmp_path / "imgs").folder_id, families=["anomaly"])
    worker = start_worker_process(url, "cpu", batch_size=2, log_path=tmp_path / "worker.log")
    monitor = JobMonitor(lambda jid: job_status(db, jid), interval_ms=100)
    ticks: list[float] = []
    heartbeat = QTimer()
    heartbeat.setInterval(20)
    heartbeat.timeout.connect(lambda: ticks.append(time.monotonic()))
    progress = []
    monitor.progress.connect(progress.append)
    try:
        heartbeat.start()
        with qtbot.waitSignal(monitor.finished, timeout=240_000) as finished:
            monitor.watch(job)
        heartbeat.stop()
        stopped = worker.stop(timeout=60)  # asked to leave: finishes its batch, signs off, exits 0
        assert stopped == 0, (tmp_path / "worker.log").read_text()[-2000:]
        assert db.jobs.workers() == []
    finally:
        monitor.close()
        worker.stop(timeout=5)
        db.close()
    assert finished.args[0].state == "done" and finished.args[0].done == 8
    assert any(0 < p.done < 8 for p in progress) or len(progress) >= 2
    # The timer kept firing the whole time. Running the job on this thread would stall it for the
    # whole job (seconds); 1 s leaves room for a shared, overloaded CI machine's scheduling.
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    span = ticks[-1] - ticks[0]
    assert span > 1.0 and len(ticks) > span / 0.02 * 0.3
    assert max(gaps) < 1.0, f"the GUI thread stalled for {max(gaps):.2f} s"
