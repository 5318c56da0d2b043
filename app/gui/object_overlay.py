"""Each object's number and class written beside it, and a box around the selected one.

Like the target rings, these are drawn in the view's foreground at a size counted in screen
pixels, so a 2×2-pixel target's class is readable at any zoom. Objects that take the image's
class are tagged in a muted colour, objects with a class of their own in white.
"""
from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import QGraphicsView

from app.services.object_classes import LabelObject

OWN_COLOR = QColor(255, 255, 255)
IMAGE_CLASS_COLOR = QColor(190, 190, 190)
SELECTED_COLOR = QColor(255, 214, 0)
SHADOW = QColor(0, 0, 0, 170)
MIN_BOX_PX = 10.0  # the selection box of a tiny object, on screen


class ObjectTags:
    def __init__(self) -> None:
        self.objects: list[LabelObject] = []
        self.selected: LabelObject | None = None

    def set_objects(self, objects: list[LabelObject], selected: LabelObject | None) -> None:
        self.objects, self.selected = list(objects), selected

    @staticmethod
    def text(obj: LabelObject) -> str:
        return f"{obj.number} {obj.shown_class}"  # as the Objects list says it: "1 no class (image's)", not "1 image class"

    def paint(self, painter: QPainter, view: QGraphicsView) -> None:
        """``painter`` is in scene coordinates (``drawForeground``); tags are drawn in screen pixels."""
        if not self.objects:
            return
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.resetTransform()
        font = QFont(painter.font())
        font.setPointSizeF(max(8.0, font.pointSizeF() * 0.9))
        painter.setFont(font)
        for obj in self.objects:
            x, y, w, h = obj.box
            top_left = view.mapFromScene(QPointF(x, y))
            bottom_right = view.mapFromScene(QPointF(x + w, y + h))
            box = QRectF(top_left.toPointF(), bottom_right.toPointF())
            if box.width() < MIN_BOX_PX or box.height() < MIN_BOX_PX:
                box = QRectF(box.center().x() - MIN_BOX_PX / 2, box.center().y() - MIN_BOX_PX / 2, MIN_BOX_PX, MIN_BOX_PX)
            chosen = self.selected is not None and obj.number == self.selected.number
            if chosen:
                pen = QPen(SELECTED_COLOR, 2.0, Qt.PenStyle.DashLine)
                painter.setPen(pen)
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawRect(box.adjusted(-3, -3, 3, 3))
            text = self.text(obj)
            width = painter.fontMetrics().horizontalAdvance(text) + 6
            tag = QRectF(box.right() + 4, box.top() - 16, width, 16)
            painter.fillRect(tag, SHADOW)
            color = SELECTED_COLOR if chosen else OWN_COLOR if obj.own_class else IMAGE_CLASS_COLOR
            painter.setPen(color)
            painter.drawText(tag, Qt.AlignmentFlag.AlignCenter, text)
        painter.restore()
