"""The review queue behind the gallery: filtering, ordering and keyboard navigation.

An image whose state changes stays where it is until the next refresh (even if it no longer
matches the filter), so the list never jumps under the inspector's cursor.

A new filter or order shows its first page at once with a bounded count (the rows up to a few
pages past those read); when there are more, the exact count follows from a helper thread
and the scroll bar grows to it (ADR 0024: an exact count of a filter that reads predictions or
names costs every image of a million-image folder).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from PySide6.QtCore import QObject, QPoint, QTimer, Signal

from app.gui.gallery_model import GalleryModel
from app.gui.gallery_view import GalleryView
from app.gui.thumbnails import DecodePool, off_thread
from app.services.review_types import QueueFilter, QueueItem, QueuePage, StateMove

log = logging.getLogger(__name__)
NONE_LEFT = "No unreviewed image left in this view."
# A new view's first count stops this many pages past the pages it reads: arrow keys and
# scrolling have that much room before the exact count comes (seconds at a million images).
BOUND_PAGES = 8
# After a save the shown per-state counts move by the save's own move at once; an exact recount
# of the folder (a whole-folder aggregate: 0.1 s at a million images on SQLite, more on a busy
# server) follows at most this often, as the check that also brings other stations' saves.
RECOUNT_MS = 3000


OFF_NEIGHBOURS = 64   # images after the one on screen remembered when it leaves the list


class QueueController(QObject):
    current_changed = Signal(int)     # image id chosen (by click or keyboard)
    counts_changed = Signal(dict)     # review state -> count for the current folder
    message = Signal(str)
    failed = Signal(str)
    left_view = Signal(int)           # the image on screen is no longer listed by this view (its file went, ...)
    emptied = Signal()                # a view of another folder lists no image: the image on screen goes
    _read_done = Signal(object, object, str)  # filter, QueueRead | None, error (from the reader thread)
    _view_done = Signal(int, object, object, object, str)  # ticket, filter, (keep, shown, recount), QueueRead | None, error
    _page_done = Signal(object, int, object)  # filter, page number, QueuePage (from the page reader)
    _counts_done = Signal(object, object)     # (folder id, save generation), counts | error (from the tally)
    _seek_done = Signal(object, object, object, str)  # filter, current id then, (Found, page) | None, error
    _count_done = Signal(object, object)      # filter, its exact count | error text (from the counter)

    def __init__(self, service, model: GalleryModel, view: GalleryView, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.service = service
        self.model = model
        self.view = view
        self.filter = QueueFilter()
        self._last_filter: QueueFilter | None = None
        self._counts: dict[str, int] = {}
        self._reading = False
        self._awaiting = False   # a folder is being indexed: its images are not listed yet
        self._indexed: int | None = None  # the folder awaited, indexed now: its next view ends the wait (``indexed``)
        # The image on screen when a background re-read no longer listed it (its file went, or its
        # label moved it out of the filter): it stays on screen and under the keys, never swapped
        # for another image behind the inspector's back; cleared when anything is chosen.
        self._off_view: int | None = None
        self._off_row: int | None = None  # the row it had when it left the list (J, K and N go on from there)
        # the images that followed it in the list it left (nearest first, the rows read then): J, K and N go on from
        # the first of them still listed (the rows above it may have left too: a re-read dropped five labelled images
        # at once, and J went five rows too far, K forwards; a session-48 probe)
        self._off_after: tuple[int, ...] = ()
        self._pending_nav = 0    # N / Shift+N pressed meanwhile, done once they are
        self._reader = DecodePool(1, 1, "queue-reader")
        # A view the inspector asks for (filter, order, folder): newest first, an answer overtaken dropped.
        self._view_pool = DecodePool(1, 1, "queue-view")
        self._view_ticket = 0
        self._viewing = False
        self._after_view: list[Callable[[], object]] = []
        self._view_failed = False  # the last view asked could not be read (a move waiting for it is not made)
        self._asked_keep: int | None = None  # the image on screen the last view was asked with
        self._off_kept: tuple[int | None, int | None, tuple[int, ...]] = (None, None, ())
        self._landed_on: int | None = None   # the image on screen when the last view asked landed
        # Pages newest-first: while the inspector drags the scroll bar, the page now on screen
        # is read before those it flew past (dropped requests are asked for again).
        self._pages = DecodePool(1, 4, "queue-pages")
        # N beyond the rows read: one search of the whole queue at a time, never dropped.
        self._seeker = DecodePool(1, 2, "queue-seek")
        self._bulk = DecodePool(1, 1, "queue-selection")  # the pages of a selection not read yet, in one job
        self._seeking = False
        # The exact count after a bounded one: newest filter first, stale ones dropped.
        self._counter = DecodePool(1, 1, "queue-count")
        self._count_exact = True
        # The per-state counts of the folder (a whole-folder aggregate: 0.3 s at a million
        # images): newest request first; an answer for another folder, or read before a save
        # moved a state, is dropped.
        self._tally = DecodePool(1, 1, "queue-state-counts")
        self._tally_gen = 0
        # ids of guessed moves (edits on their way) not settled yet: no recount replaces the counts meanwhile
        self._guesses_out: set[int] = set()
        # Whether every label save sent has had its answer here (the window's writer): a recount read after a save
        # committed but shown before the save's answer counted it, and the answer's move then counted it again
        # ("121 images" in a folder of 120 for up to 3 s; a session-45 probe). Wired by the window.
        self.saves_answered: Callable[[], bool] = lambda: True
        self._guessed: set[int] = set()  # ids of the guesses shown in the counts (settle takes back only those)
        # The check after saves: one recount at most every RECOUNT_MS, however many saves.
        self._recount = QTimer(self)
        self._recount.setSingleShot(True)
        self._recount.setInterval(RECOUNT_MS)
        self._recount.timeout.connect(self.update_counts)
        self._count_done.connect(self._on_count)
        self._read_done.connect(self._on_read)
        self._view_done.connect(self._on_view)
        self._page_done.connect(self._on_page)
        self._counts_done.connect(self._on_counts)
        self._seek_done.connect(self._on_seek)
        model.page_wanted.connect(self._read_page)
        view.current_image_changed.connect(self.current_changed)
        view.current_image_changed.connect(self._chosen)

    def set_filter(self, flt: QueueFilter) -> None:
        """A new filter or order: the state counts are the folder's, so only another folder
        re-counts them."""
        same_folder = flt.folder_id == self.filter.folder_id and bool(self._counts)
        if flt.folder_id != self.filter.folder_id and self._counts:
            self._emit_counts({})  # the other folder's counts are not this one's: none until they come
            self._guesses_out.clear()  # their edits moved the other folder's counts
            self._guessed.clear()
        self.filter = flt
        self.refresh(recount=not same_folder)

    def refresh(self, keep: int | None = None, recount: bool = True) -> None:
        """Re-read the queue (a user's view: a filter, an order, a folder) on the view thread; the answer is shown
        when it comes, the newest asked winning. Reads the count and the pages on screen only, whatever the
        folder's size. Read here, it held the window for every statement of the count and the first page (a
        search: sixteen; 24 s on a slow server, nothing on screen; a session-45 probe). ``after_view`` runs what
        needs the new view's rows."""
        keep = self.current_id() if keep is None else keep
        if keep is None:  # shown off the list; or so while an earlier view is read (its reset cleared _off_view: a
            keep = self._on_screen()  # second search asked meanwhile lost the image, a session-50 review)
        self._asked_keep = keep  # the image on screen the view was asked with (off the list: ``_off_view`` is reset)
        if not self._viewing:  # where an image shown off the list stood, put back if the views asked all fail
            self._off_kept = (self._off_view, self._off_row, self._off_after)
        self._off_view = self._off_row = None  # a view the inspector chose: its first image when the shown one is not in it
        self._off_after = ()
        flt = self.filter
        # Another view: a bounded count (its first page now, the exact count after).
        pages, bound = self._pages_to_read(flt), flt != self._last_filter
        self._view_ticket += 1
        ticket, shown = self._view_ticket, self.current_id()

        def read() -> None:
            try:
                self._view_done.emit(ticket, flt, (keep, shown, recount), self._read(flt, pages, bound=bound), "")
            except Exception as exc:  # noqa: BLE001 - thread boundary; the reason goes to the GUI thread
                log.exception("queue query failed")
                self._view_done.emit(ticket, flt, (keep, shown, recount), None, str(exc))
        self._viewing = True
        self._view_pool.submit(read)

    def _on_view(self, ticket: int, flt: QueueFilter, asked: tuple, read, error: str) -> None:
        if ticket != self._view_ticket:
            return  # a newer view was asked meanwhile: its answer is the one to show
        self._viewing = False
        self._view_failed = bool(error)
        keep, shown, recount = asked
        if error:
            self.failed.emit(f"Cannot read the review queue: {error}")
            if self.current_id() is None and self._off_kept[0] is not None:
                # the old list stays on screen, and so does the image shown off it: its place is kept (a failed read
                # forgot it, and J then went to the top, a session-50 review)
                self._off_view, self._off_row, self._off_after = self._off_kept
        elif flt == self.filter:
            now = self.current_id()
            if now is not None and now != shown:  # the inspector moved on in the old view meanwhile: that image
                keep = now
            self._apply(read, keep, flt)
            if not read.exact:
                self._count_exactly(flt)
            if recount:
                self.update_counts()  # on a helper thread: the GUI thread never waits on storage
        waiting, self._after_view = self._after_view, []
        self._landed_on = self._on_screen()   # one reading for every move that waited (J J J: three moves)
        for then in waiting:
            then()

    def after_view(self, then: Callable[[], object]) -> None:
        """Run ``then`` once the view asked last is shown (now, when none is on its way)."""
        if self._viewing:
            self._after_view.append(then)
        else:
            then()

    def reading(self) -> bool:
        """A read of the queue is on its way (a view asked, or a background re-read)."""
        return self._viewing or self._reading

    def refresh_in_background(self) -> None:
        """Re-read the queue on a helper thread (progress of a job: the window never waits);
        skipped while the previous read, or a view asked, is still running."""
        if self._reading or self._viewing:
            return
        self._reading = True
        flt = self.filter
        pages = self._pages_to_read(flt)

        def read() -> None:
            try:
                self._read_done.emit(flt, self._read(flt, pages), "")
            except Exception as exc:  # noqa: BLE001 - thread boundary; the reason goes to the GUI thread
                self._read_done.emit(flt, None, str(exc))
        self._reader.submit(read)

    def _pages_to_read(self, flt: QueueFilter) -> list[int]:
        """The first page, and for the same view the pages now on screen and the current one."""
        pages = {0}
        if flt == self._last_filter and self.model.rowCount():
            vp = self.view.viewport().rect()
            rows = {self.view.indexAt(QPoint(x, y)).row() for x in (4, vp.width() // 2, vp.width() - 4)
                    for y in range(4, max(vp.height(), 5), 40)}
            rows = {r for r in rows if r >= 0} | {self.view.currentIndex().row()}
            pages.update(r // self.model.page_size for r in rows if r >= 0)
        return sorted(pages)

    def _read(self, flt: QueueFilter, pages: list[int], bound: bool = False) -> "QueueRead":
        """The count and the given pages of ``flt`` (any thread: plain data in and out). With
        ``bound`` the count stops ``BOUND_PAGES`` pages past the pages read (not exact when it
        gets there)."""
        size = self.model.page_size
        cap = (max(pages, default=0) + 1 + BOUND_PAGES) * size + 1 if bound else None
        count = self.service.queue_count(flt, at_most=cap) if cap is not None else self.service.queue_count(flt)
        exact = cap is None or count < cap
        count = count if exact else count - 1
        got: dict[int, QueuePage] = {}
        for p in pages:
            if p * size >= max(count, 1):
                continue
            before = got.get(p - 1)
            got[p] = self._fetch_page(flt, p, before.cursor if before is not None else None)
        return QueueRead(count, got, exact)

    def _count_exactly(self, flt: QueueFilter) -> None:
        """Count ``flt``'s rows on the counter thread; the model grows to them when they come."""
        off_thread(self._counter, self._count_done, flt, lambda: self.service.queue_count(flt))

    def _on_count(self, flt: QueueFilter, count) -> None:
        if flt != self.filter or flt != self._last_filter or self._count_exact:
            return  # another view by now (or a newer read already counted this one)
        if isinstance(count, str):
            self.failed.emit(f"Cannot count the review queue: {count}")
            return
        self._count_exact = True
        self.model.set_count(count)

    def count_is_exact(self) -> bool:
        """Whether the gallery's row count is the queue's (False while the exact count of a
        new view is being read: the rows so far are a lower bound)."""
        return self._count_exact

    def _fetch_page(self, flt: QueueFilter, page: int, after: object | None) -> QueuePage:
        """Page ``page`` of ``flt``: right after the previous page's cursor when known (no walk
        to the position), else from its offset. Any thread."""
        size = self.model.page_size
        if after is not None:
            return self.service.queue_page(flt, size, after=after)
        return self.service.queue_page(flt, size, offset=page * size)

    def _on_read(self, flt: QueueFilter, read, error: str) -> None:
        self._reading = False
        if self._viewing:
            return  # a view asked since is on its way: read after this one, it is shown instead
        if error:
            log.warning("background queue read failed: %s", error)
            return
        if flt == self.filter:  # the user changed the filter meanwhile: that answer wins
            self._apply(read, self.current_id(), flt, background=True)
            self.update_counts()

    def _read_page(self, page: int) -> None:
        """A page came on screen unloaded: read it on the page thread."""
        flt, after = self.filter, self.model.cursor_before(page)

        def read() -> None:
            try:
                got = self._fetch_page(flt, page, after)
            except Exception as exc:  # noqa: BLE001 - thread boundary; logged, the page is asked again
                log.warning("queue page %d failed: %s", page, exc)
                got = None
            self._page_done.emit(flt, page, got)
        if self._pages.submit(read):
            self.model.forget_wanted()

    def _read_rows(self, rows: set[int]) -> None:
        """Read every page of ``rows`` not loaded, in one job on the selection thread (a selection's rows never
        seen: Ctrl+A on a large folder). Asked of the page thread, which keeps the newest few requests, a folder of
        a hundred pages took a key press per few pages (the session-45 review)."""
        flt, size = self.filter, self.model.page_size
        pages = sorted({r // size for r in rows if 0 <= r < self.model.rowCount()} - set(self.model.loaded_pages()))

        def read() -> None:
            for page in pages:
                try:
                    got = self._fetch_page(flt, page, None)
                except Exception as exc:  # noqa: BLE001 - thread boundary; logged, the key asks again
                    log.warning("queue page %d failed: %s", page, exc)
                    got = None
                self._page_done.emit(flt, page, got)
        if pages:
            self._bulk.submit(read)

    def _on_page(self, flt: QueueFilter, page: int, got) -> None:
        if got is None:
            self.model.forget_wanted()
        elif flt == self.filter and flt == self._last_filter:
            self.model.put_page(page, got.items, got.cursor)

    def _chosen(self, _image_id: int) -> None:
        self._off_view = self._off_row = None
        self._off_after = ()

    def off_view(self) -> int | None:
        """The image on screen that this view of the queue no longer lists (None: it does, or none)."""
        return self._off_view

    def _apply(self, read: "QueueRead", keep: int | None, flt: QueueFilter, background: bool = False) -> None:
        """Show ``read``, keeping ``keep`` current where it is listed. ``background``: a re-read of the
        same view (a job's progress, another station's save, files that came or went): when the image
        on screen is no longer listed it stays on screen, unselected, and the inspector is told; the
        first image is chosen only when nothing was on screen."""
        background = background and flt == self._last_filter
        if background and keep is None:
            keep = self._off_view  # still on screen from an earlier re-read: listed again?
        bar = self.view.verticalScrollBar()
        scroll = bar.value()
        self._pages.clear()
        pages = {p: pg.items for p, pg in read.pages.items()}
        cursors = {p: pg.cursor for p, pg in read.pages.items()}
        self._count_exact = read.exact
        old_row = self.model.row_of(keep) if keep is not None else None
        following = tuple(it.image_id for r in range(old_row + 1, old_row + 1 + OFF_NEIGHBOURS)
                          if (it := self.model.item_at(r)) is not None) if old_row is not None else ()
        with self.view.selection_held(background):  # the same view read again: the chosen images stay chosen
            reset = self.model.replace_pages(read.count, pages, cursors)
        if keep is not None and self.model.row_of(keep) is not None:
            if reset or keep == self._off_view:
                self.view.select_image(keep, keep_selection=background and keep != self._off_view)
                if flt == self._last_filter:
                    bar.setValue(scroll)  # same view, new data: stay where the inspector was
        elif background and keep is not None:
            if keep != self._off_view:
                self._off_view, self._off_row, self._off_after = keep, old_row, following
                self.view.selectionModel().clear()
                self.message.emit("The image on screen is no longer in this view of the queue (its file has "
                                  "gone, or its label no longer matches the filter); it stays on screen until "
                                  "you move on.")
                self.left_view.emit(keep)
        elif read.count:
            first = self.model.item_at(0)
            if first is not None:
                self.view.select_image(first.image_id)
        elif not background:
            self._shown_nothing(keep, flt)
        self._last_filter = flt
        if self._awaiting and (read.count or flt.folder_id == self._indexed):
            self._awaiting, delta, self._pending_nav, self._indexed = False, self._pending_nav, 0, None
            if delta and read.count:
                self._first_unreviewed(delta)
            elif delta:   # said as kept "until it is listed": nothing is
                self.message.emit(self._why_empty())

    def _shown_nothing(self, keep: int | None, flt: QueueFilter) -> None:
        """A view the inspector asked for lists no image. Another folder's (an empty one): nothing of it is on
        screen, so the image left goes (``emptied``); the viewer, the label panel and the image keys stayed on the
        last folder's image, and D, F and A saved to it (a session-49 audit). The same folder under a search or a
        filter that lists nothing: the image on screen is still this folder's, so it stays, under the keys, as one
        this view does not list (as a background re-read leaves it), and the inspector is told."""
        if self._last_filter is None or flt.folder_id != self._last_filter.folder_id:
            self.emptied.emit()
        elif keep is not None:
            self._off_view, self._off_row, self._off_after = keep, None, ()
            self.message.emit("The image on screen is not in this view of the queue (a search or a filter hides "
                              "it); it stays on screen until you move on.")

    def await_items(self) -> None:
        """A folder is being indexed in the background: until its images are listed the gallery
        is empty, and an ``N`` pressed then is kept instead of going nowhere (issue 16)."""
        self._awaiting, self._indexed = True, None

    def indexed(self, folder_id: int) -> None:
        """``folder_id`` is indexed (the folder controller's last ``opened``): the view of it read after this lists
        every image it will, none included, and ends the wait. Awaited until some view listed an image, an empty
        folder (or one a search hides) stayed "still being indexed" to J and K for good, and N's kept move was made
        when the next folder opened (the review of a session-49 fix)."""
        if self._awaiting:
            self._indexed = folder_id

    def stop_awaiting(self) -> None:
        self._awaiting, self._pending_nav, self._indexed = False, 0, None

    def update_counts(self) -> None:
        """Re-count the review states on a helper thread (the window never waits for this).
        They are shown when they come, unless the folder changed or a save moved a state
        meanwhile (then counted again: the recount wins only when it was read after every
        save it is shown over)."""
        self._recount.stop()  # this count is the check a pending one would have been
        folder = self.filter.folder_id
        off_thread(self._tally, self._counts_done, (folder, self._tally_gen), lambda: self.service.counts(folder))

    def recount_soon(self) -> None:
        """An exact recount within ``RECOUNT_MS`` (not pushed back by more requests: under a
        run of saves one check lands every few seconds)."""
        if not self._recount.isActive():
            self._recount.start()

    def _on_counts(self, key, counts) -> None:
        folder, gen = key
        if folder != self.filter.folder_id:
            return  # counted for a folder no longer shown
        if isinstance(counts, str):
            self.failed.emit(f"Cannot count the review states: {counts}")
        elif gen != self._tally_gen or self._guesses_out or not self.saves_answered():
            # Also while edits are on their way: a count read before they land lacks them, and their answers would
            # take back guesses it does not hold (found by test_loop: "accepted 0" after an Accept, 1 CI run).
            # A save since may or may not be in them: count again (at once while none are shown).
            waiting = self._counts or self._guesses_out or not self.saves_answered()  # not in a loop while saving
            self.recount_soon() if waiting else self.update_counts()
        else:
            self._emit_counts(counts)

    def counts_known(self) -> bool:
        """Whether the folder's per-state counts have come (they follow a folder change)."""
        return bool(self._counts)

    def _emit_counts(self, counts: dict[str, int]) -> None:
        self._counts = dict(counts)
        self.counts_changed.emit(dict(counts))

    def update_item(self, item: QueueItem) -> None:
        """A saved or flagged image's fresh row: its cell repaints (the counts move by the
        save's ``StateMove``, ``apply_move``: the row held here may be stale)."""
        self.model.update_item(item)

    def apply_move(self, moved: StateMove | None) -> None:
        """A save's move between review states: the shown counts change by it now (it was read
        under the save's lock: exact), and an exact recount follows as the check. A recount
        already on its way was read before this save: it is dropped when it comes."""
        if moved is not None and moved.moves(self.filter.folder_id):
            self._tally_gen += 1
            if self._counts:
                self._emit_counts(moved.applied(self._counts, self.filter.folder_id))
        elif moved is None:
            self._tally_gen += 1  # a save whose move is not known: only a recount tells
        self.recount_soon()

    def apply_guess(self, guess: StateMove) -> None:
        """An edit not stored yet: the shown counts move by what the screen shows at once (the
        label is written on its own thread); ``settle`` takes the guess back for the database's
        answer. No recount here: one read before the write lands would undo the move."""
        if guess.moves(self.filter.folder_id):
            self._tally_gen += 1  # a recount on its way was read before this edit
            self._guesses_out.add(id(guess))
            if self._counts:
                self._guessed.add(id(guess))
                self._emit_counts(guess.applied(self._counts, self.filter.folder_id))

    def settle(self, guess: StateMove, real: StateMove | None) -> None:
        """The answer for a guessed move: the guess taken back, the stored move (None: not saved, or
        not known) applied, and a recount as the check."""
        self._tally_gen += 1
        self._guesses_out.discard(id(guess))
        shown = id(guess) in self._guessed  # a guess made while the counts were not known was never shown
        self._guessed.discard(id(guess))
        if self._counts:
            # Not ``applied``: guesses of one image chained on each other are taken back in the order made, and a
            # count floored at 0 on the way would not come back.
            counts = dict(self._counts)
            for move, sign in ((guess if shown else None, -1), (real, 1)):
                if move is not None and move.moves(self.filter.folder_id):
                    counts[move.before] = counts.get(move.before, 0) - sign
                    counts[move.after] = counts.get(move.after, 0) + sign
            if counts != self._counts:
                self._emit_counts(counts)
        self.recount_soon()

    def current_id(self) -> int | None:
        idx = self.view.currentIndex()
        item = self.model.item_at(idx.row()) if idx.isValid() else None
        return None if item is None else item.image_id

    def select(self, image_id: int) -> bool:
        return self.view.select_image(image_id)

    def select_alone(self, image_id: int) -> bool:
        """Select ``image_id`` and nothing else (after an undo: the next decision is for it only). Where this view
        does not list it now (an undo under a state filter brings back an image the filter had dropped), the
        selection is cleared and it is the image on screen off the list until a re-read lists it: the gallery kept
        the next image selected, and the next re-read opened that one behind the inspector's back, so the next key
        labelled it (found by a session-43 probe)."""
        if self.view.select_image(image_id, alone=True):
            return True
        if image_id != self._off_view:
            self._off_view, self._off_row, self._off_after = image_id, None, ()
        self.view.selectionModel().clear()
        return False

    def _from_row(self) -> tuple[int | None, bool]:
        """The row the keys start from, and whether it is the row the image on screen left (off the list: that row
        now holds the image after it); (None, False): none (J, K and N started at the queue's top once a label had
        dropped the image out of the filter: a probe)."""
        idx = self.view.currentIndex()
        if idx.isValid():
            return idx.row(), False
        if self._off_view is not None:
            after = next((r for i in self._off_after if (r := self.model.row_of(i)) is not None), None)
            if after is not None:   # the first image that followed it and is still listed
                return after, True
            if self._off_row is not None:
                return self._off_row, True
        return None, False

    def _on_screen(self) -> int | None:
        """The image on screen as the queue knows it: the current row's, or one shown off the list (a view that no
        longer lists it; while a view is read, the one it was asked with)."""
        now = self.current_id()
        if now is not None:
            return now
        return self._off_view if self._off_view is not None else (self._asked_keep if self._viewing else None)

    def _after_asked_view(self, move: Callable[[], object]) -> bool:
        """A move (J, K, N, the move-on after a decision) pressed while a view the inspector asked for (a search, a
        filter, an order) is on its way waits for it: it moved in the view being replaced (a session-50 review: Enter
        on a slow search, then J, opened an image the search leaves out). It is made from the image on screen when the
        view lands, if that is still the one it was pressed on, in the same folder; dropped where the view's landing
        or the inspector moved the screen meanwhile (the new view's first image, a click, another folder: a
        session-50 review saw the move made twice) or the view could not be read (said). True when it waits."""
        if not self._viewing:
            return False
        origin, folder = self._on_screen(), self.filter.folder_id

        def later() -> None:
            if self._view_failed:
                self.message.emit("The move was not made: the queue's new view could not be read.")
            elif self.filter.folder_id == folder and self._landed_on == origin:
                move()
            else:
                self.message.emit("The queue's new view is shown; the move asked while it was read was left (the "
                                  "image on screen changed meanwhile).")
        self.message.emit("The queue's new view is being read: the move follows as soon as it is shown.")
        self.after_view(later)
        return True

    def step(self, delta: int) -> bool:
        if self._after_asked_view(lambda: self.step(delta)):
            return False
        n = self.model.rowCount()
        if not n:
            self.message.emit(self._why_empty())
            return False
        at, off = self._from_row()  # off the list: the rows after it moved up by one
        row = (-1 if at is None else at) + delta - (1 if off and delta > 0 else 0)
        if not 0 <= row < n:
            self.message.emit("End of the queue." if delta > 0 else "Start of the queue.")
            return False
        item = self.model.item_at(row) or self._load_row(row)
        return item is not None and self.view.select_image(item.image_id)

    def _why_empty(self) -> str:
        """Why this view lists no image, for a key with nothing to move to (N, Shift+N, J and K did nothing and said
        nothing with no folder, an empty one or a search matching nothing, while P explained: a session-49 audit).
        The folder's state counts tell an empty folder from one a search or a filter hides."""
        flt = self.filter
        if flt.folder_id is None:
            return "No image to move to: no folder is open (Project ▸ Open folder…, Ctrl+O)."
        if self._awaiting:
            return "No image listed yet: the folder is still being indexed."
        total = sum(self._counts.values()) if self._counts else None
        if not flt.narrows or total == 0:
            return "No image in this view: the folder is empty."
        if total is None:
            return "No image in this view: the folder is empty, or a search or a filter hides its images."
        return "No image in this view: a search or a filter hides the folder's images; clear it to see them."

    def _load_row(self, row: int) -> QueueItem | None:
        """The next row lies on a page not read yet (a key press at a page's edge): read that
        one page now, a bounded keyset read."""
        page = row // self.model.page_size
        try:
            got = self._fetch_page(self.filter, page, self.model.cursor_before(page))
        except Exception as exc:  # noqa: BLE001 - GUI slot; the reason is shown
            self.failed.emit(f"Cannot read the review queue: {exc}")
            return None
        self.model.put_page(page, got.items, got.cursor)
        return self.model.item_at(row)

    def next_unreviewed(self, delta: int = 1) -> bool:
        """Move to the next (or previous) unreviewed image in the queue's order, wrapping once.
        True when it moved now: the rows read so far held it. Otherwise the database is asked
        on a helper thread (the gallery moves when the answer comes)."""
        if self._after_asked_view(lambda: self.next_unreviewed(delta)):
            return False
        n = self.model.rowCount()
        if not n:
            if self._awaiting:
                self._pending_nav = delta
                self.message.emit("The folder is still being indexed: its first unreviewed image is shown "
                                  "as soon as it is listed.")
            else:
                self.message.emit(self._why_empty())
            return False
        at, off = self._from_row()
        if at is None:
            return self._first_unreviewed(delta)
        return self._seek_unreviewed(delta, at - 1 if off and delta > 0 else at)

    def _first_unreviewed(self, delta: int) -> bool:
        """The first (``delta`` > 0) or last unreviewed image of the queue, the current one included."""
        return self._seek_unreviewed(delta, -1 if delta > 0 else self.model.rowCount())

    def _seek_unreviewed(self, delta: int, start: int) -> bool:
        """The unreviewed image after row ``start`` (-1 / the row count: from the queue's
        start / end). The rows read so far answer when they can: an unbroken run of them up to
        an unreviewed image, or every row of the queue. Otherwise the database's whole queue
        does, off the GUI thread; presses meanwhile are absorbed into that one answer."""
        if self._seeking:
            return False
        n = self.model.rowCount()
        item, complete = self._scan_loaded(start, delta, n)
        if item is not None:
            return self.view.select_image(item.image_id)
        if complete:
            self.message.emit(NONE_LEFT)
            return False
        self._seeking = True
        flt, size, origin = self.filter, self.model.page_size, self.current_id()
        after = self.model.item_at(start) if 0 <= start < n else None
        placed = self.model.placed_state(after.image_id) if after is not None else None

        def find() -> None:
            try:
                here = after
                if here is None and 0 <= start < n:  # the current row's page was let go: read it
                    here = next(iter(self.service.queue_page(flt, 1, offset=start).items), None)
                found = self.service.next_unreviewed(flt, here, backward=delta < 0, placed_state=placed)
                page = None
                if found is not None:
                    number = found.position // size
                    page = (number, self.service.page_of(flt, found, size))
                self._seek_done.emit(flt, origin, (found, page), "")
            except Exception as exc:  # noqa: BLE001 - any failure reaches the inspector as a message
                self._seek_done.emit(flt, origin, None, str(exc))
        self._seeker.submit(find)
        return False

    def _scan_loaded(self, start: int, delta: int, n: int) -> tuple[QueueItem | None, bool]:
        """The next unreviewed item among the rows read, and whether those rows are the whole
        queue (then a miss means none is left; else the walk stops at the first row not read)."""
        size = self.model.page_size
        complete = self._count_exact and \
            sum(min(n, (p + 1) * size) - p * size for p in self.model.loaded_pages()) >= n
        if complete and 0 <= start < n:
            rows: Iterable[int] = ((start + k * delta) % n for k in range(1, n))
        else:
            rows = range(start + delta, n if delta > 0 else -1, 1 if delta > 0 else -1)
        for row in rows:
            item = self.model.item_at(row)
            if item is None:
                return None, False
            if item.review_state == "unreviewed":
                return item, complete
        return None, complete

    def _on_seek(self, flt: QueueFilter, origin: int | None, answer, error: str) -> None:
        self._seeking = False
        if error:
            self.failed.emit(f"Cannot look for the next unreviewed image: {error}")
            return
        if flt != self.filter or flt != self._last_filter or origin != self.current_id():
            return  # the inspector moved on meanwhile: the answer is for a view that is gone
        found, page = answer
        if found is None:
            self.message.emit(NONE_LEFT)
            return
        number, got = page
        if not self._count_exact and found.position >= self.model.rowCount():
            self.model.set_count(found.position + 1)  # still a lower bound until the exact count comes
        if self.model.row_of(found.image_id) is None:
            self.model.put_page(number, got.items, got.cursor)
        if not self.view.select_image(found.image_id):  # the queue changed under the answer
            self.message.emit("The queue changed while looking for the next unreviewed image: press N again.")
            self.refresh_in_background()

    def selected_ids(self) -> list[int]:
        return self.view.selected_ids()

    def with_selection(self, act: Callable[[list[int]], None]) -> None:
        """``act`` on the selected images; where some selected rows are not read yet (Ctrl+A on a folder larger
        than a page: the key raised and did nothing, without a word, a session-45 probe) they are read and the
        inspector is asked to press again, rather than deciding images nobody has listed."""
        waiting = self.view.unread_selected()
        if waiting:
            self._read_rows(self.view.unread_rows())
            self.message.emit(f"{waiting} of the selected images are still being listed: press the key again in a "
                              "moment (nothing was changed).")
            return
        act(self.view.selected_ids())

    def with_current(self, act: Callable[[], None]) -> None:
        """``act`` on the image on screen, unless the gallery's current row is not read yet (End onto an unread page:
        the key would go to the image still on screen); then it is asked for again, as ``with_selection`` does."""
        if self.view.current_unread():
            self.message.emit("The image chosen is still being listed: press the key again in a moment (nothing was "
                              "changed).")
            return
        act()

    def close(self) -> None:
        self._recount.stop()
        self._tally.close()
        self._counter.close()
        self._pages.close()
        self._seeker.close()
        self._bulk.close()
        self._view_pool.close()
        self._reader.close()


@dataclass(frozen=True)
class QueueRead:
    """The queue's length and some of its pages, read together (crosses threads)."""

    count: int
    pages: dict[int, QueuePage]
    exact: bool = True  # False: ``count`` is a lower bound (the exact one is read after)
