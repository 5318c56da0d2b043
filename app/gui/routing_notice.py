"""A line in the Jobs dock saying which model families run on which subfolders of this folder.

Why: without routing rules every family runs on every image (a steel classifier on infrared
frames), and an inspector only found out from odd verdicts. The line names the subfolders and
what runs there, warns when no rule is set, and its button opens Project ▸ Model routing….
Computing it reads the folder's images, so it runs on a helper thread.
"""
from __future__ import annotations

import logging

from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from app.gui.background import BackgroundCalls
from app.gui.style import icon
from app.services.project_settings import routing_overview_of, subfolders_of

log = logging.getLogger(__name__)


class RoutingNotice(QWidget):
    def __init__(self, open_routing, parent=None) -> None:
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(2, 0, 2, 0)
        self.text = QLabel("")
        self.text.setWordWrap(True)
        self.button = QPushButton(icon("mdi6.call-split"), "Set model routing…")
        self.button.setToolTip("Choose which model families run on which subfolders")
        self.button.clicked.connect(open_routing)
        lay.addWidget(self.text, 1)
        lay.addWidget(self.button)
        self.setVisible(False)

    def show_text(self, text: str) -> None:
        warn = text.startswith("No model routing")
        self.text.setText(("⚠ " if warn else "") + text)
        self.text.setToolTip(text)   # the whole of it, should the dock be too low for every wrapped line
        self.text.setObjectName("" if warn else "muted")
        self.text.setStyleSheet("color: #b35c00;" if warn else "")
        self.setVisible(bool(text))


class RoutingNoticeController:
    def __init__(self, window, notice: RoutingNotice) -> None:
        self.window = window
        self.notice = notice
        self.calls = BackgroundCalls("routing-notice", window)
        self._covered: tuple[int, frozenset[str]] | None = None  # (folder id, the subfolders the line names)

    def refresh(self, *_args) -> None:
        folder_id = self.window.current_folder
        project = self.window.project
        if folder_id is None or project is None:
            return
        db, jobs, routing = self.window.ctx.review.db, self.window.ctx.jobs, project.current.routing

        def work() -> tuple[int, str, frozenset[str]]:
            return folder_id, *routing_overview_of(db, folder_id, routing, jobs.available_families())
        self.calls.call(work, self._show, lambda e: self.notice.show_text(f"Model routing unknown: {e}"))

    def files_arrived(self, folder_id: int, image_ids: tuple[int, ...]) -> None:
        """New or moved files in the shown folder: the line is read again only when they lie in a subfolder it
        does not name yet (reading it walks the whole folder; a line writes every few seconds)."""
        covered = self._covered
        if covered is None or covered[0] != folder_id:
            return
        db = self.window.ctx.review.db

        def work() -> bool:
            return not subfolders_of(db, image_ids) <= covered[1]
        self.calls.call(work, lambda new: new and self.refresh(),
                        lambda e: log.warning("new files' subfolders not read for the routing line: %s", e))

    def _show(self, answer: tuple[int, str, frozenset[str]]) -> None:
        if answer[0] == self.window.current_folder:  # not a folder left meanwhile
            self._covered = (answer[0], answer[2])
            self.notice.show_text(answer[1])


def install(window) -> None:
    """Add the line under the Jobs dock's buttons; it follows folder changes and routing saves."""
    panel = window.jobs_panel
    if panel is None or window.project is None:
        return
    notice = RoutingNotice(window.actions["model_routing"].trigger)
    panel.layout().insertWidget(1, notice)
    ctl = RoutingNoticeController(window, notice)
    window.routing_notice = ctl
    window.folder_ctl.opened.connect(ctl.refresh)
    window.folders.folder_chosen.connect(ctl.refresh)
    window.project.changed.connect(ctl.refresh)
    window.ctx.closers.append(ctl.calls.close)
