"""The review queue behind the gallery: filtering, ordering and keyboard navigation.

An image whose state changes stays where it is until the next refresh (even if it no longer
matches the filter), so the list never jumps under the inspector's cursor.
"""
from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Signal

from app.gui.gallery_model import GalleryModel
from app.gui.gallery_view import GalleryView
from app.gui.thumbnails import DecodePool
from app.services.review_types import QueueFilter, QueueItem

log = logging.getLogger(__name__)


class QueueController(QObject):
    current_changed = Signal(int)     # image id chosen (by click or keyboard)
    counts_changed = Signal(dict)     # review state -> count for the current folder
    message = Signal(str)
    failed = Signal(str)
    _read_done = Signal(object, object, str)  # filter, items | None, error (from the reader thread)

    def __init__(self, service, model: GalleryModel, view: GalleryView, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.service = service
        self.model = model
        self.view = view
        self.filter = QueueFilter()
        self._last_filter: QueueFilter | None = None
        self._reading = False
        self._awaiting = False   # a folder is being indexed: its images are not listed yet
        self._pending_nav = 0    # N / Shift+N pressed meanwhile, done once they are
        self._reader = DecodePool(1, 1, "queue-reader")
        self._read_done.connect(self._on_read)
        view.current_image_changed.connect(self.current_changed)

    def set_filter(self, flt: QueueFilter) -> None:
        self.filter = flt
        self.refresh()

    def refresh(self, keep: int | None = None) -> None:
        """Re-read the queue now (a user's filter change: the answer is awaited)."""
        keep = self.current_id() if keep is None else keep
        try:
            items = self.service.queue(self.filter)
        except Exception as exc:
            log.exception("queue query failed")
            self.failed.emit(f"Cannot read the review queue: {exc}")
            return
        self._apply(items, keep, self.filter)

    def refresh_in_background(self) -> None:
        """Re-read the queue on a helper thread (progress of a job: the window never waits);
        skipped while the previous read is still running."""
        if self._reading:
            return
        self._reading = True
        flt = self.filter

        def read() -> None:
            try:
                self._read_done.emit(flt, self.service.queue(flt), "")
            except Exception as exc:
                self._read_done.emit(flt, None, str(exc))
        self._reader.submit(read)

    def _on_read(self, flt: QueueFilter, items, error: str) -> None:
        self._reading = False
        if error:
            log.warning("background queue read failed: %s", error)
            return
        if flt == self.filter:  # the user changed the filter meanwhile: that answer wins
            self._apply(items, self.current_id(), flt)

    def _apply(self, items: list[QueueItem], keep: int | None, flt: QueueFilter) -> None:
        bar = self.view.verticalScrollBar()
        scroll = bar.value()
        reset = self.model.replace_items(items)
        if keep is not None and self.model.row_of(keep) is not None:
            if reset:
                self.view.select_image(keep)
                if flt == self._last_filter:
                    bar.setValue(scroll)  # same view, new data: stay where the inspector was
        elif items:
            self.view.select_image(items[0].image_id)
        self._last_filter = flt
        if items and self._awaiting:
            self._awaiting, delta, self._pending_nav = False, self._pending_nav, 0
            if delta:
                self._first_unreviewed(delta)
        self.update_counts()

    def await_items(self) -> None:
        """A folder is being indexed in the background: until its images are listed the gallery
        is empty, and an ``N`` pressed then is kept instead of going nowhere (issue 16)."""
        self._awaiting = True

    def stop_awaiting(self) -> None:
        self._awaiting, self._pending_nav = False, 0

    def update_counts(self) -> None:
        try:
            self.counts_changed.emit(self.service.counts(self.filter.folder_id))
        except Exception as exc:
            self.failed.emit(f"Cannot count the review states: {exc}")

    def update_item(self, item: QueueItem) -> None:
        self.model.update_item(item)

    def current_id(self) -> int | None:
        idx = self.view.currentIndex()
        item = self.model.item_at(idx.row()) if idx.isValid() else None
        return None if item is None else item.image_id

    def select(self, image_id: int) -> bool:
        return self.view.select_image(image_id)

    def select_alone(self, image_id: int) -> bool:
        """Select ``image_id`` and nothing else (after an undo: the next decision is for it only)."""
        return self.view.select_image(image_id, alone=True)

    def step(self, delta: int) -> bool:
        n = self.model.rowCount()
        if not n:
            return False
        idx = self.view.currentIndex()
        row = (idx.row() if idx.isValid() else -1) + delta
        if not 0 <= row < n:
            self.message.emit("End of the queue." if delta > 0 else "Start of the queue.")
            return False
        return self.view.select_image(self.model.item_at(row).image_id)

    def next_unreviewed(self, delta: int = 1) -> bool:
        """Move to the next (or previous) unreviewed image in the queue's order, wrapping once."""
        n = self.model.rowCount()
        if not n:
            if self._awaiting:
                self._pending_nav = delta
                self.message.emit("The folder is still being indexed: its first unreviewed image is shown "
                                  "as soon as it is listed.")
            return False
        idx = self.view.currentIndex()
        start = idx.row() if idx.isValid() else (-1 if delta > 0 else n)
        for k in range(1, n + 1):
            row = (start + delta * k) % n
            item = self.model.item_at(row)
            if item is not None and item.review_state == "unreviewed" and row != start:
                return self.view.select_image(item.image_id)
        self.message.emit("No unreviewed image left in this view.")
        return False

    def _first_unreviewed(self, delta: int) -> bool:
        """The first (``delta`` > 0) or last unreviewed image of the queue, the current one included."""
        n = self.model.rowCount()
        rows = range(n) if delta > 0 else range(n - 1, -1, -1)
        for row in rows:
            item = self.model.item_at(row)
            if item is not None and item.review_state == "unreviewed":
                return self.view.select_image(item.image_id)
        self.message.emit("No unreviewed image left in this view.")
        return False

    def selected_ids(self) -> list[int]:
        return self.view.selected_ids()

    def close(self) -> None:
        self._reader.close()
