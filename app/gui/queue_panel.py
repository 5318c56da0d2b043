"""Review-queue filters: state, flag, out of domain, class, anomaly-score range, name search, sort order.

Emits a fresh ``QueueFilter`` (plain data) whenever anything changes; the main window asks
the review service for the matching items. Counts per state are shown on the state buttons.
"""
from __future__ import annotations

import math

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent, QValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QToolButton,
    QWidget,
)

from app.gui.style import state_icon
from app.services.review_types import REVIEW_STATES, QueueFilter

SORTS = {"name": "name", "uncertainty": "uncertainty (least confident first)",
         "anomaly": "anomaly score (highest first)", "confidence": "confidence (most confident first)",
         "targets": "target count", "state": "review state",
         "label_next": "label next (proposed first)"}
DEFAULT_DESC: dict[str, bool] = {}  # each sort already puts what needs attention first
# Anomaly scores are standardised distances with no natural ceiling; the top of the range means "none".
SCORE_CEILING = 1e6
NO_LIMIT = "no limit"


class OpenEndedSpinBox(QDoubleSpinBox):
    """Upper bound of a range whose top value reads "no limit" (not 1000000.000) and filters nothing."""

    def textFromValue(self, value: float) -> str:  # noqa: N802 (Qt override)
        return NO_LIMIT if value >= self.maximum() else super().textFromValue(value)

    def valueFromText(self, text: str) -> float:  # noqa: N802 (Qt override)
        return self.maximum() if text.strip() == NO_LIMIT else super().valueFromText(text)

    def validate(self, text: str, pos: int):  # noqa: D401 (Qt override)
        if NO_LIMIT.startswith(text.strip()) and text.strip():
            state = QValidator.State.Acceptable if text.strip() == NO_LIMIT else QValidator.State.Intermediate
            return state, text, pos
        return super().validate(text, pos)

    def bound(self) -> float | None:
        return None if self.value() >= self.maximum() else self.value()


class SearchEdit(QLineEdit):
    """The queue's name search. Enter, Escape and Down leave it (``left``): while the field held the keyboard, an
    inspector's J, K, A or D after a search were typed into it (seen under Xvfb in session 50: "Misc" + Return + J
    searched for "Miscj" and emptied the queue). The text is kept. (No window shortcut takes these keys first:
    Escape's is held back for text fields by ``text_keys``.)"""

    left = Signal()
    LEAVE_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Escape, Qt.Key.Key_Down)

    def _leaves(self, e: QKeyEvent) -> bool:
        plain = e.modifiers() & ~Qt.KeyboardModifier.KeypadModifier == Qt.KeyboardModifier.NoModifier
        return plain and e.key() in self.LEAVE_KEYS

    def keyPressEvent(self, e: QKeyEvent) -> None:  # noqa: N802 - Qt's name
        if self._leaves(e):
            e.accept()
            self.left.emit()
            return
        super().keyPressEvent(e)


class QueuePanel(QWidget):
    filter_changed = Signal(object)  # QueueFilter
    search_left = Signal()  # Enter, Escape or Down in the search field: the keyboard goes back to the queue

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._threshold: float | None = None  # the exact default lower bound, until an inspector types one
        self._folder_id: int | None = None
        self._ranking: tuple[int, ...] = ()  # the "label next" proposals, best first
        grid = QGridLayout(self)
        grid.setContentsMargins(4, 2, 4, 2)
        self.search = SearchEdit()
        self.search.setPlaceholderText("Search file names, serial or lot (Ctrl+F; Enter returns to the queue)")
        self.search.setClearButtonEnabled(True)
        self.flagged = QCheckBox("flagged")
        self.flagged.setToolTip("Only flagged images")
        self.flagged.toggled.connect(self._changed)
        self.out_of_domain = QCheckBox("out of domain")
        self.out_of_domain.setToolTip("Only images an active model calls unlike the images it was trained on "
                                      "(its answer there means little: label them, or route them elsewhere)")
        self.out_of_domain.toggled.connect(self._changed)
        top = QHBoxLayout()
        top.addWidget(self.search, 1)
        top.addWidget(self.flagged)
        top.addWidget(self.out_of_domain)
        grid.addLayout(top, 0, 0)

        states = QHBoxLayout()
        states.setSpacing(2)
        self.state_buttons: dict[str, QToolButton] = {}
        for s in REVIEW_STATES:
            b = QToolButton()
            b.setCheckable(True)
            b.setIcon(state_icon(s))
            b.setText(s)
            b.setToolTip(f"Show only {s} images (combine several; none checked = all)")
            b.setToolButtonStyle(b.toolButtonStyle().ToolButtonTextBesideIcon)
            b.toggled.connect(self._changed)
            states.addWidget(b)
            self.state_buttons[s] = b
        states.addStretch(1)
        grid.addLayout(states, 1, 0)

        row = QHBoxLayout()
        self.class_combo = QComboBox()
        self.class_combo.addItem("any class", None)
        self.class_combo.setToolTip("Predicted or labelled class")
        self.class_combo.currentIndexChanged.connect(self._changed)
        row.addWidget(self.class_combo, 1)
        self.sort = QComboBox()
        for k, t in SORTS.items():
            self.sort.addItem(f"sort: {t}", k)
        self.sort.currentIndexChanged.connect(self._sort_changed)
        row.addWidget(self.sort, 2)
        self.desc = QToolButton()
        self.desc.setCheckable(True)
        self.desc.setText("⇅")
        self.desc.setToolTip("Reverse the order")
        self.desc.toggled.connect(self._changed)
        row.addWidget(self.desc)
        grid.addLayout(row, 2, 0)

        score = QHBoxLayout()
        self.score_filter = QCheckBox("anomaly score from")
        self.score_filter.setToolTip("Filter by anomaly score range")
        self.score_filter.toggled.connect(self._changed)
        self.smin = QDoubleSpinBox()
        self.smax = OpenEndedSpinBox()
        for sp, v in ((self.smin, 0.0), (self.smax, SCORE_CEILING)):
            sp.setRange(0.0, SCORE_CEILING)
            sp.setDecimals(3)
            sp.setSingleStep(0.05)
            sp.setValue(v)
            sp.valueChanged.connect(self._changed)
        self.smin.valueChanged.connect(self._min_typed)   # (signals are blocked while defaults are set)
        score.addWidget(self.score_filter)
        score.addWidget(self.smin, 1)
        score.addWidget(QLabel("to"))
        score.addWidget(self.smax, 1)
        grid.addLayout(score, 3, 0)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(200)
        self._debounce.timeout.connect(self._changed)
        self.search.textChanged.connect(lambda _t: self._debounce.start())
        self.search.left.connect(self._leave_search)

    def _leave_search(self) -> None:
        """A search still waiting out its debounce is applied now, so the keys that follow act on its results."""
        if self._debounce.isActive():
            self._debounce.stop()
            self._changed()
        self.search_left.emit()

    def set_folder(self, folder_id: int | None) -> None:
        self._folder_id = folder_id
        self._changed()

    def set_classes(self, classes: list[str]) -> None:
        current = self.class_combo.currentData()
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        self.class_combo.addItem("any class", None)
        for c in classes:
            self.class_combo.addItem(c, c)
        if current is not None and current not in classes:
            # The class filtered on left the project's list (labels keep it): it stays chosen and says so. The box
            # fell back to "any class" unseen by the queue, which went on listing that class only (a probe).
            self.class_combo.addItem(f"{current} (no longer on the list)", current)
        i = self.class_combo.findData(current)
        self.class_combo.setCurrentIndex(max(0, i))
        self.class_combo.blockSignals(False)

    def set_score_defaults(self, threshold: float) -> None:
        """Ticking the score filter shows the images over the anomaly threshold by default: over it exactly, as the
        panel and the flags call an image anomalous (score > threshold), not over the box's three decimals (a
        session-46 probe: a threshold of 0.48463 shown as 0.485 hid an image of 0.4848 the panel called anomalous,
        and an image scored at the threshold was listed while the panel called it normal)."""
        if not self.score_filter.isChecked():
            for sp, v in ((self.smin, threshold), (self.smax, SCORE_CEILING)):
                sp.blockSignals(True)
                sp.setValue(v)
                sp.blockSignals(False)
            # the exact threshold only where the box can show it (one it cannot is filtered as shown)
            inside = self.smin.minimum() <= threshold <= self.smin.maximum()
            self._threshold = float(threshold) if inside else None

    def _min_typed(self, *_args) -> None:
        """An inspector's own lower bound replaces the default's exact one (a value typed back to the shown
        threshold is the typed value, the session-46 review)."""
        self._threshold = None

    def _score_min(self) -> float:
        """The range's lower bound: the exact threshold, strictly, until an inspector types one; a typed value as
        typed ("from 0.5" includes 0.5)."""
        if self._threshold is not None:
            return math.nextafter(self._threshold, math.inf)
        return self.smin.value()

    def set_counts(self, counts: dict[str, int]) -> None:
        for s, b in self.state_buttons.items():
            b.setText(f"{s} {counts[s]}" if s in counts else s)  # none: being counted

    def set_sort(self, key: str, descending: bool | None = None) -> None:
        self.sort.setCurrentIndex(max(0, self.sort.findData(key)))
        if descending is not None:
            self.desc.setChecked(descending)

    def set_ranking(self, image_ids: tuple[int, ...]) -> None:
        """The "label next" proposals; the queue re-reads only while it is in that order."""
        self._ranking = tuple(image_ids)
        if self.sort.currentData() == "label_next":
            self._changed()

    def set_states(self, states: set[str]) -> None:
        for s, b in self.state_buttons.items():
            b.blockSignals(True)
            b.setChecked(s in states)
            b.blockSignals(False)
        self._changed()

    def _sort_changed(self) -> None:
        key = self.sort.currentData()
        self.desc.blockSignals(True)
        self.desc.setChecked(DEFAULT_DESC.get(key, False))
        self.desc.blockSignals(False)
        self._changed()

    def current(self) -> QueueFilter:
        scored = self.score_filter.isChecked()
        return QueueFilter(
            folder_id=self._folder_id,
            states=frozenset(s for s, b in self.state_buttons.items() if b.isChecked()),
            flagged_only=self.flagged.isChecked(),
            out_of_domain_only=self.out_of_domain.isChecked(),
            class_name=self.class_combo.currentData(),
            score_min=self._score_min() if scored else None,
            score_max=self.smax.bound() if scored else None,
            text=self.search.text().strip(),
            sort=self.sort.currentData() or "name",
            descending=self.desc.isChecked(),
            ranking=self._ranking if self.sort.currentData() == "label_next" else (),
        )

    def _changed(self, *_args) -> None:
        self.filter_changed.emit(self.current())
