"""How fast a job is going *now*: rate and ETA from the progress this station saw recently.

A job's average since it started (``JobProgress.images_per_second``) keeps falling while a
worker is down or reloading its models, so an ETA computed from it grows without bound and
looks like work is happening. The jobs panel instead keeps the last minute of samples of each
job's processed count: the rate is the progress made within that window, and a job whose count
has not moved for ``stall_s`` is reported as stalled (the panel says so instead of an ETA).
Qt-free and clock-injectable, so the rules are tested without waiting.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

WINDOW_S = 60.0   # progress older than this no longer counts towards the rate
STALL_S = 45.0    # an open job whose count has not moved for this long is "stalled"


@dataclass(frozen=True)
class JobPace:
    """Plain data: recent images per second (None until the count moves), ETA, and how long
    the processed count has stood still (0 for a finished job)."""

    rate: float | None
    eta_s: float | None
    idle_s: float
    stalled: bool


class PaceTracker:
    def __init__(self, window_s: float = WINDOW_S, stall_s: float = STALL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.stall_s = stall_s
        self.clock = clock
        self._samples: dict[int, deque[tuple[float, int]]] = {}

    def update(self, job_id: int, processed: int, total: int, finished: bool) -> JobPace:
        """Record the job's processed count as read now; its pace over the recent window."""
        now = self.clock()
        samples = self._samples.setdefault(job_id, deque())
        if not samples or samples[-1][1] != processed:
            samples.append((now, processed))
        # Keep one sample at or before the window's start as the anchor of the rate.
        while len(samples) > 1 and samples[1][0] <= now - self.window_s:
            samples.popleft()
        if finished:
            self._samples.pop(job_id, None)
            return JobPace(None, None, 0.0, False)
        last_change = samples[-1][0]
        idle = now - last_change
        anchor_t, anchor_n = samples[0]
        if anchor_t < now - self.window_s:  # the anchor is older than the window: clip it
            anchor_t = now - self.window_s
        moved = processed - anchor_n
        rate = moved / (now - anchor_t) if moved > 0 and now > anchor_t else None
        stalled = idle >= self.stall_s
        eta = None if rate is None or stalled else max(0, total - processed) / rate
        return JobPace(None if stalled else rate, eta, idle, stalled)

    def forget(self, keep: set[int]) -> None:
        """Drop jobs no longer shown."""
        for job_id in set(self._samples) - keep:
            del self._samples[job_id]
