"""``main.py worker --nice N``: the worker lowers its own CPU priority before any model thread starts, so
the station's window and the machine's other programs come first (benchmarks/gui_latency.py)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import CommandError
from app.commands.worker import lower_priority

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not hasattr(os, "nice"), reason="no process niceness on this platform")
def test_nice_lowers_the_process_and_the_threads_it_starts_later() -> None:
    code = ("import os, threading\n"
            "from app.commands.worker import lower_priority\n"
            "base = os.nice(0)\n"
            "lower_priority(3)\n"
            "seen = []\n"
            "t = threading.Thread(target=lambda: seen.append(os.nice(0))); t.start(); t.join()\n"
            "print(os.nice(0) - base, seen[0] - base)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.split()
    assert out == ["3", "3"]


@pytest.mark.parametrize("bad", [-1, 20])
def test_nice_out_of_range_is_refused(bad: int) -> None:
    with pytest.raises(CommandError, match="--nice"):
        lower_priority(bad)


def test_nice_zero_changes_nothing() -> None:
    before = os.nice(0) if hasattr(os, "nice") else 0
    lower_priority(0)
    assert (os.nice(0) if hasattr(os, "nice") else 0) == before
