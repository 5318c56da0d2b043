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
    """The part of ``widget``'s screen (the one under its centre, else its own, else the primary) a window's own area
    may take: the screen's available geometry (no task bar) less a window frame."""
    screen: QScreen | None = QGuiApplication.screenAt(widget.geometry().center()) or widget.screen()
    area = (screen or QGuiApplication.primaryScreen()).availableGeometry()
    return area.adjusted(BORDER, TITLE, -BORDER, -BORDER)


def fit_to_screen(widget: QWidget, width: int, height: int) -> None:
    """Give ``widget`` the size ``width``×``height``, or as much of it as its screen's free area holds."""
    area = free_area(widget)
    widget.resize(min(width, area.width()), min(height, area.height()))
