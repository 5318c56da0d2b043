"""Project ▸ Import…: bring a dataset's labels in, after a preview of what will change.

Two runs on a pool thread, so the window never waits on files or storage: the preview (read,
match, plan: the dry run) and then, only when the person presses Import, the one-transaction
write. Dataset classes the station does not know are listed with a chooser each; changing the
mapping or any option makes the preview stale, and Import stays disabled until it is run again,
so what is written is always what was shown.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from app.gui.background import BackgroundCalls
from app.gui.dialog_facts import FolderFacts, read_facts_for
from app.gui.dialog_life import run_modal
from app.gui.dialog_rows import disable_keeping_focus, labels_on_their_way, path_row, scope_row
from app.gui.screen_fit import fit_to_screen
from app.services import project_classes
from app.services.import_detect import detect_formats, foreign_here
from app.services.import_records import LabelImportError
from app.services.importing import (
    FORMAT_TITLES,
    IMPORT_FORMATS,
    ImportOptions,
    ImportPreview,
    apply_import,
    plain_preview_rows,
    preview_import,
)
from app.services.wording import plural

PREVIEW_ROWS = 500  # the table shows the first rows; the counts cover every image


class _Relay(QObject):
    done = Signal(str, object, str)  # step ('preview' | 'import'), result or None, error


class _Task(QRunnable):
    def __init__(self, relay: _Relay, step: str, work: Callable[[], Any]) -> None:
        super().__init__()
        self.relay, self.step, self.work = relay, step, work

    def run(self) -> None:
        try:
            result = self.work()
        except (LabelImportError, project_classes.ClassListError) as exc:
            self.relay.done.emit(self.step, None, str(exc))
        except Exception as exc:  # noqa: BLE001 - never lose the dialog to an unexpected error
            self.relay.done.emit(self.step, None, f"{type(exc).__name__}: {exc}")
        else:
            self.relay.done.emit(self.step, result, "")


class ImportDialog(QDialog):
    finished_preview = Signal(object, str)  # ImportPreview | None, error
    finished_import = Signal(object, str)  # ImportResult | None, error
    classes_added = Signal(object)  # the project's class names after "Add classes"
    facts_ready = Signal()  # the project's classes and author arrived (or could not be read): Preview is enabled

    def __init__(self, db, folder_id: int | None, folder_name: str | None, classes: tuple[str, ...] = (),
                 author: str = "import", parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import labels")
        self.db, self.folder_id, self.classes, self.author = db, folder_id, tuple(classes), author
        self.preview: ImportPreview | None = None
        self._options_gen = 0   # moves at every change of the dataset, format, scope, overwrite or class mapping
        self._preview_gen = -1  # the options' generation the running (or last) preview was made with
        self.result_value = None
        self.facts_calls: BackgroundCalls | None = None  # the project's facts being read (read_facts)
        self.unsaved: Callable[[], int] = lambda: 0  # the window's labels not in the database yet (set by the window)
        self._importing = False  # an import is being written
        self._close_after: int | None = None  # closing was asked while it was: the result to close with
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._relay = _Relay(self)
        self._relay.done.connect(self._on_done)

        lay = QVBoxLayout(self)
        form = QFormLayout()
        row, self.source = path_row("dataset folder (or a COCO .json / CSV file)", self._browse)
        form.addRow("Dataset", row)
        self.format = QComboBox()
        for name in IMPORT_FORMATS:
            self.format.addItem(FORMAT_TITLES[name], name)
        form.addRow("Format", self.format)
        scope, self.scope_folder, self.scope_all = scope_row(folder_id, folder_name)
        form.addRow("Images", scope)
        self.overwrite_newer = QCheckBox("also replace labels saved here after the dataset's")
        form.addRow("", self.overwrite_newer)
        lay.addLayout(form)
        self.mapping = QTableWidget(0, 2)
        self.mapping.setTabKeyNavigation(False)   # Tab leaves for the next field; the arrows walk the cells
        self.mapping.setHorizontalHeaderLabels(["Dataset class", "Becomes"])
        self.mapping.horizontalHeader().setStretchLastSection(True)
        self.mapping.setMaximumHeight(130)
        lay.addWidget(QLabel("Class mapping"))
        lay.addWidget(self.mapping)
        self.summary = QPlainTextEdit()
        self.summary.setReadOnly(True)
        self.summary.setMaximumHeight(120)
        lay.addWidget(self.summary)
        self.changes = QTableWidget(0, 4)
        self.changes.setTabKeyNavigation(False)   # Tab leaves for the next field; the arrows walk the cells
        self.changes.setHorizontalHeaderLabels(["Image", "Action", "Class now", "Class after"])
        header = self.changes.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2, 3):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        lay.addWidget(self.changes, 1)
        self.status = QLabel("Choose a dataset and its format, then Preview.")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.buttons = QDialogButtonBox()
        self.add_classes_button = self.buttons.addButton("Add classes", QDialogButtonBox.ButtonRole.ActionRole)
        self.add_classes_button.setToolTip("Add the dataset's classes the station offers nowhere (not a routed "
                                           "classifier's) to the project's class list (Project ▸ Classes…), then "
                                           "preview again")
        self.add_classes_button.setVisible(False)
        self.add_classes_button.clicked.connect(self.add_unknown_classes)
        self.preview_button = self.buttons.addButton("Preview", QDialogButtonBox.ButtonRole.ActionRole)
        self.import_button = self.buttons.addButton("Import", QDialogButtonBox.ButtonRole.AcceptRole)
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.import_button.setEnabled(False)
        self.preview_button.clicked.connect(self.start_preview)
        self.import_button.clicked.connect(self.start_import)
        self.close_button.clicked.connect(self.reject)
        lay.addWidget(self.buttons)
        for signal in (self.source.textChanged, self.format.currentIndexChanged, self.scope_folder.toggled,
                       self.overwrite_newer.toggled):
            signal.connect(self._stale)
        self.source.editingFinished.connect(self.detect_format)
        self._detected_for = ""  # the dataset path whose formats were last looked for
        fit_to_screen(self, 760, 620)

    # -- the project's facts, read off the GUI thread (open_import_dialog) ----------------------
    def read_facts(self, review) -> None:
        """Read the project's classes, the author and the folder's name on a helper thread; Preview waits."""
        self.preview_button.setEnabled(False)
        self._message("Reading the project's classes…")
        self.facts_calls = read_facts_for(self, review, self.folder_id, self.apply_facts, self.facts_failed)

    @property
    def reading(self) -> bool:
        return self.facts_calls is not None and self.facts_calls.busy

    def apply_facts(self, facts: FolderFacts) -> None:
        self.classes, self.author = tuple(facts.classes), facts.author
        if facts.name and self.folder_id is not None:
            self.scope_folder.setText(f"this folder ({facts.name})")
        self.preview_button.setEnabled(True)
        self._message("Choose a dataset and its format, then Preview.")
        self.facts_ready.emit()

    def facts_failed(self, error: str) -> None:
        self.preview_button.setEnabled(True)
        self._message(f"The project's classes could not be read ({error}); the preview reads the database "
                      "again and lists any class it cannot place.", error=True)
        self.facts_ready.emit()

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Dataset folder")
        if path:
            self.source.setText(path)
            self.detect_format()

    def detect_format(self) -> bool:
        """Look (on the pool thread) for the formats the dataset holds and choose the most telling one: seen under
        Xvfb, the dialog's first format, ImageFolder, read an export's coco/ and masks/ folders as two classes."""
        source = self.source.text().strip()
        if not source or source == self._detected_for:
            return False
        self._detected_for = source
        self._pool.start(_Task(self._relay, "detect", lambda: (source, detect_formats(source), foreign_here(source))))
        return True

    def _formats_found(self, source: str, found: list[str], foreign: str | None = None) -> None:
        if source != self.source.text().strip():
            return  # another dataset was chosen meanwhile: its own look follows
        if not found:
            self._message(f"This is {foreign}, which the station does not read: export it from its tool as COCO."
                          if foreign else "No known dataset layout here: choose its format above, then Preview.")
            return
        self.format.setCurrentIndex(max(0, self.format.findData(found[0])))
        names = ", ".join(FORMAT_TITLES[f].split(" (")[0] for f in found)
        more = " (another can be chosen above)" if len(found) > 1 else ""
        self._message(f"Found here: {names}. {FORMAT_TITLES[found[0]].split(' (')[0]} chosen{more}; then Preview.")

    def class_map(self) -> dict[str, str]:
        out = {}
        for r in range(self.mapping.rowCount()):
            combo = self.mapping.cellWidget(r, 1)
            cell = self.mapping.item(r, 0)
            if isinstance(combo, QComboBox) and cell is not None:  # the table holds one of each per row
                out[cell.text()] = combo.currentText().strip()
        return {k: v for k, v in out.items() if v}

    def options(self) -> ImportOptions:
        folder = self.folder_id if self.scope_folder.isChecked() else None
        return ImportOptions(format=self.format.currentData(), folder=folder, class_map=self.class_map(),
                             overwrite_newer=self.overwrite_newer.isChecked(), author=self.author)

    def start_preview(self) -> bool:
        if self.reading:
            return False  # Preview is disabled until the project's classes are known
        source = self.source.text().strip()
        if not source:
            self._message("Choose a dataset folder.", error=True)
            return False
        if self._labels_wait("the preview"):
            return False
        options, db = self.options(), self.db
        self._preview_gen = self._options_gen
        self._busy("Reading the dataset and matching images…")
        self._pool.start(_Task(self._relay, "preview", lambda: preview_import(db, Path(source), options)))
        return True

    def start_import(self) -> bool:
        if self.preview is None or self.preview.errors or self._labels_wait("the import"):
            return False
        preview, db, author = self.preview, self.db, self.author
        self._importing = True
        self._busy(f"Importing {plural(len(preview.writes), 'label')}…")
        self._pool.start(_Task(self._relay, "import", lambda: apply_import(db, preview, author)))
        return True

    def _labels_wait(self, what: str) -> bool:
        waiting = self.unsaved()
        if waiting:
            self._message(labels_on_their_way(waiting, what), error=True)
        return bool(waiting)

    def add_unknown_classes(self) -> bool:
        """Put the preview's unknown classes on the project's list (a helper thread), then preview again."""
        names = self.preview.unknown_classes if self.preview is not None else ()
        if not names:
            return False
        db = self.db
        self._busy(f"Adding {', '.join(names)} to the project's classes…")
        self.add_classes_button.setVisible(False)
        self._pool.start(_Task(self._relay, "classes", lambda: project_classes.add(db, names)))
        return True

    def _busy(self, text: str) -> None:
        disable_keeping_focus(self.close_button, self.preview_button, self.import_button)
        self._message(text)

    def _stale(self, *_: object) -> None:
        self._options_gen += 1  # a preview running now was made with the options before: its answer is dropped
        if self.preview is not None:
            self.preview = None
            self.import_button.setEnabled(False)
            self._message("Options changed: Preview again before importing.")

    def _on_done(self, step: str, result, error: str) -> None:
        if step == "detect":
            if result is not None:
                self._formats_found(*result)
            return
        self.preview_button.setEnabled(True)
        if step == "classes":
            if result is None:
                self._message(f"The classes were not added: {error}", error=True)
                return
            self.classes = tuple(dict.fromkeys((*self.classes, *result.names)))
            self.classes_added.emit(tuple(result.names))
            self.start_preview()
            return
        if step == "preview":
            if self._preview_gen != self._options_gen:
                # Found by a session-43 probe: "overwrite newer" ticked, Preview, unticked before the answer came,
                # Import: the late preview was kept and imported over the inspector's newer label, the box unticked.
                self.preview = None
                self.import_button.setEnabled(False)
                self._message("The options changed while the preview ran: Preview again before importing.")
                self.finished_preview.emit(None, "options changed")
                return
            self._show_preview(result, error)
            self.finished_preview.emit(result, error)
            return
        self.result_value = result
        self._importing = False
        if result is None:
            self._message(f"Import failed: {error}", error=True)
        else:
            self.preview = None
            self._message(f"Done: imported {plural(result.written, 'label')}. Each is a new revision (undo keeps working).")
            self.close_button.setText("Close")
        self.finished_import.emit(result, error)
        if self._close_after is not None:  # asked to close while it ran: now it has answered
            super().done(self._close_after)

    def _show_preview(self, preview: ImportPreview | None, error: str) -> None:
        self.preview = preview
        if preview is None:
            self.summary.setPlainText("")
            self.changes.setRowCount(0)
            self._message(f"Cannot import: {error}. Nothing was written.", error=True)
            return
        self._fill_mapping(preview.class_map, preview.routed_offers)
        self.summary.setPlainText("\n".join(preview.summary_lines()))
        rows = plain_preview_rows(preview)[:PREVIEW_ROWS]
        self.changes.setRowCount(len(rows))
        for r, values in enumerate(rows):
            for c, value in enumerate(values):
                self.changes.setItem(r, c, QTableWidgetItem(value))
        n = len(preview.writes)
        self.add_classes_button.setVisible(bool(preview.unknown_classes))
        if preview.unknown_classes:
            self.add_classes_button.setText(f"Add {plural(len(preview.unknown_classes), 'class', 'classes')} to the project")
        if preview.errors:
            self._message("Cannot import yet: " + preview.errors[0], error=True)
        elif n == 0:
            self._message("Nothing to import: every matched label is unchanged or newer here.")
        else:
            self._message(f"Import writes {plural(n, 'label revision')} in one step; press Import.")
        self.import_button.setEnabled(not preview.errors and n > 0)

    def _fill_mapping(self, seen: dict[str, str], routed: dict[str, tuple[str, ...]]) -> None:
        """One chooser per dataset class: the project's classes, then, under a heading per model, the classes the
        routed classifiers offer on the matched images (``ImportPreview.routed_offers``, read with the preview);
        typing any other name still works. Only the project's were listed, so a routed tile classifier's "crack"
        had to be typed, spelt right (a session-51 audit). Each model lists all its classes, a class two models
        share under both (the chooser's text is what is read, whichever line gave it): a shared class was under the
        first model's heading alone, and a model whose classes were all shared lost its heading (a session-51
        review)."""
        self.mapping.blockSignals(True)
        self.mapping.setRowCount(len(seen))
        own = list(dict.fromkeys(self.classes))
        listed = set(own).union(*routed.values())
        for r, (name, mapped) in enumerate(sorted(seen.items())):
            self.mapping.setItem(r, 0, QTableWidgetItem(name))
            combo = QComboBox()
            combo.setEditable(True)
            combo.addItems(own if mapped in listed else [mapped, *own])
            for model, classes in routed.items():
                if classes:
                    _add_heading(combo, f"— classes of {model}, where it runs —")
                for c in dict.fromkeys(classes):
                    combo.addItem(c)
                    combo.setItemData(combo.count() - 1, f"{model}'s class: offered on the images here it "
                                      "classifies", Qt.ItemDataRole.ToolTipRole)
            at = combo.findText(mapped)
            if at >= 0:
                combo.setCurrentIndex(at)
            else:
                combo.setEditText(mapped)
            combo.currentTextChanged.connect(self._stale)
            self.mapping.setCellWidget(r, 1, combo)
        self.mapping.blockSignals(False)

    def _message(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #d14343;" if error else "")

    def wait(self, msecs: int = 30_000) -> bool:
        """Block until the running step finished (tests); its result arrives with the next events."""
        return self._pool.waitForDone(msecs)

    def done(self, r: int) -> None:
        """Close without holding the window: an import in flight (one transaction) is let finish and the dialog closes
        when it answers, saying so meanwhile; a preview's answer (it only reads) is dropped. Both used to wait here on
        the GUI thread, the whole station frozen for up to a minute with nothing on screen (a session-44 probe)."""
        if self.facts_calls is not None:
            self.facts_calls.close()
        if self._importing:
            self._close_after = r
            self._message("Finishing the import (it is one transaction: all its labels or none); this closes when it "
                          "is done.")
            return
        super().done(r)


def _add_heading(combo: QComboBox, text: str) -> None:
    """A line in ``combo`` that names the group below it and cannot be chosen (the arrows and the popup skip it)."""
    combo.addItem(text)
    model = combo.model()
    if isinstance(model, QStandardItemModel):  # a QComboBox's own model
        item = model.item(combo.count() - 1)
        item.setFlags(item.flags() & ~(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable))


def _imported(window, result: Any) -> None:
    """After an import: the queue and the open image are read again (a session-44 probe: the open image kept its old
    label for seconds, and a key pressed then was refused as "changed at another station")."""
    if result is None:
        return
    window.queue.refresh_in_background()
    window.review.reload()


def open_import_dialog(window) -> ImportDialog:
    """Open at once; the folder's name, the classes and the author are read on a helper thread."""
    folder_id = window.current_folder
    dlg = ImportDialog(window.ctx.export_db, folder_id, None, (), "import", window)
    dlg.read_facts(window.ctx.review)
    dlg.unsaved = window.review.unsaved_count
    dlg.finished_import.connect(lambda result, _error: _imported(window, result))
    dlg.classes_added.connect(lambda _names: window.refresh_models(background=True))  # hotkeys and filters follow
    return dlg


def install(window) -> None:
    if window.ctx.export_db is None:
        window.actions["import_labels"].setEnabled(False)
        return
    window.actions["import_labels"].triggered.connect(lambda: run_modal(open_import_dialog(window)))
