"""Undoable label edits: each command swaps an image's whole label between two states.

Both directions go through the controller, which saves a new revision: undo never deletes
history, it records that the label went back (the audit trail shows both).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtGui import QUndoCommand

from app.services.review_types import LabelState

if TYPE_CHECKING:
    from app.gui.review_controller import ReviewController

_MERGE_ID = 4711


class LabelEdit(QUndoCommand):
    def __init__(self, controller: "ReviewController", image_id: int, before: LabelState,
                 after: LabelState, text: str, changed: str, follow: bool = True) -> None:
        super().__init__(text)
        self.controller = controller
        self.image_id = image_id
        self.before = before
        self.after = after
        self.changed = changed
        self.follow = follow  # undo brings the image back on screen (not for bulk decisions)

        self._pushed = False  # the first redo is the edit itself, later ones are a redo

    def redo(self) -> None:
        if not self.controller.apply_label(self.image_id, self.after, self.changed, self.follow, replay=self._pushed):
            self.setObsolete(True)  # refused (saved elsewhere meanwhile): the stack drops this step
        self._pushed = True

    def undo(self) -> None:
        if not self.controller.apply_label(self.image_id, self.before, f"undo {self.changed}", self.follow,
                                           replay=True):
            self.setObsolete(True)
