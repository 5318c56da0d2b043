"""Form rows the project dialogs share: a path with a Browse button, and this-folder / every-folder."""
from __future__ import annotations

from typing import Callable

from PySide6.QtWidgets import QHBoxLayout, QLineEdit, QPushButton, QRadioButton, QWidget


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
