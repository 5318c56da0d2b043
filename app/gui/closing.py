"""The window's last word with the database before it closes, without standing still.

Why: labels the database refused (another program holding the SQLite file, a server gone) get one
patient try when the window closes — each may wait the database's busy timeout — and the labels on
their way land first. That ran on the GUI thread: the window froze, undrawn and deaf, for as long as
the database kept it waiting (20 s and more on a locked file), with nothing on screen saying why.
Now the tries run on the label-writes thread behind a small dialog that says how many labels wait
and offers **Close now** (they go to a recovery file, replayed at the next start on the revision they
were made on); the window closes itself when the answer comes. A close with nothing waiting is as
quick as before.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QMessageBox, QProgressDialog

if TYPE_CHECKING:
    from PySide6.QtWidgets import QWidget

    from app.gui.review_controller import ReviewController

log = logging.getLogger(__name__)


class ClosingLabels(QObject):
    """Asked by the window's close handler whether it may close now (``ready``); when labels wait, it shows
    the dialog, lets the label-writes thread try them, and closes the window itself when done."""

    QUICK_S = 0.5  # labels on their way usually land in milliseconds: waited for here, no dialog

    def __init__(self, window: QWidget, review: ReviewController, interactive: bool,
                 questions: list[Callable[[], str | None]] | None = None) -> None:
        super().__init__(window)
        self.window, self.review, self.interactive = window, review, interactive
        self.questions = questions if questions is not None else []  # what closing would stop (asked first)
        self._asked = False
        self.dialog: QProgressDialog | None = None
        self._running = False
        self._done = False
        self._copies: list[Path] = []  # recovery files written as the close began (keep_safe)
        self.abandoned = False  # "Close now": the writes on their way are not waited for

    def ready(self) -> bool:
        """True: the window may close (nothing waits, or the last try has answered). False: it stays open while
        the labels are tried (the dialog says so) and closes itself afterwards."""
        if self._done:
            return True
        if self._running:
            return False
        if not self._asked and not self._confirmed():
            return False
        self._asked = True
        self.review.wait_for_writes(self.QUICK_S)
        if self.review.writes_idle() and not self.review.pending():
            self._done = True
            return True
        self._running = True
        try:  # a copy first: a station killed during the last try (a logout's SIGKILL) loses no label
            self._copies = self.review.keep_safe()
        except Exception as exc:  # noqa: BLE001 - the try goes on; what it leaves is written again afterwards
            log.warning("could not copy the waiting labels before the last try: %s", exc)
        self._show()
        self.review.settle_before_close(self._answered)
        return False

    def _drop_copies(self) -> None:
        """The last try has answered (or the person closed now): what still waits is written afresh."""
        for path in self._copies:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not remove %s: %s (replaying it is harmless)", path, exc)
        self._copies = []

    def _confirmed(self) -> bool:
        """Work closing would stop (a retraining) is said and the person decides; without a person (tests,
        scripts, a termination signal in a headless run) the station closes."""
        said = []
        for question in self.questions:
            try:
                text = question()
            except Exception as exc:  # noqa: BLE001 - a broken question must not keep the station open; logged
                log.warning("close question failed: %s", exc)
                continue
            if text:
                said.append(text)
        if not said or not self.interactive:
            return True
        return QMessageBox.question(
            self.window, "Close the station?", "\n\n".join(said) + "\n\nClose the station anyway?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No) == QMessageBox.StandardButton.Yes

    def _show(self) -> None:
        n = len(self.review.pending()) or 1
        dialog = QProgressDialog(self.window)
        dialog.setWindowTitle("Saving labels")
        dialog.setLabelText(f"Saving {n} label(s) before the station closes: the database has not accepted them "
                            "yet and may keep them waiting a while.\n\nClose now keeps them in a recovery file; "
                            "the next start saves them.")
        dialog.setCancelButtonText("Close now")
        dialog.setRange(0, 0)  # no figure to give: the database answers when it answers
        dialog.setMinimumDuration(0)
        dialog.setAutoClose(False)
        dialog.setAutoReset(False)
        dialog.setWindowModality(Qt.WindowModality.WindowModal)  # no new edits while the last ones are tried
        dialog.canceled.connect(self._close_now)
        dialog.show()
        self.dialog = dialog

    def _answered(self, all_saved: bool) -> None:
        if self._done:  # closed already ("Close now")
            return
        self._hide()
        self._drop_copies()
        if all_saved:
            self._finish()
        elif self._rescue(on_the_way=False):
            self._finish()

    def _close_now(self) -> None:
        if self._done:
            return
        self._hide()
        self._drop_copies()
        if self._rescue(on_the_way=True):
            self.abandoned = True
            self._finish()

    def _rescue(self, on_the_way: bool) -> bool:
        """Write what waits to a recovery file; False when the person chose to keep the window open."""
        try:
            where = self.review.rescue_pending(on_the_way=on_the_way)
        except Exception as exc:  # noqa: BLE001 - closing must not lose labels; the person is asked
            answer = QMessageBox.critical(
                self.window, "Labels not saved",
                f"{len(self.review.pending())} label(s) could not be saved nor written to a recovery file "
                f"({exc}). Close anyway and lose them?",
                QMessageBox.StandardButton.Cancel | QMessageBox.StandardButton.Discard)
            if answer != QMessageBox.StandardButton.Discard:
                self._running = False
                self._asked = False  # the next close asks again about what it would stop
                self.review.cancel_close()
                return False
            log.error("closing without %d label(s): %s", len(self.review.pending()), exc)
            return True
        if where is not None and self.interactive:
            QMessageBox.information(
                self.window, "Labels kept for later",
                f"The database did not accept {len(self.review.pending())} label(s); they were written to {where} "
                "and will be saved the next time the station opens this database.")
        return True

    def _hide(self) -> None:
        if self.dialog is not None:
            self.dialog.canceled.disconnect(self._close_now)
            self.dialog.close()
            self.dialog.deleteLater()
            self.dialog = None

    def _finish(self) -> None:
        self._done = True
        self._running = False
        self.window.close()
