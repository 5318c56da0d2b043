"""The jobs panel's rate and ETA come from recent progress; a job that stops moving is stalled,
and its ETA does not grow."""
from __future__ import annotations

import pytest

from app.services.job_pace import PaceTracker


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_rate_and_eta_follow_the_last_minute() -> None:
    clock = Clock()
    pace = PaceTracker(window_s=60, stall_s=30, clock=clock)
    first = pace.update(1, 0, 100, False)
    assert first.rate is None and first.eta_s is None and not first.stalled
    for _ in range(10):
        clock.t += 1
        last = pace.update(1, int(clock.t - 1000) * 2, 100, False)
    assert last.rate == pytest.approx(2.0)
    assert last.eta_s == pytest.approx(40.0)
    # Slow minutes long ago do not drag today's rate down: only the window counts.
    clock.t += 100
    pace.update(1, 21, 1000, False)
    for _ in range(70):
        clock.t += 1
        last = pace.update(1, 21 + int(clock.t - 1110) * 3, 1000, False)
    assert last.rate == pytest.approx(3.0)


def test_a_job_that_stops_moving_is_stalled_not_an_ever_growing_eta() -> None:
    clock = Clock()
    pace = PaceTracker(window_s=60, stall_s=30, clock=clock)
    for k in range(5):
        pace.update(7, 8 * k, 300, False)
        clock.t += 2
    etas = []
    for _ in range(20):  # the worker was killed: the count stands still
        clock.t += 2
        p = pace.update(7, 32, 300, False)
        if not p.stalled:
            etas.append(p.eta_s)
    assert p.stalled and p.rate is None and p.eta_s is None
    assert p.idle_s == pytest.approx(42.0)
    assert len(etas) < 20
    clock.t += 1
    moving = pace.update(7, 40, 300, False)  # a new worker took over
    assert not moving.stalled and moving.idle_s == 0 and moving.rate is not None


def test_finished_jobs_have_no_pace_and_are_forgotten() -> None:
    clock = Clock()
    pace = PaceTracker(clock=clock)
    pace.update(1, 5, 10, False)
    clock.t += 5
    done = pace.update(1, 10, 10, True)
    assert (done.rate, done.eta_s, done.stalled) == (None, None, False)
    pace.update(2, 1, 10, False)
    pace.forget({3})
    assert pace.update(2, 1, 10, False).rate is None
