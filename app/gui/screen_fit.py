"""Windows sized and placed inside the screen they open on.

Why: the main window opened at 1500×920 and the Models dialog at 1280×880 whatever the screen, so on a 1366×768
laptop their status bar and buttons lay below its edge (a session-49 audit)."""
from __future__ import annotations

from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QCursor, QGuiApplication, QScreen
from PySide6.QtWidgets import QWidget

# What a window manager adds around a window's own area (borders, a title bar): the area sizes here leave it room.
BORDER, TITLE = 8, 40


def _placed_by_us(widget: QWidget) -> bool:
    """Whether ``widget`` is a window not shown yet that nothing has placed: ``fit_to_screen`` puts it on the screen
    it sized it for (a dialog is centred over its parent by Qt; a shown or moved window is where it is)."""
    return (widget.parentWidget() is None and not widget.isVisible()
            and not widget.testAttribute(Qt.WidgetAttribute.WA_Moved))


def opening_screen(widget: QWidget) -> QScreen | None:
    """The screen ``widget`` opens on, or is on. A dialog not shown yet: its parent window's (a dialog sized in its
    constructor: its own place is still 0,0, which named the screen at the origin, not the one the main window is on,
    where the dialog opens: the review of a session-49 fix). A window not shown and not placed yet: the one under the
    mouse, where the inspector is working, else the primary (the main window's place was still 0,0 too, so it was
    sized for the screen at the origin: on a desk with a small laptop screen there, a window held to the laptop's
    size on a large monitor, a session-52 audit). Else the one under its centre, else its own."""
    parent = widget.parentWidget()
    if parent is not None and not widget.isVisible():
        return parent.window().screen()
    if _placed_by_us(widget):
        return QGuiApplication.screenAt(QCursor.pos()) or QGuiApplication.primaryScreen()
    return QGuiApplication.screenAt(widget.geometry().center()) or widget.screen()


def free_area(widget: QWidget) -> QRect:
    """The part of ``widget``'s screen (``opening_screen``) a window's own area may take: the screen's available
    geometry (no task bar) less a window frame."""
    area = (opening_screen(widget) or QGuiApplication.primaryScreen()).availableGeometry()
    return area.adjusted(BORDER, TITLE, -BORDER, -BORDER)


def fit_to_screen(widget: QWidget, width: int, height: int) -> None:
    """Give ``widget`` the size ``width``×``height``, or as much of it as its screen's free area holds; a window
    nothing has placed yet is centred on that screen, so it opens on the screen it was sized for (left to the
    system, a new window may open on the primary screen)."""
    area = free_area(widget)
    placed = _placed_by_us(widget)
    widget.resize(min(width, area.width()), min(height, area.height()))
    if placed:
        frame = QRect(0, 0, widget.width(), widget.height())
        frame.moveCenter(area.center())
        widget.move(frame.topLeft())
