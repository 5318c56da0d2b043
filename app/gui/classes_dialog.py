"""Project ▸ Classes…: the names inspectors label with (hotkeys 1–9 in this order).

The list and its rules are ``app.services.project_classes`` (Qt-free); this dialog reads it and
saves it on a helper thread (``BackgroundCalls``: the GUI thread never waits on storage), then
asks the window to show the new classes (label panel, queue filter, object menu). Taking a class
off the list never changes a label: the dialog says how many labels keep it.
"""
from __future__ import annotations

from typing import Any, Callable

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
)

from app.gui.background import BackgroundCalls
from app.gui.dialog_life import one_at_a_time
from app.gui.dialog_rows import button_row, disable_keeping_focus, message_label
from app.gui.screen_fit import fit_to_screen
from app.gui.style import icon
from app.services import project_classes as pc

HELP = ("The classes inspectors label with, in hotkey order (1–9 for the first nine). Until the project "
        "saves its own list, it uses the classes of the classifier pre-labelling runs (the active one; in a new "
        "project, the bundled one its first pre-label makes active). Taking a class off the list "
        "does not change any label: labels keep it, it is only no longer offered.")


class ClassesDialog(QDialog):
    def __init__(self, db: Any, on_saved: Callable[[str], None] | None = None, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Classes")
        fit_to_screen(self, 460, 440)
        self._db, self._on_saved = db, on_saved
        self._listing: pc.ClassList | None = None
        self.calls = BackgroundCalls("classes", self)
        self.finished.connect(lambda _: self.calls.close())
        lay = QVBoxLayout(self)
        text = QLabel(HELP)
        text.setWordWrap(True)
        lay.addWidget(text)
        self.source = QLabel("Reading the project's classes …")
        self.source.setWordWrap(True)
        lay.addWidget(self.source)
        self.list = QListWidget()
        self.list.setDragDropMode(QListWidget.DragDropMode.InternalMove)
        lay.addWidget(self.list, 1)
        add_row = QHBoxLayout()
        self.name = QLineEdit()
        self.name.setPlaceholderText("New class name")
        self.name.installEventFilter(self)
        self.add_button = QPushButton(icon("mdi6.plus"), "Add")
        self.add_button.clicked.connect(self.add_typed)
        add_row.addWidget(self.name, 1)
        add_row.addWidget(self.add_button)
        lay.addLayout(add_row)
        lay.addLayout(button_row((("Remove", "mdi6.minus", self.remove_selected),
                                  ("Up", "mdi6.arrow-up", lambda: self.move_selected(-1)),
                                  ("Down", "mdi6.arrow-down", lambda: self.move_selected(1)),
                                  ("Model's classes", "mdi6.brain", self.use_model_classes))))
        self.message = message_label()
        lay.addWidget(self.message)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Close)
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        self.buttons.button(QDialogButtonBox.StandardButton.Save).setEnabled(False)
        lay.addWidget(self.buttons)

        self.calls.call(lambda: pc.read(db), self._show, self._read_failed)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Return in the name field adds the class and goes no further: the button box would
        otherwise make it a click on Save."""
        if (watched is self.name and event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent)
                and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)):
            self.add_typed()
            return True
        return super().eventFilter(watched, event)

    # -- the list on screen ---------------------------------------------------------------
    def names(self) -> list[str]:
        return [str(self.list.item(i).data(Qt.ItemDataRole.UserRole)) for i in range(self.list.count())]

    def _item(self, name: str) -> QListWidgetItem:
        used = self._listing.in_use.get(name, 0) if self._listing else 0
        item = QListWidgetItem(f"{name}   ({used} label{'s' if used != 1 else ''})")
        item.setData(Qt.ItemDataRole.UserRole, name)
        return item

    def _fill(self, names: tuple[str, ...] | list[str]) -> None:
        self.list.clear()
        for n in names:
            self.list.addItem(self._item(n))

    def _show(self, listing: pc.ClassList) -> None:
        self._adopt(listing)  # first: each row's label count is read from it
        self._fill(listing.names)
        self.buttons.button(QDialogButtonBox.StandardButton.Save).setEnabled(True)

    def _adopt(self, listing: pc.ClassList) -> None:
        """``listing`` is the stored list the next Save is made on; the line above the list says whose it is."""
        self._listing = listing
        self.source.setText({
            "project": "This is the project's own list.",
            "model": f"These are the classes of the classifier pre-labelling runs ({listing.model}); saving makes "
                     "them the project's own list.",
            "none": "No classes yet (no classifier model): add the classes the inspectors label with."}[listing.source])
        if listing.routed:
            self.source.setText(self.source.text() + f" Images whose routing rule names {', '.join(listing.routed)} "
                                "offer its classes first, then those this list adds beyond the active classifier's.")
        unlisted = {n: c for n, c in listing.in_use.items() if n not in listing.names}
        if unlisted:
            self.source.setText(self.source.text() + " Labelled but not on the list: "
                                + ", ".join(f"{n} ({c})" for n, c in sorted(unlisted.items())) + ".")

    def _read_failed(self, reason: str) -> None:
        self.source.setText(f"The project's classes cannot be read: {reason}")

    def add_typed(self) -> None:
        typed = self.name.text()
        try:
            (name,) = pc.validate([typed])
            pc.validate([*self.names(), name], kept=self._kept(), taken=self._taken())
        except (pc.ClassListError, ValueError) as exc:
            self.message.setText(str(exc))
            return
        self.list.addItem(self._item(name))
        self.list.setCurrentRow(self.list.count() - 1)
        self.name.clear()
        self.message.setText("")

    def _kept(self) -> tuple[str, ...]:
        """Names on the list as read, which pass as they are (as ``project_classes.save`` lets them: a session-46 probe
        found a stored "crack>1mm" refused every Add and Save here while the command line could edit the list)."""
        return self._listing.names if self._listing is not None else ()

    def _taken(self) -> dict[str, int]:
        """The project's classes in every spelling, as read (``ClassList.taken``): Remove "crazing", Add "Crazing" is
        refused here as ``project_classes.save`` refuses it (a session-49 audit)."""
        return self._listing.taken() if self._listing is not None else {}

    def remove_selected(self) -> None:
        row = self.list.currentRow()
        if row >= 0:
            self.list.takeItem(row)
        self._note_dropped()

    def move_selected(self, step: int) -> None:
        row, to = self.list.currentRow(), self.list.currentRow() + step
        if row < 0 or not 0 <= to < self.list.count():
            return
        self.list.insertItem(to, self.list.takeItem(row))
        self.list.setCurrentRow(to)

    def use_model_classes(self) -> None:
        """Back to the active classifier's classes (saving then stores no list of the project's)."""
        self._fill([])
        self._note_dropped()
        self.message.setText(self.message.text() + (" " if self.message.text() else "")
                             + "Save to use the active classifier's classes.")

    def _note_dropped(self) -> None:
        if self._listing is None:
            return
        dropped = self._listing.dropped_in_use(self.names()) if self.names() else {}
        self.message.setText(" ".join(f"{c} label{'s' if c != 1 else ''} keep {n!r}; it will no longer be "
                                      "offered." for n, c in dropped.items()))

    # -- saving ---------------------------------------------------------------------------
    def save(self) -> None:
        names, db = self.names(), self._db
        try:
            pc.validate(names, kept=self._kept(), taken=self._taken())
        except pc.ClassListError as exc:
            self.message.setText(str(exc))
            return
        save_button = self.buttons.button(QDialogButtonBox.StandardButton.Save)
        disable_keeping_focus(self.buttons.button(QDialogButtonBox.StandardButton.Close), save_button)
        self.message.setText("Saving …")

        def done(outcome: pc.ClassList | tuple[pc.ClassList, str]) -> None:
            save_button.setEnabled(True)
            if isinstance(outcome, tuple):  # saved elsewhere since this list was read: the next Save is made on it
                stored, why = outcome
                self._adopt(stored)  # the line above the list says whose list is stored now (seen under Xvfb)
                self.message.setText(f"The classes were not saved (the list stays on screen): {why}. Add what "
                                     "you still want of it and save again.")
                return
            listing = outcome
            self._show(listing)
            text = (f"Classes saved: {', '.join(listing.names) or 'none'}"
                    + (" (the active classifier's)." if listing.source != "project" else "."))
            self.message.setText(text)
            if self._on_saved is not None:
                self._on_saved(text)

        def failed(reason: str) -> None:
            save_button.setEnabled(True)
            self.message.setText(f"The classes were not saved (the list stays on screen): {reason}")
        read_from = self._listing

        def work() -> pc.ClassList | tuple[pc.ClassList, str]:
            try:
                return pc.save(db, names, read_from=read_from)
            except pc.ClassListChanged as exc:
                return pc.read(db), str(exc)
        self.calls.call(work, done, failed)


def install(window) -> None:
    def run() -> None:
        def saved(message: str) -> None:
            window._say(message)
            window.refresh_models()  # the review service forgets its cached classes; the panels follow

        one_at_a_time(window, "classes_dialog", lambda: ClassesDialog(window.ctx.review.db, on_saved=saved,
                                                                       parent=window))
    window.actions["project_classes"].triggered.connect(run)
