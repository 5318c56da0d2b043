"""The project's folders with their image counts; choosing one loads its review queue."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QToolButton, QVBoxLayout, QWidget

from app.gui.style import icon
from app.services.review_types import FolderInfo


class FolderBrowser(QWidget):
    folder_chosen = Signal(int)

    def __init__(self, open_action: QAction, parent=None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self.list = QListWidget()
        self.list.setObjectName("folders")
        self.list.currentItemChanged.connect(self._changed)
        lay.addWidget(self.list)
        add = QToolButton()
        add.setDefaultAction(open_action)
        add.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        lay.addWidget(add)
        self._silent = False

    def set_folders(self, folders: list[FolderInfo], current: int | None = None) -> None:
        self._silent = True
        self.list.clear()
        for f in folders:
            it = QListWidgetItem(icon("mdi6.folder-image"), f"{f.name}  ({f.image_count})")
            it.setToolTip(f.root_path)
            it.setData(Qt.ItemDataRole.UserRole, f.id)
            self.list.addItem(it)
            if f.id == current:
                self.list.setCurrentItem(it)
        self._silent = False

    def _changed(self, item: QListWidgetItem | None, _prev) -> None:
        if item is not None and not self._silent:
            self.folder_chosen.emit(int(item.data(Qt.ItemDataRole.UserRole)))
