"""Rings around the predicted targets, drawn at a size an inspector can see at any zoom.

An infrared target can be 2×2 pixels of a 640×512 frame: as a cyan mask it vanishes once the
image is fitted to the window (issue 16). Each target gets a ring whose radius is counted in
screen pixels (never under ``MIN_RING_PX``) with a cosmetic pen, so zooming out keeps it visible
and zooming in still encloses the whole target. The rings are painted in the view's foreground,
not as scene items, because their size depends on the zoom.
"""
from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QGraphicsView

from app.gui.style import PRED_MASK_RGB
from app.services.display import Target

MIN_RING_PX = 14.0   # the smallest ring on screen, whatever the zoom
PAD_PX = 5.0         # gap between a large target's box and its ring, on screen
RING_COLOR = QColor(*PRED_MASK_RGB)
CURRENT_COLOR = QColor(255, 255, 255)


class TargetRings:
    """The targets of the image on screen and which one Tab has reached (-1: none yet)."""

    def __init__(self) -> None:
        self.targets: list[Target] = []
        self.current = -1

    def set_targets(self, targets: list[Target]) -> None:
        self.targets = list(targets)
        self.current = -1

    def step(self, delta: int) -> Target | None:
        """The next (``delta`` > 0) or previous target, wrapping; None when there is none."""
        n = len(self.targets)
        if not n:
            return None
        self.current = (0 if delta > 0 else n - 1) if self.current < 0 else (self.current + delta) % n
        return self.targets[self.current]

    @staticmethod
    def radius_px(target: Target, scale: float) -> float:
        """The ring's radius on screen at view scale ``scale`` (screen pixels per image pixel)."""
        return max(MIN_RING_PX, target.radius * scale + PAD_PX)

    def paint(self, painter: QPainter, view: QGraphicsView) -> None:
        """Draw every ring; ``painter`` is in scene coordinates (``drawForeground``)."""
        if not self.targets:
            return
        scale = max(view.transform().m11(), 1e-6)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        for k, t in enumerate(self.targets):
            current = k == self.current
            pen = QPen(CURRENT_COLOR if current else RING_COLOR, 3.0 if current else 1.5)
            pen.setCosmetic(True)  # width in screen pixels at any zoom
            painter.setPen(pen)
            r = self.radius_px(t, scale) / scale
            painter.drawEllipse(QPointF(t.cx, t.cy), r, r)
        if 0 <= self.current < len(self.targets):
            t = self.targets[self.current]
            at = view.mapFromScene(QPointF(t.cx, t.cy))
            r = self.radius_px(t, scale)
            painter.resetTransform()  # the label in screen pixels, beside the ring
            painter.setPen(CURRENT_COLOR)
            painter.drawText(QRectF(at.x() + r + 4, at.y() - 10, 120, 20), Qt.AlignmentFlag.AlignVCenter,
                             f"target {self.current + 1}/{len(self.targets)}")
        painter.restore()
