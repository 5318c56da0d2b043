"""A brush stroke belongs to the image it began on, and its pixels stay on screen until it ends (session-44 probes)."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt

from tests.gui.conftest import slow_saves, wait_saved
from tests.gui.test_main_window import _seeded_window, press


def test_a_stroke_held_across_j_never_paints_the_next_image(service, db, folder, artifacts, qtbot):
    """The button went down on image A, J was pressed, B's pixels came, the drag went on and the button came up:
    the rest of the stroke was saved onto B as "corrected", its predicted target dropped. The stroke ends with its
    image now; B keeps its answer and nothing of it is saved."""
    win = _seeded_window(service, db, folder, artifacts, qtbot)
    v, vp = win.viewer, win.viewer.viewport()
    first = win.review.image_id
    v.one_to_one()
    v.centerOn(32, 32)
    v.set_brush_radius(3)
    press(qtbot, win, Qt.Key.Key_B)
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, pos=v.mapFromScene(30, 50))
    qtbot.mouseMove(vp, v.mapFromScene(34, 50))
    press(qtbot, win, Qt.Key.Key_J)  # the button still down
    qtbot.waitUntil(lambda: win.review.image_id != first and win.viewer_ctl._shown_id == win.review.image_id,
                    timeout=5000)
    second = win.review.image_id
    v.one_to_one()
    v.centerOn(32, 32)
    for x in (38, 42, 46):
        qtbot.mouseMove(vp, v.mapFromScene(x, 50))
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=v.mapFromScene(46, 50))
    wait_saved(win, qtbot)
    label = service.detail(second).label
    assert label.review_state == "unreviewed" and label.mask is None
    assert not v.mask.to_bool().any()
    win.close()


def test_a_save_answering_during_the_next_stroke_leaves_its_pixels(window, service, qtbot, monkeypatch):
    """On a slow server stroke 1's save answered while stroke 2 was being drawn: the layer was redrawn from the stored
    label and stroke 2's first half vanished, from the screen and from what was saved."""
    win, v, vp = window, window.viewer, window.viewer.viewport()
    image_id = win.review.image_id
    v.one_to_one()
    v.centerOn(32, 32)
    v.set_brush_radius(2)
    press(qtbot, win, Qt.Key.Key_B)
    slow_saves(service, monkeypatch, 0.4)
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, pos=v.mapFromScene(10, 10))
    qtbot.mouseMove(vp, v.mapFromScene(30, 10))
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=v.mapFromScene(30, 10))
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, pos=v.mapFromScene(10, 40))
    qtbot.mouseMove(vp, v.mapFromScene(20, 40))
    qtbot.waitUntil(lambda: not win.review._local, timeout=5000)  # stroke 1's save answered
    assert v.mask.to_bool()[40, 12:19].all()
    qtbot.mouseMove(vp, v.mapFromScene(30, 40))
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=v.mapFromScene(30, 40))
    wait_saved(win, qtbot)
    stored = service.detail(image_id).label.mask
    assert stored is not None and stored[40, 12:29].all() and stored[10, 12:29].all()
    assert np.array_equal(stored, v.mask.to_bool())


def test_one_eraser_stroke_says_no_target_on_a_label_that_has_no_mask_yet(window, service, qtbot):
    """ADR 0069: an empty mask is an answer ("no target here"). A probe: G (a verdict, so the label is corrected and
    holds no mask), then one eraser stroke where no target is: nothing was saved, since the edit's empty mask was
    taken for the label's "not set". The frame then stayed out of the segmenter's retraining, though the window's
    own note asks for exactly this stroke."""
    from tests.gui.test_main_window import _drag
    win, v = window, window.viewer
    image_id = win.review.image_id
    v.one_to_one()
    v.centerOn(32, 32)
    v.set_brush_radius(3)
    press(qtbot, win, Qt.Key.Key_G)
    wait_saved(win, qtbot)
    assert service.detail(image_id).label.mask is None
    press(qtbot, win, Qt.Key.Key_E)
    _drag(qtbot, v, v.mapFromScene(30, 32), v.mapFromScene(34, 32))
    wait_saved(win, qtbot)
    label = service.detail(image_id).label
    assert label.mask is not None and not label.mask.any() and label.revision == 2


def test_a_mask_not_set_and_an_empty_mask_are_different_labels() -> None:
    from app.services.review_types import LabelState
    unset = LabelState(review_state="corrected")
    empty = unset.with_(mask=np.zeros((4, 4), bool))
    assert not unset.same_content(empty) and unset.content_digest() != empty.content_digest()
    assert empty.same_content(unset.with_(mask=np.zeros((4, 4), np.uint8)))
    assert unset.same_content(unset.with_(anomaly_region=np.zeros((4, 4), bool)))  # a region is stored only if drawn



def test_a_stroke_on_a_hidden_layer_shows_it_and_the_panel_says_so(window, qtbot):
    """Found by a session-44 probe: Shift+M hid the labelled masks; a brush stroke then drew the mask layer again while
    the Layers panel and the View menu still said it was off, for every later image, and the next Shift+M showed
    what it meant to hide."""
    from tests.gui.test_main_window import _drag
    win, v = window, window.viewer
    press(qtbot, win, Qt.Key.Key_M, Qt.KeyboardModifier.ShiftModifier)
    assert not v.mask.isVisible() and not win.layer_panel.checks["mask"].isChecked()
    press(qtbot, win, Qt.Key.Key_B)
    v.one_to_one()
    v.centerOn(32, 32)
    _drag(qtbot, v, v.mapFromScene(30, 32), v.mapFromScene(34, 32))
    wait_saved(win, qtbot)
    assert v.mask.isVisible() and win.layer_panel.checks["mask"].isChecked()
    # the region is still hidden, so View ▸ Labelled masks (both) is not ticked, and Shift+M shows both: what the
    # panel and the menu say is what is drawn
    assert not win.actions["toggle_mask"].isChecked()
    press(qtbot, win, Qt.Key.Key_M, Qt.KeyboardModifier.ShiftModifier)
    assert v.mask.isVisible() and v.region.isVisible() and win.actions["toggle_mask"].isChecked()


def test_the_brush_number_in_the_layers_panel_is_called_its_radius(window, qtbot):
    """A session-51 audit: the Layers panel said "Size 8 px" and a stroke was 16 px wide (the number is the radius).
    The label says Radius; the number keeps its meaning (a stroke is twice as wide), so no brush changes size."""
    from PySide6.QtWidgets import QLabel
    win, v, lp = window, window.viewer, window.layer_panel
    assert [w.text() for w in lp.findChildren(QLabel) if w.buddy() is lp.brush] == ["Radius"]
    lp.brush.setValue(5)
    press(qtbot, win, Qt.Key.Key_B)
    v.one_to_one()
    v.centerOn(32, 32)
    before = v.mask.to_bool().copy()
    at = v.mapFromScene(32, 32)
    qtbot.mousePress(v.viewport(), Qt.MouseButton.LeftButton, pos=at)
    qtbot.mouseRelease(v.viewport(), Qt.MouseButton.LeftButton, pos=at)
    new = v.mask.to_bool() & ~before
    assert 9 <= int(new[32].sum()) <= 11  # 2 x 5 across
