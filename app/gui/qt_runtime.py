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


def close_on_termination(window, signals: tuple[int, ...] | None = None):
    """Close ``window`` (its close handler saves labels and ends the worker) on SIGTERM/SIGINT/SIGHUP.

    Without this, ``kill PID`` or a logout ended the station without running its close handler,
    and the pre-label worker it had started went on running, orphaned. Python runs signal
    handlers only between bytecodes, which Qt's event loop never executes while idle, so a
    timer wakes the interpreter a few times a second. Returns a function that restores the
    previous handlers and stops the timer.
    """
    import signal

    from PySide6.QtCore import QTimer

    if signals is None:
        signals = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGINT", None),
                                    getattr(signal, "SIGHUP", None)) if s is not None)
    previous = {s: signal.getsignal(s) for s in signals}

    def on_signal(signum, _frame) -> None:
        QTimer.singleShot(0, window.close)

    for s in signals:
        signal.signal(s, on_signal)
    tick = QTimer(window)
    tick.setInterval(250)
    tick.timeout.connect(lambda: None)  # lets the interpreter run pending signal handlers
    tick.start()

    def restore() -> None:
        tick.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return restore
