"""Full-size image decoding off the GUI thread; only the newest request's result is used."""
from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from app.gui.thumbnails import DecodePool
from app.services.display import DisplayError, load_for_viewer


class ImageLoader(QObject):
    loaded = Signal(int, object, str)  # image_id, ViewerPixels | None, error
    _done = Signal(int, int, object, str)  # ticket, image_id, ViewerPixels | None, error

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = DecodePool(1, 4, "image-loader")
        self._done.connect(self._deliver)
        self._ticket = 0

    def request(self, image_id: int, path: str) -> None:
        self._ticket += 1
        ticket = self._ticket
        self._pool.clear()
        self._pool.submit(lambda: self._load(ticket, image_id, path))

    def _load(self, ticket: int, image_id: int, path: str) -> None:
        try:
            self._done.emit(ticket, image_id, load_for_viewer(path), "")
        except DisplayError as exc:
            self._done.emit(ticket, image_id, None, exc.reason)
        except Exception as exc:  # noqa: BLE001 - a decoder bug shows as a reason, never a frozen viewer
            self._done.emit(ticket, image_id, None, f"{type(exc).__name__}: {exc}")

    def _deliver(self, ticket: int, image_id: int, pixels, error: str) -> None:
        if ticket == self._ticket:
            self.loaded.emit(image_id, pixels, error)

    def wait_idle(self, msecs: int = 10_000) -> bool:
        ok = self._pool.wait_idle(msecs / 1000.0)
        from PySide6.QtCore import QCoreApplication
        QCoreApplication.processEvents()
        return ok

    def close(self) -> None:
        self._pool.close()
