"""The label panel: what the models said, what the label is now, and buttons for each decision.

Buttons reuse the main window's QActions (same shortcut, same enabled state), so clicking and
typing always do the same thing. Class buttons are numbered like their 1–9 hotkeys.
"""
from __future__ import annotations

from html import escape

from PySide6.QtCore import QPoint, QSize, Qt, Signal
from PySide6.QtGui import QAction, QFontMetrics
from PySide6.QtWidgets import (
    QButtonGroup,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.gui.style import OUT_OF_DOMAIN_COLOR, OUT_OF_DOMAIN_TEXT, STATE_COLORS, state_icon
from app.gui.text_fit import ElidedButton, ElidedGroupBox
from app.services.label_next_folder import LABEL_NEXT_SOURCE
from app.services.object_classes import LabelObject
from app.services.review_types import ImageDetail, LabelState, QueueItem, RevisionInfo, prelabel_failure


def _action_button(action: QAction) -> QToolButton:
    b = QToolButton()
    b.setDefaultAction(action)
    b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    b.setSizePolicy(b.sizePolicy().horizontalPolicy().Expanding, b.sizePolicy().verticalPolicy())
    return b


class ImageTitle(QLabel):
    """The image's name (bold) over its path, each shortened in the middle with "…" to the panel's width, the whole of
    them in the tooltip and ``text()``: a line camera's file name of 106 characters with no space could not wrap, so it
    widened the label panel past its dock and put Reject, Clear label and Anomalous out of sight (a session-49 audit).
    What follows them (why the file cannot be loaded) wraps as before."""

    def __init__(self) -> None:
        super().__init__()
        self.setWordWrap(True)
        self._parts: tuple[str, str, str] | None = None   # name, path line, the rest (rich text)
        self.setText("No image")

    def show_image(self, name: str, path: str, rest: str = "") -> None:
        self._parts = (name, path, rest)
        self.setToolTip(f"{name}\n{path}")
        self._fit()

    def add_size(self, width: int, height: int) -> None:
        """The size after the path, where the index gave none."""
        if self._parts is not None and width and "×" not in self.text():
            name, path, rest = self._parts
            self.show_image(name, f"{path} · {width}×{height}", rest)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        self._parts = None
        self.setToolTip("")
        super().setText(text)

    def text(self) -> str:  # the whole title (what is painted may be shortened)
        if self._parts is None:
            return super().text()
        name, path, rest = self._parts
        return f"<b>{name}</b><br><span>{path}</span>{rest}"

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name: never wider than the panel gives it
        return QSize(80, super().minimumSizeHint().height())

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        if self._parts is None:
            return
        name, path, rest = self._parts
        room = max(self.contentsRect().width() - 2, 20)
        bold = self.font()
        bold.setBold(True)
        name = QFontMetrics(bold).elidedText(name, Qt.TextElideMode.ElideMiddle, room)
        path = self.fontMetrics().elidedText(path, Qt.TextElideMode.ElideMiddle, room)
        shown = f"<b>{escape(name)}</b><br><span>{escape(path)}</span>{rest}"
        if shown != QLabel.text(self):
            QLabel.setText(self, shown)


class LabelPanel(QWidget):
    class_chosen = Signal(str)
    revision_chosen = Signal(int, int)  # double-click in the history: (revision, the image whose history it is)
    object_chosen = Signal(int)    # an object picked in the list (1-based; 0: the image itself)
    object_menu_requested = Signal(int, QPoint)  # right click on an object: its number, where

    def __init__(self, actions: dict[str, QAction], parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("labelPanel")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)

        self.title = ImageTitle()
        self.title.setObjectName("imageTitle")
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.state = QLabel()
        self.state.setObjectName("reviewState")
        self.state.setWordWrap(True)
        self.trace = QLabel("")
        self.trace.setObjectName("imageTrace")
        self.trace.setWordWrap(True)
        self.trace.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.trace.setToolTip("The part's serial, lot and station, read by the project's trace rule "
                              "(Settings ▸ Project ▸ Traceability)")
        lay.addWidget(self.title)
        lay.addWidget(self.trace)
        lay.addWidget(self.state)

        pred = QGroupBox("Prediction")
        form = QFormLayout(pred)
        self.pred_class = QLabel("—")
        self.pred_scores = QLabel("")
        self.pred_scores.setWordWrap(True)
        self.pred_targets = QLabel("—")
        self.pred_anomaly = QLabel("—")
        for answer in (self.pred_class, self.pred_targets, self.pred_anomaly):
            answer.setWordWrap(True)  # an out-of-domain answer says why on a second line
        self.anomaly_bar = QProgressBar()
        self.anomaly_bar.setRange(0, 1000)
        self.anomaly_bar.setTextVisible(False)
        self.anomaly_bar.setMaximumHeight(8)
        self.pred_models = QLabel("")
        self.pred_models.setWordWrap(True)
        self.pred_models.setObjectName("muted")
        form.setVerticalSpacing(2)
        form.addRow("Class", self.pred_class)
        form.addRow("", self.pred_scores)
        form.addRow("Targets", self.pred_targets)
        form.addRow("Anomaly", self.pred_anomaly)
        form.addRow("", self.anomaly_bar)
        form.addRow("", self.pred_models)
        lay.addWidget(pred)

        review = QGroupBox("Decision")
        grid = QGridLayout(review)
        for i, key in enumerate(("accept", "reject", "flag", "clear_label")):
            grid.addWidget(_action_button(actions[key]), i // 2, i % 2)
        lay.addWidget(review)

        self.class_box = ElidedGroupBox("Class (1–9)")   # it names the class: a long one is shortened
        self.class_grid = QGridLayout(self.class_box)
        for column in (0, 1):   # two even columns: a long name shortens its own button, not its neighbour's
            self.class_grid.setColumnStretch(column, 1)
        self.class_group = QButtonGroup(self)
        self.class_group.setExclusive(True)
        self.class_group.idClicked.connect(self._class_clicked)
        self._classes: list[str] = []          # the buttons shown
        self._folder_classes: list[str] = []   # the open folder's list (``set_classes``)
        self._image_classes: list[str] = []    # the shown image's own (``ImageDetail.classes``), which win
        self._no_classifier = False            # the shown image's routing runs no classifier (its list only)
        self.no_classes = QLabel("")           # why there are no buttons (one label, shown or hidden)
        self.no_classes.setObjectName("muted")
        self.no_classes.setWordWrap(True)
        self.class_grid.addWidget(self.no_classes, 0, 0, 1, 2)
        lay.addWidget(self.class_box)

        self.objects_box = QGroupBox("Objects")
        ol = QVBoxLayout(self.objects_box)
        self.objects = QListWidget()
        self.objects.setObjectName("objects")
        self.objects.setMaximumHeight(130)
        self.objects.setToolTip("The regions of the mask. Select one (here, with Tab or by clicking it in the "
                                "viewer) and 1–9 set its own class; right-click for a menu of classes.")
        self.objects.currentRowChanged.connect(lambda row: self.object_chosen.emit(max(row, 0)))
        self.objects.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.objects.customContextMenuRequested.connect(self._object_menu)
        ol.addWidget(self.objects)
        lay.addWidget(self.objects_box)
        self._selected_object: LabelObject | None = None
        self._object_count = 0
        self._image_class: str | None = None

        anomaly = QGroupBox("Anomaly verdict")
        row = QGridLayout(anomaly)
        row.addWidget(_action_button(actions["verdict_normal"]), 0, 0)
        row.addWidget(_action_button(actions["verdict_anomalous"]), 0, 1)
        self.region_info = QLabel("")
        self.region_info.setObjectName("muted")
        self.region_info.setWordWrap(True)
        row.addWidget(self.region_info, 1, 0, 1, 2)
        lay.addWidget(anomaly)

        hist = QGroupBox("History")
        hl = QVBoxLayout(hist)
        self.history = QListWidget()
        self.history.setObjectName("history")
        self._history_of: int | None = None   # the image whose revisions the list may show
        self._flag_of: int | None = None        # the image whose prediction line shows (show_flag)
        self._flag_reasons: tuple[str, ...] = ()
        self._models_line = ""
        self.history.setMinimumHeight(90)
        self.history.setMaximumHeight(160)
        self.history.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.history.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.history.setToolTip("Double-click a revision to bring it back (as a new revision)")
        self.history.itemDoubleClicked.connect(
            lambda it: self.revision_chosen.emit(int(it.data(Qt.ItemDataRole.UserRole)),
                                                 -1 if self._history_of is None else self._history_of))
        hl.addWidget(self.history)
        lay.addWidget(hist)
        lay.addStretch(1)

    # -- content --------------------------------------------------------------------------
    def classes(self) -> list[str]:
        """The class buttons shown, in hotkey order."""
        return list(self._classes)

    def offered(self) -> list[str] | None:
        """What keys 1–9 pick from: the buttons shown; None while there are none and the folder's list may still be
        on its way (the key then reads the project's list); [] where the shown image's routing runs no classifier."""
        if self._classes or self._no_classifier:
            return list(self._classes)
        return None

    def set_classes(self, classes: list[str]) -> None:
        """The open folder's classes; an image whose classifier answer has its own (a version a routing
        rule names) shows those while it is shown."""
        self._folder_classes = list(classes)
        self._show_classes(self._shown_list())

    def _shown_list(self) -> list[str]:
        """The image's own classes; where a classifier runs and it has none, the folder's list. Where the routing
        runs no classifier, never the folder's: that list is another part's model's (steel classes on a bottle)."""
        if self._no_classifier:
            return self._image_classes
        return self._image_classes or self._folder_classes

    def _show_classes(self, classes: list[str]) -> None:
        self.no_classes.setText(
            "" if classes else
            "The model routing runs no classifier on this image, so no model offers classes here. "
            "Project ▸ Classes… sets the classes this project labels with." if self._no_classifier else
            "No classifier model: no classes yet. Project ▸ Classes… sets the classes this project labels with.")
        self.no_classes.setVisible(not classes)
        if classes == self._classes:
            return
        self._classes = list(classes)
        for b in self.class_group.buttons():
            self.class_group.removeButton(b)
            b.deleteLater()
        for i, name in enumerate(classes):
            key = f"{i + 1}  " if i < 9 else ""   # the hotkey stays in sight, a long name ends in "…"
            b = ElidedButton(key + name, keep=key)
            b.setCheckable(True)
            b.setObjectName("classButton")
            self.class_group.addButton(b, i)
            self.class_grid.addWidget(b, 1 + i // 2, i % 2)

    def _class_clicked(self, index: int) -> None:
        if 0 <= index < len(self._classes):
            self.class_chosen.emit(self._classes[index])

    def _clear_prediction(self, class_text: str) -> None:
        """No answer to show: the class line says ``class_text``, the rest is emptied."""
        for answer, text in ((self.pred_class, class_text), (self.pred_scores, ""), (self.pred_targets, "—"),
                             (self.pred_anomaly, "—")):
            answer.setText(text)
            answer.setToolTip("")
        self.anomaly_bar.setValue(0)

    def show_detail(self, detail: ImageDetail | None) -> None:
        shown = detail.item.image_id if detail is not None else None
        if shown != self._history_of:
            # another image: the previous one's history goes at once (its own is read off the GUI thread and came
            # later under load: the list showed the other image's revisions, and a double-click there would have
            # brought back that revision number of this image)
            self.history.clear()
            self._history_of = shown
        if detail is None:  # as the window starts: the image left says nothing more here (a session-49 audit)
            self.title.setText("No image")
            self.trace.setText("")
            self.state.setText("")
            self.region_info.setText("")
            self._flag_of = None        # a late F answer of the image left must not write on the cleared panel
            self._clear_prediction("—")
            self.pred_models.setText("")
            self.pred_models.setToolTip("")
            self.objects.clear()
            self.objects_box.setTitle("Objects")
            self._selected_object, self._object_count, self._image_class = None, 0, None
            self._image_classes = []
            self._no_classifier = False
            self._show_classes(self._folder_classes)
            self._class_title()
            return
        # the classes of the classifier whose answer counts here (or the project's own; ``ImageDetail.classes``)
        self._image_classes = list(detail.classes)
        self._no_classifier = not detail.classifier_runs
        self._show_classes(self._shown_list())
        self.trace.setText(" · ".join(f"{k.capitalize()} <b>{escape(v)}</b>" for k, v in detail.trace.items()))
        self.trace.setVisible(bool(detail.trace))
        it = detail.item
        size = f" · {detail.width}×{detail.height}" if detail.width else ""
        err = ""
        if it.error and not prelabel_failure(it.error):
            err = f"<br><span style='color:#d14343'>Cannot load: {escape(it.error)}</span>"
        elif it.error and (detail.prediction is not None or not detail.prelabel_error):  # else the line below says it
            err = f"<br><span style='color:#d14343'>Pre-labelling failed: {escape(it.error)}</span>"
        if detail.pages > 1:
            err += (f"<br><span style='color:#b26b00'>Page 1 of {detail.pages} shown: the station and its models read "
                    "the first page only</span>")
        self.title.show_image(it.name, f"{it.rel_path}{size}", err)
        p = detail.prediction
        if p is None:
            failed = detail.prelabel_error
            self._clear_prediction(f"<span style='color:#d14343'>pre-labelling failed: {escape(failed)}</span>"
                                   if failed else "not pre-labelled yet")
            self.pred_class.setToolTip(failed or "")
            self._models_line, self._flag_reasons, self._flag_of = "", (), it.image_id  # F says so here too
            self.show_flag(it)
            return
        # A model that calls the image unlike its training images has no answer worth showing:
        # "out of domain" stands where its class, target count or score would.
        outside = {f: _outside(p.in_domain.get(f), p.domain_notes.get(f)) for f in p.out_of_domain}
        for family, label in (("classifier", self.pred_class), ("segmenter", self.pred_targets),
                              ("anomaly", self.pred_anomaly)):
            note = p.domain_notes.get(family)
            label.setToolTip((OUTSIDE_TIP + (f"\n\nWhy: {note}." if note else "")) if family in outside else "")
        conf = f" ({p.confidence:.1%})" if p.confidence is not None else ""
        top = sorted(p.class_scores.items(), key=lambda kv: -kv[1])[:3]
        if "classifier" in outside:
            self.pred_class.setText(outside["classifier"])
            self.pred_scores.setText("")
        else:
            self.pred_class.setText(f"<b>{p.predicted_class}</b>{conf}" if p.predicted_class else "—")
            self.pred_scores.setText("  ".join(f"{k} {v:.0%}" for k, v in top))
        self.pred_targets.setText(outside.get("segmenter") or ("—" if p.target_count is None else str(p.target_count)))
        if "anomaly" in outside:
            self.pred_anomaly.setText(outside["anomaly"])
            self.anomaly_bar.setValue(0)
        elif p.anomaly_score is None:
            self.pred_anomaly.setText("—")
            self.anomaly_bar.setValue(0)
        else:
            verdict = "anomalous" if p.anomalous else "normal"
            thr = f" (threshold {p.threshold:.3g})" if p.threshold is not None else ""
            missing = "<br><span style='color:#d14343'>its map is not on this station</span>" if p.heatmap_missing else ""
            self.pred_anomaly.setText(f"<b>{p.anomaly_score:.3g}</b>{thr} → {verdict}{missing}")
            self.pred_anomaly.setToolTip(p.heatmap_missing or "")
            # The bar is half full at the threshold, full at twice the threshold.
            ratio = p.anomaly_score / (2 * p.threshold) if p.threshold else p.anomaly_score
            self.anomaly_bar.setValue(int(max(0.0, min(1.0, ratio)) * 1000))
        self._models_line = ", ".join(f"{f}: {n}" for f, n in sorted(p.models.items()))
        self._flag_reasons, self._flag_of = tuple(p.flags), it.image_id
        self.show_flag(it)

    def show_flag(self, item: QueueItem) -> None:
        """The prediction's flag line with the inspector's F decision where one stands: the panel read "flagged:
        anomaly" after F removed the flag, while the queue said "flag removed by root" (a session-47 audit)."""
        if self._flag_of != item.image_id:
            return
        reasons = ", ".join(f.replace("_", " ") for f in self._flag_reasons)
        if item.flag_override is None:
            line = f"flagged: {reasons}\n" if reasons else ""
        else:
            line = item.flag_text + (f"; the models: {reasons}" if reasons else "") + "\n"
        self.pred_models.setText((line + self._models_line).rstrip("\n"))

    def show_size(self, width: int, height: int) -> None:
        """The decoded size, once the viewer has the pixels (the index may not know it)."""
        self.title.add_size(width, height)

    def show_label(self, label: LabelState | None) -> None:
        label = label or LabelState()
        color = STATE_COLORS[label.review_state].name()
        who = f" by {label.author}" if label.author and label.revision else ""
        rev = f" · revision {label.revision}{who}" if label.revision else ""
        self.state.setText(f"<span style='color:{color}; font-weight:bold'>{label.review_state.upper()}</span>{rev}")
        self.state.setToolTip(label.review_state)
        self._image_class = label.class_name
        self._class_title()
        if self.objects.count():
            self.objects.item(0).setText(f"Image · {self._image_class or 'no class'}")
        bits = [f"verdict: {label.anomaly_verdict or 'none'}"]
        if label.anomaly_region is not None:
            bits.append(f"region: {int(label.anomaly_region.sum())} px")
        if label.mask is not None:
            bits.append(f"mask: {int(label.mask.sum())} px")
        self.region_info.setText(" · ".join(bits))

    def _class_title(self) -> None:
        """The class box speaks of the selected object, else of the image: title and checked button."""
        obj = self._selected_object
        shown = obj.seed.class_name if obj is not None else self._image_class
        self.class_group.setExclusive(False)
        for b in self.class_group.buttons():
            b.setChecked(self._classes[self.class_group.id(b)] == shown)
        self.class_group.setExclusive(True)
        if obj is None:
            self.class_box.setTitle(f"Class (1–9): {self._image_class or 'none'}")
        else:
            own = obj.own_class or f"the image's ({self._image_class or 'none'})"
            self.class_box.setTitle(f"Class (1–9) of object {obj.number}/{self._object_count}: {own}")

    def show_objects(self, objects: list[LabelObject], selected: LabelObject | None) -> None:
        """Row 0 is the image itself (its class); then each object with its class and size."""
        self._selected_object, self._object_count = selected, len(objects)
        self.objects.blockSignals(True)
        self.objects.clear()
        self.objects.addItem(f"Image · {self._image_class or 'no class'}")
        for o in objects:
            item = QListWidgetItem(f"{o.number}  {o.shown_class} · {o.pixels} px")
            item.setToolTip(f"object {o.number}: x {o.box[0]}, y {o.box[1]}, {o.box[2]}×{o.box[3]} px")
            self.objects.addItem(item)
        self.objects.setCurrentRow(selected.number if selected is not None else 0)
        self.objects.blockSignals(False)
        self.objects_box.setTitle(f"Objects ({len(objects)})" if objects else "Objects (none)")
        self._class_title()

    def _object_menu(self, at: QPoint) -> None:
        row = self.objects.indexAt(at).row()
        if row > 0:
            self.object_menu_requested.emit(row, self.objects.viewport().mapToGlobal(at))

    def show_history(self, revisions: list[RevisionInfo]) -> None:
        self.history.clear()
        for r in reversed(revisions):
            when = r.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
            what = f" · {r.class_name}" if r.class_name else ""
            if r.object_classes:
                what += f" · objects: {', '.join(r.object_classes)}"
            chosen = r.source == LABEL_NEXT_SOURCE
            item = QListWidgetItem(state_icon(r.review_state),
                                   f"#{r.revision} {r.changed}{what}" + (" · label next" if chosen else ""))
            item.setData(Qt.ItemDataRole.UserRole, r.revision)
            item.setToolTip(f"{when} by {r.author}\nstate {r.review_state}, class {r.class_name}, verdict {r.anomaly_verdict}, "
                            f"mask {'yes' if r.has_mask else 'no'}, region {'yes' if r.has_region else 'no'}"
                            + ("\nsaved on a proposal of \"label next\"" if chosen else "")
                            + "".join(f"\n{k} {v}" for k, v in r.trace.items()))
            self.history.addItem(item)


def _outside(score: float | None, note: str | None = None) -> str:
    """What stands in place of an out-of-domain model's answer: its in-domain score, when known, and why, when the
    prediction says (``inference.domain_notes``: "stored as colour with alpha (4 channels; training files: grey)")."""
    known = f" (in-domain score {score:.2f})" if score is not None else ""
    why = f"<br><span style='color:#666'>{escape(note)}</span>" if note else ""
    return f"<b style='color:{OUT_OF_DOMAIN_COLOR.name()}'>{OUT_OF_DOMAIN_TEXT}</b>{known}{why}"


OUTSIDE_TIP = ("Out of domain: this image is unlike the images this model was trained on, so its answer "
               "means little here (in-domain score below 0.5). Label it yourself or route it to another model.")
