"""Export the reviewed images (accepted + corrected) as a dataset: formats, split, progress.

The export service writes into a hidden folder and renames it into place only when complete,
so a read-only destination, a full disk or a cancel leave nothing half-written, and labels are
only ever read. The export runs on a pool thread; the dialog shows progress and the reason of
any failure, and stays usable to try another folder.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.gui.background import BackgroundCalls
from app.gui.dialog_facts import FolderFacts, read_facts_for
from app.gui.dialog_life import run_modal
from app.gui.dialog_rows import disable_keeping_focus, labels_on_their_way, path_row, scope_row
from app.gui.screen_fit import fit_to_screen
from app.services.export import ALL_FORMATS, FORMAT_TITLES, FORMATS, ExportError, ExportOptions, export_database
from app.services.export_split import SplitSpec
from app.services.wording import plural


class _Relay(QObject):
    progress = Signal(int, int)
    done = Signal(object, str)  # ExportResult | None, error


class _ExportTask(QRunnable):
    def __init__(self, relay: _Relay, db, out: str, options: ExportOptions, folder, cancel: threading.Event):
        super().__init__()
        self.relay, self.db, self.out, self.options, self.folder, self.cancel = relay, db, out, options, folder, cancel

    def run(self) -> None:
        try:
            result = export_database(self.db, self.out, self.options, folder=self.folder,
                                     progress=lambda d, t: self.relay.progress.emit(d, t),
                                     cancel=self.cancel.is_set)
        except ExportError as exc:
            self.relay.done.emit(None, str(exc))
        except Exception as exc:  # noqa: BLE001 - never lose the dialog to an unexpected error
            self.relay.done.emit(None, f"{type(exc).__name__}: {exc}")
        else:
            self.relay.done.emit(result, "")


class ExportDialog(QDialog):
    finished_export = Signal(object, str)
    facts_ready = Signal()  # the counts and classes arrived (or could not be read): Export is enabled

    def __init__(self, db, folder_id: int | None, folder_name: str | None, counts: dict[str, int] | None,
                 class_order: tuple[str, ...] = (), parent=None) -> None:
        """``counts`` None: the dialog says it is reading them, and Export waits for ``apply_facts``."""
        super().__init__(parent)
        self.setWindowTitle("Export reviewed images")
        self.db, self.folder_id, self.class_order = db, folder_id, class_order
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._cancel = threading.Event()
        self._relay = _Relay(self)
        self._relay.progress.connect(self._on_progress)
        self._relay.done.connect(self._on_done)
        self.result_value = None
        self.facts_calls: BackgroundCalls | None = None  # the folder's facts being read (read_facts)
        self.unsaved: Callable[[], int] = lambda: 0  # the window's labels not in the database yet (set by the window)
        self._running = False
        self._close_after: int | None = None  # closing was asked while it ran: the result to close with

        lay = QVBoxLayout(self)
        self.head = QLabel("Reading what this folder holds…")
        self.head.setWordWrap(True)
        lay.addWidget(self.head)
        form = QFormLayout()
        row, self.out = path_row("output folder (created; must not exist unless overwriting)", self._browse)
        form.addRow("Output", row)
        scope, self.scope_folder, self.scope_all = scope_row(folder_id, folder_name)
        form.addRow("Images", scope)
        fmt = QWidget()
        fl = QGridLayout(fmt)
        fl.setContentsMargins(0, 0, 0, 0)
        self.formats: dict[str, QCheckBox] = {}
        for i, name in enumerate(FORMATS):
            cb = QCheckBox(FORMAT_TITLES.get(name, name))
            cb.setChecked(name in ALL_FORMATS)
            cb.setObjectName(f"format_{name}")
            fl.addWidget(cb, i // 2, i % 2)
            self.formats[name] = cb
        form.addRow("Formats", fmt)
        split = QWidget()
        spl = QHBoxLayout(split)
        spl.setContentsMargins(0, 0, 0, 0)
        self.use_split = QCheckBox("split train/val/test")
        self.split = QLineEdit("0.7,0.2,0.1")
        self.seed = QSpinBox()
        self.seed.setRange(0, 1_000_000)
        self.seed.setPrefix("seed ")
        spl.addWidget(self.use_split)
        spl.addWidget(self.split, 1)
        spl.addWidget(self.seed)
        form.addRow("Split", split)
        self.overwrite = QCheckBox("replace an earlier export in that folder")
        form.addRow("", self.overwrite)
        lay.addLayout(form)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        lay.addWidget(self.bar)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.summary = QPlainTextEdit()
        self.summary.setReadOnly(True)
        self.summary.setMaximumHeight(140)
        self.summary.setVisible(False)
        lay.addWidget(self.summary)
        self.buttons = QDialogButtonBox()
        self.export_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.cancel_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.export_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self._cancel_or_close)
        lay.addWidget(self.buttons)
        fit_to_screen(self, 620, 420)
        if counts is not None:
            self._show_head(folder_name, counts)

    def _show_head(self, folder_name: str | None, counts: dict[str, int]) -> None:
        reviewed = counts.get("accepted", 0) + counts.get("corrected", 0)
        self.head.setText(f"<b>{plural(reviewed, 'reviewed image')}</b> (accepted + corrected) in "
                          f"{folder_name or 'the project'}; rejected and unreviewed images are left out.")

    # -- the folder's facts, read off the GUI thread (open_export_dialog) -----------------------
    def read_facts(self, review) -> None:
        """Read the folder's counts, name and the class order on a helper thread; Export waits for them."""
        self.export_button.setEnabled(False)
        self.facts_calls = read_facts_for(self, review, self.folder_id, self.apply_facts, self.facts_failed)

    @property
    def reading(self) -> bool:
        return self.facts_calls is not None and self.facts_calls.busy

    def apply_facts(self, facts: FolderFacts) -> None:
        self.class_order = tuple(facts.classes)
        if facts.name and self.folder_id is not None:
            self.scope_folder.setText(f"this folder ({facts.name})")
        self._show_head(facts.name, facts.counts)
        self.export_button.setEnabled(True)
        self.facts_ready.emit()

    def facts_failed(self, error: str) -> None:
        self.head.setText(f"The folder's counts could not be read ({error}). The export reads the labels "
                          "itself when it runs.")
        self.head.setStyleSheet("color: #d14343;")
        self.export_button.setEnabled(True)
        self.facts_ready.emit()

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Export into")
        if path:
            self.out.setText(str(Path(path) / "dataset"))

    def options(self) -> ExportOptions:
        formats = tuple(n for n, cb in self.formats.items() if cb.isChecked())
        if not formats:
            raise ValueError("choose at least one format")
        split = SplitSpec.parse(self.split.text(), seed=self.seed.value()) if self.use_split.isChecked() else None
        return ExportOptions(formats=formats, split=split, overwrite=self.overwrite.isChecked(),
                             class_order=tuple(self.class_order))

    def start(self) -> bool:
        if self.reading or self._running:
            return False  # Export is disabled meanwhile; a call from code is refused the same way
        out = self.out.text().strip()
        if not out:
            self._error("Choose an output folder.")
            return False
        try:
            options = self.options()
        except ValueError as exc:
            self._error(str(exc))
            return False
        waiting = self.unsaved()
        if waiting:
            self._error(labels_on_their_way(waiting, "the export"))
            return False
        self._cancel.clear()
        disable_keeping_focus(self.cancel_button, self.export_button)
        self.cancel_button.setText("Cancel")  # a second export: the first one's "Close" would cancel this one
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.status.setText("Exporting…")
        self.status.setStyleSheet("")
        self.summary.setVisible(False)
        folder = self.folder_id if self.scope_folder.isChecked() else None
        self._running = True
        self._pool.start(_ExportTask(self._relay, self.db, out, options, folder, self._cancel))
        return True

    def _on_progress(self, done: int, total: int) -> None:
        self.bar.setRange(0, max(1, total))
        self.bar.setValue(done)
        self.status.setText(f"Exporting… {done}/{total}")

    def _on_done(self, result, error: str) -> None:
        self._running = False
        self.export_button.setEnabled(True)
        if self._close_after is not None:  # asked to close while it ran: now it has answered
            self.result_value = result
            self.finished_export.emit(result, error)
            super().done(self._close_after)
            return
        self.result_value = result
        if result is None and self._cancel.is_set():  # said as what it is, once (it read "Export failed: export
            # cancelled; nothing was written. Nothing was written; No label was changed.": a session-44 probe)
            self._error("Export cancelled: nothing was written, and no label was changed.")
            self.bar.setValue(0)
        elif result is None:
            said = "" if "nothing was" in error.lower() else " Nothing was written;"
            self._error(f"Export failed: {error}.{said} No label was changed.")
        else:
            self.bar.setRange(0, 1)
            self.bar.setValue(1)
            lines = result.summary_lines()
            self.status.setText(f"Done: {lines[0]}")   # the headline says what each format holds where they differ
            self.summary.setPlainText("\n".join(lines))
            self.summary.setVisible(True)
            self.cancel_button.setText("Close")
        self.finished_export.emit(result, error)

    def _error(self, text: str) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #d14343;")

    def _cancel_or_close(self) -> None:
        if self._running:
            self._cancel.set()
            self.status.setText("Cancelling…")
        else:
            self.reject()

    def wait(self, msecs: int = 30_000) -> bool:
        """Block until the export finished (tests); its result arrives with the next events."""
        return self._pool.waitForDone(msecs)

    def done(self, r: int) -> None:
        """Closing cancels a running export and closes when it answers (a cancelled export removes what it wrote; one
        that had finished first is kept), saying so meanwhile: waiting here froze the station for up to 30 s while the export read
        the labels, which it cannot cancel (a session-45 probe; the Import dialog closes the same way)."""
        if self.facts_calls is not None:
            self.facts_calls.close()
        if self._running:
            self._cancel.set()
            self._close_after = r
            self.status.setText("Cancelling the export; this closes when it has stopped.")
            return
        super().done(r)


def open_export_dialog(window) -> ExportDialog:
    """Open at once; the folder's counts, its name and the class order are read on a helper thread."""
    folder_id = window.current_folder
    dlg = ExportDialog(window.ctx.export_db, folder_id, None, None, (), window)
    dlg.read_facts(window.ctx.review)
    dlg.unsaved = window.review.unsaved_count
    return dlg


def install(window) -> None:
    if window.ctx.export_db is None:
        window.actions["export"].setEnabled(False)
        return
    window.actions["export"].triggered.connect(lambda: run_modal(open_export_dialog(window)))
