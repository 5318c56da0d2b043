"""A worker process killed with SIGKILL mid-job; a restarted one finishes without redoing work."""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from app.services.indexing import index_folder
from app.services.prelabel import job_status, start_worker_process, submit_prelabel
from database.states import ItemStatus
from tests.worker.helpers import good_images, make_db

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
N = 16
# The fastest family keeps the test short; the claim/commit path is the same for all three.
FAMILIES = ["anomaly"]


def test_killed_worker_loses_nothing_and_repeats_nothing(tmp_path: Path, tiny_models, single_thread_env) -> None:
    url = f"sqlite:///{tmp_path / 'station.sqlite'}"
    db = make_db(url, tiny_models)
    good_images(tmp_path / "imgs", N)
    job = submit_prelabel(db, folder_id=index_folder(db, tmp_path / "imgs").folder_id, families=FAMILIES)
    first = start_worker_process(url, "cpu", once=True, batch_size=2, log_path=tmp_path / "w1.log")
    assert url not in " ".join(first.process.args)  # the URL (maybe with a password) travels in the environment
    deadline = time.monotonic() + 240
    while job_status(db, job).done < 4:
        assert first.alive(), (tmp_path / "w1.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the worker made no progress"
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.process.wait()
    at_kill = job_status(db, job)
    in_flight = db.jobs.item_counts(job)[ItemStatus.RUNNING]
    assert in_flight <= 2 * 2, "more than the running batch and the one decoding were held"
    assert at_kill.state == "running" and at_kill.done < N, "the job finished before the kill: nothing tested"
    with db.engine.connect() as c:
        before = dict(c.execute(text("SELECT id, created_at FROM predictions")).all())
    assert len(before) == len(FAMILIES) * at_kill.done

    second = start_worker_process(url, "cpu", once=True, batch_size=2, log_path=tmp_path / "w2.log")
    assert second.process.wait(240) == 0, (tmp_path / "w2.log").read_text()[-3000:]
    final = job_status(db, job)
    assert (final.state, final.done, final.failed) == ("done", N, 0)
    with db.engine.connect() as c:
        dup = c.execute(text("SELECT image_id, model_version_id, count(*) FROM predictions "
                             "GROUP BY image_id, model_version_id HAVING count(*) > 1")).all()
        after = dict(c.execute(text("SELECT id, created_at FROM predictions")).all())
    assert dup == []
    assert len(after) == N * len(FAMILIES)
    # What was committed before the kill was neither redone nor rewritten.
    assert {k: after[k] for k in before} == before
    db.close()
