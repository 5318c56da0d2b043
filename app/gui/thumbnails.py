"""Thumbnails decoded off the GUI thread and kept in a bounded cache.

The gallery asks for a thumbnail every time it paints a cell; a miss starts a pool task (most
recent requests first, so scrolling fast through 10,000 images decodes what is on screen now,
not what flew past) and the cell repaints when ``ready`` fires. Pool threads only produce
numpy arrays (``display.Thumbnail``); the QPixmap is made here, on the GUI thread.
"""
from __future__ import annotations

import itertools
from collections import OrderedDict

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QImage, QPixmap

from app.services.display import Thumbnail, load_thumbnail


def rgb_to_qimage(rgb) -> QImage:
    """uint8 (h, w, 3) or (h, w, 4) contiguous array -> a QImage that owns its pixels."""
    h, w = rgb.shape[:2]
    fmt = QImage.Format.Format_RGBA8888 if rgb.shape[2] == 4 else QImage.Format.Format_RGB888
    return QImage(rgb.data, w, h, rgb.strides[0], fmt).copy()


class _Relay(QObject):
    done = Signal(object)


class _Task(QRunnable):
    def __init__(self, relay: _Relay, image_id: int, path: str, size: int) -> None:
        super().__init__()
        self.relay, self.image_id, self.path, self.size = relay, image_id, path, size

    def run(self) -> None:
        self.relay.done.emit(load_thumbnail(self.image_id, self.path, self.size))


class ThumbnailCache(QObject):
    ready = Signal(int)

    MAX_PENDING = 256

    def __init__(self, size: int = 160, capacity: int = 3000, threads: int = 2,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.size = size
        self.capacity = capacity
        self._pixmaps: OrderedDict[int, QPixmap] = OrderedDict()
        self._errors: dict[int, str] = {}
        self._pending: set[int] = set()
        self._order = itertools.count()
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max(1, threads))
        self._relay = _Relay(self)
        self._relay.done.connect(self._on_done)

    def pixmap(self, image_id: int, path: str) -> QPixmap | None:
        """The cached thumbnail, or None (and a decode is queued unless it already failed)."""
        pm = self._pixmaps.get(image_id)
        if pm is not None:
            self._pixmaps.move_to_end(image_id)
            return pm
        if image_id not in self._errors and image_id not in self._pending:
            if len(self._pending) >= self.MAX_PENDING:
                # Scrolled far: drop stale queued work; cells still on screen ask again on repaint.
                self._pool.clear()
                self._pending.clear()
            self._pending.add(image_id)
            self._pool.start(_Task(self._relay, image_id, path, self.size), next(self._order) % 1_000_000)
        return None

    def error(self, image_id: int) -> str | None:
        return self._errors.get(image_id)

    def invalidate(self, image_id: int | None = None) -> None:
        if image_id is None:
            self._pixmaps.clear()
            self._errors.clear()
        else:
            self._pixmaps.pop(image_id, None)
            self._errors.pop(image_id, None)

    def wait_idle(self, msecs: int = 10_000) -> bool:
        return self._pool.waitForDone(msecs)

    def shutdown(self) -> None:
        self._pool.clear()
        self._pool.waitForDone(5000)

    def _on_done(self, thumb: Thumbnail) -> None:
        self._pending.discard(thumb.image_id)
        if thumb.rgb is None:
            self._errors[thumb.image_id] = thumb.error or "cannot be decoded"
        else:
            self._pixmaps[thumb.image_id] = QPixmap.fromImage(rgb_to_qimage(thumb.rgb))
            while len(self._pixmaps) > self.capacity:
                self._pixmaps.popitem(last=False)
        self.ready.emit(thumb.image_id)
