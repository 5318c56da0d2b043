"""Following the open folder: image files a line writes into it (or takes away) reach the queue
without re-opening it, and new ones are pre-labelled like those found when it was opened.

Why: a station stands beside a line that adds a part image every second or so; before this, the
window showed the folder as it was when opened until the inspector opened it again, and a
deleted file stayed in the queue. The folder is re-scanned on the indexer thread (an unchanged
folder costs one walk of its directory entries and no write); re-scans are spaced by at least
``FOLLOW_MS`` and by ``SPACING`` times the last scan's own duration, so a folder of a million
files (a walk of several seconds) takes a small share of one core. When the folder cannot be read
(an unplugged drive), the status bar says so once and the follower keeps trying, more slowly.
"""
from __future__ import annotations

import logging

from PySide6.QtCore import QObject, QTimer

log = logging.getLogger(__name__)

FOLLOW_MS = 5_000
SPACING = 10          # the next re-scan waits at least this many times the last one's duration
FAILED_MS = 30_000    # after a failed re-scan


class FolderFollower(QObject):
    def __init__(self, window, interval_ms: int = FOLLOW_MS) -> None:
        super().__init__(window)
        self.window = window
        self.interval_ms = interval_ms
        self._failed_with: str | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.scan)
        ctl = window.folder_ctl
        ctl.rescanned.connect(self._rescanned)
        ctl.rescan_failed.connect(self._rescan_failed)
        self._timer.start(interval_ms)

    def scan(self) -> None:
        """Re-scan the shown folder now (the timer calls it; the next one is planned when it ends)."""
        folder_id = self.window.current_folder
        ctl = self.window.folder_ctl
        if folder_id is None or ctl.busy or not ctl.rescan(folder_id):
            self._timer.start(self.interval_ms)  # nothing shown, or an opening still indexing

    def _rescanned(self, change) -> None:
        self._failed_with = None
        self._timer.start(max(self.interval_ms, int(SPACING * change.seconds * 1000)))
        if not change.any:
            return
        w = self.window
        if change.renamed_to is not None:   # renamed on disk: the Folders panel names its new path, and the image on
            w.refresh_folders(w.current_folder)  # screen is read again from there (its panel named the old one)
            if change.folder_id == w.current_folder:
                w.review.reload()
        if change.folder_id == w.current_folder:
            for image_id in change.new_ids:  # a replaced file's thumbnail shows its new pixels
                w.thumbs.invalidate(image_id)
            w.queue.refresh_in_background()  # keeps the shown image and the gallery's position
            w.queue.update_counts()
            for image_id in (*change.moved_ids, *change.new_ids):  # the panel names the file on screen by its
                w.review.reload_if_shown(image_id)              # new path; a replaced one shows its new pixels
            label_next = getattr(w, "label_next", None)
            if label_next is not None and (change.gone or change.restored):
                # a proposal whose file went is done, one put back is left again; untold, the line counted a gone one
                # as left for good and P stayed on the image before it (a session-50 audit)
                label_next.refresh()
            notice = getattr(w, "routing_notice", None)
            if notice is not None and (change.new_ids or change.moved_ids):  # seen: a new bottles/ subfolder got
                notice.files_arrived(change.folder_id, (*change.new_ids, *change.moved_ids))  # every family, unnamed
        auto = getattr(w, "auto_prelabel", None)
        if change.new_ids and auto is not None:  # of those, only images no active model has seen are queued
            auto.folder_opened(change.folder_id, change.new_ids)
        w.statusBar().showMessage(change.summary(), 8000)
        log.info("%s", change.summary())

    def _rescan_failed(self, folder_id: int, error: str) -> None:
        self._timer.start(FAILED_MS)
        if error != self._failed_with:  # once per cause, not every few seconds
            self._failed_with = error
            log.warning("re-scan of folder %d failed: %s", folder_id, error)
            self.window.statusBar().showMessage(f"The open folder cannot be followed: {error}", 15000)

    def stop(self) -> None:
        self._timer.stop()


def install(window) -> None:
    """Follows every shown folder; ``FOLLOW_MS`` 0 turns it off (the GUI tests do, but for their own)."""
    if FOLLOW_MS <= 0:
        return
    window.folder_follow = FolderFollower(window, FOLLOW_MS)
    window.ctx.closers.append(window.folder_follow.stop)
