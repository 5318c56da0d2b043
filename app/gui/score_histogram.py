"""Two score histograms (reviewed normal, reviewed anomalous) with a threshold line to drag.

Drawn with QPainter: two bar series and two lines do not justify a plotting dependency. The
widget holds plain data (``app.services.operating_point.Histogram``) and reports the dragged
threshold; what a threshold costs is the dialog's business.
"""
from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.services.operating_point import Histogram

NORMAL = QColor(46, 139, 87, 150)       # green: reviewed normal
ANOMALOUS = QColor(200, 50, 50, 150)    # red: reviewed anomalous
MARGIN = (44, 12, 12, 30)               # left, top, right, bottom (room for the axis labels)


class ScoreHistogram(QWidget):
    thresholdChanged = Signal(float)   # dragged or clicked by the user (not when set from code)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(420, 200)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setCursor(Qt.CursorShape.SizeHorCursor)
        self.histogram: Histogram | None = None
        self.threshold: float | None = None
        self.optimum: float | None = None
        self._lo, self._hi = 0.0, 1.0

    def set_data(self, histogram: Histogram | None, threshold: float | None, optimum: float | None) -> None:
        self.histogram, self.optimum = histogram, optimum
        if histogram is not None:
            lo, hi = histogram.edges[0], histogram.edges[-1]
            values = [v for v in (lo, hi, threshold, optimum) if v is not None]
            span = (max(values) - min(values)) or 1.0
            self._lo, self._hi = min(values) - span * 0.03, max(values) + span * 0.03
        self.set_threshold(threshold)

    def set_threshold(self, threshold: float | None) -> None:
        self.threshold = threshold
        self.update()

    # -- geometry -------------------------------------------------------------------------
    def _plot(self) -> QRectF:
        left, top, right, bottom = MARGIN
        return QRectF(left, top, max(1, self.width() - left - right), max(1, self.height() - top - bottom))

    def x_of(self, score: float) -> float:
        r = self._plot()
        return r.left() + (score - self._lo) / (self._hi - self._lo) * r.width()

    def score_at(self, x: float) -> float:
        r = self._plot()
        frac = min(1.0, max(0.0, (x - r.left()) / r.width()))
        return self._lo + frac * (self._hi - self._lo)

    # -- mouse: press or drag anywhere puts the threshold there ----------------------------
    def mousePressEvent(self, event: QMouseEvent) -> None:
        self._drag_to(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._drag_to(event)

    def _drag_to(self, event: QMouseEvent) -> None:
        if self.histogram is None or event.button() not in (Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton):
            return
        self.set_threshold(self.score_at(event.position().x()))
        self.thresholdChanged.emit(self.threshold)

    # -- drawing --------------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        r = self._plot()
        text = self.palette().color(self.foregroundRole())
        p.setPen(QPen(text, 1))
        p.drawLine(r.bottomLeft(), r.bottomRight())
        p.drawLine(r.bottomLeft(), r.topLeft())
        h = self.histogram
        if h is None:
            p.drawText(r, Qt.AlignmentFlag.AlignCenter, "no reviewed scores")
            return
        top = max([*h.normal, *h.anomalous, 1])
        for counts, colour in ((h.normal, NORMAL), (h.anomalous, ANOMALOUS)):
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(colour)
            for i, n in enumerate(counts):
                if n:
                    x0, x1 = self.x_of(h.edges[i]), self.x_of(h.edges[i + 1])
                    bar = n / top * r.height()
                    p.drawRect(QRectF(x0, r.bottom() - bar, max(1.0, x1 - x0 - 1), bar))
        p.setPen(QPen(text, 1))
        p.drawText(QRectF(0, r.top() - 6, r.left() - 4, 14), Qt.AlignmentFlag.AlignRight, str(top))
        p.drawText(QRectF(0, r.bottom() - 8, r.left() - 4, 14), Qt.AlignmentFlag.AlignRight, "0")
        for value, align in ((h.edges[0], Qt.AlignmentFlag.AlignLeft), (h.edges[-1], Qt.AlignmentFlag.AlignRight)):
            x = self.x_of(value)
            box = QRectF(x - 80 if align == Qt.AlignmentFlag.AlignRight else x, r.bottom() + 4, 80, 14)
            p.drawText(box, align, f"{value:.{_digits(h.edges[0], h.edges[-1])}g}")
        p.drawText(QRectF(r.left(), r.bottom() + 14, r.width(), 14), Qt.AlignmentFlag.AlignCenter, "anomaly score")
        self._legend(p, r)
        if self.optimum is not None:  # its label low, the chosen one's high: both readable when they meet
            self._line(p, r, self.optimum, QPen(QColor(90, 90, 90), 1.5, Qt.PenStyle.DashLine), "optimum",
                       r.bottom() - 6)
        if self.threshold is not None:
            self._line(p, r, self.threshold, QPen(QColor(30, 90, 200), 2.5), f"{self.threshold:.4g}", r.top() + 12)

    def _line(self, p: QPainter, r: QRectF, score: float, pen: QPen, label: str, label_y: float) -> None:
        x = self.x_of(score)
        p.setPen(pen)
        p.drawLine(QPointF(x, r.top()), QPointF(x, r.bottom()))
        p.drawText(QPointF(x + 4, label_y), label)

    def _legend(self, p: QPainter, r: QRectF) -> None:
        x = r.right() - 170
        for i, (name, colour) in enumerate((("reviewed normal", NORMAL), ("reviewed anomalous", ANOMALOUS))):
            y = r.top() + 4 + i * 16
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(colour)
            p.drawRect(QRectF(x, y, 12, 10))
            p.setPen(self.palette().color(self.foregroundRole()))
            p.drawText(QPointF(x + 16, y + 10), name)


def _digits(lo: float, hi: float) -> int:
    """Significant digits that tell ``lo`` from ``hi`` (3 at least, 10 at most): a model whose scores saturate
    (0.99997 to 0.999999) drew "1" at both ends of the axis."""
    span, size = abs(hi - lo), max(abs(lo), abs(hi))
    if span <= 0 or size <= 0:
        return 3
    return int(min(10, max(3, math.ceil(math.log10(size / span)) + 2)))
