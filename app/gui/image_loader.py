"""Full-size image decoding off the GUI thread; only the newest request's result is used."""
from __future__ import annotations

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from app.services.display import DisplayError, load_rgb


class _Relay(QObject):
    done = Signal(int, int, object, str)  # ticket, image_id, rgb | None, error


class _Load(QRunnable):
    def __init__(self, relay: _Relay, ticket: int, image_id: int, path: str) -> None:
        super().__init__()
        self.relay, self.ticket, self.image_id, self.path = relay, ticket, image_id, path

    def run(self) -> None:
        try:
            self.relay.done.emit(self.ticket, self.image_id, load_rgb(self.path), "")
        except DisplayError as exc:
            self.relay.done.emit(self.ticket, self.image_id, None, exc.reason)
        except Exception as exc:  # a decoder bug shows as a reason, never a frozen viewer
            self.relay.done.emit(self.ticket, self.image_id, None, f"{type(exc).__name__}: {exc}")


class ImageLoader(QObject):
    loaded = Signal(int, object, str)  # image_id, rgb | None, error

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._relay = _Relay(self)
        self._relay.done.connect(self._done)
        self._ticket = 0

    def request(self, image_id: int, path: str) -> None:
        self._ticket += 1
        self._pool.clear()
        self._pool.start(_Load(self._relay, self._ticket, image_id, path))

    def _done(self, ticket: int, image_id: int, rgb, error: str) -> None:
        if ticket == self._ticket:
            self.loaded.emit(image_id, rgb, error)

    def wait_idle(self, msecs: int = 10_000) -> bool:
        return self._pool.waitForDone(msecs)
