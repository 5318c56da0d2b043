""""Label next" in the review queue dock: the proposed batch as a queue order, the action that
moves to the next proposal, and the counter of labels the next retraining likely needs.

Computing a batch reads the folder's images and embeds the new ones (seconds on a first visit,
then the cache answers), so it runs on a helper thread (``BackgroundCalls``); the answer is
plain data. Every save recounts (saves made while a count runs are coalesced into one more).
A new batch replaces the order the inspector is working through only when the current batch is
done (or none is shown yet): the gallery must not reshuffle under the cursor while the counter
keeps following the labels.
"""
from __future__ import annotations

import logging

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QLabel

from app.gui.background import BackgroundCalls
from app.services.label_next_folder import LABEL_NEXT_SOURCE, LabelNextResult, label_next_for_folder
from app.services.review_types import QueueItem
from app.services.wording import agree, plural

log = logging.getLogger(__name__)
# Between two counts that follow each other (saves came while one ran), the helper thread rests:
# a count costs 1-2 s at 480 labels (results/label-next.md), and an inspector labelling one image a
# second must not keep a core of a 2-core station busy beside the pre-labelling worker.
REST_MS = 1000
# A count reads the retrainer's features of labelled images not seen before (about 50 ms each): a
# folder arriving with thousands of labels would hold the batch back for minutes, so each count reads
# for at most this long, shows how far it got ("counting… 60 of 2000") and the next count goes on.
COUNTER_BUDGET_S = 3.0


class LabelNextController:
    """The folder's current proposals and the action's moves (GUI thread; work on ``calls``)."""

    def __init__(self, window, line: QLabel) -> None:
        self.window = window
        self.line = line
        self.calls = BackgroundCalls("label-next", window)
        self.result: LabelNextResult | None = None   # the batch the queue order shows
        self.latest: LabelNextResult | None = None   # the newest answer (its counter is shown)
        self._computing = False
        self._again = False        # a change came while computing: compute once more after
        self._rest = QTimer(window)  # the pause before that next count
        self._rest.setSingleShot(True)
        self._rest.setInterval(REST_MS)
        self._rest.timeout.connect(self._rested)
        self._move_when_ready = False
        self._reviewed: set[int] = set()  # proposals labelled since the batch was shown

    # -- computing ------------------------------------------------------------------------
    def folder_changed(self, *_args) -> None:
        self.result = self.latest = None
        self._reviewed.clear()
        self.window.queue_panel.set_ranking(())
        self._show_line("Label next: press P to see which images to label first")
        self.refresh()

    def refresh(self) -> None:
        """Compute a batch and the counter for the folder on screen, off the GUI thread."""
        folder_id = self.window.current_folder
        if folder_id is None:
            return
        if self._computing or self._rest.isActive():
            self._again = True
            return
        self._computing = True
        db = self.window.ctx.review.db
        watched = self.result.proposal.image_ids if self.result is not None else ()

        def work() -> LabelNextResult:
            return label_next_for_folder(db, folder_id, counter_budget_s=COUNTER_BUDGET_S, watched=watched)
        self.calls.call(work, self._answered, self._failed)

    def predictions_changed(self, *_args) -> None:
        """A pre-label job finished: the answers a batch was chosen by may have come meanwhile (seen on an infrared
        line: a batch computed on opening, before the worker answered, gave every frame "no segmenter answer yet"
        and kept it). A batch the inspector is not walking yet (the queue in another order) is chosen again; one
        being walked is replaced when done, as after a save."""
        if self.result is not None and self.window.queue_panel.sort.currentData() != "label_next":
            self.result = None
        self.refresh()

    def _failed(self, error: str) -> None:
        self._computing = False
        self._move_when_ready = False
        self._show_line(f"Label next unavailable: {error}")

    def _answered(self, result: LabelNextResult) -> None:
        self._computing = False
        if result.folder_id != self.window.current_folder:  # the inspector changed folders meanwhile
            self.refresh()
            return
        # Behind already: saves came while this ran, or it proposes an image this window has labelled whose label
        # had not landed when it read (found by a fresh-clone CI run: the next batch proposed the batch's last
        # image again, its save still on its way). Such an answer is not adopted; the count follows after a rest.
        overtaken = any(self._labelled_here(i) for i in result.proposal.image_ids)
        again = self._again or overtaken
        self.latest = result
        if self.result is not None:  # proposals labelled elsewhere (another station) are done too
            # (not those whose label this window has on its way: the count may have read before it landed). Read
            # anew, not only added to: a proposal another station labelled and then took back (its Ctrl+Z) stayed
            # "done" for good, the line said "9 of 12 left" and P skipped it (a session-45 probe).
            unsaved = self.window.review.unsaved
            self._reviewed = {i for i in self.result.proposal.image_ids
                              if (i in result.labelled and unsaved(i) is None)
                              or (i in self._reviewed and (unsaved(i) is not None or self._reviewed_on_screen(i)))}
        # A batch counted before the latest saves may propose what was just labelled: adopt only
        # an answer no save has overtaken (the next count follows after REST_MS).
        if not again and (self.result is None or not self._unreviewed_proposals()):
            self._adopt(result)
        self.show_counter()
        if self._move_when_ready and (self._unreviewed_proposals() or not again):
            self._move_when_ready = False  # P was pressed meanwhile: move now, not after the recount
            self.next_proposed(compute=False)
        if again or result.pending:
            self._again = True  # a save overtook it, or the counter is still reading: count again after a rest
            self._rest.start()

    def _rested(self) -> None:
        if self._again:
            self._again = False
            self.refresh()

    def _adopt(self, result: LabelNextResult) -> None:
        """Show ``result``'s batch as the queue order (the previous one is done)."""
        self.result = result
        self._reviewed.clear()
        self.window.queue_panel.set_ranking(result.proposal.image_ids)

    # -- the action -----------------------------------------------------------------------
    def _gone(self) -> set[int]:
        """Proposals of the batch shown whose file has gone from the folder, by the newest count (its
        ``LabelNextResult.gone``, of the batch it watched): the queue no longer lists them, so they are done, not left
        to label; a file put back is a proposal again at the next count. Empty while the newest answer is the batch
        shown itself (it watched the one before)."""
        shown, latest = self.result, self.latest
        if shown is None or latest is None or latest is shown:
            return set()
        return {i for i in shown.proposal.image_ids if i in latest.gone}

    def _unreviewed_proposals(self) -> list[int]:
        if self.result is None:
            return []
        gone = self._gone()
        return [i for i in self.result.proposal.image_ids
                if i not in self._reviewed and i not in gone and not self._reviewed_on_screen(i)]

    def _reviewed_on_screen(self, image_id: int) -> bool:
        """The gallery shows the image reviewed (an image not on screen: trust the batch)."""
        model = self.window.gallery_model
        row = model.row_of(image_id)
        item = model.item_at(row) if row is not None else None
        return item is not None and item.review_state != "unreviewed"

    def next_proposed(self, compute: bool = True) -> bool:
        """Show the next proposed image still unlabelled (the queue in the "label next" order).
        True when it moved now; else a batch is computed (``compute``) and the move follows it."""
        panel, queue = self.window.queue_panel, self.window.queue
        if self.window.current_folder is None:  # "choosing the images to label…" stayed, and the press moved the queue
            # of the next folder opened to a proposal unasked (a session-49 audit)
            self.window.statusBar().showMessage("Label next: open a folder first.", 5000)
            return False
        if not self._unreviewed_proposals() and self.latest is not None and self.latest is not self.result \
                and self._fresh(self.latest):
            self._adopt(self.latest)  # a newer batch is already here
        if self.result is None or not self._unreviewed_proposals():
            if not compute:
                self.show_counter()
                latest = self.latest
                no_model = latest is not None and not latest.proposal.image_ids and not latest.considered \
                    and latest.unrouted  # 78 unreviewed images here read "no unlabelled image left" (session 47)
                self.window.statusBar().showMessage(
                    "Label next: the model routing runs no classifier on this folder's images, so it proposes none; "
                    "review them in the queue's order." if no_model else
                    "Label next: no unlabelled image left to propose in this folder.", 5000)
                return False
            self._move_when_ready = True
            self._show_line("Label next: choosing the images to label…" if self.result is None
                            else "Label next: this batch is labelled; choosing the next one…")
            self.refresh()
            return False
        switched = panel.sort.currentData() != "label_next"
        if switched:
            panel.set_sort("label_next")  # the queue re-reads (on its thread): proposals first
            queue.after_view(lambda: self._move_to_proposal(switched))
            return True
        return self._move_to_proposal(switched)

    def _move_to_proposal(self, switched: bool) -> bool:
        """Show the next proposal left, once the queue lists the batch's order."""
        queue = self.window.queue
        if self.result is None:
            return False
        left = self._unreviewed_proposals()
        if not left:
            return False
        ids = self.result.proposal.image_ids
        current = queue.current_id()
        if switched or current not in ids:  # from the top of the batch
            ordered = left
        else:  # walking the batch: the next one after the image on screen (a skip), wrapping
            start = ids.index(current) + 1
            ordered = [i for i in ids[start:] + ids[:start] if i in left and i != current] or left
        # The first one the queue lists: aimed at the first left alone, P stayed on the image before a proposal whose
        # file had gone, for good (a session-50 audit).
        target = next((i for i in ordered if queue.select(i)), None)
        if target is not None:
            reason = self.result.proposal.reasons.get(target, "")
            self.window.statusBar().showMessage(
                f"Label next {ids.index(target) + 1}/{len(ids)}" + (f": {reason}" if reason else ""), 5000)
            return True
        # Only those the queue does not list: the one on screen is listed (a session-50 review: "does not list the 2
        # proposed images left" with one of them on screen)
        unlisted = [i for i in left if queue.model.row_of(i) is None]
        here = "The image on screen is the last proposed image this view lists; " if current in left else ""
        n = len(unlisted)
        some = plural(n, "proposed image")
        if not unlisted:
            self.window.statusBar().showMessage(f"Label next: {here.rstrip('; ')}.", 8000)
        elif queue.filter.narrows:  # P did nothing and said nothing under a search that hid the batch (session 43)
            self.window.statusBar().showMessage(
                f"Label next: {here}{some} left {agree(n, 'is', 'are')} not in this view of the queue (a search or a "
                f"filter hides {agree(n, 'it', 'them')}); clear it to label {agree(n, 'it', 'them')}.", 8000)
        else:  # none hides them: gone from disk since the last count, most likely; the count says (``_gone``)
            self.refresh()
            self.window.statusBar().showMessage(
                f"Label next: {here}the queue does not list the {some} left ({agree(n, 'its file', 'their files')} "
                "may have gone from the folder); the batch is being checked again: press P in a moment.", 8000)
        return False

    def _fresh(self, result: LabelNextResult) -> bool:
        """``result`` is for the folder on screen, proposes something, and none of it is labelled here already. Seen
        under Xvfb (session 40): P at the end of a batch adopted a count that had read while the batch's last two
        labels were on their way; the next batch came two images short ("18 of 20 proposed left") and chosen without
        them. Such a count is passed over; the next one, after the saves, is shown."""
        if result.folder_id != self.window.current_folder or not result.proposal.image_ids:
            return False
        return not any(self._labelled_here(i) for i in result.proposal.image_ids)

    def _labelled_here(self, image_id: int) -> bool:
        """Labelled in this window since the batch was shown, on its way to the database, or reviewed on screen."""
        return (image_id in self._reviewed or self.window.review.unsaved(image_id) is not None
                or self._reviewed_on_screen(image_id))

    # -- following the labels -------------------------------------------------------------
    def source_of(self, image_id: int) -> str | None:
        """How a label being saved came about: "label_next" for an image of the shown batch while the queue is in
        the "label next" order (the inspector is labelling the proposals), else None (ADR 0049: the retrain
        command does not read such labels' errors as the folder's)."""
        if self.result is None or image_id not in self.result.proposal.image_ids:
            return None
        return LABEL_NEXT_SOURCE if self.window.queue_panel.sort.currentData() == "label_next" else None

    def item_changed(self, item: QueueItem) -> None:
        if self.result is None:
            return
        if item.review_state == "unreviewed":  # an undo or a cleared label: a proposal to label again, one label fewer
            self._reviewed.discard(item.image_id)
        elif item.image_id in self.result.proposal.image_ids:
            self._reviewed.add(item.image_id)

    def label_saved(self, _image_id: int) -> None:
        """Every stored label recounts (the counter must not lag the labels: with a recount every fifth
        save it said "≥ 12 more" at 18 labels where 15 were needed); a label on screen is only counted once
        the database has it. Saves made while one count runs are coalesced into one more count (``_again``)
        after a rest (``REST_MS``), so fast labelling queues no backlog and leaves the station's cores to the
        worker most of the time."""
        if self.result is not None:
            self.refresh()

    def show_counter(self) -> None:
        shown, latest = self.result, self.latest
        if shown is None or latest is None:
            return
        n = len(shown.proposal.image_ids)
        left = len(self._unreviewed_proposals())
        if not n and not latest.considered and latest.unrouted:  # seen: "nothing left to propose" on 46 unlabelled bottles
            self._show_line("Label next (P): the model routing runs no classifier on this folder's images, so there "
                            "is no class to learn here; review them in the queue's order",
                            "Label next proposes images whose class labels would help the next classifier "
                            "retraining most. Project ▸ Model routing… says which models run where.")
            return
        what, why = "proposed", ""
        if latest.anomaly is not None:   # no classifier runs here: the anomaly model's verdicts (label_next_anomaly)
            what, why = "anomaly verdicts proposed", (
                "No classifier runs on this folder's images (model routing), so Label next proposes the images the "
                "anomaly model is least sure of: out of its domain, then scored near its threshold, spread over the "
                "folder. ")
        elif latest.segmenter is not None:  # the segmenter alone runs here (label_next_segmenter, ADR 0071)
            what, why = "frames proposed", (
                "Only the segmenter runs on this folder's images (model routing), so Label next proposes the frames "
                "it is least sure of: out of its domain, then a target that barely passed or a faint blob just under "
                "its threshold, spread over the folder. ")
        batch = f"{left} of {n} {what} left" if n else "nothing left to propose"
        if n and (gone := self._gone()):  # done without a label: their files went from the folder
            batch += f" ({len(gone)} gone from disk)"
        reading = f" · {latest.reading_text}" if latest.reading_text else ""
        self._show_line(f"Label next (P): {batch} · next retraining: {latest.counter_short}{reading}",
                        why + latest.reading_tip + latest.counter_text
                        + (f"\n{plural(latest.unreadable, 'unreadable file')} left out" if latest.unreadable else ""))

    def _show_line(self, text: str, tip: str = "") -> None:
        self.line.setText(text)
        self.line.setToolTip(tip or "Press P (Navigate ▸ Label next) to go to the next proposed image. "
                                    "See docs/label_next.md for how the batch and the counter are computed.")


def install(window) -> None:
    """Add the counter line to the queue dock and wire the action, folder changes and saves."""
    line = QLabel("")
    line.setObjectName("labelNextLine")
    line.setWordWrap(True)
    layout = window.queue_panel.layout()
    layout.addWidget(line, layout.rowCount(), 0)
    ctl = LabelNextController(window, line)
    window.label_next = ctl
    window.actions["label_next"].triggered.connect(lambda _checked=False: ctl.next_proposed())
    window.folder_ctl.opened.connect(ctl.folder_changed)
    window.folders.folder_chosen.connect(ctl.folder_changed)
    window.review.label_source = ctl.source_of
    window.review.item_changed.connect(ctl.item_changed)
    window.review.label_saved.connect(ctl.label_saved)
    window.review.item_changed.connect(lambda _item: ctl.show_counter())
    window.label_watch.changed.connect(ctl.refresh)  # labels saved at another station count too
    if getattr(window, "jobs", None) is not None:       # the worker's answers that choose the batch
        window.jobs.finished.connect(ctl.predictions_changed)
    window.ctx.closers.append(ctl.calls.close)
