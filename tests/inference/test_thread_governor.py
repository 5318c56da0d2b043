"""The ``auto`` model thread count (inference.device.ThreadGovernor, ADR 0040): both cores when the
machine's other work leaves them idle, one when it does not, and never a count the machine lacks."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from inference.device import CpuSample, ThreadGovernor, read_cpu_sample
from inference.threads_option import AUTO_THREADS, parse_threads


class FakeClock:
    """CpuSamples fed by the test: each ``step`` advances wall time and says how the cores were used."""

    def __init__(self) -> None:
        self.now = CpuSample(wall_s=100.0, idle_s=1000.0, own_s=5.0)
        self.unreadable = False

    def __call__(self) -> CpuSample | None:
        return None if self.unreadable else self.now

    def step(self, seconds: float, idle_cores: float, own_cores: float) -> None:
        n = self.now
        self.now = CpuSample(n.wall_s + seconds, n.idle_s + idle_cores * seconds, n.own_s + own_cores * seconds)


def governor(max_threads: int = 2) -> tuple[ThreadGovernor, FakeClock]:
    clock = FakeClock()
    return ThreadGovernor(max_threads=max_threads, sample=clock), clock


def test_an_idle_machine_gets_both_cores_and_keeps_them_while_we_use_them() -> None:
    g, clock = governor()
    clock.step(2.0, idle_cores=1.0, own_cores=1.0)   # we ran on one thread, the other core idle
    assert g.choose() == 2
    clock.step(3.0, idle_cores=0.0, own_cores=2.0)   # both busy, but with our own threads
    assert g.choose() == 2
    assert g.free_cores == pytest.approx(2.0)


def test_another_process_on_the_second_core_sends_us_back_to_one_thread() -> None:
    g, clock = governor()
    clock.step(2.0, idle_cores=1.0, own_cores=1.0)
    assert g.choose() == 2
    # A burner started: three runnable threads share two cores, we got 1.33 of them.
    clock.step(3.0, idle_cores=0.0, own_cores=1.33)
    assert g.choose() == 1
    clock.step(3.0, idle_cores=0.0, own_cores=1.0)    # one thread each: still busy
    assert g.choose() == 1
    clock.step(3.0, idle_cores=1.0, own_cores=1.0)    # the burner is gone
    assert g.choose() == 2


def test_a_batch_keeps_two_lanes_beside_a_busy_program_where_a_frame_drops_to_one_thread() -> None:
    """Lanes share no barrier (ADR 0041, amended): one more lane than threads, at most the cap."""
    g, clock = governor()
    clock.step(2.0, idle_cores=1.0, own_cores=1.0)
    assert (g.choose(), g.lanes()) == (2, 2)
    clock.step(3.0, idle_cores=0.0, own_cores=1.33)  # a busy program on the second core
    assert (g.choose(), g.lanes()) == (1, 2)
    big, clock4 = governor(max_threads=4)
    clock4.step(2.0, idle_cores=1.0, own_cores=1.0)  # two of four cores free: 2 threads, 3 lanes
    assert (big.choose(), big.lanes()) == (2, 3)
    one, _ = governor(max_threads=1)
    assert one.lanes() == 1


def test_a_little_other_work_does_not_cost_the_second_core_but_half_a_core_does() -> None:
    g, clock = governor()
    clock.step(2.0, idle_cores=0.8, own_cores=1.0)   # others used 0.2 of a core: 1.8 free
    assert g.choose() == 2
    clock.step(2.0, idle_cores=0.5, own_cores=1.0)   # others used half a core: 1.5 free
    assert g.choose() == 1


def test_never_more_than_the_most_allowed_nor_fewer_than_one() -> None:
    g, clock = governor(max_threads=2)
    clock.step(1.0, idle_cores=7.0, own_cores=1.0)   # a big idle machine: still the cap
    assert g.choose() == 2
    clock.step(1.0, idle_cores=0.0, own_cores=0.05)  # starved: at least one
    assert g.choose() == 1


def test_a_short_window_keeps_the_count_and_an_unreadable_machine_means_one() -> None:
    g, clock = governor()
    clock.step(2.0, idle_cores=1.0, own_cores=1.0)
    assert g.choose() == 2
    clock.step(0.01, idle_cores=0.0, own_cores=0.0)  # too short to judge
    assert g.choose() == 2
    clock.unreadable = True                          # e.g. not Linux: today's one thread
    assert g.choose() == 1


def test_read_cpu_sample_sums_only_the_usable_cores(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  10 0 10 400 20 0 0 0 0 0\n"
                    "cpu0 5 0 5 100 10 0 0 0 0 0\n"
                    "cpu1 5 0 5 300 10 0 0 0 0 0\n"
                    "intr 1 2 3\n")
    one = read_cpu_sample(cores=[1], stat_path=str(stat))
    both = read_cpu_sample(cores=[0, 1], stat_path=str(stat))
    assert one is not None and both is not None
    import os

    tick = os.sysconf("SC_CLK_TCK")
    assert one.idle_s == pytest.approx(310 / tick)
    assert both.idle_s == pytest.approx(420 / tick)
    assert read_cpu_sample(cores=[5], stat_path=str(stat)) is None       # a core the file does not list
    assert read_cpu_sample(cores=[0], stat_path=str(tmp_path / "missing")) is None


def test_parse_threads() -> None:
    assert parse_threads("auto") == AUTO_THREADS
    assert parse_threads(" AUTO ") == AUTO_THREADS
    assert parse_threads("2") == 2
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(ValueError, match="positive number or 'auto'"):
            parse_threads(bad)


def test_auto_in_a_fresh_process_sizes_numba_for_two_and_starts_on_one_thread() -> None:
    """The scan kernel's pool is sized once at numba's import: auto must leave room to grow, and the
    first count (one thread) must hold for torch too (a later pool start used to undo torch's cap)."""
    code = ("import os\n"
            "import inference.device as d\n"
            "d.auto_max_threads = lambda: 2\n"
            "d.prepare_inference_process('auto')\n"
            "import cv2, numba, torch\n"
            "print(numba.config.NUMBA_NUM_THREADS, torch.get_num_threads(), cv2.getNumThreads())\n"
            "d.set_threads(2); print(numba.get_num_threads(), torch.get_num_threads(), cv2.getNumThreads())\n"
            "d.set_threads(1); print(numba.get_num_threads(), torch.get_num_threads(), cv2.getNumThreads())\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "NUMBA_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=Path(__file__).resolve().parents[2], check=True).stdout.split()
    assert out == ["2", "1", "1", "2", "2", "2", "1", "1", "1"]


def test_the_worker_and_prelabel_commands_default_to_auto() -> None:
    from app.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["worker"]).threads == AUTO_THREADS
    assert parser.parse_args(["prelabel", "some/folder"]).threads == AUTO_THREADS
    assert parser.parse_args(["worker", "--threads", "1"]).threads == 1
    with pytest.raises(SystemExit):
        parser.parse_args(["worker", "--threads", "none"])
