"""Keeps the viewer in step with the review session: pixels arrive later than the label.

The image is decoded in the background; labels and predictions may change before it arrives,
so the newest of each is kept and applied once the pixels are there.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from app.gui.image_loader import ImageLoader
from app.gui.review_controller import ReviewController
from app.gui.style import OUT_OF_DOMAIN_TEXT as OUT_OF_DOMAIN
from app.gui.viewer import ViewerPane
from app.services.display import ViewerPixels
from app.services.flags import answer_stands
from app.services.review_types import ImageDetail, LabelState

# Viewer layer -> the family whose answer it draws: a layer is left empty where that family's model calls the
# image out of domain, as the label panel withholds the answer and Accept takes nothing from it.
LAYER_FAMILY = {"heatmap": "anomaly", "prediction": "segmenter"}


class ViewerController(QObject):
    STALE_MS = 200  # how long the previous image may stay on screen while the next one's pixels are read
    image_shown = Signal(int)  # image id, once its pixels are on screen
    # {layer: why it is not drawn}: OUT_OF_DOMAIN (its model calls the image so), or why its map is not here
    withheld = Signal(object)

    def __init__(self, pane: ViewerPane, review: ReviewController, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pane = pane
        self.viewer = pane.viewer
        self.review = review
        self.loader = ImageLoader(self)
        # The previous image's pixels and layers stay on screen while the next is decoded (no flicker at J), but not
        # for long: a session-44 probe, decoding delayed, had the panel on part 1 and the viewer on part 0's pixels and
        # heatmap, and D then saved a verdict for a part not seen. Past this, the viewer says the image is being read.
        self._stale = QTimer(self)
        self._stale.setSingleShot(True)
        self._stale.setInterval(self.STALE_MS)
        self._stale.timeout.connect(self._say_reading)
        self._detail: ImageDetail | None = None
        self._shown_id: int | None = None
        self._label: LabelState | None = None
        review.loading.connect(self._on_loading)
        review.image_loaded.connect(self._on_detail)
        review.label_changed.connect(self._on_label)
        review.cleared.connect(self._clear)
        self.loader.loaded.connect(self._on_pixels)
        self.viewer.mask_edited.connect(review.mask_edited)
        self.viewer.mask_start = review.mask_start

    def _on_loading(self, image_id: int) -> None:
        """Another image's detail is on its way: a stroke now would paint on the one it replaces."""
        if self._shown_id != image_id:
            self.viewer.editable = False
            self.viewer.end_stroke()

    def _on_detail(self, detail: ImageDetail) -> None:
        # the same image, and the same bytes: a file the line replaced under its name is read again
        same = (self._detail is not None and self._detail.item.image_id == detail.item.image_id
                and self._detail.item.content_hash == detail.item.content_hash)
        self._detail = detail
        if same and self._shown_id == detail.item.image_id:
            self._apply_prediction()
            return
        self._shown_id = None
        self.viewer.editable = False
        self._stale.start()
        self.loader.request(detail.item.image_id, detail.item.path)

    def _clear(self) -> None:
        """No image under review: the viewer is empty, as before the first folder (a late decode of the image left is
        dropped)."""
        self._stale.stop()
        self._detail, self._shown_id, self._label = None, None, None
        self.viewer.editable = False
        self.pane.show_image(None)
        self.withheld.emit({})

    def _say_reading(self) -> None:
        if self._detail is not None and self._shown_id != self._detail.item.image_id:
            self.pane.show_image(None, f"Reading {self._detail.item.rel_path} …")

    def _on_pixels(self, image_id: int, pixels: ViewerPixels | None, error: str) -> None:
        if self._detail is None or self._detail.item.image_id != image_id:
            return
        self._stale.stop()
        rgb = None if pixels is None else pixels.rgb
        message = "" if rgb is not None else f"Cannot show {self._detail.item.rel_path}:\n{error}"
        self.pane.show_image(rgb, message, pixels)
        self._shown_id = image_id
        self.viewer.editable = rgb is not None
        if self.review.image_id == image_id:
            if rgb is not None:
                self.review.image_size = (rgb.shape[1], rgb.shape[0])
            self.review.unreadable = None if rgb is not None else error  # A, the class and verdict keys refuse it
        self._apply_prediction()
        if self._label is not None:
            self.viewer.set_label_masks(self._label.mask, self._label.anomaly_region)
        self.image_shown.emit(image_id)

    def _apply_prediction(self) -> None:
        """Draw the prediction's heatmap and mask, but not a family's answer its model calls out of domain:
        seen under Xvfb, steel through the tile anomaly model painted the whole frame over threshold while
        the panel said "out of domain" and Accept took no verdict from it."""
        p = self._detail.prediction if self._detail else None
        answers: dict[str, np.ndarray | None] = {"heatmap": None if p is None else p.heatmap,
                                                 "prediction": None if p is None else p.mask}
        # a map this station does not hold is still the family's answer: "out of domain" is said over it
        made = {n: a is not None or (n == "heatmap" and p is not None and bool(p.heatmap_missing))
                for n, a in answers.items()}
        withheld = {n: OUT_OF_DOMAIN for n in answers
                    if p is not None and made[n] and not answer_stands(LAYER_FAMILY[n], p.out_of_domain)}
        if p is not None and p.heatmap_missing and "heatmap" not in withheld:
            withheld["heatmap"] = p.heatmap_missing  # made by a worker whose maps folder is not this station's
        heat = None if "heatmap" in withheld else answers["heatmap"]
        self.viewer.set_heatmap(heat, None if heat is None or p is None else p.heat_range)
        self.viewer.set_predicted_mask(None if "prediction" in withheld else answers["prediction"])
        self.withheld.emit(withheld)

    def _on_label(self, label: LabelState) -> None:
        previous, self._label = self._label, label
        if self._shown_id is None or self._detail is None or self._shown_id != self._detail.item.image_id:
            return
        if previous is not None and previous.same_content(label) and (self.viewer.stroking or self._masks_match(label)):
            # nothing to redraw; a stroke in progress keeps its pixels (the layer holds more than the label until it
            # ends: a save landing mid-stroke wiped the stroke's first half, from the screen and the save; a probe)
            return
        self.viewer.set_label_masks(label.mask, label.anomaly_region)

    def _masks_match(self, label: LabelState) -> bool:
        shown_mask, shown_region = self.viewer.mask.to_bool(), self.viewer.region.to_bool()
        same = (lambda a, b: (b is None and not a.any()) or (b is not None and a.shape == b.shape
                                                             and bool((a == b.astype(bool)).all())))
        return same(shown_mask, label.mask) and same(shown_region, label.anomaly_region)
