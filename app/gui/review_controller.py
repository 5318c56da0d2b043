"""The review session: the current image, its label, and every edit as an undoable revision.

Widgets call the intent methods (``set_class``, ``set_mask``, ``accept`` …); each becomes a
``LabelEdit`` on the undo stack whose redo/undo call ``apply_label``, which shows the label at
once and saves a revision through the review service on the label-writes thread, in the order
made (autosave; the GUI thread never waits for it). A save that fails (locked database, full
disk) keeps the label in memory, says so, and is retried; nothing an inspector did is dropped.

Opening an image reads its detail (a dozen queries and the heatmap file) on a helper thread, as
ADR 0005 asks, and the answer comes back as a queued signal; an answer for an image the
inspector has already left is dropped. An edit must never land on the previous image while the
next one is on its way, so a key pressed then waits for that answer and is applied when it
comes (it used to read the detail on the GUI thread); when the inspector moves on meanwhile, the
next image is opened after they are applied.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal, Slot
from PySide6.QtGui import QUndoStack

from app.gui.background import BackgroundCalls
from app.gui.label_commands import FlagEdit, LabelEdit
from app.gui.object_selection import ObjectSelection
from app.services.object_classes import ObjectClass, resolve
from app.services.review import (
    ASIDE,
    BUSY_IN_A_ROW,
    CONFLICTS,
    LabelConflict,
    LabelGone,
    Replay,
    ReviewError,
    StorageBusy,
    UnreadableImage,
    recovery_dir,
    set_aside_by_station,
)
from app.services.review_types import MISSING, FlagDecision, ImageDetail, LabelState, QueueItem, StateMove
from app.services.wording import agree, plural

log = logging.getLogger(__name__)
# The images whose last save's label is kept against reads that began before it landed: those reads come back within
# seconds, so the last few saved images are enough (masks make each entry up to megabytes).
LANDED_KEPT = 16


# What an inspector gives in place of a family's answer an Accept left out (its model called the image out of domain).
_GIVE_INSTEAD = {"classifier": "its class (keys 1-9)",
                 "segmenter": "its targets (B / L; one eraser stroke, E, says there are none)",
                 "anomaly": "its verdict (G / D)"}


def _withheld_many(withheld: dict[str, int], accepted: int) -> str:
    """The sentence an Accept on a gallery selection adds for the answers it left out, per family, e.g. " Not
    taken, out of its model's domain: the segmenter's answer on 1 of the 29; …". Seen under Xvfb (session 42):
    Ctrl+A, A on 30 infrared frames said only "Accepted 29 image(s)", and a frame the segmenter called foreign kept
    no mask, so it did not count for the segmenter's retraining, unsaid. Short, as the status bar shows it (its
    tooltip holds the whole of a longer one); the single A's note says what to give for each family."""
    if not withheld:
        return ""
    parts = [f"the {f}'s answer on {withheld[f]} of the {accepted}" for f in _GIVE_INSTEAD if f in withheld]
    return (" Not taken, out of its model's domain: " + ", ".join(parts)
            + "; give those yourself for the images to count for a retraining (filter: out of domain).")


def verdict_changes(verdict: str | None) -> dict[str, Any]:
    """The label changes an anomaly verdict makes: the verdict, and for "normal" no anomaly region (a good part has
    none). One home for the key on one image and on a gallery selection."""
    return {"anomaly_verdict": verdict, **({"anomaly_region": None} if verdict == "normal" else {})}


UNDO_STEPS = 100   # undo steps kept (older ones go): masks are held whole in each


class ReviewController(QObject):
    image_loaded = Signal(object)      # ImageDetail
    label_changed = Signal(object)     # LabelState of the current image
    item_changed = Signal(object)      # QueueItem with fresh badges
    state_moved = Signal(object)       # StateMove of a save (the shown counts move by it), right after item_changed
    message = Signal(str)              # status bar
    note = Signal(str)                 # status bar, kept ahead of the next messages a while (the move after A)
    save_failed = Signal(str)          # a reason to show prominently
    intent_lost = Signal(str)          # ... when it is a key, decision or flag that no label holds (told at close too)
    save_waiting = Signal(str)         # a refused save, kept and retried: said without stopping the inspector
    keys_waiting = Signal(bool)        # keys wait for an image's read (Undo then waits behind them: enabled)
    label_saved = Signal(int)          # image id whose label the database has just stored (after item_changed)
    state_guessed = Signal(object)     # StateMove of an edit on screen not stored yet: the counts move at once
    state_settled = Signal(object, object)  # that guess, and the stored StateMove (None: not saved / not known)
    bring_back = Signal(int)           # image id whose edit was refused after the window moved on: show it again
    pending_changed = Signal(int)      # labels waiting for the database
    replayed = Signal(int)             # image id whose edit an undo/redo just replayed
    loading = Signal(int)              # image id whose detail is being read (the screen still shows the last)
    cleared = Signal()                 # no image is under review any more (``clear``): nothing is shown
    history_read = Signal(object)      # list[RevisionInfo] of the image on screen (read on the history thread)
    decided_many = Signal(int)         # images a multi-selection Accept/Reject changed (after its off-thread read)
    _loaded = Signal(int, int, object, str)  # ticket, image id, ImageDetail | None, error (from the reader)
    _checked = Signal(int, int)              # image id, its newest label revision (from the reader)

    RETRY_MS = 3000
    SLOW_KEYS_MS = 500  # keys waiting for an image's detail this long are said in the status bar
    # How long a save from this (GUI) thread waits for another program's write lock before the label is
    # kept and retried: the database's own busy timeout (10 s) froze the window that long per key press.
    WRITE_WAIT_S = 0.25

    def __init__(self, service, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.service = service
        self.undo_stack = QUndoStack(self)
        # each step keeps the label before and after, masks whole (4 MiB a brush stroke on a 2048 x 2048 image): a
        # shift's strokes held 480 MiB and counting (a session-48 probe). The oldest steps go past this many.
        self.undo_stack.setUndoLimit(UNDO_STEPS)
        self.detail: ImageDetail | None = None
        self.label: LabelState | None = None
        self.image_size: tuple[int, int] | None = None  # (w, h) once the viewer decoded the pixels
        # why the viewer could not read the image's pixels ("empty file (0 bytes)"); None: read, or not yet
        self.unreadable: str | None = None
        # Labels the database refused for now: image id -> (label, what changed, its source), and the number of
        # the edit each one is (a newer edit of the image replaces it)
        self._pending: dict[int, tuple[LabelState, str, str | None]] = {}
        self._pending_seq: dict[int, int] = {}
        # image id -> (its edit's number, the recovery file) of a label an earlier session left in a file that the
        # start-up could not save, the database busy (``adopt_recovered``): it waits with the others, and its retry
        # replays the file (``ReviewService.replay``: on its revision, under its author, the file removed)
        self._replays: dict[int, tuple[int, Replay]] = {}
        # image id -> such a label an edit made on top of it replaced: its file stays until that edit is saved (in the
        # database, or in a recovery file of its own), and an undo back to it restores it (``_supersede_replay``)
        self._superseded: dict[int, Replay] = {}
        # image id -> the labels of earlier sessions that waited behind such a replaced label (``_behind``): older than
        # the edit, they go to recovery/conflicts once it is saved, and back to waiting with an undo to it
        self._superseded_behind: dict[int, list[Replay]] = {}
        # image id -> such labels whose move to recovery/conflicts failed, and the revision the inspector's edit was
        # made on: never replayed, the move tried again at each save's answer and at close (``_retry_aside``)
        self._aside_failed: dict[int, tuple[list[Replay], int | None]] = {}
        # image id -> later labels of the image that earlier sessions left in recovery files, in ``recover``'s order,
        # behind the one waiting (``adopt_recovered``): each is taken once the image waits for nothing, and replayed on
        # the image as it then is, as a start with the database free replays them (``_take_behind``)
        self._behind: dict[int, list[Replay]] = {}
        # Label saves run on their own thread in the order made (ADR 0005): the GUI thread shows the label at once.
        self._writes = BackgroundCalls("label-writes", self)
        self._seq = 0                                   # numbers the edits
        self._newest: dict[int, int] = {}               # image id -> its newest edit not known stored yet
        # image id -> that edit's (label, what changed, source): shown over a stored one, rescued on closing
        self._local: dict[int, tuple[LabelState, str, str | None]] = {}
        self._decided: dict[int, datetime] = {}   # when each image's newest edit here was made
        self._in_flight: dict[int, list[int]] = {}      # image id -> edits on the writer's queue (-1: a retry)
        self._flying: dict[int, dict[int, LabelState]] = {}  # image id -> edit number -> its label, on its way
        self._own_rev: dict[int, int] = {}  # image id -> the newest revision this window stored
        self._marks = 0                     # undo steps made so far (``edit_mark``)
        self._foreign: dict[int, tuple[int, str, bool]] = {}  # image id -> (marks then, author, set aside by the
        # station as its file changed): a label seen that is
        # not this window's, saved after its own: undo steps made before it are refused (``foreign_after``)
        # Written on the label-writes thread only, cleared on this one once nothing of the image is queued: the
        # revision the last write of an image's chain made (the next one is based on it), and a refusal that
        # the rest of the chain follows ("conflict": dropped; "failed": kept and retried).
        self._chain: dict[int, int] = {}
        self._chain_failed: dict[int, str] = {}
        self._flushing = False
        self._closing = False  # the window's last try (settle_before_close) is on its way: no timer round beside it
        # The stored label an image showed when its first edit not yet in the database was made (None: not known,
        # the image was not on screen). A waiting label equal to it is not written: edits undone while the database
        # refused them would otherwise land as a revision that changes nothing, e.g. "undo class" with no "class".
        self._stored_under: dict[int, LabelState | None] = {}
        # image -> the label this window's last save of it stored (the newest few): a read that began before that save
        # landed returns an older revision, which must not replace it on screen nor in ``_seen`` (the next edit would
        # be refused as made on an old revision: found by a test under load, the redo-then-Accept of test_review_keys).
        self._landed: OrderedDict[int, LabelState] = OrderedDict()
        # How an image came to be labelled, asked at each save (image id -> ``database.LabelSource`` value or
        # None): the "label next" controller answers "label_next" for its proposals (ADR 0049). A waiting save
        # keeps the answer it got when it was made.
        self.label_source: Callable[[int], str | None] = lambda _image_id: None
        # The label revision this window last showed or saved per image: a save is based on it, and
        # one saved elsewhere since (another station, another window) refuses the save (LabelConflict).
        self._seen: dict[int, int] = {}
        # per image, its row as last read: a recovery file records its file's path and content hash (``recover``
        # sets a label aside whose image now has another file or other bytes), and messages name it (``named``)
        self._rows: dict[int, QueueItem] = {}
        # The gallery's row of an image, for naming one this window never read (the main window answers from its
        # gallery; None: not listed): "Cannot load image 6" named a database id no screen shows (a session-52 audit)
        self.listed: Callable[[int], QueueItem | None] = lambda _image_id: None
        self.conflicts = 0  # saves refused that way so far (the window does not auto-advance past one)
        # Accepts that kept an "anomalous" whose region the inspector must draw (``ReviewService.region_to_draw``):
        # the window does not auto-advance past one, so the region is drawn on the image A was pressed on
        self.regions_to_draw = 0
        # Keys not applied: refused because the image's label could not be read (the screen shows another image's
        # label), or because its file cannot be read (``_refused_unreadable``): the window does not auto-advance past
        # one either, so the image stays and the refusal stays on screen beside it. A session-52 audit (PostgreSQL
        # stopped): A was refused, Accept's advance ran anyway, the next image's "Cannot load" replaced the refusal at
        # once, and the decision was lost without a word.
        self.refused = 0
        # The image whose read failed last: said once, then read again every RETRY_MS (``_read_unreadable``) while
        # it is the one under review, until the database answers; nothing read it again before, so the panel kept the
        # image before it once the database was back. ``_refused_on``: a key was refused for it (said when it shows).
        self._unreadable: int | None = None
        self._refused_on: int | None = None
        self._reread = QTimer(self)
        self._reread.setSingleShot(True)
        self._reread.setInterval(self.RETRY_MS)
        self._reread.timeout.connect(self._read_unreadable)
        # The last save or retry found the database locked by another program: later saves join the
        # waiting ones without trying (each try would stand still WRITE_WAIT_S) until a retry gets through.
        self._locked = False
        self._retry = QTimer(self)
        self._retry.setInterval(self.RETRY_MS)
        self._retry.timeout.connect(self._flush_later)
        self._target: int | None = None   # the image the session is on (its detail may be on the way)
        self._ticket = 0                  # numbers the reads; only the newest one's answer is shown
        self._reading: int | None = None  # ticket of the read in flight
        # Two readers: one slow read (a heatmap on a network share) does not hold up the next image.
        self._reader = ThreadPoolExecutor(max_workers=2, thread_name_prefix="detail-reader")
        # The label history (every revision, masks included) is read after each change on its own
        # thread, in order: it was read on the GUI thread, a wait per key on a slow server.
        self._history = BackgroundCalls("label-history", self)
        # What a multi-selection Accept/Reject and a revision restore read first (every chosen image's detail,
        # an earlier revision's masks): read in order on their own thread, the edit made when the answer comes.
        self._reads = BackgroundCalls("label-reads", self)
        # Flag changes, written in the order asked on their own thread (image id -> the state asked last).
        self._flags = BackgroundCalls("flag-writes", self)
        self._flag_asked: dict[int, FlagDecision] = {}
        self._visit: list[int] = []   # images moved past while keys waited, holding keys of their own (read in order)
        # Flags the database refused for now (locked, unreachable): kept and tried again like labels (a session-48
        # probe: a flag refused once was said in a box and never stored, while the labels beside it were retried)
        self._flags_waiting: dict[int, FlagDecision] = {}
        self._flag_retry = QTimer(self)
        self._flag_retry.setInterval(self.RETRY_MS)
        self._flag_retry.timeout.connect(self._retry_flags)
        self._closed = False  # after close() a late request (indexing finishing as the window closes) reads nothing
        self._loaded.connect(self._on_loaded)
        self._checked.connect(self._on_checked)
        self._early_prediction: ImageDetail | None = None  # a refresh that overtook the open read
        # Keys pressed while the current image's detail was on its way, and what was queued behind them, run in
        # order when it arrives, so the GUI thread does not read it itself (ADR 0005).
        self._deferred: list[_Waiting] = []
        self._read_again = False  # a re-read asked for while keys waited on the read in flight: done after it
        self._next_target: int | None = None  # the image to open once keys waiting for the current one are applied
        self._choices = 0  # images the gallery has chosen so far (``open_image``)
        self._clear_at: int | None = None  # ``_choices`` when a clear was queued behind keys waiting for a read
        self._slow_keys = QTimer(self)  # keys still waiting after this long: the status bar says so
        self._slow_keys.setSingleShot(True)
        self._slow_keys.setInterval(self.SLOW_KEYS_MS)
        self._slow_keys.timeout.connect(self._say_keys_wait)
        self._slow_writes = QTimer(self)  # labels still on their way after this long: the status bar says so
        self._slow_writes.setSingleShot(True)
        self._slow_writes.setInterval(self.SLOW_KEYS_MS)
        self._slow_writes.timeout.connect(self._say_writes_wait)
        self.objects = ObjectSelection(self)  # the selected object, whose class 1–9 set instead of the image's
        self.objects.message.connect(self.message)

    # -- loading --------------------------------------------------------------------------
    @property
    def image_id(self) -> int | None:
        """The image the session is on: the gallery's current one, even before its detail arrives."""
        return self._target

    def open_image(self, image_id: int) -> None:
        self._choices += 1   # a clear still waiting behind keys is for the view left (``clear``)
        if self._target == image_id:
            if self._next_target is not None and self._reading is not None:   # K back to the image being read while
                # keys wait for it (not the image shown now bringing the gallery back to it): the image
                # moved past keeps its own keys for later, and new keys are for this one (they went to the image left:
                # the review of a session-48 fix)
                if any(w.target == self._next_target for w in self._deferred) and self._next_target not in self._visit:
                    self._visit.append(self._next_target)
                # after those, the screen comes back here, the image the inspector went back to
                self._next_target = image_id if self._visit else None
            return
        self.reload(image_id)

    def reload(self, image_id: int | None = None) -> None:
        """Read ``image_id``'s detail (default: the current image's again) on the reader thread."""
        image_id = self._target if image_id is None else image_id
        if image_id is None or self._closed:
            return
        if self._deferred and image_id != self._target and self._reading is not None:
            # Keys pressed for the image being left wait for its detail: they are applied to it when it comes, and
            # then this image is opened (the gallery has moved already; it read the left image on this thread).
            # An image moved to meanwhile that got keys of its own is read in its turn, before this one.
            if self._next_target is not None and self._next_target != image_id \
                    and any(w.target == self._next_target for w in self._deferred):
                self._visit.append(self._next_target)
            self._next_target = image_id
            return
        if image_id == self._target and self._reading is not None and (self._next_target is not None or self._visit):
            # the image being read, read again (a refresh) while the inspector has moved on with keys waiting: the
            # moves stand (cleared, the next key went to the image left: the review of a session-48 fix)
            self._read_again = True
            return
        waiting = [t for t in dict.fromkeys([*self._visit, *(w.target for w in self._deferred)]) if t != image_id]
        if waiting and self._reading is None:
            # keys wait for images not read yet (a move made after its image's keys ran): those are read first, in
            # order, then this one (they were dropped, the keys never applied: the review of a session-48 fix)
            self._visit, self._next_target = waiting[1:], image_id
            self._start_read(waiting[0])
            return
        self._next_target = None
        self._visit.clear()
        if self._reading is not None and any(w.target == image_id for w in self._deferred):
            # Keys wait for the read on its way: dropping it for a newer one (a job's refreshes come every few
            # seconds) could keep them waiting on a slow server; it lands, they apply, then the image is read again.
            self._read_again = True
            return
        self._start_read(image_id)

    def _start_read(self, image_id: int) -> None:
        self._target = image_id
        self._ticket += 1
        self._reading = self._ticket
        self.loading.emit(image_id)
        self._reader.submit(self._read, self._ticket, image_id)

    @property
    def key_target(self) -> int | None:
        """The image the next key is for: the one moved to while keys wait for another's read, else the current one."""
        return self._next_target if self._next_target is not None else self._target

    def reload_if_shown(self, image_id: int) -> None:
        """Read the image's detail again if it is still the one on screen (its file went: the panel says
        so; the viewer keeps the pixels it has)."""
        if self._target == image_id:
            self.reload()

    def _read(self, ticket: int, image_id: int) -> None:
        if ticket != self._ticket:
            return  # already left (a held-down J queues many reads): skip the work
        try:
            detail, error = self.service.detail(image_id), ""
        except Exception as exc:  # the database went away: said on the GUI thread
            if image_id == self._unreadable:   # its retry (every few seconds while the database is away): one line
                log.warning("image %s still cannot be read: %s", image_id, exc)
            else:
                log.exception("cannot load image %s", image_id)
            detail, error = None, str(exc)
        self._loaded.emit(ticket, image_id, detail, error)

    @Slot(int, int, object, str)
    def _on_loaded(self, ticket: int, image_id: int, detail: ImageDetail | None, error: str) -> None:
        if ticket != self._ticket:
            return  # the inspector has moved on, or an edit has read the image itself since
        self._reading = None
        self._show(image_id, detail, error)   # it brings the gallery back to it: not a K (``_reading`` is None)
        if self._next_target == image_id and not self._visit:
            self._next_target = None   # the image just read is the one moved to
        if self._visit:   # an image moved to meanwhile holds keys of its own: read in its turn
            self._read_again = False
            self._start_read(self._visit.pop(0))
        elif self._next_target is not None:  # the inspector moved on while keys waited for this image
            self._read_again = False
            self.reload(self._next_target)
        elif self._read_again:
            self._read_again = False
            self.reload()

    def _ready(self, again: Callable[[], None] | None = None) -> bool:
        """Before an edit: the detail on hand is the current image's, newest read included.

        While a read is in flight the screen still shows the previous image, and an edit must not go to it.
        ``again`` (the intent itself): it waits for that read and runs when the detail arrives (False now); when
        nothing is on its way (an earlier read failed: the screen shows another image), the image is read again on
        the reader thread and the key is not applied. The GUI thread never reads the detail itself (it did, for those
        two cases, until session 26)."""
        if self._target is None:
            return False
        loaded = self.detail is not None and self.detail.item.image_id == self._target
        if loaded and self._reading is None:
            return self.label is not None
        if again is None:
            return False
        if self._clear_at == self._choices:
            # A folder listing no image was opened while keys waited for this image's read: its clear waits behind
            # them, and a key pressed now is for no image (kept, it was dropped by that clear with nothing said: a
            # session-50 audit).
            self.message.emit("The key was not applied: the folder shown lists no image, so none is under review "
                              "(keys pressed before it was opened still go to the image they were pressed for).")
            return False
        if self._reading is None or (not loaded and self._unreadable == self._target):
            # An earlier read failed, so the screen still shows another image: the key is not held for this one,
            # which the inspector has not seen (a session-44 probe: after a PostgreSQL outage the window showed
            # part 0, and G, held, became a verdict for part 1 when it came), not even while its retry is on its way.
            # It is read again now; the key waits for nothing, and is counted so that no advance follows it (a
            # session-52 audit: Accept moved on past the refusal, and the decision was lost unsaid). A note: the
            # next messages are added to it, not put in its place.
            self.refused += 1
            self._refused_on = self._target
            if self._reading is None:
                self.reload()
            self.note.emit(f"The key was not applied: {self.named(self._target)} could not be read, so its label is "
                           "not on screen. It is read again every few seconds; press the key again once it is shown.")
            return False
        # a key pressed after moving on (J) while keys wait for the image left is for the image moved to, which is
        # read once they are applied (it went to the image left: a session-48 probe, J 2 J 3 on a slow database)
        self._deferred.append(_Waiting(self._next_target if self._next_target is not None else self._target, again))
        self.keys_waiting.emit(True)
        if not self._slow_keys.isActive():
            self._slow_keys.start()
        return False

    def _shows(self, image_id: int) -> bool:
        """True when the label on hand is ``image_id``'s (its detail has arrived)."""
        return self.detail is not None and self.detail.item.image_id == image_id

    def _show(self, image_id: int, detail: ImageDetail | None, error: str) -> None:
        if detail is None:  # keep the session; edits stay refused until the image can be read
            waiting = self._take_deferred(image_id)
            keys = _keys_among(waiting)
            stays = not self._visit and self._next_target in (None, image_id)  # not moved on while it was read
            if keys or image_id != self._unreadable:   # said once: a retry's failure is only logged (``_read``)
                self._lost(f"Cannot load {self.named(image_id)}: {error.rstrip('.')}."
                           + (" It is read again every few seconds." if stays else "")
                           + (f" {plural(keys, 'key')} pressed for it {agree(keys, 'was', 'were')} not applied: "
                              "press again once it is shown." if keys else ""))
            self._unreadable = image_id
            if stays and not self._closed:
                self._reread.start()
            if any(w.intent == self._late_clear for w in waiting):
                # the view asked for meanwhile lists no image: it is cleared all the same (dropped with the keys, the
                # empty folder kept the image left under enabled keys: the review of a session-49 fix)
                self._late_clear()
            return
        self._reread.stop()
        self._unreadable = None
        if self._refused_on == image_id:   # its refusal's note has gone by now: the key is to be pressed again
            self.message.emit(f"{self.named(image_id)} is shown now. The key pressed while it could not be read was "
                              "not applied: press it again.")
        self._refused_on = None
        early, self._early_prediction = self._early_prediction, None
        if early is not None and early.item.image_id == image_id and _newer(early, detail):
            # The prediction refresh read this image after this read began: its prediction is
            # the newer one (dropping it would leave "not pre-labelled" under a badged thumbnail).
            detail = replace(detail, prediction=early.prediction, prelabel_error=early.prelabel_error)
        local = self.unsaved(image_id)  # an edit on its way to the database, or waiting for it
        known = self._landed.get(image_id)
        stale = local is None and known is not None and known.revision > detail.label.revision
        if stale and known is not None:
            # Read before this window's own save of the image landed (the save is done now, so it is no longer
            # "unsaved"), whether the image was on screen then or its read was on the way: the database holds the
            # label this window saved, the read an older one.
            detail = replace(detail, label=known)
        label = local if local is not None else detail.label
        if local is None and not stale:
            self._saw(image_id, detail.label)
        if self.detail is None or self.detail.item.image_id != image_id:
            self.image_size = None
            self.unreadable = detail.unreadable  # from its header: a key held during this read is refused on it
        elif detail.unreadable is not None:
            self.unreadable = detail.unreadable
        self.detail = detail
        self.label = label
        self._rows[image_id] = detail.item
        self.image_loaded.emit(detail)
        self.label_changed.emit(label)
        # its history, read with the image itself (not on every ``image_loaded``: a job's new prediction merged into
        # the image shown re-read the whole history for nothing, a session-51 re-read); again once a save lands
        self.read_history()
        self._run_deferred(image_id)

    def _read_unreadable(self) -> None:
        """The retry of an image whose read failed (``_unreadable``): read again while it is still the one under
        review and nothing reads it now, until the database answers and its label is shown."""
        if not self._closed and self._unreadable is not None and self._unreadable == self._target \
                and self._reading is None and not self._shows(self._unreadable):
            self.reload()

    def _say_keys_wait(self) -> None:
        keys = _keys_among(self._deferred)
        if keys:
            self.message.emit(f"{plural(keys, 'key')} {agree(keys, 'waits', 'wait')} for "
                              f"{self.named(self._deferred[0].target)} to be read (the database is slow); "
                              f"{agree(keys, 'it is', 'they are')} applied when it comes.")

    def undo(self) -> None:
        """Ctrl+Z: where keys wait for an image's read, the undo waits behind them and takes back the last step pressed
        (run at once, it undid an older step, and the waiting key landed afterwards: a session-48 probe)."""
        self._after_keys(self.undo_stack.undo)

    def redo(self) -> None:
        self._after_keys(self.undo_stack.redo)

    def _after_keys(self, step: Callable[[], None], key: bool = True) -> None:
        if self._deferred:
            self._deferred.append(_Waiting(self._deferred[-1].target, step, key))
        else:
            step()

    def after_waiting_keys(self, image_id: int | None, then: Callable[[], None]) -> bool:
        """When keys pressed for ``image_id`` wait for its detail: run ``then`` after them (e.g. move on after
        Accept) and True; otherwise False and nothing is kept (the caller goes on now)."""
        if image_id is None or not any(w.target == image_id for w in self._deferred):
            return False
        self._deferred.append(_Waiting(image_id, then, key=False))
        return True

    def _take_deferred(self, image_id: int) -> list[_Waiting]:
        """The keys pressed for ``image_id`` while its detail was on its way, in the order pressed; no longer kept."""
        todo = [w for w in self._deferred if w.target == image_id]
        self._deferred = [w for w in self._deferred if w.target != image_id]
        if not self._deferred:
            self.keys_waiting.emit(False)
        return todo

    def _run_deferred(self, image_id: int) -> None:
        for waiting in self._take_deferred(image_id):
            waiting.intent()

    def check_label(self) -> None:
        """Labels were saved somewhere: re-read the open image if its label is no longer the one on
        screen (the revision is read on the reader thread; the GUI thread never waits)."""
        image_id = self._target
        if image_id is None or self._closed or image_id in self._local:
            return

        def read() -> None:
            try:
                self._checked.emit(image_id, self.service.label_revision(image_id))
            except Exception as exc:  # noqa: BLE001 - the next change asks again
                log.warning("label check of image %d failed: %s", image_id, exc)
        self._reader.submit(read)

    @Slot(int, int)
    def _on_checked(self, image_id: int, revision: int) -> None:
        seen = self._seen.get(image_id)
        if (image_id == self._target and image_id not in self._local and self._reading is None
                and seen is not None and seen != revision):
            self.reload(image_id)
            self.message.emit("This image's label was changed elsewhere (another station or window, or an import): "
                              "the new label is shown.")

    def show_new_prediction(self, detail: ImageDetail) -> None:
        """The open image re-read on a helper thread after a job wrote predictions: its prediction
        (or pre-labelling failure) is shown; the label on screen, maybe mid-edit, is kept."""
        if detail.item.image_id != self.image_id:
            return
        if self.detail is None or self.detail.item.image_id != detail.item.image_id:
            self._early_prediction = detail  # this image's own read is in flight: merged when it lands
            return
        if (detail.prediction is None and self.detail.prediction is None
                and detail.prelabel_error == self.detail.prelabel_error):
            return
        if (detail.prediction is not None and self.detail.prediction is not None
                and detail.prediction.same_answers(self.detail.prediction)):
            return  # (a version run again rewrites its row: same ids, a new time, maybe a map here now)
        self.detail = replace(detail, label=self.detail.label)
        self.image_loaded.emit(self.detail)

    def clear(self) -> None:
        """No image is under review any more: the folder shown lists none (an empty one opened after another's image:
        the viewer, the panel and the keys stayed on that image, and D, F and A saved to it; a session-49 audit).
        Keys still waiting for an image's read are applied to it first, as when moving on to another image; then
        ``cleared``, unless an image has been chosen since (``_late_clear``)."""
        if self._deferred:
            self._clear_at = self._choices
            self._after_keys(self._late_clear, key=False)
            return
        self._clear()

    def _late_clear(self) -> None:
        """A clear that waited behind keys for an image's read: run when they are applied, or when that read failed and
        they were not. An image chosen meanwhile (another folder opened) is under review now and stays: clearing then
        emptied the screen, the keys and the image chosen to open next (the review of a session-49 fix)."""
        asked, self._clear_at = self._clear_at, None
        if asked == self._choices:
            self._clear()

    def _clear(self) -> None:
        self.detail = None
        self.label = None
        self.image_size = None
        self.unreadable = None
        self._early_prediction = None
        self._read_again = False
        self._next_target = None
        self._visit.clear()
        self._target = None
        self._ticket += 1
        self._reading = None
        self._reread.stop()
        self._unreadable = self._refused_on = None
        self.cleared.emit()

    def read_history(self) -> None:
        """Read the history of the image on screen off the GUI thread; ``history_read`` when it comes
        (an answer for an image the inspector has left is dropped; a failure is logged, reviewing goes on)."""
        image_id = self._target
        if image_id is None or self._closed:
            return

        def shown(revisions: list) -> None:
            if self._target == image_id:
                self.history_read.emit(revisions)
        self._history.call(lambda: self.service.history(image_id), shown,
                           lambda text: log.warning("label history unavailable: %s", text))

    def close(self, wait_for_writes: bool = True, wait_for_flags: bool = True) -> None:
        """``wait_for_writes`` False: the person closed without waiting for the database (their labels went to a
        recovery file); a write still on its way finishes or fails on its own. ``wait_for_flags`` False: the same
        for a flag (the closing dialog's Close now said it is not applied)."""
        self._closed = True
        self._retry_aside(closing=True)   # (the labels kept from before that could not be set aside)
        self._ticket += 1  # an answer still on its way is dropped
        self._reread.stop()
        self._reader.shutdown(wait=False, cancel_futures=True)
        self._history.close()
        self._reads.close()
        self._flags.close(finish=wait_for_flags)  # a flag asked for as the window closes is still written
        self._writes.close(finish=wait_for_writes)  # and a label (the window waited for them before its last retry)

    def cancel_close(self) -> None:
        """The window stays open after all (the person chose to keep labels nothing could save): retries resume."""
        self._closing = False
        if self._pending or self._behind:
            self._retry.start()

    # -- intents (each is one undoable step) ----------------------------------------------
    def _edit(self, after: LabelState, text: str, changed: str) -> None:
        if not self._ready():
            return
        assert self.detail is not None and self.label is not None  # what _ready() checked
        if after.same_content(self.label):
            return
        name = PurePosixPath(self.detail.item.rel_path).name
        self.undo_stack.push(LabelEdit(self, self.detail.item.image_id, self.label, after, f"{text} on {name}", changed))

    def _corrected(self, **changes) -> LabelState:
        assert self.label is not None
        state = "corrected"
        return self.label.with_(review_state=state, **changes)

    def set_class(self, name: str | None) -> None:
        """The image's class, or the selected object's own class while one is selected."""
        if self.objects.current() is not None:
            self.objects.set_class(name)
        elif self._ready(lambda: self.set_class(name)) and not self._refused_unreadable(f"labelled {name}"):
            self._edit(self._corrected(class_name=name), f"class → {name}", "class")

    def set_object_classes(self, mask: np.ndarray, objects: tuple[ObjectClass, ...], text: str) -> None:
        """Object classes on ``mask`` (the label's, or the prediction's it adopts) as one edit."""
        if self._ready(lambda: self.set_object_classes(mask, objects, text)):
            self._edit(self._corrected(mask=_none_if_empty(mask), objects=objects), text, "objects")

    def set_class_index(self, index: int, shown: Sequence[str] | None = None, selection: Sequence[int] = ()) -> None:
        """Key ``index + 1``: the class of that button as the panel shows it (``shown``, read off the GUI thread
        with the folder's facts; ``LabelPanel.offered``); before the panel has them (None), the project's list as last
        read (``cached_classes``, kept across a model refresh until the folder's facts read it again: the key read it
        on the GUI thread after every refresh, a wait of two queries; a session-49 audit). An empty ``shown`` is an
        answer: no class here (the routing runs no classifier on the image; the project's list would have been another
        part's model's classes). With several images selected in the gallery (``selection``), each of them gets that
        class, as one undoable step (as A and X decide them all)."""
        many = len(selection) > 1 and self.objects.current() is None
        project: list[str] = []
        if shown is None or (not shown and many):
            known = self.service.cached_classes()
            # never read yet (the window's first moments, before its folder's facts): read here, as before
            project = known if known is not None else self.service.classes()
        # an empty ``shown`` with several selected: the image on screen runs no classifier, the selected ones may (the
        # key refused them all with "no class here", a session-47 audit); they get the project's class, those without
        # a classifier left out and said
        classes = list(shown) if shown else project
        if 0 <= index < len(classes) and many:
            self.decide_many(list(selection), "class", classes[index])
        elif 0 <= index < len(classes):
            self.set_class(classes[index])
        elif shown is not None and not shown:
            self.message.emit(f"No class {index + 1} here: the model routing runs no classifier on this image "
                              f"(Project ▸ Classes… sets the classes this project labels with).")
        else:
            self.message.emit(f"There is no class {index + 1}: the project has {len(classes)} "
                              f"(Project ▸ Classes… adds one).")

    def set_mask(self, mask: np.ndarray | None) -> None:
        """The labelled mask as painted. An empty mask is kept as the inspector's answer (no target here): saved as
        None it read as "not set", and Accept brought back the predicted targets they had erased."""
        if self._ready(lambda: self.set_mask(mask)):
            assert self.label is not None  # what _ready() checked
            mask = None if mask is None else mask.astype(bool)  # objects keep their class where their anchor is
            before = self.label.mask if self.label.mask is not None else self.mask_start()  # what the seeds lay on
            self._edit(self._corrected(mask=mask, objects=resolve(mask, self.label.objects, before)),
                       "paint mask", "mask")

    def set_region(self, region: np.ndarray | None) -> None:
        if not self._ready(lambda: self.set_region(region)):
            return
        region = _none_if_empty(region)
        assert self.label is not None  # what _ready() checked
        if region is None and self.label.anomaly_region is None:
            return  # no region before or after: nothing changed (it saved an empty "corrected" revision)
        changes: dict[str, Any] = {"anomaly_region": region}
        if region is not None:
            changes["anomaly_verdict"] = "anomalous"  # a marked region means the part is anomalous
        self._edit(self._corrected(**changes), "paint anomaly region", "anomaly_region")

    def mask_edited(self, target: str, mask: np.ndarray) -> None:
        (self.set_mask if target == "mask" else self.set_region)(mask)

    def mask_start(self) -> np.ndarray | None:
        """What the first mask edit on the image on screen starts from (``ReviewService.mask_start``); asked when
        an edit begins, not on every label change."""
        return self.service.mask_start(self.detail, self.label)

    def set_verdict(self, verdict: str | None, selection: Sequence[int] = ()) -> None:
        """The image's anomaly verdict (normal clears its region); with several images selected in the gallery
        (``selection``), each of them gets it, as one undoable step (twenty good parts marked with one G)."""
        if verdict is not None and len(selection) > 1:
            self.decide_many(list(selection), "verdict", verdict)
            return
        if not self._ready(lambda: self.set_verdict(verdict)):
            return
        if verdict is not None and self._refused_unreadable(f"labelled {verdict}"):
            return
        self._edit(self._corrected(**verdict_changes(verdict)), f"verdict → {verdict}", "anomaly_verdict")

    def _refused_unreadable(self, what: str) -> bool:
        """True, said on the status line, when the image on screen cannot be read (its pixels failed to load). A
        session-52 audit: A on a truncated or 20000 x 20000 PNG saved "accepted", and 1 on an empty file "corrected,
        class free"; the export then wrote the empty file into imagefolder/free/ as good data. A label on a file no
        model or export can read trains nothing, so it is refused; X stays open (rejecting the file is a decision)."""
        if self.unreadable is None or self.detail is None:
            return False
        name = PurePosixPath(self.detail.item.rel_path).name
        self.refused += 1
        self.message.emit(f"Not {what}: {UnreadableImage(self.detail.item.image_id, name, self.unreadable)}")
        return True

    def accept(self) -> None:
        if not self._ready(self.accept) or self._refused_unreadable("accepted"):
            return
        before = self.label
        assert before is not None  # what _ready() checked
        after = self.service.accepted_label(self.detail, before, self.image_size)
        if after.same_content(before):
            self.message.emit("Already accepted.")
            return
        unlisted = self.service.unlisted_class(self.detail, before)
        self._edit(after, "accept", "accept")
        notes = []
        if unlisted:   # said, not saved under a name the project no longer uses
            notes.append(f"Accepted without the classifier's class '{unlisted}': it is not among this image's "
                         "classes (renamed or taken off the list: Project ▸ Classes…). Give the class with its "
                         "key for the image to count for a retraining.")
        withheld = self.service.withheld_from(self.detail, after)
        if withheld:   # said, not silently left out
            notes.append("Accepted without the " + " and the ".join(f"{f}'s answer" for f in withheld)
                         + ": out of that model's domain, so not taken. Give "
                         + ", ".join(_GIVE_INSTEAD[f] for f in withheld)
                         + " yourself for the image to count for a retraining.")
        level = self.service.region_to_draw(self.detail, before, after)
        if level is not None:   # said, and the image stays on screen for it
            self.regions_to_draw += 1
            notes.append(f"Accepted \"anomalous\" without a region: the model's map reaches its region threshold "
                         f"({level:.3g}) nowhere on this image. Draw it (W and a click on the hot spot, or R and the "
                         "brush B): the export has no mask for it until then.")
        if notes:   # one note: a second replaced the first on the status bar (seen under Xvfb, session 46)
            self.note.emit(" ".join(notes))
        p = self.detail.prediction if self.detail is not None else None
        if (p is not None and p.heatmap_missing and after.anomaly_verdict == "anomalous"
                and after.anomaly_region is None):  # ADR 0061: said, not silently left out
            self.message.emit("Accepted \"anomalous\" without the model's region: its map is not on this station "
                              "(draw one with R, or pre-label the image again here).")

    def decide_many(self, image_ids: list[int], decision: str, value: str | None = None) -> None:
        """Accept (each image's own label, the prediction filling what it lacks), reject, or give one class
        (``decision`` "class", ``value`` the class) or one anomaly verdict ("verdict", ``value`` "normal" or
        "anomalous"; normal clears the region) to several images, each a corrected label with the rest kept, as one
        undoable step. Their details are read on a helper thread first (hundreds of
        images, each with its prediction, were read on the GUI thread); ``decided_many`` then."""
        if decision not in ("accept", "reject", "class", "verdict") or \
                (decision in ("class", "verdict")) != (value is not None) or \
                (decision == "verdict" and value not in ("normal", "anomalous")):
            raise ValueError(decision)
        ids = list(dict.fromkeys(image_ids))

        def read() -> list[tuple[int, ImageDetail | None, str]]:
            rows: list[tuple[int, ImageDetail | None, str]] = []
            for image_id in ids:
                try:
                    rows.append((image_id, self.service.detail(image_id), ""))
                except Exception as exc:  # noqa: BLE001 - said on the GUI thread, the others go on
                    rows.append((image_id, None, str(exc)))
            return rows

        verb = f"label as {value}" if decision in ("class", "verdict") else decision
        self.message.emit(f"Reading {len(ids)} images to {verb}…")
        self._reads.call(read, lambda rows: self._decide_read(rows, decision, value),
                         lambda text: self._lost(f"Cannot {verb} the selection: {text}"))

    def _decide_read(self, rows: list[tuple[int, ImageDetail | None, str]], decision: str,
                     value: str | None = None) -> None:
        edits, moved, no_classifier, unlisted, to_draw = [], 0, 0, 0, 0
        what = f"{'class' if decision == 'class' else 'verdict'} → {value}" if value else decision
        withheld: dict[str, int] = {}   # family -> accepted images its out-of-domain answer was left out of
        unread: list[int] = []   # images whose read failed: left out, said once (a box per image, each by its id)
        cannot_read: list[int] = []   # images whose file the station cannot read: left out, named in the summary
        why = ""
        for image_id, detail, error in rows:
            if detail is None:
                unread.append(image_id)
                why = error
                continue
            if decision != "reject" and detail.unreadable is not None:
                self._rows[image_id] = detail.item
                cannot_read.append(image_id)  # A, a class or a verdict on a file no export could use (a session-52
                continue                     # audit: A on a selection saved "accepted" on an empty file)
            if decision == "class" and not detail.classifier_runs and value not in detail.classes:
                no_classifier += 1  # as its own key would say: no class here (another line's frame in the selection)
                continue
            seen = self._seen.get(image_id)
            local = self.unsaved(image_id)  # this window's edit on its way or waiting: the label to start from
            if (local is None and seen is not None and seen > detail.label.revision and self._shows(image_id)
                    and self.label is not None and self.label.revision == seen):
                local = self.label  # the open image, saved by this window while the selection was read: its label
            if local is None and seen is not None and seen > detail.label.revision:
                moved += 1  # this window saved it again while the selection was read: that read is behind
                continue
            before = detail.label if local is None else local
            self._rows[image_id] = detail.item
            if local is None:
                self._saw(image_id, detail.label)  # a gallery decision's read too (the session-43 review)
            if decision == "accept":
                after = self.service.accepted_label(detail, before)
                if self.service.unlisted_class(detail, before):
                    unlisted += 1
                if not after.same_content(before):
                    for family in self.service.withheld_from(detail, after):
                        withheld[family] = withheld.get(family, 0) + 1
                    to_draw += self.service.region_to_draw(detail, before, after) is not None
            elif decision == "reject":
                after = before.with_(review_state="rejected")
            elif decision == "class":
                after = before.with_(review_state="corrected", class_name=value)
            else:
                after = before.with_(review_state="corrected", **verdict_changes(value))
            if not after.same_content(before):
                edits.append(LabelEdit(self, image_id, before, after, what, decision, follow=False))
        # the status bar's last word says them too: "Nothing to change: the selected images are accepted already"
        # followed the box when none could be read (a session-52 audit)
        done = f"labelled {value}" if value else f"{decision}ed"

        def first_names(ids: list[int]) -> str:   # the first three, then "…": a long selection is not all named
            return ", ".join(self.named(i) for i in ids[:3]) + (", …" if len(ids) > 3 else "")

        left_out = (f" Not {done}: {plural(len(unread), 'selected image')} could not be read "
                    f"({first_names(unread)}): select "
                    f"{agree(len(unread), 'it', 'them')} and press the key again once the database answers."
                    if unread else "")
        if unread:
            self._lost(f"{left_out.strip()} (The database said: {why.rstrip('.')}.)")
        if cannot_read:
            left_out += (f" Not {done}: {first_names(cannot_read)} cannot be read, so no export or retraining could "
                         f"use a label on {agree(len(cannot_read), 'it', 'them')} (X rejects "
                         f"{agree(len(cannot_read), 'it', 'them')}).")
        if edits:
            # A macro (not parent/child commands): the stack owns every command it is pushed. Its counts are worded
            # by ``plural`` ("Labelled 1 image(s) anomalous; Ctrl+Z undoes them together.", "Undo anomalous 1 images":
            # a session-49 audit).
            images = plural(len(edits), "image")
            batch = f"{what} on {images}" if value else f"{decision} {images}"
            for edit in edits:
                edit.told = batch
            self.undo_stack.beginMacro(batch)
            for edit in edits:
                self.undo_stack.push(edit)
            self.undo_stack.endMacro()
            text = ((f"Labelled {images} {value}" if value else f"{decision.capitalize()}ed {images}")
                    + ("; Ctrl+Z undoes them together." if len(edits) > 1 else "; Ctrl+Z undoes it.")
                    + (f" {plural(moved, 'image')} changed meanwhile, left out." if moved else "")
                    + (f" {plural(no_classifier, 'image')} left out: the model routing runs no classifier there."
                       if no_classifier else "")
                    + (f" {plural(unlisted, 'image')} kept no class: the classifier's class is not among their "
                       "classes now (Project ▸ Classes…)." if unlisted else "")
                    + (f" {plural(to_draw, 'image')} \"anomalous\" without a region: the model's map reaches its "
                       "region threshold nowhere there; draw each region for the export's ground truth."
                       if to_draw else "") + left_out)
            if withheld or to_draw:   # what the selection's labels lack stays ahead of the next messages, as A's note
                self.note.emit(text + _withheld_many(withheld, len(edits)))
            else:
                self.message.emit(text)
        elif unread or cannot_read:
            self.message.emit(f"Nothing was changed.{left_out}")
        else:
            self.message.emit(f"{plural(moved, 'image')} changed while the selection was read: select and decide "
                              "again." if moved else "No class here: the model routing runs no classifier on the "
                              f"{plural(no_classifier, 'selected image')}." if no_classifier
                              else f"Nothing to change: the selected images are {done} already.")
        self.reload()
        self.decided_many.emit(len(edits))

    def reject(self) -> None:
        if self._ready(self.reject):
            assert self.label is not None  # what _ready() checked
            self._edit(self.label.with_(review_state="rejected"), "reject image", "reject")

    def restore_revision(self, revision: int, of_image: int | None = None) -> None:
        """Bring an earlier revision back (itself a new, undoable revision). ``of_image``: the image whose history
        row was chosen; a restore is never handed on to another image (a double-click in image A's history while J's
        image B was being read restored B's revision of that number, one the inspector never saw: a session-49
        audit)."""
        if of_image is not None and of_image >= 0 and of_image != self._target:
            self.message.emit(f"Revision {revision} not restored: the list showed {self.named(of_image)}'s history "
                              "while another image was being opened. Double-click it again once its image is shown.")
            return
        if not self._ready(lambda: self.restore_revision(revision, self._target if of_image is None else of_image)):
            return
        assert self.detail is not None  # what _ready() checked
        image_id = self.detail.item.image_id

        def restore(old: LabelState) -> None:  # on the GUI thread, once read; dropped if the inspector moved on
            if self._target == image_id and self._ready(lambda: restore(old)) and self.label is not None:
                self._edit(old.with_(revision=self.label.revision), f"restore revision {revision}",
                           f"restored revision {revision}")  # the history says which (it said only "restore")
        self._reads.call(lambda: self.service.revision_label(image_id, revision), restore,
                         lambda text: self._lost(f"Revision {revision} not restored: {text}"))

    def clear_label(self) -> None:
        if self._ready(self.clear_label):
            self._edit(LabelState(), "clear label", "clear")

    def toggle_flag(self) -> None:
        """Flag or unflag the image on screen. Written on a helper thread in the order asked (it was written on
        the GUI thread, a wait per key on a locked or slow database); the row and the panel follow the answer.
        Pressed again before the answer came, it flips what was asked last, not what the screen still shows."""
        if not self._ready(self.toggle_flag):
            return
        assert self.detail is not None  # what _ready() checked
        image_id = self.detail.item.image_id
        now = self._flag_asked.get(image_id) or FlagDecision.of(self.detail.item)
        want = self.service.inspector_flag(not now.flagged)
        self.undo_stack.push(FlagEdit(self, image_id, now, want, PurePosixPath(self.detail.item.rel_path).name))

    def apply_flag(self, image_id: int, want: FlagDecision, replay: bool = False) -> None:
        """Store ``want`` as ``image_id``'s flag (F, or its undo and redo: ``replay``, which bring the image back on
        screen)."""
        self._flag_asked[image_id] = want
        self._flags_waiting.pop(image_id, None)  # what is asked now replaces a flag still waiting for the database
        self._send_flag(image_id, want, replay)
        if replay:
            if self.image_id is not None and self.image_id != image_id:
                self.reload(image_id)
            self.replayed.emit(image_id)

    def _send_flag(self, image_id: int, want: FlagDecision, replay: bool = False, last_try: bool = False,
                   retried: bool = False) -> None:
        """Write the flag on the flag-writes thread. Refused for now (the database locked or unreachable), it waits
        and is tried again every ``RETRY_MS``; ``last_try`` (the window closing): waits the database's own timeout,
        and a refusal is said and asked about (``intent_lost``)."""
        def answered(answer: tuple[bool, Any]) -> None:
            stored, result = answer
            if not stored:
                if self._flag_asked.get(image_id) != want:
                    return  # asked otherwise since: that one is on its way
                if last_try or self._closed:
                    failed(result)
                    return
                self._flags_waiting[image_id] = want
                self._flag_retry.start()
                if not retried:  # said once: each retry's refusal said it again, covering every other message
                    # every few seconds (a session-49 audit)
                    self.save_waiting.emit(f"Could not {'flag' if want.flagged else 'unflag'} {self.named(image_id)} yet "
                                           f"({str(result).rstrip('.')}). "
                                           "It is kept and tried again every few seconds.")
                return
            item = result
            last = self._flag_asked.get(image_id) == want
            if last:
                del self._flag_asked[image_id]  # the last one asked is written
            if self.detail is not None and self.detail.item.image_id == image_id:
                self.detail = replace(self.detail, item=item)
            self.item_changed.emit(item)
            if not replay and last:  # an undo or redo has said what it did (FlagEdit); an F undone meanwhile says
                # nothing now (its "Flagged" came after the "Undone" and replaced it)
                shown = self.detail is not None and self.detail.item.image_id == image_id
                where = "" if shown and not retried else f" {item.name} (saved once the database answered)"
                self.message.emit(("Flagged" if item.flagged else "Flag removed")
                                  + f"{where}: it stays so when the models flag the image again.")

        def failed(text: str) -> None:
            self._flag_asked.pop(image_id, None)
            self._lost(f"Could not change the flag of {self.named(image_id)}: {text}")
        wait = None if last_try else self.WRITE_WAIT_S
        self._flags.call(lambda: self._write_flag(image_id, want, wait), answered, failed)

    def _write_flag(self, image_id: int, want: FlagDecision, wait_s: float | None) -> tuple[bool, Any]:
        """(True, the row) once stored; (False, why) when the database refused it for now (another program's lock,
        a server gone). A refusal for good (the image is gone) raises."""
        try:
            return True, self.service.put_flag(image_id, want, wait_s=wait_s)
        except StorageBusy as exc:
            return False, str(exc)
        except ReviewError:
            raise
        except Exception as exc:  # noqa: BLE001 - the database's refusal, said and retried
            return False, str(exc) or type(exc).__name__

    def _retry_flags(self) -> None:
        if not self._flags_waiting or self._closed:
            self._flag_retry.stop()
            return
        if self._flags.busy:
            return  # a write is on its way: the next tick
        waiting, self._flags_waiting = self._flags_waiting, {}
        for image_id, want in waiting.items():
            self._send_flag(image_id, want, retried=True)

    def flags_last_try(self) -> None:
        """The window is closing: each waiting flag is tried once more, waiting the database's own timeout; one
        still refused is said, and the person decides (``intent_lost``)."""
        self._flag_retry.stop()
        waiting, self._flags_waiting = self._flags_waiting, {}
        for image_id, want in waiting.items():
            self._send_flag(image_id, want, last_try=True, retried=True)

    # -- applying (called by undo commands) ------------------------------------------------
    def apply_label(self, image_id: int, state: LabelState, changed: str, follow: bool = True,
                    replay: bool = False, refused: Callable[[], None] | None = None) -> bool:
        """Save ``state`` for ``image_id``; ``replay``: an undo or redo, not the edit itself.

        The label is shown at once and written on the label-writes thread, in the order made (it was
        written on the GUI thread: up to ``WRITE_WAIT_S`` per key with the database locked, a round trip per
        key on a server). ``refused`` is called when the answer says the label was saved elsewhere meanwhile:
        the edit did not happen (its undo step drops itself) and the image shows the newer label. A save the
        database refuses for now is kept, shown, and retried."""
        self._seq += 1
        seq = self._seq
        source = self.label_source(image_id)
        if image_id not in self._local:  # the first edit the database does not hold yet: what it holds is shown
            self._stored_under[image_id] = self.label if self._shows(image_id) else None
        self._newest[image_id] = seq
        self._local[image_id] = (state, changed, source)
        self._decided[image_id] = datetime.now(timezone.utc)   # a recovery file's "decided_at" (not the close's time)
        restored = replay and self._restore_replay(image_id, seq, state)
        if not restored:
            self._supersede_replay(image_id)
        guess = None
        if self._shows(image_id):
            assert self.detail is not None
            shown = self.detail.item
            guess = StateMove(image_id, shown.folder_id, shown.review_state, state.review_state,
                              counted=shown.error != MISSING)
            item = replace(shown, review_state=state.review_state, label_class=state.class_name)
            self.detail = replace(self.detail, item=item)
            self.label = state
            self.label_changed.emit(state)
            self.item_changed.emit(item)  # the cell and the counts at once; the stored row follows the answer
            self.state_guessed.emit(guess)
        if self._locked or restored:  # the last try found the file locked: join the waiting labels without a try
            # (a restored recovery file's label is saved from its file by the retry, under its author)
            self._keep_pending(image_id, seq, state, changed, source)
            if guess is not None:
                self.state_settled.emit(guess, None)  # not stored: the counts say what the database holds
        else:
            self._pending_seq.pop(image_id, None)
            if self._pending.pop(image_id, None) is not None:  # this newer label replaces one waiting
                self.pending_changed.emit(self._waiting_count())
            stored = self._stored_under.get(image_id)
            if stored is not None and not self._in_flight.get(image_id) and state.same_content(stored):
                # back to the label the database holds (an undo of an edit it refused, a connection lost): nothing
                # to write; it wrote a revision that changed nothing, "undo class" over no class (a session-43 probe)
                self._settled(image_id, seq)
                if guess is not None:
                    self.state_settled.emit(guess, None)
            else:
                self._write(_Write(seq, image_id, state, changed, source, self._seen.get(image_id),
                                   bool(self._in_flight.get(image_id)), refused, follow, guess))
        if guess is None and self.image_id is not None and follow:
            # Undo of an edit made on another image: bring that image back so the change is seen.
            self.reload(image_id)
        if replay and follow:
            self.replayed.emit(image_id)
        return True

    def _write(self, w: "_Write") -> None:
        self._in_flight.setdefault(w.image_id, []).append(w.seq)
        self._flying.setdefault(w.image_id, {})[w.seq] = w.state
        if not self._slow_writes.isActive():
            self._slow_writes.start()

        def work() -> tuple[str, Any]:  # on the label-writes thread
            earlier = self._chain_failed.get(w.image_id) if w.chained else None
            if earlier is not None:
                return "skipped", earlier  # an earlier write of this image was refused: this one follows it
            expected = self._chain.get(w.image_id, w.base) if w.chained else w.base
            try:
                saved = self.service.save(w.image_id, w.state, w.changed, expected_revision=expected,
                                          source=w.source, wait_s=self.WRITE_WAIT_S)
            except LabelConflict as exc:
                self._chain_failed[w.image_id] = "conflict"
                return "conflict", exc
            except UnreadableImage as exc:  # final: nothing saved, the step undone, said (not kept and retried)
                return "unreadable", exc
            except Exception as exc:  # noqa: BLE001 - kept and retried; the reason is shown
                self._chain_failed[w.image_id] = "failed"
                return "failed", exc
            self._chain[w.image_id] = saved.label.revision
            return "saved", (saved, self._row_after_save(w.image_id))
        self._writes.call(work, lambda outcome: self._written(w, outcome),
                          lambda text: self._written(w, ("failed", RuntimeError(text))))

    @staticmethod
    def _drop_undo_step(w: "_Write") -> None:
        """Takes a refused write's step off the undo stack (``w.refused``), if it has one. Its undo step may be gone
        already (the stack cleared or its command deleted): logged, since the refusal is still said by the caller."""
        if w.refused is None:
            return
        try:
            w.refused()
        except RuntimeError as exc:
            log.warning("could not drop the refused undo step of image %d: %s", w.image_id, exc)

    def _written(self, w: "_Write", outcome: tuple[str, Any]) -> None:
        """A write's answer, on the GUI thread, in the order the writes were made."""
        self._retry_aside()
        kind, value = outcome
        self._off_queue(w.image_id, w.seq)
        flying = self._flying.get(w.image_id, {})
        flying.pop(w.seq, None)
        if not flying:
            self._flying.pop(w.image_id, None)
        if kind == "saved":
            saved, item = value
            self._stored(w.image_id, w.seq, saved, item)
            if w.guess is not None:
                self.state_settled.emit(w.guess, saved.moved)
            else:
                self.state_moved.emit(saved.moved)
            self.label_saved.emit(w.image_id)
            return
        if w.guess is not None:
            self.state_settled.emit(w.guess, None)  # not stored: the counts say what the database holds
        if kind == "unreadable":
            # ``ReviewService.save`` refused it: the file cannot be read (a key held while the label was read, or a
            # gallery decision, reached the save before the viewer's refusal could act: a session-52 audit)
            self._settled(w.image_id, w.seq)
            self._drop_undo_step(w)
            self.refused += 1
            if self._shows(w.image_id):
                self.reload(w.image_id)
            self.note.emit(f"Not saved: {value}")
            return
        if kind == "conflict" or (kind == "skipped" and value == "conflict"):
            newest = self._settled(w.image_id, w.seq)
            self._drop_undo_step(w)
            if kind == "conflict":
                self._conflict(value, w.changed, bring_back=w.follow)
            elif newest and self.image_id == w.image_id:
                # The conflict's re-read can come back while this later edit still stood on screen over it (an
                # undo made before the refusal came): the stored label was never shown. Read it again.
                self.reload(w.image_id)
        else:  # refused for now (locked, server gone) or after such a refusal: kept and retried
            if kind == "failed":
                self._locked = isinstance(value, StorageBusy)
            self._keep_pending(w.image_id, w.seq, w.state, w.changed, w.source)
            if kind == "failed":
                # Not a modal box: the retry may save it while a box still said it was not saved. The
                # status bar's "not saved yet" mark stays exactly as long as a label waits.
                self.save_waiting.emit(f"Could not save the label of {self.named(w.image_id)} yet "
                                       f"({str(value).rstrip('.')}). It is kept and will be saved as soon as the "
                                       "database accepts it.")

    def _say_writes_wait(self) -> None:
        """The screen shows labels the database does not hold yet: said while they are on their way."""
        waiting = sum(1 for seqs in self._in_flight.values() if any(s >= 0 for s in seqs))
        if waiting and not self._closed:
            self.message.emit(f"Saving {plural(waiting, 'label')}… (the database is slow to answer; "
                              f"{agree(waiting, 'it is', 'they are')} shown already and saved in the order made)")
            self._slow_writes.start()

    def _off_queue(self, image_id: int, marker: int) -> None:
        """A write (its edit's number; -1: a retry) has answered: when nothing of the image is on the writer's
        queue any more, its chain ends."""
        seqs = self._in_flight.get(image_id, [])
        if marker in seqs:
            seqs.remove(marker)
        if not seqs:
            self._in_flight.pop(image_id, None)
            self._chain.pop(image_id, None)
            self._chain_failed.pop(image_id, None)

    def _settled(self, image_id: int, seq: int) -> bool:
        """Edit ``seq`` answered: when it is the image's newest, the label on screen no longer waits (True)."""
        if self._newest.get(image_id, 0) > seq:
            return False
        self._newest.pop(image_id, None)
        self._local.pop(image_id, None)
        self._stored_under.pop(image_id, None)
        if image_id not in self._pending:   # a waiting label keeps when it was made (its recovery file's time)
            self._decided.pop(image_id, None)
        return True

    def _stored(self, image_id: int, seq: int, saved: Any, item: Any) -> None:
        """Edit ``seq`` is in the database: the stored label and row replace the shown ones when no newer edit of
        the image is on its way."""
        self._locked = False
        self._drop_superseded([image_id])   # an edit made on a recovery file's label is saved: the file goes
        self._seen[image_id] = saved.label.revision
        self._own_rev[image_id] = saved.label.revision
        self._landed[image_id] = saved.label   # a read that began before this landed returns an older revision
        self._landed.move_to_end(image_id)
        while len(self._landed) > LANDED_KEPT:  # the image the session is on stays: a decision on a selection of
            # more than LANDED_KEPT images landed its save first and then pushed it out, so its re-read (begun before)
            # showed the older label and the next key was refused as "changed at another station" (a probe)
            del self._landed[next(k for k in self._landed if k != self._target)]
        if not self._settled(image_id, seq):
            self._stored_under[image_id] = saved.label  # what a later edit of the image, still unsaved, replaces
            return
        if self._shows(image_id):
            self.label = saved.label
            self.label_changed.emit(saved.label)
        if item is not None:
            if self.detail is not None and self.detail.item.image_id == image_id:
                self.detail = replace(self.detail, item=item)
            self.item_changed.emit(item)

    def _keep_pending(self, image_id: int, seq: int, state: LabelState, changed: str, source: str | None) -> None:
        if seq < self._pending_seq.get(image_id, 0):
            return  # a newer label of this image already waits
        self._pending[image_id] = (state, changed, source)
        self._pending_seq[image_id] = seq
        self._retry.start()
        self.pending_changed.emit(self._waiting_count())

    def _conflict(self, exc: LabelConflict, changed: str, kept_in: str | None = None,
                  bring_back: bool = False) -> None:
        """Someone saved the image after the revision this edit was made on: nothing is saved,
        the newer label is shown, and the inspector is told once (their edit is one key to redo;
        ``kept_in``: where a refused waiting label was written). ``bring_back``: the answer came after the
        window moved on (Accept's advance): the image is shown again, as the message says."""
        if exc.revision:
            # theirs: a later edit is based on it, and no undo or redo of a step made before it is written over it.
            # Forgotten instead, an undo after a refused retry (or a refused part of a gallery decision) was written
            # with no revision check and replaced their label without a word (session-45 probes).
            self._seen[exc.image_id] = exc.revision
            self._foreign[exc.image_id] = (self._marks, exc.author or "someone", exc.file_changed)
        else:  # the image or its answer is gone (LabelGone): nothing of it to base an edit on
            self._seen.pop(exc.image_id, None)
            if isinstance(exc, LabelGone):   # its row gone, the service could not name its file: this window can
                exc = exc.naming(self._file_of(exc.image_id))
        self._stored_under.pop(exc.image_id, None)  # theirs, not known here: a later waiting edit is written
        self.conflicts += 1
        if self.image_id == exc.image_id:
            self.reload(exc.image_id)  # first: the warning below may be a modal box
        elif bring_back:
            self.bring_back.emit(exc.image_id)
        what = f" ({changed})" if changed else ""
        kept = f" Your label of {self.named(exc.image_id)} is kept in {kept_in}." if kept_in else ""
        self.save_failed.emit(f"Not saved{what}: {exc}. {exc.next_step}{kept}")

    def unsaved(self, image_id: int) -> LabelState | None:
        """This window's label of ``image_id`` that the database does not hold yet (on its way, or waiting)."""
        local = self._local.get(image_id)
        return None if local is None else local[0]

    def _saw(self, image_id: int, label: LabelState) -> None:
        """The stored label read for ``image_id``: edits are based on its revision, and one this window did not save
        (newer than its own) refuses replays of the undo steps made before it (``foreign_after``)."""
        self._seen[image_id] = label.revision
        if label.revision > self._own_rev.get(image_id, label.revision):
            self._foreign[image_id] = (self._marks, label.author or "someone",
                                       set_aside_by_station(label.author, label.note))

    def edit_mark(self) -> int:
        """A new undo step's place in time, for ``foreign_after``."""
        self._marks += 1
        return self._marks

    def foreign_after(self, image_id: int, mark: int) -> str | None:
        """Why an undo or redo of the step made at ``mark`` must not be written: after it, this window showed a
        label of the image that it did not save (another station, window or an import). The write was based on the
        revision shown, so it replaced theirs without a word (found by a session-43 probe: set class, another
        station saves, the window re-reads it and says so, Ctrl+Z puts the old class back over theirs). None: go on."""
        foreign = self._foreign.get(image_id)
        if foreign is None or foreign[0] < mark:
            return None
        if foreign[2]:   # the station set it aside: no one labelled it elsewhere (a session-48 review)
            return (f"Not undone or redone: {self.named(image_id)} changed on disk after this step, so the station set "
                    "its label aside (the earlier one is in the history). Look at the image anew and make the change "
                    "again if it still holds.")
        return (f"Not undone or redone: {self.named(image_id)} was labelled by {foreign[1]} elsewhere after this step; "
                "their label stands (it is on screen and in the history). Make the change again if it still holds.")

    def named(self, image_id: int) -> str:
        """The image as messages name it: its file, by its path in the folder, or for one this window never read (a
        label left by an earlier session) as its recovery file names it ("image 3" where that file is older than the
        path it keeps), else as the gallery lists it (an image whose read failed). A session-52 audit: "Could not save the label of
        image 3 yet", "Could not flag image 3 yet", "Cannot load image 6" named a database id that no screen shows."""
        return self._file_of(image_id) or f"image {image_id}"

    def _file_of(self, image_id: int) -> str | None:
        """The image's file as ``named`` names it, or None where this window knows none (GUI thread)."""
        row = self._rows.get(image_id)
        if row is not None:
            return row.rel_path
        kept = self._replays.get(image_id)
        if kept is not None:
            return kept[1].image_path
        listed = self.listed(image_id)
        return listed.rel_path if listed is not None else None

    def _lost(self, text: str) -> None:
        """A key, decision or flag the database did not take (no label holds it, nothing retries it): said now,
        and to a closing window, which asks before it goes (``ClosingLabels``)."""
        self.save_failed.emit(text)
        self.intent_lost.emit(text)

    def intents_waiting(self) -> int:
        """Keys held for an image whose detail is on its way, reads of images a decision waits for (a gallery
        selection's, a history restore's), and flags on their way: no label holds them yet, so a closing window
        waits for them (a flag asked for on a locked database held the GUI thread for the busy timeout as the
        window closed, and was then lost without a word)."""
        return (len(self._deferred) + (1 if self._reads.busy else 0) + (1 if self._flags.busy else 0)
                + len(self._flags_waiting))

    def unsaved_count(self) -> int:
        """Labels shown here that the database does not hold yet (on their way, or waiting to be retried)."""
        return len(self._local)

    def writes_idle(self) -> bool:
        """No label is on its way to the database (waiting ones aside)."""
        return not self._writes.busy

    def wait_for_writes(self, timeout_s: float = 30.0) -> bool:
        """Let the labels on their way land (closing the window; tests)."""
        return self._writes.wait_idle(timeout_s)

    def _flush_later(self) -> None:
        """The retry timer: the waiting labels are tried again on the label-writes thread."""
        self._take_behind()   # (an edit on top of the label before it, saved without a retry)
        if not self._pending or self._flushing or self._closed or self._closing:
            return
        self._flushing = True
        todo = self._waiting_tries()
        for image_id, *_rest in todo:
            self._in_flight.setdefault(image_id, []).append(-1)  # later edits chain on these tries

        def done(outcomes: list) -> None:
            self._flushing = False
            self._flushed(outcomes)
        self._writes.call(lambda: self._flush_work(todo, self.WRITE_WAIT_S, chain=True), done,
                          lambda text: done([]))

    def flush_pending(self, patient: bool = False) -> bool:
        """Retry labels the database refused, here and now; True when nothing is left waiting (closing the
        window: ``patient`` waits the database's busy timeout, after the labels on their way have landed).
        Each try waits ``WRITE_WAIT_S`` for the lock, and a round stops after two refusals for the lock in a
        row: on SQLite the whole file is locked and the rest would stand still in turn for nothing, while on
        PostgreSQL one image's row may be locked and the others still go through."""
        if not self.wait_for_writes():
            # Writes still on their way (a server gone): their labels wait with the others, so that none is
            # lost if the window closes now (one that lands later makes this try a conflict, kept in a file).
            self._adopt_on_the_way()
        self._flushed(self._flush_work(self._waiting_tries(), None if patient else self.WRITE_WAIT_S, chain=False))
        return not self._pending

    def settle_before_close(self, done: Callable[[bool], None]) -> None:
        """Closing the window without standing still: the labels on their way land, then one patient try of the
        waiting ones (each may wait the database's busy timeout), all on the label-writes thread, in order after
        them; ``done(True)`` on the GUI thread when nothing is left waiting. The retry timer stops: no round of
        its own runs beside this one. Until ``done``, ``rescue_pending(on_the_way=True)`` keeps everything."""
        self._retry.stop()
        self._closing = True

        def try_waiting(_barrier: object) -> None:  # every earlier write has answered (one thread, answers in order)
            todo = self._waiting_tries()
            for image_id, *_rest in todo:
                self._in_flight.setdefault(image_id, []).append(-1)

            def tried(outcomes: list) -> None:
                self._flushed(outcomes)
                done(not self._pending)
            self._writes.call(lambda: self._flush_work(todo, None, chain=False), tried, lambda _text: done(False))
        self._writes.call(lambda: None, try_waiting, lambda _text: try_waiting(None))

    def _waiting_tries(self) -> list[tuple[int, int, tuple[LabelState, str, str | None], int | None,
                                           LabelState | None, Replay | None]]:
        """The waiting labels as a retry round takes them: (image id, its edit's number, the label, the revision
        it is based on, the stored label it replaces when known, its recovery file where it is one an earlier
        session left)."""
        return [(image_id, self._pending_seq.get(image_id, 0), waiting, self._seen.get(image_id),
                 self._stored_under.get(image_id), self._replay_of(image_id))
                for image_id, waiting in self._pending.items()]

    def _replay_of(self, image_id: int) -> Replay | None:
        """The recovery file the image's waiting label is, while no newer edit of the image replaced it."""
        kept = self._replays.get(image_id)
        return kept[1] if kept is not None and self._pending_seq.get(image_id) == kept[0] else None

    def _row_after_save(self, image_id: int) -> Any:
        """The saved image's queue row, read on the thread that saved it (None if that read fails: logged)."""
        try:
            return self.service.item(image_id)
        except Exception as exc:  # noqa: BLE001 - the label is saved; a failed re-read is logged
            log.warning("image %d re-read after save failed: %s", image_id, exc)
            return None

    def _flush_work(self, todo: list, wait_s: float | None, chain: bool) -> list[tuple[int, int, str, Any]]:
        """The tries of a retry round (any thread): (image id, its waiting label's number, outcome, value)."""
        out: list[tuple[int, int, str, Any]] = []
        busy_in_a_row = 0
        for image_id, seq, (state, changed, source), base, stored, replay in todo:
            if stored is not None and state.same_content(stored):
                out.append((image_id, seq, "unchanged", None))  # its edits were undone: nothing to write
                continue
            if busy_in_a_row >= BUSY_IN_A_ROW:
                out.append((image_id, seq, "untried", None))
                continue
            try:
                if replay is not None:  # an earlier session's label: its file's revision, author and source
                    kind, replayed = self.service.replay(replay, wait_s)
                    if replayed is None:  # the database held it already, or someone saved the image since
                        out.append((image_id, seq, "recovered", (kind, replay)))
                        continue
                    saved = replayed
                else:
                    saved = self.service.save(image_id, state, changed, expected_revision=base, source=source,
                                              wait_s=wait_s)
            except LabelConflict as exc:
                if isinstance(exc, LabelGone) and replay is not None:  # its file is set aside (``service.replay``)
                    out.append((image_id, seq, "gone", (exc, replay)))
                    continue
                # Saved elsewhere while this one waited: theirs stands; this one is kept in a file.
                try:
                    made = self._decided.get(image_id)   # one atomic read of the GUI thread's dict (a datetime)
                    where = self.service.keep_conflicted({image_id: state}, {image_id: made} if made else None)
                except Exception as write_exc:  # noqa: BLE001 - said to the inspector
                    where = f"no file (it could not be written: {write_exc})"
                out.append((image_id, seq, "conflict", (exc, changed, where)))
                continue
            except UnreadableImage as exc:  # final: the file cannot be read now, the same save is refused again
                out.append((image_id, seq, "unreadable", exc))
                continue
            except StorageBusy as exc:  # still locked: kept for the next round
                log.warning("retry of image %d refused, kept pending: %s", image_id, exc)
                busy_in_a_row += 1
                out.append((image_id, seq, "busy", exc))
                continue
            except Exception as exc:  # noqa: BLE001 - kept pending for the next retry; logged
                log.warning("retry of image %d failed, kept pending: %s", image_id, exc)
                out.append((image_id, seq, "failed", exc))
                continue
            busy_in_a_row = 0
            if chain:
                self._chain[image_id] = saved.label.revision
            out.append((image_id, seq, "saved", (saved, self._row_after_save(image_id))))
        return out

    def _unpend(self, image_id: int, seq: int) -> None:
        """A retry round's label of the image (edit ``seq``) has its answer: it waits no more, unless a newer edit
        of the image replaced it while the round ran (that one waits on)."""
        if self._pending_seq.get(image_id) == seq and image_id in self._pending:
            del self._pending[image_id]
            self._pending_seq.pop(image_id, None)

    def _answered(self, image_id: int, seq: int, drop_replay: bool = True) -> bool:
        """A retry round's label of the image (edit ``seq``) was answered without a save: it waits no more, its
        replay (a recovery file's label) is forgotten unless ``drop_replay`` is false, and the image on screen is read
        again if this was its newest edit (the stored label, as it is). True when a replay was forgotten."""
        self._unpend(image_id, seq)
        dropped = drop_replay and self._replays.pop(image_id, None) is not None
        if self._settled(image_id, seq) and self.image_id == image_id:
            self.reload(image_id)
        return dropped

    def _flushed(self, outcomes: list[tuple[int, int, str, Any]]) -> None:
        self._retry_aside()
        for image_id, seq, kind, value in outcomes:
            self._off_queue(image_id, -1)
            if kind == "saved":
                saved, item = value
                name = self.named(image_id)   # named while its recovery file, if it was one, is still known
                self._unpend(image_id, seq)
                self._replays.pop(image_id, None)  # its file, if it was one, is gone (``ReviewService.replay``)
                self._stored(image_id, seq, saved, item)
                self.state_moved.emit(saved.moved)
                self.label_saved.emit(image_id)
                self.message.emit(f"Saved the label of {name} that was waiting.")
            elif kind == "conflict":
                exc, changed, where = value
                self._unpend(image_id, seq)
                self._settled(image_id, seq)
                self._drop_superseded([image_id])   # the edit is kept in a file of its own
                self._conflict(exc, changed, kept_in=where)
            elif kind == "unchanged":   # nothing written: its edits were undone
                self._answered(image_id, seq, drop_replay=False)
            elif kind in ("recovered", "gone"):   # nothing written: a recovery file's label was held already or set
                # aside
                self._answered(image_id, seq)
                answer, replay = value
                if kind == "gone":   # the image, or its model answer, is gone: said as of a label of this window's
                    # (it said "someone labelled the image since", untrue: a session-52 audit)
                    why = "the image is no longer in the database" if answer.image_gone else str(answer)
                elif answer == ASIDE:
                    why = "someone labelled the image since, and their label stands"
                else:
                    continue   # the database held it already
                self.save_failed.emit(f"The label of {replay.image()} kept from an earlier session was not saved: "
                                      f"{why}. It is kept in {recovery_dir() / CONFLICTS}.")
            elif kind == "unreadable":   # a waiting label whose file can no longer be read: retried for good, the
                # reason only logged, before (the review of a session-52 fix); said once, nothing saved
                name = self.named(image_id)
                kept = self._answered(image_id, seq)   # its recovery file stays for a later start
                self.save_failed.emit(f"The label of {name} that was waiting was not saved: {value}"
                                      + (f" Its recovery file stays in {recovery_dir()}." if kept else ""))
            elif kind == "busy":
                self._locked = True
        self._take_behind()
        self.pending_changed.emit(self._waiting_count())
        if not self._pending and not self._behind:
            self._retry.stop()

    def pending(self) -> dict[int, tuple[LabelState, str, str | None]]:
        return dict(self._pending)

    def _adopt_on_the_way(self) -> None:
        """Labels still on their way join the waiting ones (the window closes without their answer)."""
        for image_id, waiting in self._local.items():
            if image_id not in self._pending:
                self._pending[image_id] = waiting
                self._pending_seq[image_id] = self._newest.get(image_id, 0)

    def keep_safe(self) -> list:
        """The window starts closing with labels waiting or on their way: a copy of each goes to a recovery
        file now (``ReviewService.recovery_files``), without changing what is retried; the caller removes
        them once the last try has answered. Replayed at the next start only if the station was killed before."""
        # An image's newest edit is its ``_local`` one (a waiting label it replaced may still be in ``_pending``).
        newest = self._not_in_files({**self._pending, **self._local})
        if not newest:
            return []
        written = self.service.recovery_files(tag="-closing", **self._recovery_args(newest))
        self._drop_superseded(newest)   # their copies are written: a station killed now replays those alone
        return written

    def _recovery_args(self, waiting: dict) -> dict[str, Any]:
        """What a recovery file keeps of these waiting labels (``keep_safe``'s and ``rescue_pending``'s one list):
        each label, the revision it was based on, its file, the writes still landing, when it was decided and how
        the image came to be labelled."""
        return {"labels": {i: w[0] for i, w in waiting.items()}, "bases": {i: self._seen.get(i) for i in waiting},
                "images": self._files_of(waiting), "landing": self._landing(waiting), "decided": self._decided,
                "sources": {i: w[2] for i, w in waiting.items()}}

    def _files_of(self, image_ids) -> dict[int, tuple[str | None, str | None]]:
        return {i: (self._rows[i].path, self._rows[i].content_hash) for i in image_ids if i in self._rows}

    def _landing(self, image_ids) -> dict[int, list[str]]:
        """Per image, the labels of this window's writes still on their way: one may land after a recovery file
        based on the revision before it is written (``ReviewService.recover`` then replays the file on it)."""
        return {i: [st.content_digest() for st in self._flying[i].values()] for i in image_ids if i in self._flying}

    def rescue_pending(self, on_the_way: bool = False) -> str | None:
        """On close with the database still refusing: write the waiting labels to files; ``on_the_way``: also
        those still on their way (closing without waiting for their answer: one that lands after all makes its
        file a no-op at the next start, ``ReviewService.recover``)."""
        if on_the_way:
            self._adopt_on_the_way()
        if not self._pending:
            return None
        waiting = self._not_in_files(self._pending)
        where = self.service.write_recovery(**self._recovery_args(waiting))
        self._drop_superseded(waiting)   # the edits made on recovery files' labels are in files of their own
        return where

    def _not_in_files(self, waiting: dict) -> dict:
        """``waiting`` without the labels an earlier session left in recovery files still there (``adopt_recovered``):
        their files stay as they are (a copy would name this station's reviewer as the label's author)."""
        return {i: w for i, w in waiting.items() if self._replay_of(i) is None}

    def adopt_recovered(self, replays: Sequence[Replay]) -> None:
        """Labels an earlier session left in recovery files that the start-up could not save, the database busy
        (``ReviewService.recover``'s ``waiting``): they wait with this window's own, shown on their images, in the
        "not saved yet — retrying" mark, and the retry saves each from its file when the database accepts writes. A
        session-52 audit: the start-up stood still 10 s per file, then said nothing, the images showed unreviewed,
        and nothing tried them again in that session. An edit made on top of one replaces it (its file goes).

        All are taken, in ``replays``'s order (``recover``'s, by file name, which begins with the second it was
        written). One label of an image waits at a time (it is what the image shows, and what an edit replaces);
        another of the same image (two inspectors' files) waits behind it and is replayed once it is answered, on the
        image as it then is, as a start with the database free replays the files one after the other: a session-53 fix,
        where a second label of one image stayed in its file until the next start (a session-52 audit)."""
        for r in replays:
            if r.image_id in self._local or r.image_id in self._behind:
                self._behind.setdefault(r.image_id, []).append(r)
            else:
                self._adopt(r)
        if replays:
            self._locked = True   # the start-up found the database locked: edits join them without a try
            self.pending_changed.emit(self._waiting_count())

    def _adopt(self, r: Replay) -> None:
        """One recovery file's label waits for the database as the image's newest edit (``adopt_recovered``)."""
        self._seq += 1
        self._newest[r.image_id] = self._seq
        self._local[r.image_id] = (r.state, r.note, r.source)
        self._replays[r.image_id] = (self._seq, r)
        if r.base is not None:
            self._seen[r.image_id] = r.base   # an edit on top of it is made on the revision it was made on
        self._keep_pending(r.image_id, self._seq, r.state, r.note, r.source)

    def _take_behind(self) -> None:
        """The next label kept behind each image that waits for nothing now (its earlier one answered, an edit on
        top of it saved) joins the waiting ones, shown if its image is; none while the window closes: those stay in
        their files for the next start."""
        if self._closing or self._closed:
            return
        for image_id in [i for i in self._behind if i not in self._local and i not in self._pending
                         and not self._in_flight.get(i)]:
            queue = self._behind[image_id]
            self._adopt(queue.pop(0))
            if not queue:
                del self._behind[image_id]
            if self.image_id == image_id:
                self.reload(image_id)

    def _set_behind_aside(self, image_id: int, queue: list[Replay], base: int | None, retry: bool = False) -> None:
        """The inspector's edit of an image is saved (``_drop_superseded``): the labels of earlier sessions that waited
        behind the label it replaced (``adopt_recovered``) are older than it, and go to recovery/conflicts, as a start
        sets aside a label made before a newer save (``ReviewService.set_aside``); the status bar says so. Replayed
        after the edit, the next one was saved over the inspector's fresh correction where its file did not say its
        revision (a session-53 review: the image's label went back to an earlier session's without a word).

        One whose move fails is kept here (``_aside_failed``, with ``base``: the revision the edit was made on), never
        replayed, and moved at the next save's answer or at close (``_retry_aside``; ``retry``: this is such a try, its
        failure said once already, ``base`` the one kept from the first). Forgotten instead, its file stayed in
        recovery/ saying no revision, and the next start saved it over the edit without a word, while the status bar
        called that harmless (a session-53 review). ``base`` is the caller's: by a retry the window has seen the edit's
        own saved revision, and a file marked with that was saved over the edit at the next start (a session-53
        review)."""
        name, folders, failed, error = self.named(image_id), set(), [], ""
        for r in queue:
            try:
                folders.add(str(self.service.set_aside(r)))
            except OSError as exc:
                log.warning("could not set aside %s: %s", r.path, exc)
                failed.append(r)
                error = str(exc)
        if failed:
            kept, first = self._aside_failed.get(image_id, ([], base))
            self._aside_failed[image_id] = (kept + failed, first)
        said = []
        if (moved := len(queue) - len(failed)) > 0:
            said.append(f"{plural(moved, 'label')} kept from an earlier session for {name} "
                        f"{agree(moved, 'was', 'were')} set aside in {', '.join(sorted(folders))}: you labelled it "
                        "since.")
        if failed and not retry:
            n = len(failed)
            said.append(f"{plural(n, 'label')} kept from an earlier session for {name} could not be moved to "
                        f"{failed[0].path.parent / CONFLICTS} ({error}): {agree(n, 'it is', 'they are')} not saved "
                        f"over your label, and the move is tried again; if {agree(n, 'it', 'they')} still cannot be "
                        f"moved when the window closes, {agree(n, 'its file is', 'their files are')} marked so that no "
                        f"later start saves {agree(n, 'it', 'them')} (the next one sets {agree(n, 'it', 'them')} aside "
                        "where it can, and says so).")
        if said:
            self.message.emit(" ".join(said))

    def _retry_aside(self, closing: bool = False) -> None:
        """The labels whose move to recovery/conflicts failed (``_set_behind_aside``) are moved again: at a save's
        answer, and at close (``closing``), where one that still cannot be moved has its file marked superseded
        (``ReviewService.mark_superseded``), so that the next start sets it aside instead of saving it over the edit."""
        for image_id, (queue, base) in list(self._aside_failed.items()):
            del self._aside_failed[image_id]
            self._set_behind_aside(image_id, queue, base, retry=True)
            if not closing or image_id not in self._aside_failed:
                continue
            for r in self._aside_failed.pop(image_id)[0]:
                try:
                    self.service.mark_superseded(r, base)
                except (OSError, ValueError) as exc:
                    log.error("could not mark %s superseded: %s (the next start may save it over the newer label)",
                              r.path, exc)

    def _waiting_count(self) -> int:
        """Labels waiting for the database: this window's and those of recovery files kept behind them."""
        return len(self._pending) + sum(len(q) for q in self._behind.values())

    def _supersede_replay(self, image_id: int) -> None:
        """A new edit of an image showing a label left in a recovery file: made on top of it, it replaces the label,
        and the file goes once the edit is saved (``_drop_superseded``; kept, the next start would replay it and set
        the newer label's copy aside). Not at once: an undo back to it then wrote its content as this window's
        reviewer's label, "undo class", its author and its "recovered" note lost (a session-52 audit). The labels of
        earlier sessions waiting behind it are older than the edit: they wait no more, and are set aside with the file's
        going (``_set_behind_aside``); set aside at once, an undo before the save left them in conflicts, never
        replayed, though the edit never reached the database (a session-53 review)."""
        kept = self._replays.pop(image_id, None)
        if kept is not None:
            self._superseded[image_id] = kept[1]
        if image_id in self._superseded and (queue := self._behind.pop(image_id, None)):
            self._superseded_behind.setdefault(image_id, []).extend(queue)
            self.pending_changed.emit(self._waiting_count())

    def _restore_replay(self, image_id: int, seq: int, state: LabelState) -> bool:
        """An undo (or redo) back to the recovery file's label an edit replaced: the file's label waits again, saved
        from its file (its revision, author and note), while the edit on top of it was never sent to the database
        (one on its way may land: then the undo is this window's edit like any other)."""
        r = self._superseded.get(image_id)
        if r is None or self._in_flight.get(image_id) or not state.same_content(r.state) or not r.path.exists():
            return False
        del self._superseded[image_id]
        self._replays[image_id] = (seq, r)
        if behind := self._superseded_behind.pop(image_id, None):   # they wait behind it again, in their order
            self._behind[image_id] = behind + self._behind.get(image_id, [])
        return True

    def _drop_superseded(self, image_ids: Iterable[int]) -> None:
        """The edits made on top of these images' recovery-file labels are saved (in the database, or in a recovery
        file of their own): the files they replaced go, and the labels that waited behind them are set aside."""
        for image_id in image_ids:
            r = self._superseded.pop(image_id, None)
            if r is not None:
                self.service.drop_recovery(r)
            if behind := self._superseded_behind.pop(image_id, None):
                self._set_behind_aside(image_id, behind, self._seen.get(image_id))   # (the revision it was made on)


@dataclass(frozen=True)
class _Waiting:
    """What waits for an image's read in ``ReviewController._deferred``: a key pressed, or (``key`` False) a clear or a
    move-on queued behind keys. Kept on the entry itself: a side list of the non-keys had to be pruned with the queue,
    and counted as keys they read "3 key(s) wait" for two keys pressed with an empty folder's clear behind them (a
    session-50 audit)."""

    target: int                    # the image whose read it waits for
    intent: Callable[[], None]     # run when that read lands
    key: bool = True


def _keys_among(waiting: Iterable[_Waiting]) -> int:
    """How many of ``waiting`` are keys pressed (not a clear nor a move-on queued behind them)."""
    return sum(1 for w in waiting if w.key)


@dataclass(frozen=True)
class _Write:
    """One label on its way to the database (plain data for the label-writes thread)."""

    seq: int                   # its number among this window's edits (newer edits of an image win)
    image_id: int
    state: LabelState
    changed: str
    source: str | None         # how the image came to be labelled (ADR 0049)
    base: int | None           # the stored revision the edit was made on
    chained: bool              # an earlier write of the image was on its way: based on that one's revision
    refused: Callable[[], None] | None  # told when the label was saved elsewhere meanwhile
    follow: bool = True        # an edit of the image on screen (not one of a bulk decision)
    guess: StateMove | None = None  # the counts' move shown at once (the image on screen), settled by the answer


def _newer(a: ImageDetail, b: ImageDetail) -> bool:
    """True when ``a`` holds a newer prediction than ``b`` (prediction ids only grow)."""
    if a.prediction is None:
        return False
    if b.prediction is None:
        return True
    return max(a.prediction.prediction_ids.values(), default=0) > max(b.prediction.prediction_ids.values(), default=0)


def _none_if_empty(mask: np.ndarray | None) -> np.ndarray | None:
    return None if mask is None or not mask.any() else mask.astype(bool)
