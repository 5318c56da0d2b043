"""One switch for the inference speed-ups of issue 21 (fused scan epilogue, parallel test-time views, ...).

Why a switch: the stations share busy CPUs, so a speed-up is only proven against the previous
code path timed in the same process, side by side (``benchmarks/profile_prelabel.py --baseline``),
and the tests pin that both paths give the same numbers. Production never turns it off.
"""
from __future__ import annotations

_enabled = True


def enabled() -> bool:
    """Whether the faster paths run (default True)."""
    return _enabled


def set_enabled(on: bool) -> None:
    """Turn the faster paths on or off for the whole process (benchmarks and agreement tests)."""
    global _enabled
    _enabled = bool(on)
