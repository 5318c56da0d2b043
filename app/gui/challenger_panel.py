"""The Models dialog's champion/challenger part: what promoting a family's challenger would change.

Shows, for the family of the selected version, the held-out comparison the retrain command made
(active version vs challenger, same reviewed images) and the disagreement queue: the recently
reviewed and recent images where the two versions answer differently, each with both answers
side by side (both masks drawn for the segmenter) and the human label. The challenger's answers
come from a worker (``Find disagreements`` queues a compare job); every storage call and image
decode runs on a helper thread (``BackgroundCalls``), so the window never waits on either.
"""
from __future__ import annotations

import html

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.gui.background import BackgroundCalls
from app.gui.dialog_rows import disable_keeping_focus
from app.gui.style import PRED_MASK_RGB, STATE_COLORS, icon
from app.gui.thumbnails import rgb_to_qimage
from app.services.champion import (
    LEARNT,
    LEARNT_NOTE,
    MASK_IOU_MIN,
    ChampionReview,
    Comparison,
    Disagreement,
    ModelPair,
    failures_text,
    side_by_side,
)
from app.services.wording import plural

PROMOTE_TIP = "Promote the challenger: the next pre-label run uses it (recorded; Roll back returns to the current version)"
DISAGREEMENT_COLUMNS = ("image", "human label", "champion", "challenger", "why")
PREVIEW_PX = 240
POLL_MS = 1000


def _table(columns: tuple[str, ...]) -> QTableWidget:
    table = QTableWidget(0, len(columns))
    table.setTabKeyNavigation(False)   # Tab leaves for the buttons; the arrows walk the cells
    table.setHorizontalHeaderLabels(list(columns))
    table.verticalHeader().setVisible(False)
    table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
    table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    table.setWordWrap(False)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    return table


def _figure(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


class ChallengerPanel(QGroupBox):
    promote = Signal(int)   # the challenger's version id: the dialog's Make active

    def __init__(self, review: ChampionReview, parent: QWidget | None = None) -> None:
        super().__init__("Champion and challenger", parent)
        self.review = review
        self.calls = BackgroundCalls("challenger", self)
        self.pair: ModelPair | None = None
        self._changing = False  # the dialog is changing the versions: promote waits
        self.family = ""
        self.comparison: Comparison | None = None
        self.jobs: list[int] = []
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self._poll)
        lay = QVBoxLayout(self)
        self.headline = QLabel("")
        self.headline.setWordWrap(True)
        lay.addWidget(self.headline)
        split = QSplitter(Qt.Orientation.Horizontal)
        lay.addWidget(split, 1)
        split.addWidget(self._build_held_out())
        split.addWidget(self._build_queue())
        split.setStretchFactor(1, 3)
        split.setSizes([300, 900])
        self._show_pair(None)

    def _build_held_out(self) -> QWidget:
        box = QWidget()
        col = QVBoxLayout(box)
        col.setContentsMargins(0, 0, 0, 0)
        col.addWidget(QLabel("<b>Held-out comparison</b> (the retraining's reviewed images it never trained on)"))
        self.held_out = _table(("metric", "before", "challenger"))
        col.addWidget(self.held_out, 1)
        self.held_note = QLabel("")
        self.held_note.setWordWrap(True)
        col.addWidget(self.held_note)
        return box

    def _build_queue(self) -> QWidget:
        box = QWidget()
        col = QVBoxLayout(box)
        col.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.find_button = QPushButton(icon("mdi6.compare-horizontal"), "Find disagreements")
        self.find_button.setToolTip("Run the challenger (and the champion where needed) on the most recently "
                                    f"reviewed and newest images the champion answers for, {self.review.limit} at most, "
                                    "in the worker")
        self.find_button.clicked.connect(lambda: self.find_disagreements())
        self.promote_button = QPushButton(icon("mdi6.trophy"), "Make active")
        self.promote_button.setToolTip(PROMOTE_TIP)
        self.promote_button.clicked.connect(self._promote)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        row.addWidget(self.find_button)
        row.addWidget(self.promote_button)
        row.addWidget(self.status, 1)
        col.addLayout(row)
        self.table = _table(DISAGREEMENT_COLUMNS)
        self.table.itemSelectionChanged.connect(self._selected)
        pictures = QWidget()
        previews = QHBoxLayout(pictures)
        previews.setContentsMargins(0, 0, 0, 0)
        queue = QSplitter(Qt.Orientation.Vertical)   # the list and the pictures share the height as wished
        queue.addWidget(self.table)
        queue.addWidget(pictures)
        queue.setSizes([220, PREVIEW_PX + 30])
        col.addWidget(queue, 1)
        self.previews = []
        for side in ("champion", "challenger"):
            frame = QVBoxLayout()
            caption = QLabel(side)
            caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
            picture = QLabel("")
            picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
            picture.setMinimumSize(PREVIEW_PX // 2, PREVIEW_PX // 2)
            frame.addWidget(picture, 1)
            frame.addWidget(caption)
            previews.addLayout(frame)
            self.previews.append((picture, caption))
        return box

    # -- reading -------------------------------------------------------------------------
    def show_family(self, family: str, version_id: int | None = None) -> None:
        """Show ``family``'s pair that ``version_id`` is in (its challenger or champion), else its newest (read on
        the helper thread); the same family again re-reads it."""
        self.family = family
        self.calls.call(lambda: self.review.pair(family, version_id), lambda p: self._on_pair(family, p), self._fail)

    def _on_pair(self, family: str, found: ModelPair | None) -> None:
        if family != self.family:
            return   # the selection moved on meanwhile
        self._show_pair(found)
        if found is not None and found.champion is not None:
            self._load_disagreements()

    def _show_pair(self, found: ModelPair | None) -> None:
        changed = (found.challenger.id if found else None) != (self.pair.challenger.id if self.pair else None)
        self.pair = found
        if changed:
            self.comparison = None
            self.table.setRowCount(0)
            self._clear_previews()
            self.jobs = []
            self.timer.stop()
        self.held_out.setRowCount(0)
        self.held_out.setHorizontalHeaderLabels(["metric", "before", "challenger"])
        if found is None:
            self.headline.setText(f"The {self.family or 'selected'} family has no challenger: a retrained version "
                                  "becomes one, to be compared here with the version it would replace before it is promoted."
                                  if self.family else "Select a model version.")
            self.held_note.setText("")
            self.status.setText("")
            self.find_button.setEnabled(False)
            self.promote_button.setEnabled(False)
            self.promote_button.setText("Make active")
            self.promote_button.setToolTip(PROMOTE_TIP)
            return
        champ = found.champion.name if found.champion else "none"
        where = f"routed: {html.escape(', '.join(found.routed))}" if found.routed else "active"
        self.headline.setText(f"<b>{found.family}</b>: champion ({where}) <b>{html.escape(champ)}</b> · challenger "
                              f"<b>{html.escape(found.challenger.name)}</b>")
        if found.routed:   # promotion names the challenger in those rules (ADR 0060), the active version stays
            self.promote_button.setText(f"Promote for {', '.join(found.routed)}")
            self.promote_button.setToolTip(f"The routing rules {', '.join(found.routed)} name the challenger instead "
                                           f"of {champ}; the project's active {found.family} version stays "
                                           "(Project ▸ Model routing sets it back)")
        else:
            self.promote_button.setText("Make active")
            self.promote_button.setToolTip(PROMOTE_TIP)
        h = found.held_out
        self.held_out.setHorizontalHeaderLabels(["metric", h.reference or "before", "challenger"])
        for r, (metric, before, after) in enumerate(h.rows):
            self.held_out.insertRow(r)
            for c, text in enumerate((metric.replace("_", " "), _figure(before), _figure(after))):
                item = QTableWidgetItem(text)
                if c and before is not None and after is not None and after != before:
                    better = after > before if not metric.startswith(("fa", "false")) else after < before
                    if (c == 2) == better:
                        item.setForeground(STATE_COLORS["accepted"])
                self.held_out.setItem(r, c, item)
        parts = [plural(h.images, "held-out image") if h.images else ""]
        if h.reference and found.champion is not None and h.reference != found.champion.name:
            parts.append(f"'before' is {h.reference}, the version it was retrained from (not the active one)")
        parts.append(h.note)
        self.held_note.setText("\n".join(t for t in ("; ".join(p for p in parts if p), found.trained_on) if t))
        self.find_button.setEnabled(found.champion is not None)
        self.promote_button.setEnabled(not self._changing)

    def _load_disagreements(self) -> None:
        if self.pair is None:
            return
        challenger = self.pair.challenger.id
        self.calls.call(lambda: self.review.disagreements(challenger), self._on_comparison, self._fail)

    def _on_comparison(self, result: Comparison) -> None:
        if self.pair is None or result.challenger_id != self.pair.challenger.id:
            return
        keep = self.selected()   # read against the list shown so far
        self.comparison = result
        self.table.setRowCount(0)
        for r, d in enumerate(result.disagreements):
            self.table.insertRow(r)
            human = (f"{d.human} ({LEARNT})" if d.learnt else d.human) or "not reviewed"
            for c, text in enumerate((d.rel_path, human, d.champion.text, d.challenger.text, d.reason)):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                if c == 1 and d.learnt:
                    item.setForeground(STATE_COLORS["unreviewed"])   # grey: its agreement there proves little
                    item.setToolTip("Labelled before the challenger's retraining, which may have learnt this label: "
                                    "if so, its answer here may repeat it from memory")
                self.table.setItem(r, c, item)
            if keep is not None and d.image_id == keep.image_id:
                self.table.selectRow(r)
        if self.selected() is None and result.disagreements:
            self.table.selectRow(0)   # the first one's pictures at once
        self.status.setText(self._summary(result))

    def _summary(self, result: Comparison) -> str:
        if result.note:
            return result.note[:1].upper() + result.note[1:] + "."
        waiting = "" if not result.waiting else (
            f"; {plural(result.waiting, 'image')} not run by both yet" + (" (the worker is on it)" if self.jobs else
                                                                 ": Find disagreements runs them"))
        failures = failures_text(result)
        if failures:
            waiting += f"; {failures}"
        rule = f" (masks: IoU below {MASK_IOU_MIN})" if result.family == "segmenter" else ""
        learnt = f" {LEARNT_NOTE.format(n=result.learnt)}." if result.learnt else ""
        return (f"{plural(len(result.disagreements), 'disagreement')} in {plural(result.compared, 'image')} compared{rule}"
                f"{waiting}.{learnt}")

    # -- the worker ----------------------------------------------------------------------
    def find_disagreements(self) -> None:
        """Queue the compare jobs (the worker runs the challenger on the chosen images)."""
        if self.pair is None:
            return
        challenger = self.pair.challenger.id
        disable_keeping_focus(self.table, self.find_button)
        self.status.setText("Queuing the comparison…")
        self.calls.call(lambda: self.review.start(challenger), self._on_started, self._fail)

    def _on_started(self, jobs: list[int]) -> None:
        self.jobs = list(jobs)
        if not jobs:
            self.find_button.setEnabled(True)
            self._load_disagreements()
            return
        self.status.setText("The worker runs the challenger on the chosen images…")
        self.timer.start()

    def _poll(self) -> None:
        if not self.jobs or self.calls.busy:
            return
        jobs = list(self.jobs)
        self.calls.call(lambda: (self.review.status(jobs), self.review.worker_running()),
                        lambda got: self._on_status(*got), self._fail)

    def _on_status(self, progress: list, worker_running: bool | None = None) -> None:
        done = sum(p.done + p.failed for p in progress)
        total = sum(p.total for p in progress)
        if all(p.finished for p in progress):
            self.timer.stop()
            self.jobs = []
            self.find_button.setEnabled(self.pair is not None)
            failed = sum(p.failed for p in progress)
            self._load_disagreements()
            if failed:
                self.status.setText(f"{plural(failed, 'image')} could not be run (see the worker log).")
            return
        if worker_running is False:
            # seen under Xvfb (session 41): after a kill -9 of the worker this line kept "The worker runs the
            # challenger: 24/160 image(s)…" while no worker ran; the station starts a new one while work waits
            self.status.setText(f"Waiting for the worker: {done}/{plural(total, 'image')} run; this station's worker is not "
                                "running (the Jobs dock says why; a new one starts while work waits).")
            return
        self.status.setText(f"The worker runs the challenger: {done}/{plural(total, 'image')}…")

    # -- one disagreement ----------------------------------------------------------------
    def selected(self) -> Disagreement | None:
        rows = {i.row() for i in self.table.selectedIndexes()}
        if not rows or self.comparison is None or min(rows) >= len(self.comparison.disagreements):
            return None
        return self.comparison.disagreements[min(rows)]

    def _selected(self) -> None:
        d = self.selected()
        if d is None:
            self._clear_previews()
            return
        self.previews[0][1].setText(f"champion: {d.champion.text}")
        self.previews[1][1].setText(f"challenger: {d.challenger.text}")
        self.calls.call(lambda: side_by_side(d, PREVIEW_PX, PRED_MASK_RGB), lambda pics: self._on_pictures(d, pics),
                        lambda text: self._on_picture_error(d, text))

    def _on_pictures(self, d: Disagreement, pictures) -> None:
        if self.selected() != d:
            return
        for (label, _caption), rgb in zip(self.previews, pictures):
            label.setPixmap(QPixmap.fromImage(rgb_to_qimage(rgb)))

    def _on_picture_error(self, d: Disagreement, text: str) -> None:
        if self.selected() == d:
            for label, _caption in self.previews:
                label.setText(text)

    def _clear_previews(self) -> None:
        for label, caption in self.previews:
            label.clear()
            caption.setText(caption.text().split(":")[0])

    def set_changing(self, changing: bool) -> None:
        """The dialog is changing the versions (a promotion on its way): promote waits for the answer, which shows
        the pair anew (a second click promoted the version project-wide: a session-44 probe)."""
        self._changing = changing
        self.promote_button.setEnabled(not changing and self.pair is not None)

    def _promote(self) -> None:
        if self.pair is not None and not self._changing:
            self.set_changing(True)
            self.promote.emit(self.pair.challenger.id)

    def _fail(self, text: str) -> None:
        self.timer.stop()
        self.jobs = []
        self.find_button.setEnabled(self.pair is not None and self.pair.champion is not None)
        self.status.setText(text)
