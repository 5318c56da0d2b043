"""Project ▸ Model routing…: which model families pre-label which images (path patterns).

The rules are plain data (``app.services.routing``), a project setting stored in the database
and read and saved through the jobs service; this dialog only edits them. The table's row order is the rules' order (first match wins).
"""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from app.gui.dialog_rows import button_row, message_label
from app.services.routing import FAMILY_ORDER, Routing, RoutingError, RoutingRule

HELP = ("Images whose path inside their folder (or with the folder's name in front, e.g. "
        "<i>line3/*</i>) matches a pattern get only the ticked models; the first matching row "
        "wins, and images that match no row get every model. <i>*</i> matches any text, "
        "<i>?</i> one character. A row with nothing ticked skips its images.")


class RoutingDialog(QDialog):
    def __init__(self, routing: Routing, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Model routing")
        self.resize(640, 360)
        lay = QVBoxLayout(self)
        text = QLabel(HELP)
        text.setWordWrap(True)
        lay.addWidget(text)
        self.table = QTableWidget(0, 1 + len(FAMILY_ORDER))
        self.table.setHorizontalHeaderLabels(["pattern", *FAMILY_ORDER])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        lay.addWidget(self.table, 1)
        lay.addLayout(button_row((("Add rule", "mdi6.plus", lambda: self.add_rule(RoutingRule("*", tuple(FAMILY_ORDER)))),
                                  ("Remove", "mdi6.minus", self.remove_selected),
                                  ("Up", "mdi6.arrow-up", lambda: self.move_selected(-1)),
                                  ("Down", "mdi6.arrow-down", lambda: self.move_selected(1)))))
        self.error = message_label()
        lay.addWidget(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        for rule in routing.rules:
            self.add_rule(rule)

    def add_rule(self, rule: RoutingRule) -> None:
        r = self.table.rowCount()
        self.table.insertRow(r)
        self._fill(r, rule.pattern, rule.families)
        self.table.setCurrentCell(r, 0)

    def _fill(self, r: int, pattern: str, families: tuple[str, ...]) -> None:
        self.table.setItem(r, 0, QTableWidgetItem(pattern))
        for c, fam in enumerate(FAMILY_ORDER, start=1):
            item = QTableWidgetItem()
            item.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
            item.setCheckState(Qt.CheckState.Checked if fam in families else Qt.CheckState.Unchecked)
            self.table.setItem(r, c, item)

    def _row(self, r: int) -> tuple[str, tuple[str, ...]]:
        cell = self.table.item(r, 0)
        pattern = cell.text() if cell else ""
        fams = tuple(f for c, f in enumerate(FAMILY_ORDER, start=1)
                     if (box := self.table.item(r, c)) is not None and box.checkState() == Qt.CheckState.Checked)
        return pattern, fams

    def remove_selected(self) -> None:
        for r in sorted({i.row() for i in self.table.selectedIndexes()} or {self.table.currentRow()}, reverse=True):
            if r >= 0:
                self.table.removeRow(r)

    def move_selected(self, step: int) -> None:
        r = self.table.currentRow()
        to = r + step
        if r < 0 or not 0 <= to < self.table.rowCount():
            return
        a, b = self._row(r), self._row(to)
        self._fill(r, *b)
        self._fill(to, *a)
        self.table.setCurrentCell(to, 0)

    def routing(self) -> Routing:
        """The table as rules (RoutingError names the first bad row)."""
        rules = []
        for r in range(self.table.rowCount()):
            pattern, fams = self._row(r)
            try:
                rules.append(RoutingRule(pattern.strip(), fams))
            except RoutingError as exc:
                raise RoutingError(f"row {r + 1}: {exc}") from None
        return Routing(tuple(rules))

    def _accept(self) -> None:
        try:
            self.routing()
        except RoutingError as exc:
            self.error.setText(str(exc))
            return
        self.accept()


def open_routing_dialog(window) -> RoutingDialog | None:
    """The dialog on the project's current rules; None (with a message) when they cannot be read."""
    try:
        current = window.ctx.jobs.routing()
    except ValueError as exc:
        window._warn(f"The model routing cannot be read, so it is left as it is: {exc}")
        return None
    return RoutingDialog(current, window)


def install(window) -> None:
    action = window.actions["model_routing"]
    if window.ctx.jobs is None:
        action.setEnabled(False)
        action.setToolTip(f"{action.toolTip()} — not available: no worker configured")
        return

    def run() -> None:
        dlg = open_routing_dialog(window)
        while dlg is not None and dlg.exec() == QDialog.DialogCode.Accepted:
            try:
                window.ctx.jobs.save_routing(dlg.routing())
            except Exception as exc:  # noqa: BLE001 - e.g. a read-only project folder: warn, keep the edits on screen
                window._warn(str(exc))
                dlg = RoutingDialog(dlg.routing(), window)
                continue
            window.statusBar().showMessage("Model routing saved for the project: it applies to the next "
                                           "pre-label job.", 8000)
            if window.project is not None:
                window.project.reload()  # the Jobs dock's routing line follows
            return
    action.triggered.connect(run)
