"""Keys a text field keeps for editing, whatever the window's shortcuts say.

The window's shortcuts act on the image on screen from anywhere in the window (``app.gui.actions``). Typed into a text
field of its docks (the queue's search, a spin box) some of them are editing keys there, and the shortcut won: a
session-44 probe's Ctrl+Backspace ("delete the previous word") in the search box cleared the open image's label and
saved it, Tab (focus to the next field) jumped the viewer to a target and armed the class keys for its object, and Esc
switched the brush to Pan. A field that has the focus keeps these keys.
"""
from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QLineEdit, QWidget

EDITING_KEYS = frozenset({Qt.Key.Key_Tab, Qt.Key.Key_Backtab, Qt.Key.Key_Escape, Qt.Key.Key_Backspace,
                          Qt.Key.Key_Delete})


class EditingKeys(QObject):
    """Claims ``EDITING_KEYS`` for the text field that has them (a ``ShortcutOverride`` accepted: the field gets the
    key press, no shortcut fires)."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent) \
                and event.key() in EDITING_KEYS:
            event.accept()
            return True
        return False


def keep_editing_keys(window: QWidget) -> EditingKeys:
    """Install ``EditingKeys`` on every text field of ``window`` (spin boxes' own fields included)."""
    keys = EditingKeys(window)
    for field in window.findChildren(QLineEdit):
        field.installEventFilter(keys)
    return keys
