"""The open image's prediction must reach the review panel even when the prediction refresh
overtakes the image's own read (the read began before the job wrote the prediction)."""
from __future__ import annotations

import threading

import pytest

pytest.importorskip("PySide6")

from app.gui.review_controller import ReviewController  # noqa: E402
from app.services.review_types import ImageDetail, LabelState, PredictionView, QueueItem  # noqa: E402


class _SlowService:
    """detail() blocks until released and answers what the database held when the read began."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.item = QueueItem(image_id=7, folder_id=1, rel_path="a.png", path="/x/a.png")

    def detail(self, image_id: int) -> ImageDetail:
        stale = ImageDetail(self.item, 10, 10, None, LabelState())
        self.release.wait(5)
        return stale


def _with_prediction(item: QueueItem, pid: int) -> ImageDetail:
    pred = PredictionView(prediction_ids={"classifier": pid}, predicted_class="scratches", confidence=0.9)
    return ImageDetail(item, 10, 10, pred, LabelState())


def test_a_refresh_that_overtakes_the_open_read_is_kept(qtbot):
    service = _SlowService()
    ctl = ReviewController(service)
    try:
        with qtbot.waitSignal(ctl.loading):
            ctl.open_image(7)
        ctl.show_new_prediction(_with_prediction(service.item, 3))  # arrives first
        with qtbot.waitSignal(ctl.image_loaded, timeout=5000):
            service.release.set()
        assert ctl.detail is not None and ctl.detail.prediction is not None
        assert ctl.detail.prediction.predicted_class == "scratches"
    finally:
        service.release.set()
        ctl.close()


def test_an_older_refresh_does_not_replace_a_newer_read(qtbot):
    service = _SlowService()
    newer = _with_prediction(service.item, 9)
    service.detail = lambda image_id: (service.release.wait(5), newer)[1]  # type: ignore[method-assign]
    ctl = ReviewController(service)
    try:
        ctl.open_image(7)
        ctl.show_new_prediction(_with_prediction(service.item, 3))
        with qtbot.waitSignal(ctl.image_loaded, timeout=5000):
            service.release.set()
        assert ctl.detail.prediction.prediction_ids == {"classifier": 9}
    finally:
        service.release.set()
        ctl.close()
