"""Project ▸ Model routing…: which model families pre-label which images (path patterns).

The rules are plain data (``app.services.routing``), a project setting stored in the database
and read and saved through the jobs service; this dialog only edits them. The table's row order is
the rules' order (first match wins). The rules are read, proposed and saved on a helper thread: the
dialog opens at once and says what it waits for (the window never waits on storage). *Propose from
this folder* fills rules from the open folder's pre-label results (``app.services.routing_proposal``)
and shows the evidence; nothing is saved until OK.
"""
from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QPushButton,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.gui.background import BackgroundCalls
from app.gui.dialog_life import run_modal
from app.gui.dialog_rows import button_row, disable_keeping_focus, message_label
from app.gui.screen_fit import fit_to_screen
from app.gui.style import icon
from app.services.project_settings import RoutingChanged
from app.services.routing import FAMILY_ORDER, Routing, RoutingError, RoutingRule
from app.services.routing_proposal import RoutingProposal
from app.services.wording import agree, plural

HELP = ("Images whose path inside their folder (or with the folder's name in front, e.g. "
        "<i>line3/*</i>) matches a pattern get only the ticked models; the first matching row "
        "wins, and images that match no row get every model. <i>*</i> matches any text, "
        "<i>?</i> one character. A row with nothing ticked skips its images. Double-click a "
        "model's cell to choose the version that runs there (e.g. the tile classifier on "
        "<i>tiles/*</i>): its answers are the ones shown for those images.")
ACTIVE = "active version"  # a family cell's text when the rule leaves the version to the active one
NAME_ROLE = Qt.ItemDataRole.UserRole + 1  # the version name a family cell names ("" or absent: the active one)


class VersionChooser(QStyledItemDelegate):
    """A family cell's editor: the active version, or one of the family's versions by name."""

    def __init__(self, dialog: "RoutingDialog") -> None:
        super().__init__(dialog)
        self.dialog = dialog

    def createEditor(self, parent: QWidget, option: QStyleOptionViewItem,
                     index: QModelIndex | QPersistentModelIndex) -> QWidget:
        box = QComboBox(parent)
        family = FAMILY_ORDER[index.column() - 1]
        box.addItem(ACTIVE, "")
        for name in self.dialog.versions.get(family, []):
            box.addItem(name, name)
        return box

    def setEditorData(self, editor: QWidget, index: QModelIndex | QPersistentModelIndex) -> None:
        assert isinstance(editor, QComboBox)
        name = index.data(NAME_ROLE) or ""
        at = editor.findData(name)
        if at < 0:  # a name no version has (yet): kept, shown as it is
            editor.addItem(name, name)
            at = editor.count() - 1
        editor.setCurrentIndex(at)

    def setModelData(self, editor: QWidget, model, index: QModelIndex | QPersistentModelIndex) -> None:
        assert isinstance(editor, QComboBox)
        name = str(editor.currentData() or "")
        model.setData(index, name, NAME_ROLE)
        model.setData(index, name or ACTIVE, Qt.ItemDataRole.DisplayRole)
        model.setData(index, Qt.CheckState.Checked.value, Qt.ItemDataRole.CheckStateRole)  # a version chosen: it runs


class RoutingDialog(QDialog):
    """``routing``: the rules to edit; None with ``jobs``: read them on a helper thread first. With ``jobs``,
    OK saves through it (on the helper thread) and the dialog closes once saved; without, OK only accepts."""

    def __init__(self, routing: Routing | None, parent=None, jobs=None, folder_id: int | None = None) -> None:
        super().__init__(parent)
        self.jobs, self.folder_id = jobs, folder_id
        self.calls = BackgroundCalls("routing", self)
        self.finished.connect(lambda _: self.calls.close())   # its thread ended with it (one stayed per opening)
        self.readable = True  # False when the stored rules could not be read: nothing may be saved over them
        self.read: Routing | None = None  # the stored rules these edits start from: OK saves only over them
        self.setWindowTitle("Model routing")
        fit_to_screen(self, 720, 400)
        lay = QVBoxLayout(self)
        text = QLabel(HELP)
        text.setWordWrap(True)
        lay.addWidget(text)
        self.versions: dict[str, list[str]] = {}  # family -> version names a rule may name (read with the rules)
        self.table = QTableWidget(0, 1 + len(FAMILY_ORDER))
        self.table.setTabKeyNavigation(False)   # Tab leaves for the buttons; the arrows walk the cells
        self.table.setHorizontalHeaderLabels(["pattern", *FAMILY_ORDER])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for c in range(1, 1 + len(FAMILY_ORDER)):
            self.table.setItemDelegateForColumn(c, VersionChooser(self))
            self.table.horizontalHeader().setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        self.table.itemChanged.connect(self._ticked)

        self.table.verticalHeader().setVisible(False)
        lay.addWidget(self.table, 1)
        row = button_row((("Add rule", "mdi6.plus", lambda: self.add_rule(RoutingRule("*", tuple(FAMILY_ORDER)))),
                          ("Remove", "mdi6.minus", self.remove_selected),
                          ("Up", "mdi6.arrow-up", lambda: self.move_selected(-1)),
                          ("Down", "mdi6.arrow-down", lambda: self.move_selected(1))))
        self.propose_button = QPushButton(icon("mdi6.lightbulb-on-outline"), "Propose from this folder")
        self.propose_button.clicked.connect(self.propose)
        row.insertWidget(row.count() - 1, self.propose_button)  # before the row's stretch
        lay.addLayout(row)
        self.propose_button.setToolTip("Rules for the open folder's subfolders, from how many of their images each "
                                       "model calls in domain (pre-label the folder first); nothing is saved until OK")
        self.evidence = QLabel()
        self.evidence.setWordWrap(True)
        self.evidence.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.evidence.hide()
        lay.addWidget(self.evidence)
        self.clear_answers = QCheckBox("Also remove this folder's answers from models these rules do not run on its images")
        self.clear_answers.setToolTip("Otherwise the earlier run's answers stay: the images keep those models' flags, "
                                      "stay in the out-of-domain filter and come first in 'label next'. Labels are "
                                      "never touched; pre-labelling brings the answers back.")
        self.clear_answers.setVisible(jobs is not None and folder_id is not None)
        lay.addWidget(self.clear_answers)
        # Seen under Xvfb: after a proposal naming anomaly-bottle was saved, every bottle showed "Anomaly —" and the
        # status bar's "pre-label the folder where a named version has not run yet" was cut off at its edge.
        self.prelabel_after = QCheckBox("Then pre-label this folder with the saved rules (only the answers it lacks "
                                        "are computed)")
        self.prelabel_after.setToolTip("Runs Pre-label folder once the rules are saved: models the rules now run "
                                       "on images they have not answered (a version a rule names, a family added) "
                                       "get their answers; images every model has answered are skipped.")
        self.prelabel_after.setVisible(jobs is not None and folder_id is not None)
        lay.addWidget(self.prelabel_after)
        self.removed = 0  # answers removed by the save (said by the window)
        self.remarked = 0  # answers whose "counts" mark the save moved (rules naming versions)
        self.removal_error = ""  # the rules were saved but their removal failed: why
        self.saving = False
        self.status = QLabel("")  # what the dialog waits for (a helper thread reads or saves)
        lay.addWidget(self.status)
        self.error = message_label()
        lay.addWidget(self.error)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self._accept)
        self.buttons.rejected.connect(self.reject)
        lay.addWidget(self.buttons)
        if routing is not None:
            for rule in routing.rules:
                self.add_rule(rule)
        elif jobs is not None:
            self._busy("Reading the project's rules…")
            self.calls.call(jobs.routing, self._rules_read, self._rules_failed)
        if jobs is not None:
            self.calls.call(jobs.version_names, self._versions_read, lambda _text: None)
        self._enable()

    # -- what the dialog waits for ---------------------------------------------------------
    def _busy(self, text: str) -> None:
        self.status.setText(text)
        self.error.setText("")
        self._enable(waiting=True)

    def _enable(self, waiting: bool = False) -> None:
        waiting = waiting or self.calls.busy
        if not waiting:
            self.status.setText("")
        editable = not waiting and self.readable
        self.table.setEnabled(editable)
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setEnabled(editable)
        self.propose_button.setEnabled(editable and self.jobs is not None and self.folder_id is not None)

    def _rules_read(self, routing: Routing) -> None:
        self.read = routing
        for rule in routing.rules:
            self.add_rule(rule)
        self._enable()

    def _versions_read(self, names: dict[str, list[str]]) -> None:
        """The versions each family's cells offer (a failed read leaves only "active version")."""
        self.versions = names
        self._enable()

    def _rules_failed(self, text: str) -> None:
        self.readable = False
        self.error.setText(f"The model routing cannot be read, so it is left as it is: {text}")
        self._enable()

    # -- a proposal from the folder's results ------------------------------------------------
    def propose(self) -> None:
        if self.jobs is None or self.folder_id is None:
            return
        try:
            current = self.routing()  # a family with no answer in a subfolder is kept as these rules have it
        except RoutingError as exc:
            self.error.setText(str(exc))
            return
        folder_id, jobs = self.folder_id, self.jobs
        self._busy("Reading this folder's pre-label results…")
        self.calls.call(lambda: jobs.propose_routing(folder_id, current), self.apply_proposal, self._proposal_failed)

    def apply_proposal(self, proposal: RoutingProposal) -> None:
        """The proposal merged into the rules on screen (``RoutingProposal.merged_into``), with its evidence."""
        try:
            merged = proposal.merged_into(self.routing())
        except RoutingError as exc:  # a row was made unusable while the results were read
            self.error.setText(str(exc))
            self._enable()
            return
        self.table.setRowCount(0)
        for rule in merged.rules:
            self.add_rule(rule)
        self.evidence.setText(proposal.text()
                              + ("\nReview the ticks, then OK saves them." if proposal.rules else ""))
        if self.evidence.isHidden():  # room for the evidence, not taken from the table
            self.evidence.show()
            fit_to_screen(self, self.width(), self.height() + self.evidence.sizeHint().height())
        if proposal.rules:
            self.clear_answers.setChecked(True)  # the proposal comes from those answers: they are the noise
            self.prelabel_after.setChecked(True)  # its rules are for this folder: run them on it
        self._enable()

    def _proposal_failed(self, text: str) -> None:
        self.error.setText(f"No proposal: this folder's results could not be read ({text}).")
        self._enable()

    def add_rule(self, rule: RoutingRule) -> None:
        r = self.table.rowCount()
        self.table.insertRow(r)
        self._fill(r, rule.pattern, rule.families, rule.named)
        self.table.setCurrentCell(r, 0)

    def _fill(self, r: int, pattern: str, families: tuple[str, ...], named: dict[str, str]) -> None:
        self.table.setItem(r, 0, QTableWidgetItem(pattern))
        for c, fam in enumerate(FAMILY_ORDER, start=1):
            item = QTableWidgetItem((named.get(fam) or ACTIVE) if fam in families else "")
            item.setData(NAME_ROLE, named.get(fam, ""))
            item.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
                          | Qt.ItemFlag.ItemIsEditable)
            item.setCheckState(Qt.CheckState.Checked if fam in families else Qt.CheckState.Unchecked)
            item.setToolTip(f"Ticked: {fam} runs on these images. Double-click to choose its version "
                            f"(the active one, or a version by name).")
            self.table.setItem(r, c, item)

    def _ticked(self, item: QTableWidgetItem) -> None:
        """A family cell ticked shows its version (the active one unless named), unticked nothing."""
        if item.column() == 0:
            return
        ticked = item.checkState() == Qt.CheckState.Checked
        text = (str(item.data(NAME_ROLE) or "") or ACTIVE) if ticked else ""
        if item.text() != text:
            item.setText(text)  # (itemChanged again, with the text already right: no loop)

    def _row(self, r: int) -> tuple[str, tuple[str, ...], dict[str, str]]:
        cell = self.table.item(r, 0)
        pattern = cell.text() if cell else ""
        fams, named = [], {}
        for c, f in enumerate(FAMILY_ORDER, start=1):
            box = self.table.item(r, c)
            if box is not None and box.checkState() == Qt.CheckState.Checked:
                fams.append(f)
                if name := str(box.data(NAME_ROLE) or ""):
                    named[f] = name
        return pattern, tuple(fams), named

    def remove_selected(self) -> None:
        for r in sorted({i.row() for i in self.table.selectedIndexes()} or {self.table.currentRow()}, reverse=True):
            if r >= 0:
                self.table.removeRow(r)

    def move_selected(self, step: int) -> None:
        r = self.table.currentRow()
        to = r + step
        if r < 0 or not 0 <= to < self.table.rowCount():
            return
        a, b = self._row(r), self._row(to)
        self._fill(r, *b)
        self._fill(to, *a)
        self.table.setCurrentCell(to, 0)

    def routing(self) -> Routing:
        """The table as rules (RoutingError names the first bad row)."""
        rules = []
        for r in range(self.table.rowCount()):
            pattern, fams, named = self._row(r)
            try:
                rules.append(RoutingRule(pattern.strip(), fams, tuple(named.items())))
            except RoutingError as exc:
                raise RoutingError(f"row {r + 1}: {exc}") from None
        return Routing(tuple(rules))

    def _accept(self) -> None:
        if not self.readable or self.calls.busy:
            return
        try:
            routing = self.routing()
        except RoutingError as exc:
            self.error.setText(str(exc))
            return
        if self.jobs is None:
            self.accept()
            return
        self._busy("Saving…")
        self.saving = True
        disable_keeping_focus(self.table, self.buttons)
        jobs, folder_id, read = self.jobs, self.folder_id, self.read
        clear = self.clear_answers.isChecked() and folder_id is not None

        def save() -> tuple[int, str, int] | RoutingChanged:
            try:
                remarked = jobs.save_routing(routing, read=read) or 0  # a failure here: nothing saved, the dialog stays
            except RoutingChanged as exc:
                return exc
            if not clear:
                return 0, "", remarked
            try:
                return jobs.remove_unrouted_answers(folder_id, routing), "", remarked
            except Exception as exc:  # noqa: BLE001 - the rules are saved: the dialog closes and the window says this
                return 0, str(exc) or type(exc).__name__, remarked

        def saved(answer: tuple[int, str, int] | RoutingChanged) -> None:
            if isinstance(answer, RoutingChanged):  # the next OK saves these edits over the rules it names
                self.read = answer.now
                self._save_failed(f"{answer}. Your rules stay here: OK saves them over those, Cancel keeps those")
                return
            self.saving = False
            self.removed, self.removal_error, self.remarked = answer
            self.accept()
        self.calls.call(save, saved, self._save_failed)

    def _save_failed(self, text: str) -> None:
        """Not saved (a read-only project, a lock): said here, the edits stay on screen to try again."""
        self.saving = False
        self.buttons.setEnabled(True)
        self.error.setText(f"Not saved: {text}")
        self._enable()

    def reject(self) -> None:
        """Esc or the window's close button while saving: the dialog waits for the answer (closing it then would
        leave the person not knowing whether the rules were saved)."""
        if not self.saving:
            super().reject()


def install(window) -> None:
    action = window.actions["model_routing"]
    if window.ctx.jobs is None:
        action.setEnabled(False)
        action.setToolTip(f"{action.toolTip()} — not available: no worker configured")
        return

    def run() -> None:
        dlg = RoutingDialog(None, window, jobs=window.ctx.jobs, folder_id=getattr(window, "current_folder", None))
        run_modal(dlg, lambda code: answered(dlg, code))

    def answered(dlg: RoutingDialog, code: int) -> None:
        if code == QDialog.DialogCode.Accepted:
            removed = (f" {plural(dlg.removed, 'answer')} of models it no longer runs on this folder's images "
                       f"{agree(dlg.removed, 'was', 'were')} removed and the folder re-flagged."
                       if dlg.removed else "")
            if dlg.removal_error:
                window._warn(f"Model routing saved, but the earlier answers could not be removed: {dlg.removal_error}")
            remarked = (f" The images now show the versions the rules name ({plural(dlg.remarked, 'answer')} re-marked); "
                        "pre-label the folder where a named version has not run yet." if dlg.remarked else "")
            window.statusBar().showMessage("Model routing saved for the project: it applies to the next "
                                           "pre-label job." + removed + remarked, 15000)
            if window.project is not None:
                window.project.reload()  # the Jobs dock's routing line follows
            if dlg.prelabel_after.isChecked() and dlg.folder_id is not None and getattr(window, "jobs", None) is not None:
                window.jobs.prelabel_folder(dlg.folder_id)
            if (dlg.removed or dlg.remarked) and hasattr(window, "refresh_models"):
                window.refresh_models(background=True)  # badges, counts and filters lose the removed answers
                window.review.reload()
                if getattr(window, "label_next", None) is not None:
                    window.label_next.folder_changed()  # its batch put the removed out-of-domain answers first
    action.triggered.connect(run)
