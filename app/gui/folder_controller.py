"""Opening folders: indexing runs on a helper thread (10,000 files hash for seconds), the window
keeps working and the status bar counts the progress. Re-scans of an open folder (``rescan``: files a
line adds while the folder is open, ``app/gui/folder_follow.py``) run on the same thread, after any
opening in flight, so two indexings of one folder never race."""
from __future__ import annotations

import logging
import time

from PySide6.QtCore import QObject, Signal

from app.gui.folder_browser import FolderBrowser
from app.gui.thumbnails import DecodePool, off_thread
from app.services.wording import plural

log = logging.getLogger(__name__)
RESCAN_LOST_S = 600.0


class FolderController(QObject):
    opened = Signal(object)     # FolderInfo, after indexing
    indexed = Signal(object)    # FolderInfo, once its indexing is done (right after its last ``opened``)
    failed = Signal(str)
    message = Signal(str)
    noted = Signal(str)                       # an opening's note (what was not indexed, trace problems): it stays a while
    _done = Signal(str, object, str)          # path, FolderInfo | None, error (from the indexer)
    _progress = Signal(str, int, int, str)    # path, done, total, phase
    _first = Signal(object)                   # FolderInfo: the first page is indexed (from the indexer)
    _listed = Signal(object, object)          # folder to select, [FolderInfo] | error text (from the lister)
    rescanned = Signal(object)                # FolderChange of a re-scan
    rescan_failed = Signal(int, str)          # folder id, why the re-scan failed
    _rescanned = Signal(int, object, str)     # folder id, FolderChange | None, error (from the indexer)

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
        self._rescanning: float | None = None  # when the re-scan on its way was queued
        self._rescanned.connect(self._on_rescanned)

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

    def rescan(self, folder_id: int) -> bool:
        """Bring an open folder up to date with the disk on the indexer thread; ``rescanned`` says what
        changed. False (nothing queued) while a re-scan is still on its way (one queued RESCAN_LOST_S ago
        counts as lost: the indexer drops waiting work when many folders are opened at once)."""
        now = time.monotonic()
        if self._rescanning is not None and now - self._rescanning < RESCAN_LOST_S:
            return False
        self._rescanning = now

        def work() -> None:
            try:
                change = self.service.rescan_folder(folder_id)
            except Exception as exc:  # noqa: BLE001 - thread boundary; the follower says it
                self._rescanned.emit(folder_id, None, str(exc))
            else:
                self._rescanned.emit(folder_id, change, "")
        self._indexer.submit(work)
        return True

    def _on_rescanned(self, folder_id: int, change, error: str) -> None:
        self._rescanning = None
        if change is None:
            self.rescan_failed.emit(folder_id, error)
            return
        if change.any:
            self.refresh(folder_id)  # the folder list's image counts
        self.rescanned.emit(change)

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
        said = f"{info.name}: {plural(info.image_count, 'image')}" + (f" ({info.note})" if info.note else "")
        # a note was wiped at once by the job and label lines that follow an opening (seen under Xvfb, session 43)
        (self.noted if info.note else self.message).emit(said)
        self.opened.emit(info)
        self.indexed.emit(info)

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
