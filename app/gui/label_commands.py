"""Undoable label edits: each command swaps an image's whole label between two states.

Both directions go through the controller, which saves a new revision: undo never deletes
history, it records that the label went back (the audit trail shows both).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import shiboken6
from PySide6.QtGui import QUndoCommand

from app.services.review_types import FlagDecision, LabelState

if TYPE_CHECKING:
    from app.gui.review_controller import ReviewController

_MERGE_ID = 4711


class LabelEdit(QUndoCommand):
    def __init__(self, controller: "ReviewController", image_id: int, before: LabelState,
                 after: LabelState, text: str, changed: str, follow: bool = True) -> None:
        super().__init__(text)
        self.controller = controller
        self.image_id = image_id
        # what the status bar says once it is undone or redone: the step's text, or its batch's (a session-47 audit:
        # Ctrl+Z jumped to another image and undid its class without a word)
        self.told = text
        self.before = before
        self.after = after
        self.changed = changed
        self.follow = follow  # undo brings the image back on screen (not for bulk decisions)

        self._pushed = False  # the first redo is the edit itself, later ones are a redo
        self.made_at = controller.edit_mark()  # a label of the image saved elsewhere after this refuses replays
        self._refused = False  # the database said the image was saved elsewhere first: this step never happened

    def _was_refused(self) -> None:
        """The answer came after the step was pushed. Next to the stack's index it is dropped now (an undo or
        redo that only deletes it: Ctrl+Z then reaches the step before); deeper, the undo or redo reaching it
        drops it."""
        if self._refused:  # a later write of the same step (its undo, made before the answer) is refused too
            return
        self._refused = True
        if not shiboken6.isValid(self):   # past the stack's limit (deleted) before its answer came: nothing to drop
            return
        self.setObsolete(True)
        stack = self.controller.undo_stack
        at = stack.index()
        if at > 0 and stack.command(at - 1) is self:
            stack.undo()
        elif at < stack.count() and stack.command(at) is self:
            stack.redo()

    def _foreign(self) -> bool:
        """Someone else's label of the image came after this step: a replay is not written, and said."""
        why = self.controller.foreign_after(self.image_id, self.made_at)
        if why is not None:
            self.controller.save_failed.emit(why)
        return why is not None

    def redo(self) -> None:
        if self._refused:
            self.setObsolete(True)
            return
        if self._pushed and self._foreign():
            return
        self.controller.apply_label(self.image_id, self.after, self.changed, self.follow, replay=self._pushed,
                                    refused=self._was_refused)
        if self._pushed:
            self.controller.message.emit(f"Redone: {self.told}")
        self._pushed = True

    def undo(self) -> None:
        if self._refused:  # nothing to take back (the status bar said so when it was refused): the stack drops it
            self.setObsolete(True)
            return
        if self._foreign():
            return
        self.controller.apply_label(self.image_id, self.before, f"undo {self.changed}", self.follow, replay=True,
                                    refused=self._was_refused)
        self.controller.message.emit(f"Undone: {self.told}")


class FlagEdit(QUndoCommand):
    """F on an image: undone and redone like a label change (it was not on the stack, and Ctrl+Z after F took back
    an older change on another image instead: a session-47 audit). A flag is no label revision: it is set back to
    the decision F replaced, whose it was included (the models', or another inspector's): undone, an F on an image
    the models had not flagged left "flag removed by" the inspector, kept over any later model flag (a session-51
    audit). Redone, it is the inspector's flag again."""

    def __init__(self, controller: "ReviewController", image_id: int, before: FlagDecision, after: FlagDecision,
                 name: str) -> None:
        super().__init__(f"{'flag' if after.flagged else 'unflag'} {name}")
        self.controller = controller
        self.image_id = image_id
        self.before, self.after = before, after
        self._pushed = False

    def redo(self) -> None:
        self.controller.apply_flag(self.image_id, self.after, replay=self._pushed)
        if self._pushed:
            self.controller.message.emit(f"Redone: {self.text()}")
        self._pushed = True

    def undo(self) -> None:
        self.controller.apply_flag(self.image_id, self.before, replay=True)
        self.controller.message.emit(f"Undone: {self.text()}")
