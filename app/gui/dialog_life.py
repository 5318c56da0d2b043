"""How the window's dialogs end: one place for "freed once closed" (a window open for a shift kept every Settings,
Routing, Classes and Operating point dialog it had opened: a session-48 probe)."""
from __future__ import annotations

from typing import Callable, TypeVar

from PySide6.QtWidgets import QDialog, QWidget

D = TypeVar("D", bound=QDialog)


def run_modal(dlg: QDialog, answered: Callable[[int], None] | None = None) -> None:
    """Run ``dlg`` modally, hand its answer to ``answered`` (where given), then free it (also when ``answered``
    raises)."""
    try:
        answer = dlg.exec()
        if answered is not None:
            answered(answer)
    finally:
        dlg.deleteLater()


def one_at_a_time(window: QWidget, attr: str, make: Callable[[], D], same: Callable[[D], bool] = lambda _d: True) -> D:
    """The modeless dialog kept in ``window.<attr>``: the open one brought forward where ``same`` says it serves (a
    save on its way is kept), else the old one freed and a new one made and shown."""
    old = getattr(window, attr, None)
    if old is not None and old.isVisible() and same(old):
        old.raise_()
        old.activateWindow()
        return old
    if old is not None:
        old.close()
        old.deleteLater()
    dlg = make()
    setattr(window, attr, dlg)
    dlg.show()
    return dlg
