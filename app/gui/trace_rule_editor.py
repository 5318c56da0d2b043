"""The project's trace rule in the Settings dialog, with a live preview on the open folder's names.

Why a preview: a regular expression is easy to get almost right; showing what it reads from
the first file names of the open folder (serial, lot, station, or "no match") while typing
catches that before every folder is re-read. The names are handed in as plain data (the rows
the gallery already holds), so typing never waits on the database.
"""
from __future__ import annotations

from collections.abc import Sequence
from html import escape

from PySide6.QtWidgets import QCheckBox, QLabel, QLineEdit, QVBoxLayout, QWidget

from app.services.trace import TraceRule, TraceRuleError, preview

PREVIEW_NAMES = 5


class TraceRuleEditor(QWidget):
    def __init__(self, rule: TraceRule, names: Sequence[str] = (), parent=None) -> None:
        super().__init__(parent)
        self._names = list(names)[:PREVIEW_NAMES]
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.pattern = QLineEdit(rule.pattern)
        self.pattern.setPlaceholderText(r"e.g. (?P<lot>L\d+)/(?P<serial>SN\d+)_(?P<station>st\d)")
        self.pattern.setToolTip("A regular expression searched in each image's path inside its folder, "
                                "with named groups serial, lot and/or station")
        self.use_csv = QCheckBox("Also read trace.csv in the folder (file,serial,lot,station; it wins)")
        self.use_csv.setChecked(rule.use_csv)
        self.preview = QLabel()
        self.preview.setObjectName("tracePreview")
        self.preview.setWordWrap(True)
        lay.addWidget(self.pattern)
        lay.addWidget(self.use_csv)
        lay.addWidget(self.preview)
        self.pattern.textChanged.connect(self._update)
        self._update()

    def rule(self) -> TraceRule:
        """The rule as typed; TraceRuleError says what is wrong with the pattern."""
        return TraceRule(pattern=self.pattern.text().strip(), use_csv=self.use_csv.isChecked())

    def problem(self) -> str | None:
        try:
            self.rule()
        except TraceRuleError as exc:
            return str(exc)
        return None

    def _update(self) -> None:
        try:
            found = preview(self.pattern.text().strip(), self._names)
        except TraceRuleError as exc:
            self.preview.setText(f"<span style='color:#d14343'>{escape(str(exc))}</span>")
            return
        if not self.pattern.text().strip():
            self.preview.setText("No pattern: serial, lot and station come only from trace.csv, if read.")
            return
        if not found:
            self.preview.setText("Open a folder to preview the pattern on its file names.")
            return
        lines = []
        for name, trace in found:
            fields = ", ".join(f"{k} {escape(v)}" for k, v in zip(("serial", "lot", "station"), trace) if v)
            lines.append(f"{escape(name)} → {fields or 'no match'}")
        self.preview.setText("<br>".join(lines))
