"""Choosing the torch device and its thread count, for the runtime engine and the trainers alike.

It lives outside ``inference/training`` because runtime code never imports training code
(tests/test_layering.py); the trainers import it from here.
"""
from __future__ import annotations

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
