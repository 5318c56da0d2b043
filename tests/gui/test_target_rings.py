"""Issue 16 item 6: every predicted target gets a ring visible at any zoom; Tab steps through them."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor

from app.gui.target_rings import MIN_RING_PX, RING_COLOR
from app.services.display import targets_of
from tests.gui.test_main_window import _seeded_window, press


def test_targets_are_the_mask_components_in_reading_order():
    mask = np.zeros((100, 200), bool)
    mask[80:82, 10:12] = True     # bottom left
    mask[5:7, 150:152] = True     # top right
    mask[5:25, 20:40] = True      # top left, larger
    ts = targets_of(mask)
    assert [(t.cx, t.cy) for t in ts] == [(151.0, 6.0), (30.0, 15.0), (11.0, 81.0)]
    assert ts[1].radius == pytest.approx(0.5 * np.hypot(20, 20))
    assert targets_of(np.zeros((4, 4), bool)) == [] and targets_of(None) == []


def _ring_pixels(viewer, cx: float, cy: float, radius: float) -> int:
    """Ring-coloured pixels on an annulus of ``radius`` screen pixels around scene point (cx, cy)."""
    img = viewer.viewport().grab().toImage()
    at = viewer.mapFromScene(cx, cy)
    hits = 0
    for a in np.linspace(0, 2 * np.pi, 72, endpoint=False):
        for dr in (-1, 0, 1):
            x, y = int(round(at.x() + (radius + dr) * np.cos(a))), int(round(at.y() + (radius + dr) * np.sin(a)))
            if 0 <= x < img.width() and 0 <= y < img.height():
                c = QColor(img.pixel(x, y))
                if abs(c.red() - RING_COLOR.red()) + abs(c.green() - RING_COLOR.green()) + abs(c.blue() - RING_COLOR.blue()) < 90:
                    hits += 1
                    break
    return hits


def _viewer(qtbot, boxes: list[tuple[slice, slice]], size=(500, 400)):
    """A shown viewer on a dark 2000x1600 image whose predicted mask holds ``boxes``, fitted."""
    from app.gui.viewer import ImageViewer
    v = ImageViewer()
    qtbot.addWidget(v)
    v.resize(*size)
    v.show()
    v.show_image(np.full((1600, 2000, 3), 40, np.uint8))
    mask = np.zeros((1600, 2000), bool)
    for box in boxes:
        mask[box] = True
    v.set_predicted_mask(mask)
    v.fit()
    return v


def test_a_two_pixel_target_keeps_a_visible_ring_when_zoomed_out(qtbot):
    v = _viewer(qtbot, [np.s_[800:802, 1000:1002]])
    assert v.zoom() < 0.3  # the target is less than one screen pixel
    assert _ring_pixels(v, 1001, 801, MIN_RING_PX) > 40  # most of the circle is drawn
    v.zoom_by(0.1, anchor_under_mouse=False)
    assert _ring_pixels(v, 1001, 801, MIN_RING_PX) > 40
    v.set_layer_visible("prediction", False)  # T hides the rings with the mask
    assert _ring_pixels(v, 1001, 801, MIN_RING_PX) == 0


def test_stepping_centres_the_view_on_each_target(qtbot):
    v = _viewer(qtbot, [np.s_[300:304, 1700:1704], np.s_[1200:1202, 300:302]], size=(400, 300))
    seen = []
    v.target_stepped.connect(lambda k, n: seen.append((k, n)))
    for delta, (x, y) in ((1, (1702, 302)), (1, (301, 1201)), (1, (1702, 302)), (-1, (301, 1201))):
        v.step_target(delta)
        centre = v.mapToScene(v.viewport().rect().center())
        assert v.zoom() >= 1.0 and abs(centre.x() - x) <= 2 and abs(centre.y() - y) <= 2
    assert seen == [(1, 2), (2, 2), (1, 2), (2, 2)]
    v.set_predicted_mask(None)
    v.step_target(1)
    assert seen[-1] == (0, 0)


def test_tab_and_shift_tab_step_through_the_targets_in_the_window(service, db, folder, artifacts, qtbot):
    win = _seeded_window(service, db, folder, artifacts, qtbot)
    v = win.viewer
    assert len(v.rings.targets) == 1  # the seeded prediction's mask
    mask = np.zeros((64, 64), bool)
    mask[2:4, 2:4] = mask[50:52, 40:42] = True
    v.set_predicted_mask(mask)
    messages = []
    for key, mod in ((Qt.Key.Key_Tab, Qt.KeyboardModifier.NoModifier),
                     (Qt.Key.Key_Tab, Qt.KeyboardModifier.NoModifier),
                     (Qt.Key.Key_Backtab, Qt.KeyboardModifier.ShiftModifier)):
        press(qtbot, win, key, mod)
        messages.append(win.statusBar().currentMessage())
    assert messages == ["Target 1/2", "Target 2/2", "Target 1/2"]
    win.close()
