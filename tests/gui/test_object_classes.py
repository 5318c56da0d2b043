"""Issue 23 item 5 in the window: select an object (click, Tab, the list) and give it a class of its own."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, Qt

from app.gui.object_wiring import class_menu
from app.services.object_classes import ObjectClass
from tests.gui.conftest import wait_saved
from tests.gui.fixtures import CLASSES
from tests.gui.test_main_window import _seeded_window, press

CTRL = Qt.KeyboardModifier.ControlModifier


def click(qtbot, viewer, x: float, y: float) -> None:
    """A pan-tool click (press and release in place) on image pixel (x, y)."""
    at = viewer.mapFromScene(x + 0.5, y + 0.5)
    qtbot.mouseClick(viewer.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(at.x(), at.y()))


def two_objects() -> np.ndarray:
    m = np.zeros((64, 64), bool)
    m[10:20, 10:20] = True   # object 1
    m[40:43, 50:53] = True   # object 2
    return m


def test_click_an_object_set_its_class_undo_and_redo(service, db, folder, artifacts, qtbot):
    win = _seeded_window(service, db, folder, artifacts, qtbot)
    r, v, panel = win.review, win.viewer, win.label_panel
    image_id = r.image_id
    press(qtbot, win, Qt.Key.Key_1)          # the image's class: class 1
    r.set_mask(two_objects())
    assert [o.number for o in r.objects.objects()] == [1, 2]
    assert panel.objects.count() == 3        # the image, then each object
    v.one_to_one()
    v.centerOn(32, 32)
    click(qtbot, v, 51, 41)                  # object 2
    assert r.objects.current().number == 2
    assert "of object 2/2" in panel.class_box.title()
    assert v.object_tags.selected.number == 2
    press(qtbot, win, Qt.Key.Key_3)          # its class, not the image's
    wait_saved(win, qtbot)
    saved = service.detail(image_id).label
    assert saved.class_name == CLASSES[0] and saved.objects == (ObjectClass(40, 50, CLASSES[2]),)
    wait_saved(win, qtbot)
    assert service.history(image_id)[-1].object_classes == (CLASSES[2],)
    assert panel.objects.item(2).text().startswith(f"2  {CLASSES[2]}")
    checked = [b.text() for b in panel.class_group.buttons() if b.isChecked()]
    assert checked == [f"3  {CLASSES[2]}"]  # the buttons show the object's class, not the image's
    assert r.objects.current().number == 2   # still selected after the save
    press(qtbot, win, Qt.Key.Key_Z, CTRL)
    wait_saved(win, qtbot)
    assert service.detail(image_id).label.objects == ()
    press(qtbot, win, Qt.Key.Key_Y, CTRL)
    wait_saved(win, qtbot)
    assert service.detail(image_id).label.objects == (ObjectClass(40, 50, CLASSES[2]),)
    click(qtbot, v, 2, 60)                   # the background: the image is selected again
    assert r.objects.current() is None and panel.objects.currentRow() == 0
    press(qtbot, win, Qt.Key.Key_2)
    wait_saved(win, qtbot)
    saved = service.detail(image_id).label
    assert saved.class_name == CLASSES[1] and saved.objects == (ObjectClass(40, 50, CLASSES[2]),)
    win.close()


def test_tab_selects_a_predicted_target_whose_class_makes_the_prediction_the_label(
        service, db, folder, artifacts, qtbot):
    win = _seeded_window(service, db, folder, artifacts, qtbot)
    r = win.review
    image_id = r.image_id
    assert r.label.mask is None and len(r.objects.objects()) == 1  # the predicted target
    press(qtbot, win, Qt.Key.Key_Tab)
    assert win.statusBar().currentMessage() == "Target 1/1"
    assert r.objects.current().number == 1
    press(qtbot, win, Qt.Key.Key_4)
    wait_saved(win, qtbot)
    saved = service.detail(image_id).label
    wait_saved(win, qtbot)
    predicted = service.detail(image_id).prediction.mask
    assert saved.review_state == "corrected" and np.array_equal(saved.mask, predicted)
    assert [o.class_name for o in saved.objects] == [CLASSES[3]] and saved.class_name is None
    win.close()


def test_tab_steps_through_painted_objects_where_nothing_was_predicted(window, service, qtbot):
    """The plain window has no predictions: Tab reaches the mask's own objects, centring each."""
    win, r, v = window, window.review, window.viewer
    service.db.classes.set("classifier", list(CLASSES))
    service.refresh_models()
    win.folder_facts.read(win.current_folder)   # the keys follow the list once the folder's facts are read again
    qtbot.waitUntil(lambda: win.label_panel.offered() == list(CLASSES), timeout=5000)
    r.set_mask(two_objects())
    v.one_to_one()
    picked = []
    for key, mod in ((Qt.Key.Key_Tab, Qt.KeyboardModifier.NoModifier),
                     (Qt.Key.Key_Tab, Qt.KeyboardModifier.NoModifier),
                     (Qt.Key.Key_Backtab, Qt.KeyboardModifier.ShiftModifier)):
        press(qtbot, win, key, mod)
        picked.append(r.objects.current().number)
    assert picked == [1, 2, 1]
    press(qtbot, win, Qt.Key.Key_2)
    wait_saved(win, qtbot)
    assert service.detail(r.image_id).label.objects == (ObjectClass(10, 10, CLASSES[1]),)


def test_the_list_and_the_menu_pick_an_object_and_its_class(service, db, folder, artifacts, qtbot):
    win = _seeded_window(service, db, folder, artifacts, qtbot)
    r, panel = win.review, win.label_panel
    image_id = r.image_id
    r.set_mask(two_objects())
    panel.objects.setCurrentRow(1)
    assert r.objects.current().number == 1
    menu = class_menu(win, r, panel.classes())
    texts = [a.text() for a in menu.actions() if not a.isSeparator()]
    assert texts[-len(CLASSES):] == [f"{i + 1}  {c}" for i, c in enumerate(CLASSES)]
    next(a for a in menu.actions() if a.text().endswith(CLASSES[1])).trigger()
    wait_saved(win, qtbot)
    assert service.detail(image_id).label.objects == (ObjectClass(10, 10, CLASSES[1]),)
    menu = class_menu(win, r, panel.classes())
    next(a for a in menu.actions() if a.text().startswith("Image's class")).trigger()
    wait_saved(win, qtbot)
    assert service.detail(image_id).label.objects == ()
    # Erasing the object takes its class with it; the selection ends.
    panel.objects.setCurrentRow(2)
    press(qtbot, win, Qt.Key.Key_2)
    only_first = two_objects()
    only_first[40:43, 50:53] = False
    r.set_mask(only_first)
    wait_saved(win, qtbot)
    assert service.detail(image_id).label.objects == () and r.objects.current() is None
    win.close()


# -- the review service (no Qt) ------------------------------------------------------------------

def test_service_saves_canonical_objects_and_recovers_them(service, db, folder, artifacts, tmp_path):
    from app.services.review_types import LabelState, QueueFilter

    info = service.open_folder(folder)
    image_id = service.queue(QueueFilter(folder_id=info.id))[0].image_id
    # A seed anywhere inside the object is stored at its first pixel; one on the background is dropped.
    state = LabelState(class_name=CLASSES[0], mask=two_objects(), review_state="corrected",
                       objects=(ObjectClass(42, 52, CLASSES[2]), ObjectClass(0, 0, CLASSES[1])))
    saved = service.save_label(image_id, state)
    assert saved.objects == (ObjectClass(40, 50, CLASSES[2]),)
    assert db.labels.current(image_id).object_classes == [{"x": 50, "y": 40, "class": CLASSES[2]}]
    assert service.detail(image_id).label.objects == saved.objects
    assert not service.detail(image_id).label.same_content(saved.with_(objects=()))
    other = service.queue(QueueFilter(folder_id=info.id))[1].image_id
    service.write_recovery({other: state}, tmp_path / "rec")
    assert service.recover(tmp_path / "rec").saved == 1
    assert service.detail(other).label.objects == (ObjectClass(40, 50, CLASSES[2]),)


def test_the_tag_on_the_image_says_what_the_objects_list_says():
    import numpy as np

    from app.gui.object_overlay import ObjectTags
    from app.services.object_classes import objects_of

    mask = np.zeros((8, 8), bool)
    mask[1, 1] = True
    (obj,) = objects_of(mask, (), None)
    assert ObjectTags.text(obj) == "1 no class (image's)"   # not "1 image class" beside a target ring


def test_a_class_key_after_moving_on_never_carries_the_left_images_object_and_mask(service, db, folder, artifacts,
                                                                                   qtbot, monkeypatch):
    """Found by a session-43 probe: an object selected on one image, J, then a class key before the next image's
    detail came. The key went to the selection of the image left, was held for the image coming, and saved the
    left image's mask with that object's class on it (the next image's own mask replaced, the left one unchanged).
    The selection belongs to its image: the key now gives the image coming its class. A polygon closed after J is
    dropped the same way (its vertices were clicked on the image left)."""
    from tests.gui.conftest import HeldDetails
    win = _seeded_window(service, db, folder, artifacts, qtbot)
    r, v = win.review, win.viewer
    first = r.image_id
    r.set_mask(two_objects())
    wait_saved(win, qtbot)
    r.objects.step(1)
    assert r.objects.current() is not None
    v.set_tool("polygon")
    v._poly = [v.mapToScene(0, 0), v.mapToScene(30, 0), v.mapToScene(30, 30)]  # three vertices clicked on it
    second = win.gallery_model.item_at(1).image_id
    held = HeldDetails(service, monkeypatch)
    held.hold.add(second)
    press(qtbot, win, Qt.Key.Key_J)
    assert r.image_id == second and r.detail.item.image_id == first  # its detail is on its way
    assert r.objects.current() is None
    press(qtbot, win, Qt.Key.Key_2)
    v.close_polygon()                      # Enter after J: nothing is painted anywhere
    held.gate.set()
    qtbot.waitUntil(lambda: service.detail(second).label.class_name == CLASSES[1])
    wait_saved(win, qtbot)
    got = service.detail(second).label
    assert got.mask is None and got.objects == ()          # its class, not the left image's mask and object
    left = service.detail(first).label
    assert left.objects == () and left.mask is not None and int(left.mask.sum()) == int(two_objects().sum())


def test_an_object_whose_corner_is_erased_keeps_its_class_and_its_selection(service, db, folder, artifacts, qtbot):
    """Found by a session-45 probe: object 1 given class 3, then the eraser shaved a few pixels at its top-left
    corner: it lost its class (it kept nearly all its pixels), the selection went to the image, and the next key
    changed the image's class. Cut in two, only the top-left piece had kept it."""
    from tests.gui.test_main_window import _drag
    win = _seeded_window(service, db, folder, artifacts, qtbot)
    r, v = win.review, win.viewer
    image_id = r.image_id
    press(qtbot, win, Qt.Key.Key_1)
    m = np.zeros((64, 64), bool)
    m[10:20, 10:30] = True
    m[40:46, 40:46] = True
    r.set_mask(m)
    wait_saved(win, qtbot)
    v.one_to_one()
    v.centerOn(32, 32)
    click(qtbot, v, 20, 15)
    press(qtbot, win, Qt.Key.Key_3)
    wait_saved(win, qtbot)
    v.set_brush_radius(1)
    press(qtbot, win, Qt.Key.Key_E)
    _drag(qtbot, v, v.mapFromScene(8, 10.5), v.mapFromScene(14, 10.5))  # shave the top-left corner only
    wait_saved(win, qtbot)
    label = service.detail(image_id).label
    assert [o.class_name for o in label.objects] == [CLASSES[2]]
    assert r.objects.current() is not None and r.objects.current().number == 1
    press(qtbot, win, Qt.Key.Key_4)  # the object's class, as the selection on screen says
    wait_saved(win, qtbot)
    label = service.detail(image_id).label
    assert label.class_name == CLASSES[0] and [o.class_name for o in label.objects] == [CLASSES[3]]
    _drag(qtbot, v, v.mapFromScene(20, 5), v.mapFromScene(20, 25))  # cut it in two
    wait_saved(win, qtbot)
    assert [o.class_name for o in service.detail(image_id).label.objects] == [CLASSES[3], CLASSES[3]]
    win.close()
