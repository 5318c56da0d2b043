"""Choosing the torch device and its thread count, for the runtime engine and the trainers alike.

It lives outside ``inference/training`` because runtime code never imports training code
(tests/test_layering.py); the trainers import it from here.
"""
from __future__ import annotations

import ctypes
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import cv2
import torch

from .threads_option import AUTO_THREADS


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but no CUDA GPU is available")
    return torch.device(name)


def set_threads(threads: int | None) -> None:
    """Cap intra-op threads (torch, the numba scan kernel and OpenCV's parallel loops).

    The scan kernel uses ``min(numba's pool, torch.get_num_threads())`` threads, so capping
    torch caps both. ``NUMBA_NUM_THREADS`` is only set before numba is imported: numba re-reads
    its environment at each compilation and refuses a changed value once its pool is running.

    Order matters: numba's first ``set_num_threads`` starts its OpenMP pool, which calls
    ``omp_set_num_threads(NUMBA_NUM_THREADS)`` in the OpenMP runtime torch shares, so a torch cap
    set before it was silently undone (``--threads 1`` ran torch on 2 threads; under load its
    barriers made a segmenter pass 10x slower, issue 21). numba first, then torch.
    """
    if not threads:
        return
    if "numba" not in sys.modules:
        os.environ["NUMBA_NUM_THREADS"] = str(threads)
    else:
        import numba

        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]  # set at import
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)  # OpenCV's own pool (texture features, resizes) follows the same count


# glibc's mallopt parameters (malloc.h) and the values ``keep_freed_memory`` sets.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MAP_ABOVE_BYTES = 256 << 20  # allocations above this still get a mapping of their own
KEEP_FREED_BYTES = 512 << 20  # free memory at the heap's top kept for the next pass (RSS cost)
_kept = False


def keep_freed_memory() -> bool:
    """Let the C allocator keep freed activation buffers for the next network pass (glibc only).

    Why: glibc gives each allocation above a (dynamic, at most 32 MiB) threshold a fresh mapping
    and unmaps it when freed, and returns the free top of its heap to the system beyond a few
    times that. A segmenter pass allocates and frees tens of activations of 1-16 MiB, so every
    pass faulted its memory in again, page by page: 140,000-210,000 minor page faults and
    0.3-0.5 s of system time per 512² frame on the accurate profile, a quarter of its CPU time
    (benchmarks/results/speed-3.md, ADR 0031). With allocations up to ``MAP_ABOVE_BYTES`` served
    from the heap and up to ``KEEP_FREED_BYTES`` of its free top kept, the buffers are reused.
    The numbers computed do not change; the cost is resident memory that stays near the
    process's high-water mark instead of falling back between batches.

    Process-wide and not undone (glibc's dynamic threshold cannot be switched back on), so the
    runtime commands call it once at start-up; benchmarks compare in separate processes. Returns
    whether it took effect (False off glibc, e.g. macOS, Windows, musl).
    """
    global _kept
    if _kept:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _kept = bool(mallopt(_M_MMAP_THRESHOLD, MAP_ABOVE_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BYTES))
    return _kept


def prepare_inference_process(threads: int | str | None) -> None:
    """What every command that runs models for a while does first: cap the threads, then keep
    freed activation memory for the next pass (the worker, prelabel and the evaluate commands).

    ``threads`` ``"auto"`` (``AUTO_THREADS``) sizes the thread pools for the most ``auto_max_threads``
    allows and starts on one thread; a ``ThreadGovernor`` then sets the count before each batch."""
    if threads == AUTO_THREADS:
        if "numba" not in sys.modules:
            # The scan kernel's pool is sized once, at numba's import: for the most auto uses. Imported
            # now, so that set_threads below (and each batch's) goes through numba.set_num_threads
            # and a pool started later cannot undo torch's count (set_threads' docstring).
            os.environ["NUMBA_NUM_THREADS"] = str(auto_max_threads())
            import numba  # noqa: F401
        set_threads(1)
    else:
        set_threads(int(threads) if threads else None)
    keep_freed_memory()


# -- "auto" threads: both cores when the machine's other cores are idle, one when they are not ---------
AUTO_MAX_THREADS = 4        # measured at 1 and 2 threads only (speed-5.md); more is not assumed to pay
FREE_CORE_MARGIN = 0.3      # a core counts as free when other processes leave at least 0.7 of it idle
MIN_WINDOW_S = 0.25         # shorter windows say too little to change the count on


def usable_cores() -> list[int]:
    """The CPUs this process may run on (its affinity), else ``range(os.cpu_count())``."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _cgroup_cores(path: str = "/sys/fs/cgroup/cpu.max") -> float | None:
    """A container's CPU quota in cores (cgroup v2 ``cpu.max``: "quota period"), None without one."""
    try:
        quota, period = open(path, encoding="ascii").read().split()[:2]
        return None if quota == "max" else max(int(quota) / int(period), 1.0)
    except (OSError, ValueError):
        return None


def auto_max_threads() -> int:
    """Most threads ``auto`` uses: the usable cores, the container quota, ``AUTO_MAX_THREADS``."""
    cores = float(len(usable_cores()))
    quota = _cgroup_cores()
    return max(1, int(min(cores, quota if quota is not None else cores, AUTO_MAX_THREADS)))


@dataclass(frozen=True)
class CpuSample:
    """What ``ThreadGovernor`` compares between two moments (seconds; idle summed over the usable cores)."""

    wall_s: float
    idle_s: float   # idle + waiting-for-I/O time of the usable cores since boot
    own_s: float    # this process's CPU time (user + system, every thread)


def read_cpu_sample(cores: Sequence[int] | None = None, stat_path: str = "/proc/stat") -> CpuSample | None:
    """Now, from ``/proc/stat`` (Linux); None where it cannot be read (then ``auto`` stays at one thread)."""
    wanted = {f"cpu{c}" for c in (usable_cores() if cores is None else cores)}
    try:
        with open(stat_path, encoding="ascii") as f:
            lines = f.read().splitlines()
        tick = float(os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, AttributeError):
        return None
    idle = 0.0
    seen = 0
    for line in lines:
        parts = line.split()
        if parts and parts[0] in wanted and len(parts) >= 6:
            try:
                idle += (int(parts[4]) + int(parts[5])) / tick
            except ValueError:
                return None
            seen += 1
    if not seen:
        return None
    t = os.times()
    return CpuSample(time.monotonic(), idle, t.user + t.system)


class ThreadGovernor:
    """Chooses the model thread count before each batch from how busy the machine's other work is.

    Why: one network pass is ~1,000 small operations, each ending in an OpenMP barrier. On an
    otherwise idle 2-core station two threads make a 512² segmenter frame 1.56x faster (1.04 ->
    0.67 s) and the worker 1.3x; with another process busy on the second core each barrier waits
    for a descheduled thread and two threads lose 4-9x (speed-3.md, speed-5.md). So the count
    follows the machine: the cores free for us over the last window are the idle time of the
    usable cores plus our own CPU time (our threads, busy or spinning, hold the cores they use);
    ``int(free + FREE_CORE_MARGIN)`` of them, at least 1 and at most ``max_threads``. No
    ``/proc/stat`` (not Linux): always 1, today's setting (ADR 0025).
    """

    def __init__(self, max_threads: int | None = None,
                 sample: Callable[[], CpuSample | None] | None = None) -> None:
        self.max_threads = max(1, max_threads if max_threads is not None else auto_max_threads())
        cores = usable_cores()
        self._sample = sample if sample is not None else (lambda: read_cpu_sample(cores))
        self._last = self._sample()
        self.threads = 1
        self.free_cores: float | None = None

    def choose(self) -> int:
        """The count for the next batch (also kept in ``threads``); the window restarts now."""
        now = self._sample()
        last = self._last
        if now is None or last is None:
            self._last = now
            self.threads = 1
            return 1
        span = now.wall_s - last.wall_s
        if span < MIN_WINDOW_S:
            return self.threads
        self.free_cores = max(0.0, (now.idle_s - last.idle_s) + (now.own_s - last.own_s)) / span
        self.threads = max(1, min(self.max_threads, int(self.free_cores + FREE_CORE_MARGIN)))
        self._last = now
        return self.threads

    def lanes(self) -> int:
        """Lanes for a batch of several images (ADR 0041, amended): one more than the threads ``choose``
        gave, at most ``max_threads``. Lanes share no barrier, so a lane on a core another program holds
        costs only its share of that core: beside one busy program two lanes beat one in every round
        measured (speed-6.md §5, speed-7.md §4), and the station's window stays responsive (speed-7.md §3).
        A single frame still runs on ``threads`` intra-op threads, where a busy core does cost barriers."""
        return min(self.max_threads, self.threads + 1)

    def apply(self) -> int:
        """``choose`` and set the models' threads (``set_threads``) to it."""
        threads = self.choose()
        set_threads(threads)
        return threads
