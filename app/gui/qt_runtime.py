"""Work-arounds for the Qt binding's runtime, applied once before any widget exists."""
from __future__ import annotations

import sys

_PINNED = 1 << 40


def make_none_immortal() -> bool:
    """Give None, True and False unreachable reference counts on CPython < 3.12 (else no-op).

    Python 3.12 made these singletons immortal (PEP 683) and binding code built for it may
    skip ``Py_INCREF`` when returning them; PySide6 6.12 does (None from every void method,
    bools from some). Pinning the counts is what 3.12 does itself. True when any was raised.
    """
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False
    import PySide6

    if tuple(int(x) for x in PySide6.__version__.split(".")[:2]) < (6, 12):
        return False  # pyproject pins < 6.12 (ADR 0007); this guards a station that upgraded anyway
    import ctypes
    raised = False
    for singleton in (None, True, False):
        refcnt = ctypes.c_ssize_t.from_address(id(singleton))  # ob_refcnt: first field of PyObject
        if refcnt.value < _PINNED:
            refcnt.value += _PINNED
            raised = True
    return raised
