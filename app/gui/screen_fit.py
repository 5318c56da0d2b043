"""Windows sized and placed inside the screen they open on.

Why: the main window opened at 1500×920 and the Models dialog at 1280×880 whatever the screen, so on a 1366×768
laptop their status bar and buttons lay below its edge (a session-49 audit)."""
from __future__ import annotations

from PySide6.QtCore import QRect
from PySide6.QtGui import QGuiApplication, QScreen
from PySide6.QtWidgets import QWidget

# What a window manager adds around a window's own area (borders, a title bar): the area sizes here leave it room.
BORDER, TITLE = 8, 40


def free_area(widget: QWidget) -> QRect:
    """The part of ``widget``'s screen a window's own area may take: the screen's available geometry (no task bar) less
    a window frame. The screen is its parent window's while it is not shown yet (a dialog sized in its constructor: its
    own place is still 0,0, which named the screen at the origin, not the one the main window is on, where the dialog
    opens: the review of a session-49 fix), else the one under its centre, else its own, else the primary."""
    parent = widget.parentWidget()
    screen: QScreen | None
    if parent is not None and not widget.isVisible():
        screen = parent.window().screen()
    else:
        screen = QGuiApplication.screenAt(widget.geometry().center()) or widget.screen()
    area = (screen or QGuiApplication.primaryScreen()).availableGeometry()
    return area.adjusted(BORDER, TITLE, -BORDER, -BORDER)


def fit_to_screen(widget: QWidget, width: int, height: int) -> None:
    """Give ``widget`` the size ``width``×``height``, or as much of it as its screen's free area holds."""
    area = free_area(widget)
    widget.resize(min(width, area.width()), min(height, area.height()))
