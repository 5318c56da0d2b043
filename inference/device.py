"""Choosing the torch device and its thread count, for the runtime engine and the trainers alike.

It lives outside ``inference/training`` because runtime code never imports training code
(tests/test_layering.py); the trainers import it from here.
"""
from __future__ import annotations

import ctypes
import os
import sys

import torch


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but no CUDA GPU is available")
    return torch.device(name)


def set_threads(threads: int | None) -> None:
    """Cap intra-op threads (both torch and the numba scan kernel).

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


def prepare_inference_process(threads: int | None) -> None:
    """What every command that runs models for a while does first: cap the threads, then keep
    freed activation memory for the next pass (the worker, prelabel and the evaluate commands)."""
    set_threads(threads)
    keep_freed_memory()
