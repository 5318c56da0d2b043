"""Help → Keyboard shortcuts: the shortcut table, grouped, searchable by eye."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QHeaderView, QTableWidget, QTableWidgetItem, QVBoxLayout

from app.gui.screen_fit import fit_to_screen
from app.gui.shortcuts import CLASS_KEYS_TEXT, GALLERY_GROUP, GALLERY_KEYS, SHORTCUTS


class ShortcutsDialog(QDialog):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        fit_to_screen(self, 760, 680)
        rows = [(s.group, "1 … 9" if s.id == "class_1" else " / ".join(s.keys),
                 CLASS_KEYS_TEXT if s.id == "class_1" else s.text)
                for s in SHORTCUTS if not s.id.startswith("class_") or s.id == "class_1"]
        rows += [(GALLERY_GROUP, " / ".join(keys), text) for keys, text in GALLERY_KEYS]
        table = QTableWidget(len(rows), 3, self)
        table.setTabKeyNavigation(False)   # Tab reaches Close; the arrows walk the cells
        table.setObjectName("shortcutTable")
        table.setHorizontalHeaderLabels(["Group", "Keys", "Action"])
        for r, row in enumerate(rows):
            for c, v in enumerate(row):
                table.setItem(r, c, QTableWidgetItem(v))
        # Sized to contents, the Action column ran 1,200 px wide and was cut at the dialog's edge:
        # it takes the width that is left and wraps, each row as tall as its wrapped text.
        header = table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        table.setWordWrap(True)
        table.setTextElideMode(Qt.TextElideMode.ElideNone)
        table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(table)
        lay.addWidget(buttons)
        self.table = table
