"""The main window: docks, menus, toolbar and status bar, wired to the controllers. No logic.

Layout: folders and the review queue (filters + thumbnail gallery) on the left, the viewer in
the middle, the label panel and the layers/tools on the right, jobs at the bottom.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

from PySide6.QtCore import QByteArray, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.gui.actions import build_actions, enable_with_an_image, retint
from app.gui.closing import ClosingLabels
from app.gui.context import StationContext
from app.gui.dialog_life import run_modal
from app.gui.folder_browser import FolderBrowser
from app.gui.folder_controller import FolderController
from app.gui.folder_facts import FolderFacts
from app.gui.gallery_model import GalleryModel
from app.gui.gallery_view import GalleryView
from app.gui.help_dialog import ShortcutsDialog
from app.gui.label_panel import LabelPanel
from app.gui.label_watch import LabelWatch
from app.gui.layer_panel import LayerPanel
from app.gui.object_wiring import wire_objects
from app.gui.queue_controller import QueueController
from app.gui.queue_panel import QueuePanel
from app.gui.review_controller import ReviewController
from app.gui.screen_fit import fit_to_screen
from app.gui.settings_store import window_state
from app.gui.shortcuts import SHORTCUTS
from app.gui.status_bar import StationStatusBar
from app.gui.text_keys import keep_editing_keys
from app.gui.theme import apply_theme
from app.gui.thumbnails import ThumbnailCache
from app.gui.viewer import ViewerPane
from app.gui.viewer_controller import ViewerController
from app.gui.viewer_wiring import wire_view_actions

if TYPE_CHECKING:  # the optional parts extensions install (app/gui/extensions.py)
    from app.gui.auto_prelabel import AutoPrelabel
    from app.gui.classes_dialog import ClassesDialog
    from app.gui.jobs_panel import JobsController, JobsPanel
    from app.gui.label_next_panel import LabelNextController
    from app.gui.models_dialog import ModelsDialog
    from app.gui.operating_point_dialog import OperatingPointDialog
    from app.gui.project_settings_controller import ProjectSettingsController
    from app.gui.routing_notice import RoutingNoticeController

log = logging.getLogger(__name__)

MENUS = ("Project", "Review", "Edit", "View", "Navigate", "Help")
TOOLBAR = ("open_folder", "prelabel_folder", "export", None, "undo", "redo", None, "accept", "reject", "flag",
           None, "prev_unreviewed", "next_unreviewed", None, "tool_pan", "tool_brush", "tool_eraser",
           "tool_polygon", None, "fit", "one_to_one", "toggle_heatmap", "toggle_prediction", "compare")


class MainWindow(QMainWindow):
    # Shadows QWidget.actions() on purpose since the first version; renaming touches 33 call sites.
    actions: dict[str, QAction]  # type: ignore[assignment]

    def __init__(self, ctx: StationContext, parent=None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.current_folder: int | None = None  # the folder on screen (None until one is open)
        # Parts the extensions install (None while absent: a station without a worker has no jobs).
        self.jobs: JobsController | None = None
        self.jobs_panel: JobsPanel | None = None
        self.jobs_dock: QDockWidget | None = None
        self.project: ProjectSettingsController | None = None
        self.routing_notice: RoutingNoticeController | None = None
        self.auto_prelabel: AutoPrelabel | None = None
        self.label_next: LabelNextController | None = None
        self.models_dialog: ModelsDialog | None = None
        self.operating_point_dialog: OperatingPointDialog | None = None
        self.classes_dialog: ClassesDialog | None = None
        self.setWindowTitle("Inspection Review Station")
        self.review = ReviewController(ctx.review, self)
        self.closing = ClosingLabels(self, self.review, ctx.interactive, ctx.close_questions)
        self.actions = build_actions(self, self.review.undo_stack, {"undo": self.review.undo, "redo": self.review.redo},
                                     self.review.keys_waiting)
        self.thumbs = ThumbnailCache(size=120, parent=self)
        self.gallery_model = GalleryModel(self)
        self.gallery = GalleryView(self.gallery_model, self.thumbs)
        self.queue_panel = QueuePanel()
        self.queue = QueueController(ctx.review, self.gallery_model, self.gallery, self)
        self.viewer_pane = ViewerPane()
        self.viewer = self.viewer_pane.viewer
        self.viewer_ctl = ViewerController(self.viewer_pane, self.review, self)
        self.label_panel = LabelPanel(self.actions)
        self.layer_panel = LayerPanel(self.actions)
        self.folders = FolderBrowser(self.actions["open_folder"])
        self.folder_ctl = FolderController(ctx.review, self.folders, self)
        self.folder_facts = FolderFacts(self, self)
        self.label_watch = LabelWatch(ctx.review, self)
        self.status = StationStatusBar(self)
        self.setStatusBar(self.status)
        self.setCentralWidget(self.viewer_pane)
        self._build_docks()
        self._build_menus()
        self._wire()
        self.ctx.extend_window(self)
        self._editing_keys = keep_editing_keys(self)  # a text field's editing keys never act on the image
        fit_to_screen(self, 1500, 920)   # a smaller screen: its free area (a saved layout is restore_layout's)

    # -- layout ---------------------------------------------------------------------------
    def _dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        d = QDockWidget(title, self)
        d.setObjectName(name)
        d.setWidget(widget)
        self.addDockWidget(area, d)
        return d

    def _build_docks(self) -> None:
        queue = QWidget()
        lay = QVBoxLayout(queue)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.queue_panel)
        lay.addWidget(self.gallery, 1)
        self.folders_dock = self._dock("Folders", "foldersDock", self.folders, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.queue_dock = self._dock("Review queue", "queueDock", queue, Qt.DockWidgetArea.LeftDockWidgetArea)
        scroll = QScrollArea()
        scroll.setWidget(self.label_panel)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # Always there, so the panel's width never changes under its wrapped lines: a scroll bar that came after the
        # layout narrowed the text by its width and cut the last line of a three-line out-of-domain note.
        scroll.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)
        self.label_dock = self._dock("Label", "labelDock", scroll, Qt.DockWidgetArea.RightDockWidgetArea)
        self.layer_dock = self._dock("Layers and tools", "layersDock", self.layer_panel,
                                     Qt.DockWidgetArea.RightDockWidgetArea)
        # Side docks run the full height; jobs (added later) sit under the viewer only.
        self.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        self._sized = False
        self._restored = False  # a saved dock layout was put back (restore_layout): the default sizes stay away

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._sized:  # dock sizes only stick once the window has its own size
            self._sized = True
            QTimer.singleShot(0, self._size_docks)

    def _size_docks(self) -> None:
        if self._restored:  # the inspector's own sizes, saved when the window last closed
            return
        self.resizeDocks([self.folders_dock, self.queue_dock], [90, 700], Qt.Orientation.Vertical)
        self.resizeDocks([self.queue_dock, self.label_dock], [3 * 132 + 40, 320], Qt.Orientation.Horizontal)
        self.resizeDocks([self.label_dock, self.layer_dock], [560, 330], Qt.Orientation.Vertical)
        if self.jobs_dock is not None:
            self.resizeDocks([self.jobs_dock], [110], Qt.Orientation.Vertical)

    def _build_menus(self) -> None:
        menus = {m: self.menuBar().addMenu(f"&{m}") for m in MENUS}
        groups = {"Review": "Review", "Edit": "Edit", "View": "View", "Navigate": "Navigate",
                  "Project": "Project", "Help": "Help"}
        for s in SHORTCUTS:
            if s.id == "quit":
                continue
            menus[groups[s.group]].addAction(self.actions[s.id])
        menus["Project"].addSeparator()
        menus["Project"].addAction(self.actions["quit"])
        view = menus["View"]
        view.addSeparator()
        for d in (self.folders_dock, self.queue_dock, self.label_dock, self.layer_dock):
            view.addAction(d.toggleViewAction())
        self.menus = menus
        tb = self.addToolBar("Main")
        tb.setObjectName("mainToolbar")
        tb.setMovable(False)
        for key in TOOLBAR:
            if key is None:
                tb.addSeparator()
            else:
                tb.addAction(self.actions[key])
        self.toolbar = tb

    # -- wiring ---------------------------------------------------------------------------
    def _wire(self) -> None:
        a, r, q, v = self.actions, self.review, self.queue, self.viewer
        self.queue_panel.filter_changed.connect(q.set_filter)
        self.queue_panel.search_left.connect(self.gallery.setFocus)
        q.current_changed.connect(r.open_image)
        r.listed = self.gallery_model.item_of  # an image whose read failed is named by its file all the same
        q.saves_answered = r.writes_idle
        q.counts_changed.connect(self.status.set_counts)
        q.counts_changed.connect(self.queue_panel.set_counts)
        q.message.connect(self._say)
        q.failed.connect(self._warn)
        q.left_view.connect(r.reload_if_shown)
        q.emptied.connect(r.clear)
        r.item_changed.connect(q.update_item)
        r.item_changed.connect(self.label_panel.show_flag)  # F: the panel's flag line follows (it kept the models')
        r.state_moved.connect(q.apply_move)
        r.state_guessed.connect(q.apply_guess)
        r.state_settled.connect(q.settle)
        r.image_loaded.connect(self.label_panel.show_detail)
        r.image_loaded.connect(lambda d: q.select(d.item.image_id))
        r.replayed.connect(q.select_alone)  # after undo/redo only the image it changed is selected
        r.bring_back.connect(q.select_alone)  # an edit refused after Accept moved on: its image again
        r.label_changed.connect(self.label_panel.show_label)
        # the history of the image shown (read with the image), read again once a save of it has landed: it was read
        # on every label change, at the edit (before the write, nothing new) and again once stored (a session-51 audit)
        r.label_saved.connect(lambda image_id: r.read_history() if image_id == r.image_id else None)
        r.history_read.connect(self.label_panel.show_history)
        r.message.connect(self._say)
        r.note.connect(self._note)
        r.save_failed.connect(self._warn)
        r.pending_changed.connect(self.status.set_pending)
        r.save_waiting.connect(self._say)
        r.save_waiting.connect(self.status.set_pending_reason)
        self.label_watch.changed.connect(self._labels_changed_somewhere)
        self.label_watch.schema_changed.connect(self._schema_changed)
        self.label_watch.start()
        self.label_panel.class_chosen.connect(r.set_class)
        self.label_panel.revision_chosen.connect(r.restore_revision)
        self.folders.folder_chosen.connect(self.show_folder)
        self.folder_ctl.opened.connect(lambda info: self.show_folder(info.id))
        self.folder_ctl.indexed.connect(lambda info: q.indexed(info.id))
        self.folder_ctl.message.connect(self._say)
        self.folder_ctl.noted.connect(self._note)
        self.folder_ctl.failed.connect(self._warn)
        self.folder_ctl.failed.connect(lambda _m: q.stop_awaiting())
        v.cursor_moved.connect(self.status.cursor.setText)
        v.target_stepped.connect(lambda k, n: self._say(f"Target {k}/{n}" if n else "No predicted target on this image."))
        v.said.connect(self._say)
        self.viewer_ctl.image_shown.connect(lambda _id: self.label_panel.show_size(*v.image_size()))

        enable_with_an_image(a, r.loading)
        r.cleared.connect(lambda: self.label_panel.show_detail(None))
        r.cleared.connect(lambda: enable_with_an_image(a, r.loading))  # off again until the next image is chosen
        a["accept"].triggered.connect(lambda: self._decide(r.accept, "accept"))
        a["reject"].triggered.connect(lambda: self._decide(r.reject, "reject"))
        # after End onto a row whose page is not read yet they went to the image still on screen (the review of a
        # session-48 fix): they wait for that row, not for a selection's (they act on the image on screen alone)
        a["flag"].triggered.connect(lambda: q.with_current(r.toggle_flag))
        a["clear_label"].triggered.connect(lambda: q.with_current(r.clear_label))
        a["verdict_normal"].triggered.connect(lambda: q.with_selection(lambda ids: r.set_verdict("normal", ids)))
        a["verdict_anomalous"].triggered.connect(lambda: q.with_selection(
            lambda ids: r.set_verdict("anomalous", ids)))
        for i in range(1, 10):
            a[f"class_{i}"].triggered.connect(lambda _=False, k=i - 1: q.with_selection(
                lambda ids: r.set_class_index(k, self.label_panel.offered(), ids)))
        a["next_unreviewed"].triggered.connect(lambda: q.next_unreviewed(1))
        a["prev_unreviewed"].triggered.connect(lambda: q.next_unreviewed(-1))
        a["next_image"].triggered.connect(lambda: q.step(1))
        a["prev_image"].triggered.connect(lambda: q.step(-1))
        a["focus_filter"].triggered.connect(lambda: (self.queue_panel.search.setFocus(),
                                                     self.queue_panel.search.selectAll()))

        wire_view_actions(a, self.viewer_pane, self.layer_panel)
        self.viewer_ctl.withheld.connect(self.layer_panel.set_withheld)
        wire_objects(r, v, self.label_panel, a)
        a["open_folder"].triggered.connect(self.choose_folder)
        a["help_shortcuts"].triggered.connect(lambda: run_modal(ShortcutsDialog(self)))
        a["quit"].triggered.connect(self.close)

    def _decide(self, decision, name: str) -> None:
        self.queue.with_selection(lambda selected: self._decide_on(selected, decision, name))

    def _decide_on(self, selected: list[int], decision, name: str) -> None:
        lp = self.layer_panel
        if name == "accept" and len(selected) <= 1 and lp.previewing() and self.viewer.shows_threshold(
                lp.threshold_level()):
            lp.apply_threshold()  # Accept keeps the region previewed on screen (it stored the model's instead)
        if len(selected) > 1:  # a multi-selection in the gallery: decide them all at once
            self.review.decide_many(selected, name)  # read off this thread; it reloads the open image after
            return
        # the image the decision is for: the one moved to while keys wait for another's read (the move-on ran after
        # the image left's keys, and the decision was never applied: the review of a session-48 fix)
        r = self.review
        before, conflicts, refused, owed = r.key_target, r.conflicts, r.refused, r.regions_to_draw

        def advance() -> None:
            if (self.ctx.settings.auto_advance and before is not None and r.image_id == before
                    and r.conflicts == conflicts  # refused: stay, the newer label is to be seen
                    and r.refused == refused  # not applied (the label or the file could not be read): stay; the
                    # refusal is read beside it (it moved on, and the decision was lost unsaid: a session-52 audit)
                    and r.regions_to_draw == owed):  # a region to draw: stay, it is drawn here
                self.queue.next_unreviewed(1)
        decision()
        if not r.after_waiting_keys(before, advance):  # the image's detail was still on its way
            advance()

    def _labels_changed_somewhere(self) -> None:
        """A label was saved (maybe at another station): the queue, counts and open label follow."""
        if self.current_folder is not None:
            self.queue.refresh_in_background()
            self.queue.update_counts()
        self.review.check_label()

    def _schema_changed(self, text: str) -> None:
        """A newer station upgraded the database under this one: said in a box and kept in the title (the database
        refuses this station's writes from now on; labels wait and are kept when the window closes)."""
        self.setWindowTitle(f"{self.windowTitle()} — out of date: update this station")
        self._warn(text)

    def _say(self, text: str) -> None:
        self.status.say(text)

    def _note(self, text: str) -> None:
        self.status.note(text)

    def _warn(self, text: str) -> None:
        self.statusBar().showMessage(text, 10000)
        if self.ctx.interactive:
            QMessageBox.warning(self, "Review station", text)

    # -- folders --------------------------------------------------------------------------
    def choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a folder of images")
        if path:
            self.open_folder(path, wait=False)

    def open_folder(self, path: str, wait: bool = True) -> int | None:
        """Index and show ``path``; ``wait=False`` indexes in the background (the menu, start-up)."""
        if not wait and self.gallery_model.rowCount() == 0:
            self.queue.await_items()  # keys pressed before the images are listed are kept
        info = self.folder_ctl.open(path, wait)
        return None if info is None else info.id

    def refresh_folders(self, current: int | None = None) -> None:
        self.folder_ctl.refresh(current)

    def show_folder(self, folder_id: int) -> None:
        self.current_folder = folder_id
        self.queue_panel.set_folder(folder_id)
        self.folder_facts.read(folder_id)   # classes and threshold arrive from a helper thread

    def apply_theme(self, name: str) -> None:
        apply_theme(cast(QApplication, QApplication.instance()), name)  # the window lives in one
        retint(self.actions)

    def refresh_models(self, background: bool = False) -> None:
        """After a pre-label run: classes, thresholds, badges and the open image are new.
        ``background``: while a job runs, re-read the queue without making the window wait."""
        self.ctx.review.refresh_models()
        if self.current_folder is not None:
            self.folder_facts.read(self.current_folder)
            if background:
                self.queue.refresh_in_background()
            else:
                self.queue.refresh()
        detail = self.review.detail
        if not background or (detail is not None and detail.prediction is None):
            self.review.reload()  # while a job runs, only an image still waiting for its prediction

    # -- lifetime -------------------------------------------------------------------------
    def restore_layout(self) -> None:
        """The window's size and place and its docks as this user left them (``closeEvent`` saves them), kept on
        the screen it opens on (``restoreGeometry`` moves and shrinks a window saved on a larger or another monitor
        inside this one's free area): the layout was saved at every close and never read back, so a window made smaller
        and a dock closed came back at 1500×920 with every dock (a session-49 audit)."""
        st = window_state()
        geo, state = st.value("window/geometry"), st.value("window/state")
        if isinstance(geo, QByteArray):
            self.restoreGeometry(geo)
        if isinstance(state, QByteArray):
            self._restored = self.restoreState(state)

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.closing.ready():  # labels wait for the database: tried off the GUI thread, then closed
            event.ignore()
            return
        st = window_state()
        st.setValue("window/geometry", self.saveGeometry())
        st.setValue("window/state", self.saveState())
        self.ctx.shutdown()
        self.review.close(wait_for_writes=not self.closing.abandoned, wait_for_flags=not self.closing.intents_dropped)
        self.thumbs.shutdown()
        self.label_watch.close()
        self.queue.close()
        self.folder_facts.close()
        self.folder_ctl.close()
        self.viewer_ctl.loader.close()
        event.accept()


def action_of(window: MainWindow, key: str) -> QAction:
    return window.actions[key]
