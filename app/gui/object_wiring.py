"""Object selection wired to the viewer (click, Tab, right-click) and the label panel's list."""
from __future__ import annotations

from PySide6.QtCore import QPoint
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QWidget

from app.gui.label_panel import LabelPanel
from app.gui.review_controller import ReviewController
from app.gui.viewer import ImageViewer


def class_menu(parent: QWidget, review: ReviewController, classes: list[str]) -> QMenu:
    """The selected object's class: the image's, or one of ``classes`` (the label panel's buttons, read off the GUI
    thread with the folder's facts; as 1–9 set them). It read the project's classes from storage on the GUI thread."""
    sel = review.objects
    obj = sel.current()
    menu = QMenu(parent)
    if obj is None:
        return menu
    menu.addSection(f"Object {obj.number}")
    image_class = review.label.class_name if review.label else None
    same = menu.addAction(f"Image's class ({image_class or 'none'})")
    same.setCheckable(True)
    same.setChecked(obj.own_class is None)
    same.triggered.connect(lambda: sel.set_class(None))
    for i, name in enumerate(classes):
        act: QAction = menu.addAction(f"{i + 1}  {name}" if i < 9 else name)
        act.setCheckable(True)
        act.setChecked(obj.own_class == name)
        act.triggered.connect(lambda _=False, n=name: sel.set_class(n))
    return menu


def wire_objects(review: ReviewController, viewer: ImageViewer, panel: LabelPanel,
                 actions: dict[str, QAction]) -> None:
    sel = review.objects

    def step(delta: int) -> None:
        """Tab without predicted targets steps through the mask's objects, centring each."""
        if viewer.rings.targets:
            return
        obj = sel.step(delta)
        if obj is not None:
            x, y, w, h = obj.box
            viewer.centerOn(x + w / 2, y + h / 2)

    def popup(at: QPoint) -> None:
        if sel.current() is not None:
            class_menu(viewer, review, panel.classes()).exec(at)

    def on_ring(k: int, n: int) -> None:
        """Tab reached a predicted target: the object there is selected (its class is what 1–9 set)."""
        if n and 0 < k <= len(viewer.rings.targets):
            t = viewer.rings.targets[k - 1]
            sel.select(sel.nearest(t.cx, t.cy, t.radius), quiet=True)

    sel.changed.connect(viewer.show_objects)
    sel.changed.connect(panel.show_objects)
    review.loading.connect(lambda _id: viewer.show_objects([], None))
    viewer.object_clicked.connect(sel.select_at)
    viewer.object_menu_requested.connect(lambda x, y, tol, at: (sel.select_at(x, y, tol), popup(at)))
    viewer.target_stepped.connect(on_ring)
    panel.object_chosen.connect(sel.select_number)
    panel.object_menu_requested.connect(lambda n, at: (sel.select_number(n), popup(at)))
    actions["next_target"].triggered.connect(lambda: step(1))
    actions["prev_target"].triggered.connect(lambda: step(-1))
