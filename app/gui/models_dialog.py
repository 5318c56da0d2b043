"""Project ▸ Models…: the model versions of each family; make one active, add a folder, retrain.

A window beside the main one (not modal), so reviewing goes on while a family retrains; closing
it, or the station, ends a retraining that still runs.

The versions come from ``app.services.model_catalog`` (Qt-free, no database import here); the
active version of each family is what the next pre-label job runs. Retraining runs the station's
``retrain`` command in a separate process (``RetrainRunner``), so the window never loads a
model; the dialog shows its stage, progress and ETA, and on success selects the new version.

Reading the versions (the database, and each bundled card on disk) and changing the active one
(which checks the model folder) run on a helper thread (``BackgroundCalls``), one call after
the other in the order asked: the window never waits on a slow database, a locked file or a
network share that holds a model folder. Until the answer comes the table keeps what it showed
and the buttons that change it are disabled.

A retrained version is its family's *challenger*: the part below the table
(``ChallengerPanel``) compares it with the active version (held-out figures, the images where
they disagree) before Make active promotes it; Roll back returns to the version the active one
replaced. Both are recorded with the reviewer's name (the audit export lists them).
"""
from __future__ import annotations

from html import escape
from typing import Callable, Protocol, Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.gui.background import BackgroundCalls
from app.gui.challenger_panel import ChallengerPanel
from app.gui.dialog_rows import disable_keeping_focus
from app.gui.jobs_panel import format_eta
from app.gui.retrain_runner import RetrainRunner
from app.gui.screen_fit import fit_to_screen
from app.gui.style import STATE_COLORS, icon
from app.services.champion import ChampionReview
from app.services.child_command import ChildCommand
from app.services.model_catalog import ModelCatalog, ModelRow
from app.services.retrain_protocol import (
    RetrainDone,
    RetrainError,
    RetrainProgress,
    RetrainStage,
    refusal_verdict,
    retrain_argv,
)
from app.services.retraining import comparison_text
from app.services.routing import FAMILY_ORDER

STAGE_CHARS = 140
COLUMNS = ("family", "name", "active", "routing", "metrics", "created", "parent", "path")
HELP = ("Each family pre-labels with its <b>active</b> version (the champion), except on the images a model "
        "routing rule runs another version on (its <b>routing</b> column). Make another one active, add a "
        "model folder trained elsewhere, or retrain a family on the labels reviewed in this project: the new "
        "version is the family's <b>challenger</b>, compared below with the version it would replace (the active "
        "one, or the one a routing rule names that it was retrained from) until you promote it.")
READING = "Reading the model versions…"


class RetrainCommand(Protocol):
    """(family, epochs or None, the version to retrain or None: the active one, register a version the check
    refuses) -> command."""
    def __call__(self, family: str, epochs: int | None, version: str | None,
                 keep_if_worse: bool = False) -> ChildCommand | Sequence[str]: ...


class ModelsDialog(QDialog):
    activated = Signal(object)   # ModelRow: the next pre-label run uses it

    def __init__(self, catalog: ModelCatalog, retrain_command: RetrainCommand | None,
                 interactive: bool = True, parent: QWidget | None = None,
                 review: ChampionReview | None = None) -> None:
        super().__init__(parent)
        self.catalog = catalog
        self.previous: dict[str, ModelRow] = {}   # family -> the version Roll back returns to
        # family -> the version a retraining with none selected learns for, and why not where it cannot tell
        self.learning: dict[str, tuple[str | None, str]] = {}
        self.retrain_command = retrain_command
        self.interactive = interactive
        self.rows: list[ModelRow] = []
        self.runner = RetrainRunner(self)
        self._running: tuple[str, int | None, str | None] | None = None   # (family, epochs, version) of the run
        self._refused_run: tuple[str, int | None, str | None] | None = None   # the last run the check refused
        self.calls = BackgroundCalls("models", self)   # storage and model folders, off the GUI thread
        self.setWindowTitle("Models")
        fit_to_screen(self, 1280, 880)   # a laptop's 768 px: its buttons stay on screen
        lay = QVBoxLayout(self)
        text = QLabel(HELP)
        text.setWordWrap(True)
        lay.addWidget(text)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setTabKeyNavigation(False)   # Tab leaves for the buttons; the arrows walk the cells
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideLeft)   # a long path keeps its folder name
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COLUMNS.index("path"), QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.challenger = ChallengerPanel(review or ChampionReview(catalog.db))
        self.challenger.promote.connect(lambda vid: self.promote(vid))
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.challenger)
        split.setStretchFactor(1, 2)
        split.setSizes([180, 560])   # the versions are a few rows; the comparison needs the room
        lay.addWidget(split, 1)
        lay.addLayout(self._build_buttons())
        lay.addWidget(self._build_progress())
        self.info = QLabel("")
        self.info.setWordWrap(True)
        lay.addWidget(self.info)
        self.error = QLabel("")
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.error.setStyleSheet(f"color: {STATE_COLORS['rejected'].name()}")
        lay.addWidget(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self.runner.stage.connect(self._on_stage)
        self.runner.progress.connect(self._on_progress)
        self.runner.succeeded.connect(self._on_done)
        self.runner.failed.connect(self._on_failed)
        self.runner.refused.connect(self._on_refused)
        self.runner.declined.connect(self._on_declined)
        self.runner.cancelled.connect(self._on_cancelled)
        self.refresh()

    def _build_buttons(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.activate_button = QPushButton(icon("mdi6.check-circle"), "Make active")
        self.activate_button.clicked.connect(lambda: self.make_active())
        self.rollback_button = QPushButton(icon("mdi6.backup-restore"), "Roll back")
        self.rollback_button.clicked.connect(lambda: self.rollback())
        self.add_button = QPushButton(icon("mdi6.folder-plus"), "Add model folder…")
        self.add_button.clicked.connect(lambda: self.add_folder())
        row.addWidget(self.activate_button)
        row.addWidget(self.rollback_button)
        row.addWidget(self.add_button)
        row.addStretch(1)
        row.addWidget(QLabel("Family"))
        self.family = QComboBox()
        self.family.addItems(list(FAMILY_ORDER))
        self.family.setToolTip("The family a model folder is added to, or retrained")
        row.addWidget(self.family)
        row.addWidget(QLabel("Epochs"))
        self.epochs = QSpinBox()
        self.epochs.setRange(0, 100000)
        self.epochs.setSpecialValueText("auto")
        self.epochs.setToolTip("Training epochs of a network; auto lets the retrain command choose. A version fitted "
                               "in one go (the classifier's light heads, an anomaly model refitted with its parent's "
                               "settings) uses none, and the result says so")
        row.addWidget(self.epochs)
        self.retrain_button = QPushButton(icon("mdi6.school"), "Retrain from reviewed labels…")
        self.retrain_button.clicked.connect(lambda: self.retrain())
        # after a refusal: the same retraining again, registering the version it refused (retrain --keep-if-worse)
        self.anyway_button = QPushButton(icon("mdi6.alert"), "Retrain and register anyway")
        self.anyway_button.setToolTip("Runs the same retraining again and registers the new version although it "
                                      "lost to the best simple answer (as the challenger: nothing is made active)")
        self.anyway_button.clicked.connect(lambda: self.retrain_anyway())
        self.anyway_button.setVisible(False)
        if self.retrain_command is None:
            self.retrain_button.setEnabled(False)
            self.retrain_button.setToolTip("Not available: this station has no database URL to give the "
                                           "retrain command")
        row.addWidget(self.retrain_button)
        row.addWidget(self.anyway_button)
        self.family.currentTextChanged.connect(self._retrain_text)
        return row

    def _build_progress(self) -> QWidget:
        box = QWidget()
        col = QVBoxLayout(box)
        col.setContentsMargins(0, 0, 0, 0)
        self.stage_label = QLabel("")
        col.addWidget(self.stage_label)
        row = QHBoxLayout()
        col.addLayout(row)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.eta = QLabel("")
        self.cancel_button = QPushButton(icon("mdi6.cancel"), "Cancel")
        self.cancel_button.clicked.connect(self.cancel_retrain)
        row.addWidget(self.bar, 1)
        row.addWidget(self.eta)
        row.addWidget(self.cancel_button)
        box.setVisible(False)
        self.progress_box = box
        return box

    # -- the table ----------------------------------------------------------------------
    def refresh(self, select: int | None = None, then: Callable[[], None] | None = None) -> None:
        """Re-read the versions on the helper thread; keep (or move to ``select``) the selected one,
        then call ``then`` (not called when they cannot be read: the reason is shown)."""
        keep = select if select is not None else self.selected_id()

        def read() -> tuple[list[ModelRow], dict[str, ModelRow], dict[str, tuple[str | None, str]]]:
            rows = self.catalog.rows()
            return (rows, {f: p for f in FAMILY_ORDER if (p := self.catalog.previous_champion(f)) is not None},
                    self.catalog.learning_versions())

        if not self.rows:
            self.info.setText(READING)
        self.calls.call(read, lambda answer: self._show_rows(answer, keep, then),
                        lambda text: self._refused(f"The model versions cannot be read: {text}"))
        self._buttons()

    def _refused(self, text: str) -> None:
        self._buttons()
        self._fail(text)

    def _show_rows(self, answer: tuple[list[ModelRow], dict[str, ModelRow], dict[str, tuple[str | None, str]]],
                   keep: int | None, then: Callable[[], None] | None) -> None:
        self.rows, self.previous, self.learning = answer
        if self.info.text() == READING:
            self.info.setText("")
        self.table.setRowCount(0)
        for r, m in enumerate(self.rows):
            self.table.insertRow(r)
            for c, item in enumerate(_items(m)):
                self.table.setItem(r, c, item)
        if keep is None:   # opened: on the newest challenger, what waits for a decision
            keep = next((m.id for m in sorted(self.rows, key=lambda m: m.created_at, reverse=True) if m.challenger), None)
        if keep is not None:
            self.select(keep)
        self._buttons()
        if then is not None:
            then()

    def _buttons(self) -> None:
        """While a read or a change is on the helper thread, the buttons that change the versions wait for it."""
        self.add_button.setEnabled(not self.calls.busy)
        self.challenger.set_changing(self.calls.busy)  # its promote waits too (a second click promoted project-wide)
        self._selection_changed()

    def select(self, version_id: int) -> bool:
        for r, m in enumerate(self.rows):
            if m.id == version_id:
                self.table.selectRow(r)
                if (cell := self.table.item(r, 0)) is not None:
                    self.table.scrollToItem(cell)
                return True
        return False

    def selected_id(self) -> int | None:
        row = self.selected_row()
        return row.id if row is not None else None

    def suggest_family(self, family: str | None) -> None:
        """Offer ``family`` for retraining and adding where no version is selected (seen under Xvfb: on a folder the
        segmenter alone runs on, with "segmenter: ready" on the label-next line, the dialog opened on the classifier)."""
        if family is not None and family in FAMILY_ORDER and self.selected_row() is None:
            self.family.setCurrentText(family)

    def selected_row(self) -> ModelRow | None:
        rows = {i.row() for i in self.table.selectedIndexes()}
        return self.rows[min(rows)] if rows and min(rows) < len(self.rows) else None

    def _selection_changed(self) -> None:
        m = self.selected_row()
        waiting = self.calls.busy
        self.activate_button.setEnabled(m is not None and not m.active and m.exists and not waiting)
        back = self.previous.get(m.family) if m is not None else None
        self.rollback_button.setEnabled(back is not None and not waiting)
        self.rollback_button.setText(f"Roll back to {back.name}" if back is not None else "Roll back")
        if m is not None:
            self.family.setCurrentText(m.family)
            self.challenger.show_family(m.family, m.id)
        self._retrain_text()

    def _retrain_text(self) -> None:
        """The Retrain button names the version a click retrains, for the family chosen now: a selected version of
        another family no longer names it (it kept naming a selected classifier version after Family was set to
        segmenter, and a click ran `retrain segmenter`: a session-51 audit)."""
        target = self.retrain_target()
        self.retrain_button.setText(f"Retrain {target} from its images' labels…" if target
                                    else "Retrain from reviewed labels…")

    # -- actions ------------------------------------------------------------------------
    def make_active(self, version_id: int | None = None) -> bool:
        """Make the version (a challenger: promote it) its family's active one; recorded. False: nothing
        asked (no selection); the change itself runs on the helper thread and answers in the dialog."""
        version_id = version_id if version_id is not None else self.selected_id()
        if version_id is None:
            self._fail("Select a model version first.")
            return False
        row = next((r for r in self.rows if r.id == version_id), None)
        if row is not None and row.challenger:   # over its champion: in the routing rules that name it, if any
            return self.promote(version_id)
        return self._change_active(lambda: self._said(self.catalog.activate(version_id),
                                   "{name} is now the active {family} model: the next pre-label run uses it."))

    def promote(self, version_id: int) -> bool:
        """Promote the challenger over its champion (``ModelCatalog.promote``): made active, or, where routing
        rules name its champion, named in those rules instead (ADR 0060); on the helper thread."""
        def promote() -> tuple[ModelRow, str]:
            done = self.catalog.promote(version_id)
            return done.row, done.text
        return self._change_active(promote)

    def rollback(self, family: str | None = None) -> bool:
        """Make the version the selected family's active one replaced active again (recorded)."""
        m = self.selected_row()
        chosen = family or (m.family if m is not None else None)
        if chosen is None:
            self._fail("Select a model version first.")
            return False
        named = self.previous.get(chosen)  # the version the button names
        to = named.id if named is not None else None
        return self._change_active(lambda: self._said(self.catalog.rollback(chosen, to=to),
                                   "Rolled back: {name} is the active {family} model again; the version it "
                                   "replaced is now its challenger."))

    @staticmethod
    def _said(row: ModelRow, message: str) -> tuple[ModelRow, str]:
        return row, message.format(name=row.name, family=row.family)

    def _change_active(self, change: Callable[[], tuple[ModelRow, str]]) -> bool:
        """Run ``change`` (the changed row and what to say) on the helper thread; the table is read again and the
        row selected before it is said."""
        def changed(answer: tuple[ModelRow, str]) -> None:
            row, text = answer

            def shown() -> None:
                self._say(text)
                self.activated.emit(row)
            self.refresh(select=row.id, then=shown)

        self._say("")   # the answer replaces what an earlier action said
        self.error.setText("")
        self.calls.call(change, changed, self._refused)
        self._buttons()
        return True

    def add_folder(self) -> bool:
        """Ask for a model folder and register it (checked and written on the helper thread); False:
        no folder chosen."""
        family = self.family.currentText()
        path = QFileDialog.getExistingDirectory(self, f"Add a {family} model folder")
        if not path:
            return False

        def added(row: ModelRow) -> None:
            state = "it is active" if row.active else "Make active to pre-label with it"
            self.refresh(select=row.id, then=lambda: self._say(f"{row.name} is a {family} model version ({state})."))

        self.calls.call(lambda: self.catalog.add_directory(family, path), added,
                        lambda text: self._refused(f"{path} was not added: {text}"))
        self._buttons()
        return True

    def retrain(self) -> bool:
        if self.retrain_command is None or self.runner.running:
            return False
        family = self.family.currentText()
        target = self.retrain_target()
        m = self.selected_row()
        unclear = self.learning.get(family, (None, ""))[1] if m is None or m.family != family else ""
        if target is None and unclear:
            self._fail(unclear)
            return False
        return self._start_retrain(family, self.epochs.value() or None, target)

    def retrain_anyway(self) -> bool:
        """The retraining the check refused, again, registering its version (``retrain --keep-if-worse``): the
        inspector read the figures and keeps it as the challenger all the same."""
        if self.retrain_command is None or self.runner.running or self._refused_run is None:
            return False
        return self._start_retrain(*self._refused_run, keep_if_worse=True)

    def _start_retrain(self, family: str, epochs: int | None, version: str | None, keep_if_worse: bool = False) -> bool:
        assert self.retrain_command is not None
        self.anyway_button.setVisible(False)
        self._refused_run = None
        try:
            argv = (self.retrain_command(family, epochs, version, keep_if_worse=True) if keep_if_worse
                    else self.retrain_command(family, epochs, version))
            self.runner.start(argv)
        except Exception as exc:  # noqa: BLE001 - GUI slot; the reason is shown
            self._fail(f"The retraining could not start: {exc}")
            return False
        self._running = (family, epochs, version)
        self._say("")
        self.error.setText("")
        self._set_stage(f"Retraining {version} (the {family} version the routing names there)…" if version
                        else f"Retraining the {family} model…")
        self.bar.setRange(0, 0)   # busy until the first progress event
        self.eta.setText("")
        self.cancel_button.setEnabled(True)
        self.progress_box.setVisible(True)
        disable_keeping_focus(self.cancel_button, self.retrain_button)
        return True

    def retrain_target(self) -> str | None:
        """The version a retraining starts from and learns for: the selected one when routing rules name it
        (its own images' labels, ADR 0060); another selected version of the family: None, the active one; with no
        version of the family selected, the one the rules give every reviewed label to when the active version's
        images hold none (``ModelCatalog.learning_versions``; seen under Xvfb, session 40: 61 tiles labelled
        under a rule naming the tile classifier, *Retrain* retrained the active steel one and failed with
        "nothing to export"); else None."""
        m = self.selected_row()
        family = self.family.currentText()
        if m is not None and m.family == family:
            return m.name if m.named_by and not m.active else None
        return self.learning.get(family, (None, ""))[0]

    def cancel_retrain(self) -> None:
        if self.runner.running:
            self._set_stage("Cancelling…")
            self.cancel_button.setEnabled(False)
            self.runner.cancel()

    # -- retraining events --------------------------------------------------------------
    def _set_stage(self, text: str) -> None:
        """The stage line, shortened to keep the progress bar wide; the whole text in the tooltip."""
        self.stage_label.setText(text if len(text) <= STAGE_CHARS else text[:STAGE_CHARS - 1] + "…")
        self.stage_label.setToolTip(text)

    def _on_stage(self, ev: RetrainStage) -> None:
        self._set_stage(f"{ev.stage}: {ev.message}" if ev.message else ev.stage)
        self.bar.setRange(0, 0)   # busy until this stage reports its own progress
        self.eta.setText("")

    def _on_progress(self, ev: RetrainProgress) -> None:
        self.bar.setRange(0, 1000)
        self.bar.setValue(int(ev.fraction * 1000))
        self.eta.setText(f"{ev.done}/{ev.total} · {format_eta(ev.eta_s)}")

    def _idle(self) -> None:
        self.progress_box.setVisible(False)
        self.bar.setRange(0, 1000)
        self.bar.setValue(0)
        self.retrain_button.setEnabled(self.retrain_command is not None)

    def _on_done(self, ev: RetrainDone) -> None:
        self._idle()
        self.refresh(select=ev.version_id, then=lambda: self._retrained(ev))

    def _retrained(self, ev: RetrainDone) -> None:
        if self.selected_id() != ev.version_id:   # e.g. the command wrote to another database
            self._fail(f"Retrained {ev.name}, but version {ev.version_id} is not in this station's database.")
            return
        scores = f" Scored {comparison_text(ev.comparison)}." if ev.comparison else ""
        scores += "".join(f" {n[:1].upper()}{n[1:]}." for n in ev.notes)   # e.g. epochs asked for and not used
        if ev.activated:
            self._say(f"Retrained {ev.name}; it is now the active {ev.family} model.{scores}")
            self.activated.emit(self.selected_row())
            return
        row = self.selected_row()
        parent = next((r for r in self.rows if row is not None and r.name == row.parent_name
                       and r.family == row.family), None)
        then = (f"Promote for {', '.join(parent.named_by)} to pre-label those images with it" if parent is not None
                and parent.named_by and not parent.active else "Make active to pre-label with it")
        self._say(f"Retrained {ev.name} ({ev.family}); it is the challenger: look at the comparison and Find "
                  f"disagreements below, then {then}.{scores}")

    def _on_failed(self, message: str) -> None:
        """Said in red; the table is read again, as a failure after registering (or a process stopped while it
        registered: ``RetrainRunner.stop``) leaves a version in it, and the table is where that is seen."""
        self._idle()
        self._fail(f"Retraining failed: {message}")
        self.refresh()

    def _on_declined(self, message: str) -> None:
        """The command declined its input before making anything (seen under Xvfb, session 41: 40 imported tile labels,
        one class with five, read "Retraining failed: the classifier needs at least 2 classes …" as if something had
        broken)."""
        self._idle()
        self._fail(f"Not retrained: {message}. Nothing changed.")

    def _on_refused(self, ev: RetrainError) -> None:
        """Not a failure: the check refused the version (it lost to the best simple answer on the reviewed labels).
        Said with its figures; the same run can be repeated registering it (found in the code in session 38, while
        the refusal was checked under Xvfb: it would read "Retraining failed: … (--keep-if-worse registers it
        anyway)", an option the window did not offer)."""
        self._idle()
        self._fail(f"Not registered: {refusal_verdict(ev)}. Label more images, or retrain and register it anyway to "
                   "compare it as the challenger.")
        self._refused_run = self._running
        self.anyway_button.setVisible(self._refused_run is not None)

    def _on_cancelled(self) -> None:
        self._idle()
        self._say("Retraining cancelled; no version was added.")
        self.refresh()  # the table as stored: what it lists is what there is

    def _say(self, text: str) -> None:
        self.info.setText(text)
        if text:
            self.error.setText("")

    def _fail(self, text: str) -> None:
        """The reason in red; the line above it no longer tells of an earlier success (seen under Xvfb:
        "Rolled back: …" stood above "… is locked by another program" for a later Make active)."""
        if text:
            self.info.setText("")
        self.error.setText(text)

    # -- closing ------------------------------------------------------------------------
    def done(self, result: int) -> None:
        """Closing (Close, Esc, the window's ✕) while retraining asks first, and always ends the process (one
        registering its version is waited for, at most RetrainRunner.REGISTER_WAIT_S, a dialog offering Close anyway:
        ``RetrainRunner.stop``)."""
        note = self.closing_note("this window")
        if note is not None:
            if self.interactive and QMessageBox.question(
                    self, "Retraining in progress", f"{note}\n\nClose this window?",
                    QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No) != QMessageBox.StandardButton.Yes:
                return
            self.runner.stop(self if self.interactive else None)
        super().done(result)

    def closing_note(self, what: str) -> str | None:
        """What closing ``what`` (this window, the station) does to the retraining that runs; None: none runs. Once
        the command registers its version a cancel comes too late: the version stays as the challenger (both
        questions said the retraining would be cancelled with nothing kept, and a new challenger stood in the
        database and on disk afterwards: a session-51 audit)."""
        if not self.runner.running:
            return None
        if self.runner.registering:
            family = self._running[0] if self._running is not None else "new"
            return (f"A retraining is registering its new {family} version; closing {what} waits until it is in "
                    f"(at most {int(self.runner.REGISTER_WAIT_S)} s, or until you close anyway), and it stays as the "
                    f"{family} challenger.")
        return f"A retraining is running; closing {what} cancels it (nothing of it is kept)."


def _items(m: ModelRow) -> list[QTableWidgetItem]:
    created = m.created_at.astimezone().strftime("%Y-%m-%d %H:%M") if m.created_at else ""
    parent = m.parent_name or ("bundled" if m.bundled else "")
    note = m.files_note
    path = f"missing: {m.path}" if note == "missing" else f"{m.path} (kept in the database)" if note else m.path
    items = [QTableWidgetItem(t) for t in (m.family, m.name, "✓" if m.active else "", ", ".join(m.named_by),
                                           m.summary, created, parent, path)]
    if m.named_by:
        items[3].setToolTip("Model routing runs this version on the images these patterns match, whichever version "
                            "is active (Project ▸ Model routing…)")
    items[0].setData(Qt.ItemDataRole.UserRole, m.id)
    if m.domain:  # what "out of domain" is measured against, beside the notes the label panel gives
        items[1].setToolTip(f"<qt>Trained on {escape(m.domain)}. Images unlike these are called out of domain.</qt>")
    items[2].setTextAlignment(Qt.AlignmentFlag.AlignCenter)
    if m.challenger:
        items[2].setText("challenger")
        items[2].setToolTip("Under review beside the active version: see Champion and challenger below")
    if m.active:
        font = QFont(items[1].font())
        font.setBold(True)
        for it in items[:3]:
            it.setFont(font)
    if not m.exists:
        items[-1].setForeground(STATE_COLORS["rejected"])
        items[-1].setToolTip("The model directory is not on this station and the database holds no copy of it: "
                             "this version cannot run here until the station that made it shares it (ADR 0062).")
    elif note:
        items[-1].setToolTip(f"Made at another station ({m.path}); this station loads the database's copy of its files.")
    else:
        items[-1].setToolTip(m.path)
    return items


def family_hint(window) -> str | None:
    """The family the open folder's "label next" line counts labels for where no classifier runs there (the anomaly
    model's verdicts, the segmenter's frames); None: the classifier's, or not known yet."""
    latest = getattr(getattr(window, "label_next", None), "latest", None)
    if latest is None:
        return None
    return "anomaly" if latest.anomaly is not None else "segmenter" if latest.segmenter is not None else None


def install(window) -> None:
    """Project ▸ Models… on the context's model catalog; retraining needs the database URL."""
    action = window.actions["models"]
    catalog = window.ctx.models
    if catalog is None:
        action.setEnabled(False)
        action.setToolTip(f"{action.toolTip()} — not available: no model catalog configured")
        return
    db_url = window.ctx.db_url
    jobs = window.ctx.jobs
    review = ChampionReview(catalog.db, start_worker=jobs.ensure_worker if jobs is not None else None,
                            worker_alive=jobs.worker_alive if jobs is not None else None)
    command = (lambda family, epochs, version, keep_if_worse=False: retrain_argv(db_url, family, epochs, version,
                                                                                 keep_if_worse)) if db_url else None

    def on_activated(row: ModelRow) -> None:
        if hasattr(window, "refresh_models"):
            # the review service forgets cached classes and versions; the queue is read again on a helper thread (it
            # was read on the GUI thread, the window held for as long as the database took: a session-44 probe)
            window.refresh_models(background=True)
            window.review.reload()  # the open image's answer that counts may be another version's now
        where = f" on {', '.join(row.named_by)}" if row.named_by and not row.active else ""
        window.statusBar().showMessage(f"The next pre-label run uses {row.family} model {row.name}{where}.", 10000)

    def run() -> None:
        # Not modal: a retraining takes minutes, and the inspector keeps reviewing meanwhile.
        dlg = window.models_dialog
        if dlg is None:
            dlg = ModelsDialog(catalog, command, interactive=window.ctx.interactive, parent=window, review=review)
            dlg.activated.connect(on_activated)
            window.models_dialog = dlg
        elif not dlg.isVisible():
            dlg.refresh()
        dlg.suggest_family(family_hint(window))
        dlg.show()
        dlg.raise_()
        dlg.activateWindow()

    def stop_retraining() -> None:   # the station closes: no retraining process outlives it
        dlg = window.models_dialog
        if dlg is not None:
            dlg.runner.stop(window if window.ctx.interactive else None)   # a registration: waited for, bounded
            dlg.calls.close()        # a late answer finds no widgets to fill
    def retraining_question() -> str | None:
        dlg = window.models_dialog
        return dlg.closing_note("the station") if dlg is not None else None
    action.triggered.connect(run)
    window.ctx.closers.append(stop_retraining)
    window.ctx.close_questions.append(retraining_question)
