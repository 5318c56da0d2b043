"""Thumbnails decoded off the GUI thread and kept in a bounded cache.

The gallery asks for a thumbnail every time it paints a cell; a miss queues a decode (newest
first, so scrolling fast through 10,000 images decodes what is on screen now, not what flew
past) and the cell repaints when ``ready`` fires. Decoder threads only produce numpy arrays
(``display.Thumbnail``); the QPixmap is made here, on the GUI thread.
"""
from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from typing import Callable

from PySide6.QtCore import QObject, QThreadPool, Signal, SignalInstance
from PySide6.QtGui import QImage, QPixmap

from app.paths import cache_dir
from app.services.display import Thumbnail
from app.services.thumbnail_store import ThumbnailStore, cached_thumbnail


def rgb_to_qimage(rgb) -> QImage:
    """uint8 (h, w, 3) or (h, w, 4) contiguous array -> a QImage that owns its pixels."""
    h, w = rgb.shape[:2]
    fmt = QImage.Format.Format_RGBA8888 if rgb.shape[2] == 4 else QImage.Format.Format_RGB888
    return QImage(rgb.data, w, h, rgb.strides[0], fmt).copy()


class DecodePool:
    """A QThreadPool taking plain callables newest-first; past ``capacity`` waiting jobs the
    queue is cleared (what is still wanted is asked for again by the next repaint)."""

    def __init__(self, threads: int, capacity: int, name: str) -> None:
        self._pool = QThreadPool()
        self._pool.setMaxThreadCount(max(1, threads))
        self._pool.setObjectName(name)
        self._capacity = capacity
        self._order = itertools.count()
        self._waiting = 0
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> bool:
        """Queue ``job``; True when the waiting jobs were dropped to make room."""
        with self._lock:
            cleared = self._waiting >= self._capacity
            if cleared:
                self._pool.clear()
                self._waiting = 0
            self._waiting += 1

        def run() -> None:
            with self._lock:
                self._waiting = max(0, self._waiting - 1)
            job()
        # Higher priority runs first: the newest request wins.
        self._pool.start(run, min(next(self._order), 2_000_000_000))
        return cleared

    def clear(self) -> None:
        with self._lock:
            self._pool.clear()
            self._waiting = 0

    def wait_idle(self, timeout_s: float) -> bool:
        return self._pool.waitForDone(int(timeout_s * 1000))

    def close(self) -> None:
        self.clear()
        self._pool.waitForDone(10_000)


def off_thread(pool: DecodePool, done: SignalInstance, key: object, work: Callable[[], object]) -> None:
    """Run ``work`` on ``pool``; ``done(key, its result or the error's text)`` reaches the GUI thread."""
    def run() -> None:
        try:
            done.emit(key, work())
        except Exception as exc:  # noqa: BLE001 - thread boundary; the reason goes to the GUI thread
            done.emit(key, str(exc))
    pool.submit(run)


class ThumbnailCache(QObject):
    ready = Signal(int)
    _decoded = Signal(object)

    MAX_PENDING = 256

    def __init__(self, size: int = 160, capacity: int = 3000, threads: int = 2,
                 parent: QObject | None = None, store: ThumbnailStore | None | bool = True) -> None:
        """``store``: the on-disk cache across sessions (True: the station's own, under its
        cache folder; False/None: none)."""
        super().__init__(parent)
        self.size = size
        self.store = ThumbnailStore(cache_dir() / "thumbnails") if store is True else (store or None)
        self.capacity = capacity
        # keyed by the image and its bytes: by the id alone, a file replaced while another folder was open kept its
        # old thumbnail beside the viewer's new pixels, and a decode of the old bytes answering after an invalidate
        # was kept for good (session-46 probes)
        self._pixmaps: OrderedDict[tuple[int, str | None], QPixmap] = OrderedDict()
        self._errors: dict[tuple[int, str | None], str] = {}
        self._pending: set[tuple[int, str | None]] = set()
        self._lock = threading.Lock()
        self._pool = DecodePool(threads, self.MAX_PENDING, "thumbnails")
        self._decoded.connect(self._on_done)
        self.decoded_count = 0

    def pixmap(self, image_id: int, path: str, content_hash: str | None = None) -> QPixmap | None:
        """The cached thumbnail, or None (and a decode is queued unless it already failed);
        ``content_hash`` finds it in the on-disk cache when an earlier session decoded it."""
        key = (image_id, content_hash)
        pm = self._pixmaps.get(key)
        if pm is not None:
            self._pixmaps.move_to_end(key)
            return pm
        if key not in self._errors and key not in self._pending:
            if self._pool.submit(lambda: self._decode(image_id, path, content_hash)):
                self._pending.clear()  # scrolled far: queued decodes were dropped, repaints ask again
            self._pending.add(key)
        return None

    def _decode(self, image_id: int, path: str, content_hash: str | None) -> None:
        thumb = cached_thumbnail(self.store, image_id, path, self.size, content_hash)
        self._decoded.emit((thumb, content_hash))  # queued to the GUI thread

    def error(self, image_id: int, content_hash: str | None = None) -> str | None:
        return self._errors.get((image_id, content_hash))

    def invalidate(self, image_id: int | None = None) -> None:
        if image_id is None:
            self._pixmaps.clear()
            self._errors.clear()
        else:
            for table in (self._pixmaps, self._errors):
                for key in [k for k in table if k[0] == image_id]:
                    table.pop(key, None)

    def wait_idle(self, msecs: int = 10_000) -> bool:
        ok = self._pool.wait_idle(msecs / 1000.0)
        from PySide6.QtCore import QCoreApplication
        QCoreApplication.processEvents()  # deliver the decoded thumbnails
        return ok

    def shutdown(self) -> None:
        self._pool.close()

    def _on_done(self, done: tuple[Thumbnail, str | None]) -> None:
        thumb, content_hash = done
        key = (thumb.image_id, content_hash)
        self._pending.discard(key)
        self.decoded_count += 1
        if thumb.rgb is None:
            self._errors[key] = thumb.error or "cannot be decoded"
        else:
            self._pixmaps[key] = QPixmap.fromImage(rgb_to_qimage(thumb.rgb))
            while len(self._pixmaps) > self.capacity:
                self._pixmaps.popitem(last=False)
        self.ready.emit(thumb.image_id)
