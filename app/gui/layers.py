"""Overlay layers of the viewer: a raster item (heatmap, predicted mask) and an editable mask.

The editable mask is a QImage the brush, eraser and polygon paint into directly (cheap on
big images: only the touched rectangle repaints); ``to_bool`` turns it back into the numpy
mask the review service stores as a PNG revision.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QImage, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from app.gui.thumbnails import rgb_to_qimage


class RasterLayer(QGraphicsItem):
    """An image-sized RGBA overlay drawn as is (opacity via ``setOpacity``)."""

    def __init__(self, z: float) -> None:
        super().__init__()
        self.setZValue(z)
        self._img = QImage()
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)

    def boundingRect(self) -> QRectF:
        return QRectF(0, 0, self._img.width(), self._img.height())

    def paint(self, p: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        if not self._img.isNull():
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
            p.drawImage(0, 0, self._img)

    def set_rgba(self, rgba: np.ndarray | None) -> None:
        self.prepareGeometryChange()
        self._img = QImage() if rgba is None else rgb_to_qimage(np.ascontiguousarray(rgba)).convertToFormat(
            QImage.Format.Format_ARGB32_Premultiplied)
        self.update()

    def is_empty(self) -> bool:
        return self._img.isNull()


class MaskLayer(RasterLayer):
    """A binary mask shown in one colour, editable with round strokes and polygons."""

    def __init__(self, z: float, rgb: tuple[int, int, int]) -> None:
        super().__init__(z)
        self.color = QColor(*rgb)

    def reset(self, width: int, height: int, mask: np.ndarray | None) -> None:
        """Show ``mask`` (or nothing); pixels are only allocated for a mask or a first stroke,
        so a 10k x 10k image without labels costs no 400 MB layer."""
        self.prepareGeometryChange()
        self._size = (width, height)
        img = QImage()
        if mask is not None and mask.any():
            # One multiply straight into the layer's own pixel format (opaque, so premultiplied is
            # the plain colour): the threshold slider redraws a whole 4k region per step.
            argb = np.ascontiguousarray(mask, dtype=bool).astype(np.uint32) * np.uint32(self.color.rgba())
            img = QImage(argb.data, width, height, width * 4, QImage.Format.Format_ARGB32_Premultiplied).copy()
        self._img = img
        self.update()

    def boundingRect(self) -> QRectF:
        w, h = getattr(self, "_size", (self._img.width(), self._img.height()))
        return QRectF(0, 0, w, h)

    def _ensure(self) -> bool:
        if self._img.isNull():
            w, h = getattr(self, "_size", (0, 0))
            if not w or not h:
                return False
            self._img = QImage(w, h, QImage.Format.Format_ARGB32_Premultiplied)
            self._img.fill(Qt.GlobalColor.transparent)
        return True

    def to_bool(self) -> np.ndarray:
        img = self._img
        if img.isNull():
            w, h = getattr(self, "_size", (0, 0))
            return np.zeros((h, w), bool)
        h, w = img.height(), img.width()
        buf = np.frombuffer(img.constBits(), np.uint8, count=img.sizeInBytes())
        argb = buf.reshape(h, img.bytesPerLine())[:, : w * 4].reshape(h, w, 4)
        return (argb[..., 3] > 0).copy()  # little-endian ARGB32 is stored B, G, R, A

    def _painter(self, erase: bool) -> QPainter:
        p = QPainter(self._img)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        p.setCompositionMode(QPainter.CompositionMode.CompositionMode_Clear if erase
                             else QPainter.CompositionMode.CompositionMode_Source)
        return p

    def stroke(self, a: QPointF, b: QPointF, radius: float, erase: bool) -> None:
        if not self._ensure():
            return
        p = self._painter(erase)
        pen = QPen(self.color, max(1.0, 2 * radius), Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap,
                   Qt.PenJoinStyle.RoundJoin)
        p.setPen(pen)
        if a == b:
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QBrush(self.color))
            p.drawEllipse(a, radius, radius)
        else:
            p.drawLine(a, b)
        p.end()
        self.update(QRectF(a, b).normalized().adjusted(-radius - 2, -radius - 2, radius + 2, radius + 2))

    def fill_polygon(self, points: list[QPointF], erase: bool) -> None:
        if len(points) < 3 or not self._ensure():
            return
        p = self._painter(erase)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QBrush(self.color))
        p.drawPolygon(QPolygonF(points))
        p.end()
        self.update()
