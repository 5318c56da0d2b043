"""Form rows the project dialogs share: a path with a Browse button, this-folder / every-folder,
a row of list-editing buttons and the line a dialog says what went wrong in."""
from __future__ import annotations

from typing import Callable, Sequence

from PySide6.QtWidgets import QApplication, QHBoxLayout, QLabel, QLineEdit, QPushButton, QRadioButton, QWidget

from app.gui.style import icon
from app.services.wording import agree, plural


def path_row(placeholder: str, browse: Callable[[], None]) -> tuple[QWidget, QLineEdit]:
    row = QWidget()
    lay = QHBoxLayout(row)
    lay.setContentsMargins(0, 0, 0, 0)
    edit = QLineEdit()
    edit.setPlaceholderText(placeholder)
    button = QPushButton("Browse…")
    button.clicked.connect(browse)
    lay.addWidget(edit, 1)
    lay.addWidget(button)
    return row, edit


def scope_row(folder_id: int | None, folder_name: str | None) -> tuple[QWidget, QRadioButton, QRadioButton]:
    """The current folder (checked when there is one) or every folder."""
    row = QWidget()
    lay = QHBoxLayout(row)
    lay.setContentsMargins(0, 0, 0, 0)
    this = QRadioButton(f"this folder ({folder_name})" if folder_name else "this folder")
    every = QRadioButton("every folder")
    (this if folder_id is not None else every).setChecked(True)
    this.setEnabled(folder_id is not None)
    lay.addWidget(this)
    lay.addWidget(every)
    return row, this, every


def button_row(buttons: Sequence[tuple[str, str, Callable[[], None]]]) -> QHBoxLayout:
    """(text, qtawesome icon, slot) buttons left-aligned in one row (a list's Add / Remove / Up / Down)."""
    row = QHBoxLayout()
    for text, ico, slot in buttons:
        b = QPushButton(icon(ico), text)
        b.clicked.connect(slot)
        row.addWidget(b)
    row.addStretch(1)
    return row


def message_label() -> QLabel:
    """The wrapped line under a dialog's controls where it says why something was refused."""
    label = QLabel("")
    label.setObjectName("error")
    label.setWordWrap(True)
    return label


def disable_keeping_focus(keep: QWidget, *widgets: QWidget) -> None:
    """Disable ``widgets`` (a button pressed to start work); the keyboard focus one of them holds moves to ``keep``
    first. Seen under Xvfb (session 36): the Import button, disabled while it held the focus, took the focus out of
    the dialog, and once the dialog closed no key reached the review window (A, N, Ctrl+Z did nothing)."""
    focus = QApplication.focusWidget()
    if focus is not None and any(w is focus or w.isAncestorOf(focus) for w in widgets):
        keep.setFocus()
    for w in widgets:
        w.setEnabled(False)


def labels_on_their_way(count: int, what: str) -> str:
    """Why ``what`` (an export, an import) waits: labels made in this window are not in the database yet. A session-44
    probe: an export right after a correction wrote the old label, and an import's preview missed the inspector's
    newer label and then refused it as another station's."""
    return (f"{plural(count, 'label')} made in this window {agree(count, 'is', 'are')} still being saved: {what} waits "
            f"for {agree(count, 'it', 'them')} (the status bar says when {agree(count, 'it is', 'they are')} saved); try "
            "again then.")
