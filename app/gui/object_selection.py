"""Which object (a region of the mask) the inspector has selected, and setting its own class.

The objects of an image are the components of its labelled mask, or, before anything was
labelled, of the predicted mask: a predicted target can get a class straight away (the
prediction's mask becomes the label's, as a correction). An object is selected by a click in the
viewer, by Tab reaching its ring, or in the label panel's list; while one is selected, the class
keys (1–9) and buttons set *its* class instead of the image's. The selection is one pixel of the
object, so it follows the object through edits that keep that pixel and ends when it is erased
or another image opens. Each class change is one undoable revision like every other edit.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, Signal

from app.services.display import resize_to
from app.services.flags import answer_stands
from app.services.object_classes import Components, LabelObject, ObjectClassError, objects_of, with_class
from app.services.review_types import ImageDetail, LabelState

if TYPE_CHECKING:
    from app.gui.review_controller import ReviewController


class ObjectSelection(QObject):
    changed = Signal(object, object)  # list[LabelObject] of the image on screen, the selected one or None
    message = Signal(str)

    def __init__(self, review: ReviewController) -> None:
        super().__init__(review)
        self.review = review
        self.selected: tuple[int, int] | None = None  # (x, y): a pixel of the selected object
        self._image_id: int | None = None
        self._objects: list[LabelObject] = []
        self._comps: Components | None = None  # the object mask's components, for hit tests
        review.image_loaded.connect(self._on_image)
        review.label_changed.connect(self._on_label)
        review.cleared.connect(self._on_cleared)

    # -- what there is --------------------------------------------------------------------
    def object_mask(self) -> np.ndarray | None:
        """The label's mask, else the prediction's at the image's size (None: no object). A label's empty mask is
        the inspector's answer (every target erased): its objects are none, not the prediction's again."""
        label, detail = self.review.label, self.review.detail
        if label is not None and label.mask is not None:
            return label.mask.astype(bool) if label.mask.any() else None
        p = detail.prediction if detail is not None else None
        if detail is None or p is None or p.mask is None or not p.mask.any():
            return None
        if not answer_stands("segmenter", p.out_of_domain):  # withheld (seen: a tag over an undrawn mask)
            return None
        size = self.review.image_size or (detail.width, detail.height)
        if size[0] and size[1]:
            return resize_to(p.mask.astype(bool), int(size[0]), int(size[1]), nearest=True)
        return p.mask.astype(bool)

    def objects(self) -> list[LabelObject]:
        return list(self._objects)

    def current(self) -> LabelObject | None:
        """The selected object as listed now (None: the image itself is selected, or the session has moved to
        another image whose detail is still on its way: the selection was the left image's, and a class key then
        would have set its object's class, with its mask, on the image coming; seen by a session-43 probe)."""
        if self.selected is None or self._comps is None or self.review.image_id != self._image_id:
            return None
        x, y = self.selected
        return self._object(self._comps.at(y, x))

    def _object(self, label: int) -> LabelObject | None:
        return next((o for o in self._objects if o.label == label), None) if label else None

    def _refresh(self) -> None:
        mask = self.object_mask()
        label = self.review.label or LabelState()
        before, held = self._comps, self.selected
        self._comps = None if mask is None else Components.of(mask)
        self._objects = objects_of(mask, label.objects, label.class_name, self._comps)
        if self.current() is None and held is not None and before is not None:
            self._follow(before, held)
        if self.current() is None:
            self.selected = None
        self.changed.emit(self.objects(), self.current())

    def _follow(self, before: Components, held: tuple[int, int]) -> None:
        """The selected object was edited under its anchor pixel (a stroke of the eraser over its corner): the
        selection goes to the part of the new mask that overlaps it, as its class does (``resolve``), rather than
        to the image, whose class the next key then set (a session-45 probe)."""
        k = before.at(held[1], held[0])
        if not k or self._comps is None or before.labels.shape != self._comps.labels.shape:
            return
        parts = self._comps.parts_over(before, k)
        obj = self._object(parts[0]) if parts else None
        if obj is not None:
            self.selected = (obj.seed.x, obj.seed.y)

    def _on_image(self, detail: ImageDetail) -> None:
        if detail.item.image_id != self._image_id:
            self._image_id = detail.item.image_id
            self.selected = None
        self._refresh()

    def _on_label(self, _label: LabelState) -> None:
        self._refresh()

    def _on_cleared(self) -> None:
        """No image under review: no object, none selected."""
        self._image_id, self.selected = None, None
        self._refresh()

    # -- selecting ------------------------------------------------------------------------
    def select(self, obj: LabelObject | None, quiet: bool = False) -> None:
        """Select ``obj`` (None: the image); ``quiet``: the caller says it already (Tab's "Target k/n")."""
        self.selected = None if obj is None else (obj.seed.x, obj.seed.y)
        self.changed.emit(self.objects(), self.current())
        if obj is not None and not quiet:
            self.message.emit(f"Object {obj.number}/{len(self._objects)} selected: 1–9 set its class "
                              "(click the background to set the image's class again).")

    def step(self, delta: int) -> LabelObject | None:
        """The next (``delta`` > 0) or previous object, wrapping (Tab on an image without predicted
        targets: painted regions are reached from the keyboard too); None when there is none."""
        n = len(self._objects)
        if not n:
            return None
        now = self.current()
        k = (0 if delta > 0 else n - 1) if now is None else (now.number - 1 + delta) % n
        self.select(self._objects[k])
        return self._objects[k]

    def select_number(self, number: int) -> None:
        """1-based, as the label panel lists them; 0 or out of range selects the image."""
        self.select(self._objects[number - 1] if 1 <= number <= len(self._objects) else None)

    def select_at(self, x: float, y: float, tolerance: float = 0.0) -> LabelObject | None:
        """The object under (x, y), else the nearest whose box is within ``tolerance`` image pixels
        (a two-pixel target is hard to hit when zoomed out); nothing there selects the image."""
        found = self.nearest(x, y, tolerance)
        self.select(found)
        return found

    def nearest(self, x: float, y: float, tolerance: float) -> LabelObject | None:
        hit = self._object(self._comps.at(int(y), int(x))) if self._comps is not None else None
        if hit is not None:
            return hit
        best, best_d = None, tolerance
        for o in self._objects:
            bx, by, bw, bh = o.box
            d = float(np.hypot(max(bx - x, 0.0, x - (bx + bw)), max(by - y, 0.0, y - (by + bh))))
            if d <= best_d:
                best, best_d = o, d
        return best

    # -- setting the class ------------------------------------------------------------------
    def set_class(self, class_name: str | None) -> None:
        """The selected object's own class (None: it takes the image's class again)."""
        obj, mask, label = self.current(), self.object_mask(), self.review.label
        if obj is None or mask is None or label is None:
            self.message.emit("No object selected: Tab or click an object first.")
            return
        try:
            objects = with_class(mask, label.objects, obj.seed.x, obj.seed.y, class_name)
        except ObjectClassError as exc:
            self.message.emit(str(exc))
            return
        what = class_name or "the image's class"
        self.review.set_object_classes(mask, objects, f"object {obj.number} → {what}")
