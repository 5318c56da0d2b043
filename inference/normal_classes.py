"""Which class names stand for a good part: one rule for the queue's "defect class" flag, the operating point's verdict
from a class label, and the retrained head's pool class (ADR 0075).

The project lists them (Settings ▸ Project ▸ Classes that are not a defect); a name matches whatever its case, since
datasets write `Free`, `good` and `OK` alike. Plain names, no Qt and no storage: the flags, the services and the
training code all read it.
"""
from __future__ import annotations

from collections.abc import Iterable

DEFAULT_NORMAL_CLASSES = ("free", "good", "ok", "normal", "none")


def is_normal_class(name: str, normal: Iterable[str]) -> bool:
    """Whether ``name`` is one of the ``normal`` class names (case-insensitive)."""
    key = name.lower()
    return any(key == n.lower() for n in normal)
