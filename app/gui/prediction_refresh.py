"""When a job writes predictions: new badges in the queue and the open image's new prediction.

The reads (the queue, the model classes and threshold, the open image's detail with its heatmap)
run on helper threads; the GUI thread only applies their answers. The open image is re-read
whatever it showed before, so an image that was "not pre-labelled yet" when it was opened shows
its scores as soon as they are stored, without the inspector reopening or re-selecting it.
"""
from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Signal

from app.gui.folder_facts import read_facts
from app.gui.thumbnails import DecodePool

log = logging.getLogger(__name__)


class PredictionRefresher(QObject):
    _read_done = Signal(object)   # (folder id, classes, threshold, detail | None) or an error string

    def __init__(self, window, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.window = window
        self._reader = DecodePool(1, 1, "prediction-refresh")
        self._reading = False
        self._again = False
        self._read_done.connect(self._apply)

    def refresh(self) -> None:
        """Re-read what predictions change; a request during a read runs once that one is done."""
        win = self.window
        if win.current_folder is not None:
            win.queue.refresh_in_background()
        if self._reading:
            self._again = True
            return
        self._reading = True
        service, image_id = win.ctx.review, win.review.image_id
        folder_id = win.current_folder

        def read() -> None:
            try:
                service.refresh_models()
                detail = service.detail(image_id) if image_id is not None else None
                facts = read_facts(service, folder_id) if folder_id is not None else None
                self._read_done.emit((folder_id, facts, detail))
            except Exception as exc:  # noqa: BLE001 - the next job progress asks again
                self._read_done.emit(str(exc) or type(exc).__name__)
        self._reader.submit(read)

    def _apply(self, answer) -> None:
        self._reading = False
        if isinstance(answer, str):
            log.warning("refresh after new predictions failed: %s", answer)
        else:
            folder_id, facts, detail = answer
            win = self.window
            if folder_id is not None and facts is not None:
                classes, threshold, filter_classes, thresholds = facts
                win.folder_facts.apply(folder_id, classes, threshold, filter_classes, thresholds)
            if detail is not None:
                win.review.show_new_prediction(detail)
        if self._again:
            self._again = False
            self.refresh()

    def close(self) -> None:
        self._reader.close()
