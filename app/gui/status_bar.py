"""The status bar: counts per review state, unsaved labels, cursor position and pixel value."""
from __future__ import annotations

import time

from PySide6.QtWidgets import QLabel, QStatusBar

from app.gui.style import STATE_COLORS
from app.services.review_types import REVIEW_STATES
from app.services.wording import plural


class StationStatusBar(QStatusBar):
    cursor: QLabel  # type: ignore[assignment]  # shadows QWidget.cursor(): the pointer-position label
    SAY_MS = 5000
    NOTE_S = 8.0  # a note stays ahead of the messages that follow it this long

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.cursor = QLabel("")
        self.pending = QLabel("")
        self.counts = QLabel("")
        self.counts.setObjectName("stateCounts")
        self.addWidget(self.cursor, 1)
        self.addPermanentWidget(self.pending)
        self.addPermanentWidget(self.counts)
        self._sticky: tuple[str, float] = ("", 0.0)  # the last note and until when (monotonic) it stays ahead
        # A message longer than the bar is cut at its right end (seen under Xvfb, session 42: Accept's note ended
        # "… its verdict (G / D) yo"): hovering the bar shows the whole of it while it is there.
        self.messageChanged.connect(self.setToolTip)

    def say(self, text: str) -> None:
        """A passing message; within ``NOTE_S`` of a ``note`` it is added after the note instead of replacing it."""
        note, until = self._sticky
        left = until - time.monotonic()
        if note and left > 0 and text != note:
            self.showMessage(f"{note} · {text}", int(1000 * left) + 1)
            return
        self.showMessage(text, self.SAY_MS)

    def note(self, text: str) -> None:
        """A message the next ones are added to for ``NOTE_S`` instead of replacing it (seen under Xvfb: Accept's
        "without the segmenter's answer" was wiped at once by the move it makes, "No unreviewed image left")."""
        self._sticky = (text, time.monotonic() + self.NOTE_S)
        self.showMessage(text, int(1000 * self.NOTE_S))

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
        self.pending.setText(f"<b style='color:#d14343'>⚠ {plural(n, 'label')} not saved yet — retrying</b>" if n else "")
        if not n:
            self.pending.setToolTip("")

    def set_pending_reason(self, text: str) -> None:
        """Why the waiting labels wait (the last refusal), on the "not saved yet" mark."""
        self.pending.setToolTip(text)
