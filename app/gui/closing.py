"""The window's last word with the database before it closes, without standing still.

Why: labels the database refused (another program holding the SQLite file, a server gone) get one
patient try when the window closes — each may wait the database's busy timeout — and the labels on
their way land first. That ran on the GUI thread: the window froze, undrawn and deaf, for as long as
the database kept it waiting (20 s and more on a locked file), with nothing on screen saying why.
Now the tries run on the label-writes thread behind a small dialog that says how many labels wait
and offers **Close now** (they go to a recovery file, replayed at the next start on the revision they
were made on); the window closes itself when the answer comes. A close with nothing waiting is as
quick as before.

Keys pressed for an image whose detail is still on its way, and a decision on a gallery selection whose images are
still being read (G on twenty parts, then Ctrl+Q), are intents no label holds yet: the window closed over them and
they were lost without a word (found by a session-43 probe). The close now waits for those reads to answer and their
labels to be made, then goes on as above; when that takes long, the same kind of dialog says so and offers
**Close now**, which says they are not applied (a flag already being written may still land).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtWidgets import QMessageBox, QProgressDialog

from app.services.wording import agree, plural

if TYPE_CHECKING:
    from PySide6.QtWidgets import QWidget

    from app.gui.review_controller import ReviewController

log = logging.getLogger(__name__)


class ClosingLabels(QObject):
    """Asked by the window's close handler whether it may close now (``ready``); when labels wait, it shows
    the dialog, lets the label-writes thread try them, and closes the window itself when done."""

    QUICK_S = 0.5  # labels on their way usually land in milliseconds: waited for here, no dialog
    INTENTS_POLL_MS = 50  # how often a close waiting for keys' and decisions' reads looks again

    def __init__(self, window: QWidget, review: ReviewController, interactive: bool,
                 questions: list[Callable[[], str | None]] | None = None) -> None:
        super().__init__(window)
        self.window, self.review, self.interactive = window, review, interactive
        self.questions = questions if questions is not None else []  # what closing would stop (asked first)
        self._asked = False
        self.dialog: QProgressDialog | None = None
        self._on_cancel: Callable[[], None] = self._close_now  # what the dialog's Close now does
        self._running = False
        self._done = False
        self._copies: list[Path] = []  # recovery files written as the close began (keep_safe)
        self.abandoned = False  # "Close now": the writes on their way are not waited for
        self.intents_dropped = False  # "Close now" while keys, decisions or flags waited for the database
        self._intents_since: float | None = None  # monotonic time the close began waiting for them
        self._lost: list[str] = []  # what of them the database did not take meanwhile (said before closing)
        self._intents_timer = QTimer(self)
        self._intents_timer.setInterval(self.INTENTS_POLL_MS)
        self._intents_timer.timeout.connect(self._intents_check)

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
        self.review.flags_last_try()  # flags waiting for the database get one patient try; one refused is asked about
        if not self.intents_dropped and self.review.intents_waiting():
            self._await_intents()
            return False
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

    def _await_intents(self) -> None:
        """Let the reads that keys and gallery decisions wait for answer (their labels are made then); the window
        is closed again afterwards. The events go on meanwhile: the answers arrive on this thread."""
        if self._intents_timer.isActive():
            return
        self._intents_since = time.monotonic()
        self._lost = []
        self.review.intent_lost.connect(self._on_lost)
        self._intents_timer.start()

    def _intents_check(self) -> None:
        self.review.flags_last_try()  # one refused while the close waited: its patient try now
        waiting = self.review.intents_waiting()
        if not waiting:
            self._intents_timer.stop()
            self._hide()
            self.review.intent_lost.disconnect(self._on_lost)
            if self._lost and not self._close_without_lost():
                return
            self.window.close()  # ready() again: the labels they made are saved like any other
            return
        if self.dialog is None and self._intents_since is not None \
                and time.monotonic() - self._intents_since >= self.QUICK_S:
            self._show(f"Applying {plural(waiting, 'key, decision or flag', 'keys, decisions or flags')} before the "
                       "station closes: the database "
                       "has not answered yet (the images they are for are still being read, or a flag is being "
                       "written).\n\nClose now closes without waiting: keys and decisions still waiting are not applied (a flag "
                       "already being written may still be stored).", self._close_without_intents)

    def _on_lost(self, text: str) -> None:
        self._lost.append(text)

    def _close_without_lost(self) -> bool:
        """Some of them failed (a flag on a database locked past its busy timeout, a selection that could not be
        read): seen under Xvfb, the flag was lost while the window closed over its one-line status message. The
        person is told and decides; False keeps the window open (nothing more is closed)."""
        text = "\n".join(f"• {t}" for t in self._lost[:5]) + (f"\n… and {len(self._lost) - 5} more"
                                                             if len(self._lost) > 5 else "")
        log.warning("closing: %d key(s), decision(s) or flag(s) not applied: %s", len(self._lost), "; ".join(self._lost))
        if not self.interactive:
            return True
        answer = QMessageBox.question(
            self.window, "Not applied",
            f"These were not applied before closing:\n\n{text}\n\nClose the station anyway? (No keeps it open, "
            "to try them again.)", QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No)
        if answer == QMessageBox.StandardButton.Yes:
            return True
        self._asked = False  # the next close asks again about what it would stop
        return False

    def _close_without_intents(self) -> None:
        self._intents_timer.stop()
        self._hide()
        self.review.intent_lost.disconnect(self._on_lost)
        waiting = self.review.intents_waiting()
        if waiting:
            log.warning("closing without %d key(s) or decision(s) whose images were still being read", waiting)
        self.intents_dropped = True
        self.window.close()

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

    def _show(self, text: str | None = None, close_now: Callable[[], None] | None = None) -> None:
        n = len(self.review.pending()) or 1
        dialog = QProgressDialog(self.window)
        dialog.setWindowTitle("Saving labels")
        them = agree(n, "it", "them")
        dialog.setLabelText(text or f"Saving {plural(n, 'label')} before the station closes: the database has not "
                            f"accepted {them} yet and may keep {them} waiting a while.\n\nClose now keeps {them} in a "
                            f"recovery file; the next start saves {them}.")
        dialog.setCancelButtonText("Close now")
        dialog.setRange(0, 0)  # no figure to give: the database answers when it answers
        dialog.setMinimumDuration(0)
        dialog.setAutoClose(False)
        dialog.setAutoReset(False)
        dialog.setWindowModality(Qt.WindowModality.WindowModal)  # no new edits while the last ones are tried
        self._on_cancel = close_now or self._close_now
        dialog.canceled.connect(self._on_cancel)
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
                f"{plural(len(self.review.pending()), 'label')} could not be saved nor written to a recovery file "
                f"({exc}). Close anyway and lose {agree(len(self.review.pending()), 'it', 'them')}?",
                QMessageBox.StandardButton.Cancel | QMessageBox.StandardButton.Discard)
            if answer != QMessageBox.StandardButton.Discard:
                self._running = False
                self._asked = False  # the next close asks again about what it would stop
                self.intents_dropped = False  # and waits for keys and flags again (the session-43 review)
                self.review.cancel_close()
                return False
            log.error("closing without %d label(s): %s", len(self.review.pending()), exc)
            return True
        if where is not None and self.interactive:
            QMessageBox.information(
                self.window, "Labels kept for later",
                f"The database did not accept {plural(len(self.review.pending()), 'label')}; "
                f"{agree(len(self.review.pending()), 'it was', 'they were')} written to {where} "
                "and will be saved the next time the station opens this database.")
        return True

    def _hide(self) -> None:
        if self.dialog is not None:
            self.dialog.canceled.disconnect(self._on_cancel)
            self.dialog.close()
            self.dialog.deleteLater()
            self.dialog = None

    def _finish(self) -> None:
        self._done = True
        self._running = False
        self.window.close()
