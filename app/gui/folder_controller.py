"""Opening folders: indexing runs on a helper thread (10,000 files hash for seconds), the window
keeps working and the status bar counts the progress."""
from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Signal

from app.gui.folder_browser import FolderBrowser
from app.gui.thumbnails import DecodePool, off_thread

log = logging.getLogger(__name__)


class FolderController(QObject):
    opened = Signal(object)     # FolderInfo, after indexing
    failed = Signal(str)
    message = Signal(str)
    _done = Signal(str, object, str)          # path, FolderInfo | None, error (from the indexer)
    _progress = Signal(str, int, int, str)    # path, done, total, phase
    _first = Signal(object)                   # FolderInfo: the first page is indexed (from the indexer)
    _listed = Signal(object, object)          # folder to select, [FolderInfo] | error text (from the lister)

    def __init__(self, service, browser: FolderBrowser, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.service = service
        self.browser = browser
        self._indexer = DecodePool(1, 8, "indexer")
        self._done.connect(self._finish)
        self._progress.connect(self._on_progress)
        self._first.connect(self.opened)  # show the first page; ``opened`` comes again when done
        # The folder list counts each folder's images (0.1 s at a million): read off the GUI thread,
        # newest request first.
        self._lister = DecodePool(1, 1, "folder-list")
        self._listed.connect(self._on_listed)
        self.busy: set[str] = set()

    def open(self, path: str, wait: bool = True):
        """Index ``path`` and emit ``opened``; with ``wait`` return its FolderInfo (or None)."""
        self.message.emit(f"Indexing {path} …")
        if wait:
            try:
                info = self.service.open_folder(path)
            except Exception as exc:  # noqa: BLE001 - GUI slot; the reason is shown
                self._finish(path, None, str(exc))
                return None
            self._finish(path, info, "")
            return info
        self.busy.add(path)

        def work() -> None:
            try:
                info = self.service.open_folder(path, lambda d, t, ph: self._progress.emit(path, d, t, ph),
                                                on_first=self._first.emit)
            except Exception as exc:  # noqa: BLE001 - thread boundary; logged and shown
                log.warning("indexing %s failed: %s", path, exc)
                self._done.emit(path, None, str(exc))
            else:
                self._done.emit(path, info, "")
        self._indexer.submit(work)
        return None

    def _on_progress(self, path: str, done: int, total: int, phase: str) -> None:
        what = "found" if phase == "scan" or not total else f"hashed {done}/{total}"
        self.message.emit(f"Indexing {path}: {done if not total else what} …" if phase == "scan"
                          else f"Indexing {path}: {what} …")

    def _finish(self, path: str, info, error: str) -> None:
        self.busy.discard(path)
        if info is None:
            self.failed.emit(f"Cannot open {path}: {error}")
            return
        self.refresh(info.id)
        self.message.emit(f"{info.name}: {info.image_count} images" + (f" ({info.note})" if info.note else ""))
        self.opened.emit(info)

    def refresh(self, current: int | None = None) -> None:
        """Re-list the folders (with their image counts) on a helper thread."""
        off_thread(self._lister, self._listed, current, self.service.folders)

    def _on_listed(self, current: int | None, folders) -> None:
        if isinstance(folders, str):
            self.failed.emit(f"Cannot list the folders: {folders}")
        else:
            self.browser.set_folders(folders, current)

    def wait_idle(self, msecs: int = 30_000) -> bool:
        ok = self._indexer.wait_idle(msecs / 1000.0) and self._lister.wait_idle(msecs / 1000.0)
        from PySide6.QtCore import QCoreApplication
        QCoreApplication.processEvents()
        return ok

    def close(self) -> None:
        self._indexer.close()
        self._lister.close()
