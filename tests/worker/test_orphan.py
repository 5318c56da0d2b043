"""A station that dies without closing (SIGKILL, its X server gone) must not leave its worker
running: the worker the station starts watches its parent and stops once it is gone."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.paths import REPO_ROOT
from app.services.child_command import station_command
from tests.worker.helpers import make_db

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="re-parenting of orphans is POSIX")

LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:] + ["--exit-with-parent", str(os.getpid())], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=open(os.environ["WORKER_LOG"], "ab"))
print(child.pid, flush=True)
os._exit(0)  # dies at once, as a killed station does: no close handler, no SIGTERM to the child
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A finished child of init may linger as a zombie for a moment: that is not running.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def test_a_worker_whose_station_died_stops_by_itself(tmp_path: Path, single_thread_env, monkeypatch) -> None:
    url = f"sqlite:///{(tmp_path / 'station.sqlite').as_posix()}"
    make_db(url, {}).close()  # an empty station: the worker idles, waiting for jobs
    child = station_command(url, "worker", "--device", "cpu")
    env = child.environment()
    env["WORKER_LOG"] = str(tmp_path / "worker.log")
    out = subprocess.run([sys.executable, "-c", LAUNCHER, *child.argv], cwd=str(REPO_ROOT), env=env,
                         capture_output=True, text=True, timeout=60, check=True)
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 180  # importing torch in the worker takes a while on a loaded machine
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    log = (tmp_path / "worker.log").read_text(errors="replace")
    if _alive(pid):
        os.kill(pid, 9)
        pytest.fail(f"the orphaned worker kept running; its log:\n{log[-2000:]}")
    assert "is gone: stopping" in log


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads the worker's command line from /proc")
def test_a_new_device_restarts_the_running_worker_on_it(tmp_path) -> None:
    """Found by a session-44 probe: Settings changed the worker device from cuda to cpu; the worker went on running on
    cuda until the station restarted, and every image, Retry too, failed "no CUDA GPU". The running worker is
    replaced by one on the new device (the real worker process)."""
    import time

    from app.services.review_jobs import ReviewJobs
    from database import open_database
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    db = open_database(url)
    jobs = ReviewJobs(db, url, device="auto")
    try:
        jobs.ensure_worker()
        first = jobs.worker_pid()
        assert first is not None
        assert jobs.use_device("cpu") is True
        second = jobs.worker_pid()
        assert second is not None and second != first
        # Popen returns once the child's exec is past its point of no return, but the kernel shows the new command
        # line a moment later: until then /proc reads it empty (seen in CI on a loaded 2-core machine).
        deadline = time.monotonic() + 10
        argv: list[bytes] = []
        while b"--device" not in argv and time.monotonic() < deadline:
            argv = Path(f"/proc/{second}/cmdline").read_bytes().split(b"\0")
            time.sleep(0.05)
        assert argv[argv.index(b"--device") + 1] == b"cpu"
        assert jobs.use_device("cpu") is False  # the same device: nothing restarted
    finally:
        jobs.stop_worker()
        db.close()
