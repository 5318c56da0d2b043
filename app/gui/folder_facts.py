"""The open folder's class names and anomaly threshold, read off the GUI thread.

Opening a folder, or learning that models changed, needs two small reads from storage: the
classifier's class names (hotkeys, filters) and the folder's image-level anomaly threshold
(badges, the queue's score filter). On a busy PostgreSQL server or a locked SQLite file either
can wait for seconds, so they run on a helper thread and the GUI thread only applies the answer
— and only if that folder is still the one on screen.
"""
from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.gui.thumbnails import DecodePool

log = logging.getLogger(__name__)


def read_facts(service: Any, folder_id: int) -> tuple[list[str], float, list[str], dict[int, float]]:
    """What ``FolderFacts.apply`` shows of a folder, read from storage (on a helper thread): the classes, the
    folder's anomaly threshold, the class filter's classes and each anomaly version's threshold there."""
    return (service.classes(), service.folder_anomaly_threshold(folder_id), service.filter_classes(),
            service.anomaly_thresholds(folder_id))


class FolderFacts(QObject):
    applied = Signal(int)          # folder id whose classes and threshold are now on screen
    _read_done = Signal(object)    # (folder id, classes, threshold) or (folder id, error string)

    def __init__(self, window: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.window = window
        self._reader = DecodePool(1, 2, "folder-facts")
        self._read_done.connect(self._apply_answer)

    def read(self, folder_id: int) -> None:
        """Read ``folder_id``'s classes and threshold on the helper thread, then show them."""
        service = self.window.ctx.review

        def job() -> None:
            try:
                self._read_done.emit((folder_id, *read_facts(service, folder_id)))
            except Exception as exc:  # noqa: BLE001 - thread boundary; the reason goes to the GUI thread
                self._read_done.emit((folder_id, str(exc) or type(exc).__name__))
        self._reader.submit(job)

    def apply(self, folder_id: int, classes: list[str], threshold: float,
              filter_classes: list[str] | None = None, thresholds: dict[int, float] | None = None) -> None:
        """Show classes and threshold read elsewhere (e.g. with a new prediction) for ``folder_id``;
        ``filter_classes``: the class filter's (default ``classes``; with routing that names a classifier
        version, its classes too); ``thresholds``: each anomaly version's, for the gallery's score chips."""
        win = self.window
        if win.current_folder != folder_id:
            return  # the inspector moved on; that folder's answer would mislabel this one
        win.label_panel.set_classes(classes)
        win.queue_panel.set_classes(filter_classes or classes)
        delegate = win.gallery.delegate
        before = (delegate.anomaly_threshold, dict(delegate.anomaly_thresholds))
        delegate.anomaly_threshold = threshold
        if thresholds is not None:
            delegate.anomaly_thresholds = dict(thresholds)
        if (delegate.anomaly_threshold, delegate.anomaly_thresholds) != before:
            # the chips are coloured against them: without a repaint the cells on screen kept the old colours until
            # something else redrew them (after an operating point was saved; a session-43 probe, 2 runs in 6)
            win.gallery.viewport().update()
        win.queue_panel.set_score_defaults(threshold)
        self.applied.emit(folder_id)

    def _apply_answer(self, answer: tuple[Any, ...]) -> None:
        if len(answer) == 2:
            folder_id, reason = answer
            log.warning("classes or threshold of folder %s unavailable: %s", folder_id, reason)
            return
        self.apply(*answer)

    def close(self) -> None:
        self._reader.close()
