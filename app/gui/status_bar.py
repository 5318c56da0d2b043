"""The status bar: counts per review state, unsaved labels, cursor position and pixel value."""
from __future__ import annotations

from PySide6.QtWidgets import QLabel, QStatusBar

from app.gui.style import STATE_COLORS
from app.services.review_types import REVIEW_STATES


class StationStatusBar(QStatusBar):
    cursor: QLabel  # type: ignore[assignment]  # shadows QWidget.cursor(): the pointer-position label

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.cursor = QLabel("")
        self.pending = QLabel("")
        self.counts = QLabel("")
        self.counts.setObjectName("stateCounts")
        self.addWidget(self.cursor, 1)
        self.addPermanentWidget(self.pending)
        self.addPermanentWidget(self.counts)

    def set_counts(self, counts: dict[str, int]) -> None:
        """The folder's per-state counts; none: they are being counted (another folder)."""
        self.counts.setProperty("counts", dict(counts))
        if not counts:
            self.counts.setText("counting the review states …")
            return
        total = sum(counts.values())
        parts = [f"<span style='color:{STATE_COLORS[s].name()}'>●</span> {s} <b>{counts.get(s, 0)}</b>"
                 for s in REVIEW_STATES]
        done = total - counts.get("unreviewed", 0)
        pct = f" · {done / total:.0%} reviewed" if total else ""
        self.counts.setText("  ".join(parts) + f"  · {total} images{pct}")

    def set_pending(self, n: int) -> None:
        self.pending.setText(f"<b style='color:#d14343'>⚠ {n} label(s) not saved yet — retrying</b>" if n else "")
        if not n:
            self.pending.setToolTip("")

    def set_pending_reason(self, text: str) -> None:
        """Why the waiting labels wait (the last refusal), on the "not saved yet" mark."""
        self.pending.setToolTip(text)
