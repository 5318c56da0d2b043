"""The review session: the current image, its label, and every edit as an undoable revision.

Widgets call the intent methods (``set_class``, ``set_mask``, ``accept`` …); each becomes a
``LabelEdit`` on the undo stack whose redo/undo call ``apply_label``, which saves a revision
through the review service at once (autosave). A save that fails (locked database, full disk)
keeps the label in memory, says so, and is retried; nothing an inspector did is dropped.
"""
from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QUndoStack

from app.gui.label_commands import LabelEdit
from app.services.review_types import ImageDetail, LabelState, QueueItem

log = logging.getLogger(__name__)


class ReviewController(QObject):
    image_loaded = Signal(object)      # ImageDetail
    label_changed = Signal(object)     # LabelState of the current image
    item_changed = Signal(object)      # QueueItem with fresh badges
    counts_changed = Signal()
    message = Signal(str)              # status bar
    save_failed = Signal(str)          # a reason to show prominently
    pending_changed = Signal(int)      # labels waiting for the database

    RETRY_MS = 3000

    def __init__(self, service, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.service = service
        self.undo_stack = QUndoStack(self)
        self.detail: ImageDetail | None = None
        self.label: LabelState | None = None
        self.image_size: tuple[int, int] | None = None  # (w, h) once the viewer decoded the pixels
        self._pending: dict[int, tuple[LabelState, str]] = {}
        self._retry = QTimer(self)
        self._retry.setInterval(self.RETRY_MS)
        self._retry.timeout.connect(self.flush_pending)

    # -- loading --------------------------------------------------------------------------
    @property
    def image_id(self) -> int | None:
        return None if self.detail is None else self.detail.item.image_id

    def open_image(self, image_id: int) -> None:
        if self.image_id == image_id:
            return
        self.reload(image_id)

    def reload(self, image_id: int | None = None) -> None:
        image_id = self.image_id if image_id is None else image_id
        if image_id is None:
            return
        try:
            detail = self.service.detail(image_id)
        except Exception as exc:  # the database went away: say so, keep the session
            log.exception("cannot load image %s", image_id)
            self.save_failed.emit(f"Cannot load image {image_id}: {exc}")
            return
        pending = self._pending.get(image_id)
        label = pending[0] if pending else detail.label
        if self.detail is None or self.detail.item.image_id != image_id:
            self.image_size = None
        self.detail = detail
        self.label = label
        self.image_loaded.emit(detail)
        self.label_changed.emit(label)

    def show_new_prediction(self, detail: ImageDetail) -> None:
        """The open image re-read on a helper thread after a job wrote predictions: its prediction
        (or pre-labelling failure) is shown; the label on screen, maybe mid-edit, is kept."""
        if self.detail is None or detail.item.image_id != self.image_id:
            return
        if (detail.prediction is None and self.detail.prediction is None
                and detail.prelabel_error == self.detail.prelabel_error):
            return
        if (detail.prediction is not None and self.detail.prediction is not None
                and detail.prediction.prediction_ids == self.detail.prediction.prediction_ids):
            return
        self.detail = replace(detail, label=self.detail.label)
        self.image_loaded.emit(self.detail)

    def clear(self) -> None:
        self.detail = None
        self.label = None

    # -- intents (each is one undoable step) ----------------------------------------------
    def _edit(self, after: LabelState, text: str, changed: str) -> None:
        if self.detail is None or self.label is None:
            return
        if after.same_content(self.label):
            return
        self.undo_stack.push(LabelEdit(self, self.detail.item.image_id, self.label, after, text, changed))

    def _corrected(self, **changes) -> LabelState:
        assert self.label is not None
        state = "corrected"
        return self.label.with_(review_state=state, **changes)

    def set_class(self, name: str | None) -> None:
        if self.label is not None:
            self._edit(self._corrected(class_name=name), f"class → {name}", "class")

    def set_class_index(self, index: int) -> None:
        classes = self.service.classes()
        if 0 <= index < len(classes):
            self.set_class(classes[index])
        else:
            self.message.emit(f"There is no class {index + 1} (the model knows {len(classes)}).")

    def set_mask(self, mask: np.ndarray | None) -> None:
        if self.label is not None:
            self._edit(self._corrected(mask=_none_if_empty(mask)), "paint mask", "mask")

    def set_region(self, region: np.ndarray | None) -> None:
        if self.label is None:
            return
        region = _none_if_empty(region)
        changes = {"anomaly_region": region}
        if region is not None:
            changes["anomaly_verdict"] = "anomalous"  # a marked region means the part is anomalous
        self._edit(self._corrected(**changes), "paint anomaly region", "anomaly_region")

    def mask_edited(self, target: str, mask: np.ndarray) -> None:
        (self.set_mask if target == "mask" else self.set_region)(mask)

    def set_verdict(self, verdict: str | None) -> None:
        if self.label is None:
            return
        changes = {"anomaly_verdict": verdict}
        if verdict == "normal":
            changes["anomaly_region"] = None
        self._edit(self._corrected(**changes), f"verdict → {verdict}", "anomaly_verdict")

    def accept(self) -> None:
        if self.detail is None or self.label is None:
            return
        after = self.service.accepted_label(self.detail, self.label, self.image_size)
        if after.same_content(self.label):
            self.message.emit("Already accepted.")
            return
        self._edit(after, "accept prediction", "accept")

    def decide_many(self, image_ids: list[int], decision: str) -> int:
        """Accept (predictions as they are) or reject several images as one undoable step."""
        if decision not in ("accept", "reject"):
            raise ValueError(decision)
        edits = []
        for image_id in image_ids:
            try:
                detail = self.service.detail(image_id)
            except Exception as exc:
                self.save_failed.emit(f"Cannot read image {image_id}: {exc}")
                continue
            before = self._pending.get(image_id, (detail.label, ""))[0]
            after = (self.service.accepted_label(detail, before) if decision == "accept"
                     else before.with_(review_state="rejected"))
            if not after.same_content(before):
                edits.append(LabelEdit(self, image_id, before, after, decision, decision, follow=False))
        if edits:
            # A macro (not parent/child commands): the stack owns every command it is pushed.
            self.undo_stack.beginMacro(f"{decision} {len(edits)} images")
            for edit in edits:
                self.undo_stack.push(edit)
            self.undo_stack.endMacro()
            self.message.emit(f"{decision.capitalize()}ed {len(edits)} image(s); Ctrl+Z undoes them together.")
        return len(edits)

    def reject(self) -> None:
        if self.label is not None:
            self._edit(self.label.with_(review_state="rejected"), "reject image", "reject")

    def restore_revision(self, revision: int) -> None:
        """Bring an earlier revision back (itself a new, undoable revision)."""
        if self.detail is None or self.label is None:
            return
        try:
            old = self.service.revision_label(self.detail.item.image_id, revision)
        except Exception as exc:
            self.save_failed.emit(f"Cannot read revision {revision}: {exc}")
            return
        self._edit(old.with_(revision=self.label.revision), f"restore revision {revision}", "restore")

    def clear_label(self) -> None:
        if self.label is not None:
            self._edit(LabelState(), "clear label", "clear")

    def toggle_flag(self) -> None:
        if self.detail is None:
            return
        try:
            item = self.service.set_flag(self.detail.item.image_id, not self.detail.item.flagged)
        except Exception as exc:
            self.save_failed.emit(f"Could not change the flag: {exc}")
            return
        self.detail = ImageDetail(item, self.detail.width, self.detail.height, self.detail.prediction, self.detail.label)
        self.item_changed.emit(item)
        self.message.emit("Flagged." if item.flagged else "Flag removed.")

    # -- applying (called by undo commands) ------------------------------------------------
    def apply_label(self, image_id: int, state: LabelState, changed: str, follow: bool = True) -> None:
        saved = self._save(image_id, state, changed)
        shown = saved if saved is not None else state
        if self.image_id == image_id:
            self.label = shown
            self.label_changed.emit(shown)
        elif self.image_id is not None and follow:
            # Undo of an edit made on another image: bring that image back so the change is seen.
            self.reload(image_id)

    def _save(self, image_id: int, state: LabelState, changed: str) -> LabelState | None:
        try:
            saved = self.service.save_label(image_id, state, changed)
        except Exception as exc:
            self._pending[image_id] = (state, changed)
            self._retry.start()
            self.pending_changed.emit(len(self._pending))
            self.save_failed.emit(f"Could not save the label ({exc}). It is kept and will be saved "
                                  "as soon as the database accepts it.")
            return None
        self._pending.pop(image_id, None)
        self.pending_changed.emit(len(self._pending))
        self._after_save(image_id)
        return saved

    def _after_save(self, image_id: int) -> None:
        try:
            item = self.service.item(image_id)
        except Exception:
            return
        if self.detail is not None and self.detail.item.image_id == image_id:
            self.detail = ImageDetail(item, self.detail.width, self.detail.height, self.detail.prediction,
                                      self.detail.label)
        self.item_changed.emit(item)
        self.counts_changed.emit()

    def flush_pending(self) -> bool:
        """Retry labels the database refused; True when nothing is left waiting."""
        for image_id, (state, changed) in list(self._pending.items()):
            try:
                saved = self.service.save_label(image_id, state, changed)
            except Exception:
                continue
            del self._pending[image_id]
            if self.image_id == image_id:
                self.label = saved
            self._after_save(image_id)
            self.message.emit(f"Saved the label of image {image_id} that was waiting.")
        self.pending_changed.emit(len(self._pending))
        if not self._pending:
            self._retry.stop()
        return not self._pending

    def pending(self) -> dict[int, tuple[LabelState, str]]:
        return dict(self._pending)

    def rescue_pending(self) -> str | None:
        """On close with the database still refusing: write the waiting labels to files."""
        if not self._pending:
            return None
        return self.service.write_recovery({i: s for i, (s, _c) in self._pending.items()})


def _none_if_empty(mask: np.ndarray | None) -> np.ndarray | None:
    return None if mask is None or not mask.any() else mask.astype(bool)
