"""Project ▸ Operating point…: pick a folder's anomaly threshold from what escapes and false calls cost.

The maths and the storage are ``app.services.operating_point``; this dialog reads the reviewed
scores and saves the chosen threshold on a helper thread (``BackgroundCalls``: the GUI thread
never waits on storage), and recomputes the table itself when a cost or the line moves (a few
hundred numbers). Saving stores the folder's threshold for that anomaly model version in the
project settings and re-flags the folder's stored predictions; the window follows through the
project settings controller, like any other threshold change.
"""
from __future__ import annotations

import math
from typing import Any

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from app.gui.background import BackgroundCalls
from app.gui.dialog_life import one_at_a_time
from app.gui.dialog_rows import disable_keeping_focus
from app.gui.score_histogram import ScoreHistogram
from app.gui.screen_fit import fit_to_screen
from app.services.flags import FolderThreshold
from app.services.operating_point import (
    Costs,
    OperatingPoint,
    OperatingPointError,
    Outcome,
    anomaly_versions,
    folder_anomaly_versions,
    most_counting,
    operating_point,
    reviewed_scores,
    save_operating_point,
    saved_operating_point,
)
from app.services.reflag import Reflagged
from app.services.wording import plural

HELP = ("An <b>escape</b> is an image reviewed as anomalous whose score is at or below the threshold "
        "(never flagged); a <b>false call</b> is one reviewed as normal scored above it. Drag the line "
        "or type a threshold; the optimum is the cheapest threshold (ties: fewer escapes).")
COLUMNS = ("threshold", "escapes", "false calls", "cost")


class OperatingPointDialog(QDialog):
    def __init__(self, db: Any, folder_id: int | None = None, author: str | None = None,
                 on_saved=None, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Operating point")
        fit_to_screen(self, 760, 600)
        self._db, self._author, self._on_saved = db, author, on_saved
        # the folder it was opened on, chosen first once the folders are read (the one shown may change after);
        # a second Operating point on the same folder brings this dialog forward (``install``)
        self.opened_for = folder_id
        # The model follows the folder: the version whose answers count there (a routing rule may name one other
        # than the active; seen: a folder of bottles opened on the tile model's scores), until one is picked here.
        self._by_hand = False
        self._counts: dict[int, dict[int, int]] = {}  # folder id -> {version id: images its answer counts for}
        self.point: OperatingPoint | None = None
        self.calls = BackgroundCalls("operating-point", self)
        self.finished.connect(lambda _: self.calls.close())

        lay = QVBoxLayout(self)
        text = QLabel(HELP)
        text.setWordWrap(True)
        lay.addWidget(text)
        form = QFormLayout()
        self.folder = QComboBox()
        self.version = QComboBox()
        self.cost_escape = self._cost_box(Costs().escape)
        self.cost_false_call = self._cost_box(Costs().false_call)
        costs = QHBoxLayout()
        costs.addWidget(QLabel("per escape"))
        costs.addWidget(self.cost_escape)
        costs.addWidget(QLabel("per false call"))
        costs.addWidget(self.cost_false_call)
        costs.addStretch(1)
        form.addRow("Folder (product)", self.folder)
        form.addRow("Anomaly model", self.version)
        form.addRow("Costs", costs)
        lay.addLayout(form)
        self.histogram = ScoreHistogram()
        lay.addWidget(self.histogram, 1)
        row = QHBoxLayout()
        row.addWidget(QLabel("Threshold"))
        self.threshold = QDoubleSpinBox()
        self._exact: float | None = None  # the threshold chosen exactly (the box rounds it to its decimals)
        self.threshold.setDecimals(4)
        self.threshold.setRange(-1e9, 1e9)
        self.threshold.setSingleStep(0.01)
        # Without reviewed scores there is no threshold to choose: the box says so ("—" at its minimum) instead of
        # a 0.0000 that reads like the threshold in force (seen under Xvfb on the demo, session 39).
        self.threshold.setSpecialValueText("—")
        self.threshold.setValue(self.threshold.minimum())
        self.threshold.setEnabled(False)
        row.addWidget(self.threshold)
        self.to_optimum = QPushButton("Go to the optimum")
        self.to_optimum.setEnabled(False)
        row.addWidget(self.to_optimum)
        row.addStretch(1)
        lay.addLayout(row)
        self.table = QTableWidget(2, len(COLUMNS))
        self.table.setTabKeyNavigation(False)   # Tab leaves for Save; the arrows walk the cells
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setVerticalHeaderLabels(["chosen", "optimal"])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setFixedHeight(94)
        lay.addWidget(self.table)
        self.info = QLabel("Reading the project …")
        self.info.setWordWrap(True)
        self.info.setObjectName("error")
        lay.addWidget(self.info)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.use = QPushButton("Use this threshold")
        self.use.setDefault(True)
        self.use.setEnabled(False)
        self.close_button = close = QPushButton("Close")
        buttons.addWidget(self.use)
        buttons.addWidget(close)
        lay.addLayout(buttons)

        close.clicked.connect(self.reject)
        self.use.clicked.connect(self.save)
        self.folder.currentIndexChanged.connect(self._folder_changed)
        self.version.currentIndexChanged.connect(self._read_scores)
        self.version.activated.connect(self._picked)
        for box in (self.cost_escape, self.cost_false_call):
            box.valueChanged.connect(lambda _: self._recompute(keep_threshold=True))
        self.histogram.thresholdChanged.connect(self._line_moved)
        self.threshold.valueChanged.connect(self._typed)
        self.to_optimum.clicked.connect(lambda: self.point and self._choose(self.point.best.threshold))
        self.calls.call(lambda: ([(f.id, f.name) for f in db.folders.list()], anomaly_versions(db)),
                        self._fill_choices, self._failed)

    @staticmethod
    def _cost_box(value: float) -> QDoubleSpinBox:
        box = QDoubleSpinBox()
        box.setRange(0.0, 1e9)
        box.setDecimals(2)
        box.setValue(value)
        return box

    # -- reading --------------------------------------------------------------------------
    def _fill_choices(self, answer: tuple[list[tuple[int, str]], list[tuple[int, str, bool]]]) -> None:
        folders, versions = answer
        for w in (self.folder, self.version):
            w.blockSignals(True)
        for fid, name in folders:
            self.folder.addItem(name, fid)
        for vid, name, active in versions:
            self.version.addItem(f"{name} (active)" if active else name, vid)
        if self.opened_for is not None and (i := self.folder.findData(self.opened_for)) >= 0:
            self.folder.setCurrentIndex(i)
        for w in (self.folder, self.version):
            w.blockSignals(False)
        if not folders or not versions:
            self.info.setText("No folder or no anomaly model in this project yet: open a folder and "
                              "pre-label it first.")
            return
        self._folder_changed()

    def _picked(self, _index: int) -> None:
        self._by_hand = True

    def _folder_changed(self) -> None:
        """Read which versions answer for the folder, select the one that answers for most of it (unless a model
        was picked here), then read its scores."""
        fid = self.folder.currentData()
        if fid is None:
            return
        self.use.setEnabled(False)
        db = self._db
        self.calls.call(lambda: folder_anomaly_versions(db, fid), lambda counts: self._counted(fid, counts),
                        self._failed)

    def _counted(self, fid: int, counts: dict[int, int]) -> None:
        self._counts[fid] = counts
        if fid != self.folder.currentData():
            return  # another folder was chosen meanwhile; its own count is on its way
        best = most_counting(counts)
        if not self._by_hand and best is not None and (i := self.version.findData(best)) >= 0 \
                and i != self.version.currentIndex():
            self.version.setCurrentIndex(i)  # reads its scores
            return
        self._read_scores()

    def applies_here(self, fid: int, vid: int) -> bool:
        """The version's answers count for some of the folder's images: its threshold re-flags them now."""
        return vid in self._counts.get(fid, {})

    def _read_scores(self) -> None:
        fid, vid = self.folder.currentData(), self.version.currentData()
        if fid is None or vid is None:
            return
        self.use.setEnabled(False)
        self.info.setText("Reading the reviewed scores …")
        db = self._db
        self.calls.call(lambda: (reviewed_scores(db, fid, vid), saved_operating_point(db, fid, vid)),
                        lambda answer: self._scores_read(fid, vid, *answer), self._failed)

    def _scores_read(self, fid: int, vid: int, scores, saved) -> None:
        if (fid, vid) != (self.folder.currentData(), self.version.currentData()):
            return  # the user picked another pair meanwhile; its own read is on its way
        self._scores, self._saved = scores, saved
        for box, value in ((self.cost_escape, saved and saved.cost_escape),
                           (self.cost_false_call, saved and saved.cost_false_call)):
            if value is not None:
                box.blockSignals(True)
                box.setValue(value)
                box.blockSignals(False)
        self._recompute(keep_threshold=False)

    def _failed(self, reason: str) -> None:
        self.info.setText(reason)

    # -- the maths on screen --------------------------------------------------------------
    def costs(self) -> Costs:
        return Costs(self.cost_escape.value(), self.cost_false_call.value())

    def _recompute(self, keep_threshold: bool) -> None:
        scores = getattr(self, "_scores", None)
        if scores is None:
            return
        try:
            self.point = operating_point(scores, self.costs())
        except OperatingPointError as exc:
            self.point = None
            self.histogram.set_data(None, None, None)
            self.threshold.blockSignals(True)
            self.threshold.setValue(self.threshold.minimum())   # "—"
            self.threshold.blockSignals(False)
            self._show_table()
            for w in (self.use, self.threshold, self.to_optimum):
                w.setEnabled(False)
            self.info.setText(f"No operating point: {exc}.")
            return
        p = self.point
        start = (self.chosen_threshold() if keep_threshold
                 else self._saved.threshold if self._saved is not None else p.best.threshold)
        self.histogram.set_data(p.histogram, start, p.best.threshold)
        from_classes = (f" ({scores.from_classes} of them by their class: a class the project calls not a defect "
                        "is normal, any other anomalous; G / D on an image overrules it)" if scores.from_classes else "")
        self.info.setText(f"Rests on {plural(scores.count, 'reviewed image')}: {len(scores.normal)} normal, "
                          f"{len(scores.anomalous)} anomalous{from_classes}."
                          + (f" {plural(scores.out_of_domain, 'reviewed image')} left out: this model calls them out of its "
                             "domain, so their scores are no finding." if scores.out_of_domain else "")
                          + (f" {plural(scores.elsewhere, 'reviewed image')} left out: their routing rule gives them another "
                             "version, so this threshold does not apply to them." if scores.elsewhere else "")
                          + (f" Saved threshold: {self._saved.threshold:.4g}." if self._saved else ""))
        for w in (self.use, self.threshold, self.to_optimum):
            w.setEnabled(True)
        self._choose(start)

    def _choose(self, threshold: float) -> None:
        """``threshold`` chosen (the optimum, a saved one, the dragged line): kept exactly, the box showing enough
        decimals for it. A session-44 probe: with scores of 0.00011–0.00018 "Go to the optimum" (0.000145, no error)
        put 0.0001 in the 4-decimal box, and Use saved that, flagging all six images."""
        self._exact = threshold
        self.threshold.blockSignals(True)
        if threshold:
            self.threshold.setDecimals(min(10, max(4, 3 - math.floor(math.log10(abs(threshold))))))
        self.threshold.setValue(threshold)
        self.threshold.blockSignals(False)
        self.histogram.set_threshold(threshold)
        self._show_table()

    def _line_moved(self, threshold: float) -> None:
        self._choose(threshold)

    def _typed(self, threshold: float) -> None:
        self._exact = None  # what the box holds is the choice
        self.histogram.set_threshold(threshold)
        self._show_table()

    def chosen_threshold(self) -> float:
        """The threshold chosen: the exact value picked, or what was typed in the box."""
        return self.threshold.value() if self._exact is None else self._exact

    def chosen(self) -> Outcome | None:
        return None if self.point is None else self.point.at(self.chosen_threshold())

    def _show_table(self) -> None:
        rows = (self.chosen(), self.point.best if self.point else None)
        for r, o in enumerate(rows):
            values = ("", "", "", "") if o is None else (f"{o.threshold:.4g}", str(o.escapes), str(o.false_calls),
                                                         f"{o.cost:g}")
            for c, v in enumerate(values):
                self.table.setItem(r, c, QTableWidgetItem(v))

    # -- saving ---------------------------------------------------------------------------
    def save(self) -> None:
        """Store the chosen threshold for this folder and model version, re-flag the folder."""
        if self.point is None:
            return
        fid, vid, thr, costs, db, by = (self.folder.currentData(), self.version.currentData(),
                                        self.chosen_threshold(), self.costs(), self._db, self._author)
        disable_keeping_focus(self.close_button, self.use)
        self.info.setText("Saving and re-flagging the folder …")

        def done(reflagged: Reflagged) -> None:
            self.use.setEnabled(True)
            self._saved = FolderThreshold(fid, vid, thr, costs.escape, costs.false_call)
            self.info.setText(f"Threshold {thr:.4g} saved for {self.folder.currentText()} with "
                              f"{self.version.currentText()}: " + (f"{reflagged.summary()}."
                              if self.applies_here(fid, vid) else "it applies once this model version's answers "
                              "count here (the active one, or one a routing rule names for these images)."))
            if self._on_saved is not None:
                self._on_saved(self.info.text())

        def failed(reason: str) -> None:
            self.use.setEnabled(True)
            self.info.setText(f"The threshold was not saved: {reason}")
        self.calls.call(lambda: save_operating_point(db, fid, vid, thr, costs, by=by), done, failed)


def install(window) -> None:
    def run() -> None:
        project = window.project

        def saved(message: str) -> None:
            window._say(message)
            if project is not None:
                project.reload()  # verdicts and the queue's flags follow (ProjectSettingsController)

        one_at_a_time(window, "operating_point_dialog",
                      lambda: OperatingPointDialog(window.ctx.review.db, window.current_folder,
                                                   author=window.ctx.settings.review().author, on_saved=saved,
                                                   parent=window),
                      same=lambda d: d.opened_for == window.current_folder)
    window.actions["operating_point"].triggered.connect(run)
