"""Help → Keyboard shortcuts: the shortcut table, grouped, searchable by eye."""
from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTableWidget, QTableWidgetItem, QVBoxLayout

from app.gui.shortcuts import SHORTCUTS


class ShortcutsDialog(QDialog):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.resize(640, 640)
        rows = [s for s in SHORTCUTS if not s.id.startswith("class_") or s.id == "class_1"]
        table = QTableWidget(len(rows), 3, self)
        table.setObjectName("shortcutTable")
        table.setHorizontalHeaderLabels(["Group", "Keys", "Action"])
        for r, s in enumerate(rows):
            keys = "1 … 9" if s.id == "class_1" else " / ".join(s.keys)
            text = "Set the image's class (n-th class of the label panel)" if s.id == "class_1" else s.text
            for c, v in enumerate((s.group, keys, text)):
                table.setItem(r, c, QTableWidgetItem(v))
        table.resizeColumnsToContents()
        table.horizontalHeader().setStretchLastSection(True)
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(table)
        lay.addWidget(buttons)
        self.table = table
