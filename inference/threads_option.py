"""The ``--threads N|auto`` option of the commands that run models: parsed without importing torch.

``auto`` (ADR 0040) lets ``inference.device.ThreadGovernor`` choose the count as the machine's other
work allows; a number fixes it. Lives apart from ``inference.device`` so the command-line parsers
can check the option before torch is imported.
"""
from __future__ import annotations

import argparse

AUTO_THREADS = "auto"


def parse_threads(value: str) -> int | str:
    """A positive count or ``AUTO_THREADS``; ValueError with a message a person can act on otherwise."""
    if value.strip().lower() == AUTO_THREADS:
        return AUTO_THREADS
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"--threads takes a positive number or 'auto', not {value!r}") from None
    if n < 1:
        raise ValueError(f"--threads takes a positive number or 'auto', not {value!r}")
    return n


def threads_arg(value: str) -> int | str:
    """``parse_threads`` as an argparse ``type`` (its message becomes the usage error)."""
    try:
        return parse_threads(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
