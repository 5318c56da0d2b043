"""Side by side (C): the original and the viewer with the overlays show the same part of the image at the same zoom,
whichever of them the inspector moves."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QStyle, QStyleOptionSlider

from app.gui.viewer import ImageView, ViewerPane


def _pane(qtbot) -> ViewerPane:
    pane = ViewerPane()
    qtbot.addWidget(pane)
    pane.resize(900, 600)
    pane.show()
    qtbot.waitExposed(pane)
    pane.show_image(np.full((202, 329, 3), 120, np.uint8))
    qtbot.wait(50)
    return pane


def _view(v: ImageView) -> tuple[float, int, int]:
    """What a view shows: its zoom and where it is scrolled to."""
    return round(v.zoom(), 4), v.horizontalScrollBar().value(), v.verticalScrollBar().value()


def _middle(v: ImageView, kind: QEvent.Type, at: QPointF) -> QMouseEvent:
    buttons = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseButtonRelease else Qt.MouseButton.MiddleButton
    return QMouseEvent(kind, at, QPointF(v.viewport().mapToGlobal(at.toPoint())), Qt.MouseButton.MiddleButton,
                       buttons, Qt.KeyboardModifier.NoModifier)


def test_the_wheel_and_a_middle_drag_over_the_original_move_both_panes(qtbot) -> None:
    """A session-51 audit: the wheel (and a middle-button drag) over the left pane zoomed and panned the original
    alone; the overlays beside it stayed where they were, no longer over the same pixels. The viewer now follows."""
    pane = _pane(qtbot)
    pane.set_side_by_side(True)
    qtbot.wait(100)
    o = pane.original
    centre = QPointF(o.viewport().width() / 2, o.viewport().height() / 2)
    o.wheelEvent(QWheelEvent(centre, QPointF(o.viewport().mapToGlobal(centre.toPoint())), QPoint(0, 0),
                             QPoint(0, 240), Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                             Qt.ScrollPhase.NoScrollPhase, False))
    zoomed = _view(o)
    assert _view(pane.viewer) == zoomed
    o.mousePressEvent(_middle(o, QEvent.Type.MouseButtonPress, centre))
    o.mouseMoveEvent(_middle(o, QEvent.Type.MouseMove, centre + QPointF(60, 0)))
    o.mouseReleaseEvent(_middle(o, QEvent.Type.MouseButtonRelease, centre + QPointF(60, 0)))
    assert _view(o) != zoomed  # the drag panned
    assert _view(pane.viewer) == _view(o)


def test_side_by_side_turned_on_while_zoomed_in_shows_both_panes_at_one_zoom(qtbot) -> None:
    """A session-51 audit: C pressed while zoomed in fitted the viewer, whose scroll bars then went; it fitted itself
    again to the larger viewport without a word, and the original stayed about 4 % smaller and offset."""
    pane = _pane(qtbot)
    for _ in range(4):
        pane.viewer.zoom_by(1.25, anchor_under_mouse=False)
    qtbot.wait(50)
    pane.set_side_by_side(True)
    qtbot.wait(200)
    assert _view(pane.original) == _view(pane.viewer)


def test_a_diagonal_middle_drag_over_the_original_moves_both_panes_both_ways(qtbot) -> None:
    """A session-51 review: zoomed in, a middle-button drag over the original lost its vertical part. The viewer,
    copying the original, set its horizontal scroll bar first; that told the original to copy the viewer back, whose
    vertical value was still the old one, and the viewer then read that back (dragged by (-40, -60): 259 -> 252, not
    319). Both panes now end where the drag took the original."""
    pane = _pane(qtbot)
    pane.set_side_by_side(True)
    qtbot.wait(100)
    o = pane.original
    pane.viewer.zoom_by(4.0, anchor_under_mouse=False)
    qtbot.wait(20)
    centre = QPointF(o.viewport().width() / 2, o.viewport().height() / 2)
    zoom, x, y = _view(o)
    o.mousePressEvent(_middle(o, QEvent.Type.MouseButtonPress, centre))
    o.mouseMoveEvent(_middle(o, QEvent.Type.MouseMove, centre + QPointF(-40, -60)))
    o.mouseReleaseEvent(_middle(o, QEvent.Type.MouseButtonRelease, centre + QPointF(-40, -60)))
    assert _view(o) == (zoom, x + 40, y + 60)
    assert _view(pane.viewer) == _view(o)


def test_the_wheel_over_the_zoomed_original_keeps_the_point_under_it(qtbot) -> None:
    """A session-51 review: zoomed in, the wheel over the original zoomed both panes about another point (at x4, the
    image point under the centre moved by (-68, -59) image pixels): the viewer, copying the zoom, had the original copy the viewer's scroll
    values back before it had taken the original's. The point under the wheel now stays, in both panes."""
    pane = _pane(qtbot)
    pane.set_side_by_side(True)
    qtbot.wait(100)
    o = pane.original
    pane.viewer.zoom_by(4.0, anchor_under_mouse=False)  # both scroll bars there: none comes with the wheel's zoom
    qtbot.wait(20)
    centre = QPointF(o.viewport().width() / 2, o.viewport().height() / 2)
    under = o.mapToScene(centre.toPoint())
    o.wheelEvent(QWheelEvent(centre, QPointF(o.viewport().mapToGlobal(centre.toPoint())), QPoint(0, 0),
                             QPoint(0, 120), Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                             Qt.ScrollPhase.NoScrollPhase, False))
    moved = o.mapToScene(centre.toPoint()) - under
    assert abs(moved.x()) < 1 and abs(moved.y()) < 1
    assert _view(pane.viewer) == _view(o)


def test_the_first_zoom_from_a_fitted_side_by_side_view_leaves_both_panes_on_the_same_pixels(qtbot) -> None:
    """A session-51 review: the first zoom from a fitted side-by-side view left the original half a scroll bar off
    (x4 on a 329 x 202 image: the viewer at (671, 252), the original at (678, 259)). The original copied the viewer
    before its own scroll bars came; its viewport then shrank by 14 px, its values moved by 7, and nothing copied
    the viewer again. The original now copies it again when its scroll bars' ranges change."""
    pane = _zoomed_side_by_side(qtbot)
    v, o = pane.viewer, pane.original
    assert o.mapToScene(o.viewport().rect().center()) == v.mapToScene(v.viewport().rect().center())


def _zoomed_side_by_side(qtbot) -> ViewerPane:
    """Side by side at x4, both panes with both scroll bars, scrolled to the middle."""
    pane = _pane(qtbot)
    pane.set_side_by_side(True)
    qtbot.wait(100)
    pane.viewer.zoom_by(4.0, anchor_under_mouse=False)
    qtbot.wait(50)
    assert _view(pane.original) == _view(pane.viewer)
    return pane


def _same_pixels(pane: ViewerPane) -> None:
    """Both panes are scrolled alike and show the same image point at their centres."""
    v, o = pane.viewer, pane.original
    assert _view(o) == _view(v)
    assert o.mapToScene(o.viewport().rect().center()) == v.mapToScene(v.viewport().rect().center())


def test_the_original_s_scroll_bars_move_both_panes(qtbot) -> None:
    """A session-52 audit: side by side, dragging the original's (left) scroll bars scrolled the original alone; the
    panes then showed different parts of the image and the cursor readout spoke of another pixel than the one beside
    it. A drag of the handle and a click in the groove (a page) now move both panes, all along the drag."""
    pane = _zoomed_side_by_side(qtbot)
    o = pane.original
    h, vbar = o.horizontalScrollBar(), o.verticalScrollBar()
    start = _view(o)
    opt = QStyleOptionSlider()
    h.initStyleOption(opt)
    handle = h.style().subControlRect(QStyle.ComplexControl.CC_ScrollBar, opt, QStyle.SubControl.SC_ScrollBarSlider, h)
    grab = handle.center()
    qtbot.mousePress(h, Qt.MouseButton.LeftButton, pos=grab)
    for dx in (-10, -20, -30):
        qtbot.mouseMove(h, grab + QPoint(dx, 0))
        _same_pixels(pane)
    qtbot.mouseRelease(h, Qt.MouseButton.LeftButton, pos=grab + QPoint(-30, 0))
    dragged = _view(o)[1]
    assert dragged < start[1]
    _same_pixels(pane)
    qtbot.mouseClick(vbar, Qt.MouseButton.LeftButton, pos=QPoint(vbar.width() // 2, vbar.height() - 24))
    paged = min(vbar.maximum(), start[2] + vbar.pageStep())  # a page down, below the handle
    assert paged > start[2] and _view(o)[2] == paged
    _same_pixels(pane)
    qtbot.wait(50)  # nothing queued moves either pane afterwards
    assert _view(o)[1:] == (dragged, paged)
    _same_pixels(pane)


def test_keys_scrolling_the_focused_original_move_both_panes(qtbot) -> None:
    """A session-52 audit: side by side, the arrow keys and Page Up / Page Down with the original focused scrolled it
    alone, off the viewer's pixels. Both panes now move."""
    pane = _zoomed_side_by_side(qtbot)
    o = pane.original
    start = _view(o)
    for key in (Qt.Key.Key_Right, Qt.Key.Key_Right, Qt.Key.Key_Up, Qt.Key.Key_PageDown):
        qtbot.keyClick(o, key)
        _same_pixels(pane)
    assert _view(o) != start


def test_the_viewer_s_scroll_bars_and_keys_move_both_panes(qtbot) -> None:
    """The other way round, the viewer's (right) scroll bars and keys move the original with it."""
    pane = _zoomed_side_by_side(qtbot)
    v = pane.viewer
    start = _view(v)
    v.horizontalScrollBar().setSliderPosition(v.horizontalScrollBar().value() + 120)
    v.verticalScrollBar().triggerAction(v.verticalScrollBar().SliderAction.SliderPageStepSub)
    qtbot.keyClick(v, Qt.Key.Key_Left)
    assert _view(v) != start
    _same_pixels(pane)


def test_side_by_side_turned_off_leaves_the_viewer_alone(qtbot) -> None:
    """Turned off, the hidden original neither follows the viewer nor leads it; turned on again, it shows the viewer's
    pixels."""
    pane = _zoomed_side_by_side(qtbot)
    pane.set_side_by_side(False)
    qtbot.wait(100)
    v, o = pane.viewer, pane.original
    v.zoom_by(4.0, anchor_under_mouse=False)
    qtbot.wait(50)
    shown, hidden = _view(v), _view(o)
    v.horizontalScrollBar().setSliderPosition(v.horizontalScrollBar().value() + 40)
    assert _view(o) == hidden  # not copied while nobody sees it
    shown = _view(v)
    o.horizontalScrollBar().triggerAction(o.horizontalScrollBar().SliderAction.SliderPageStepAdd)
    o.verticalScrollBar().triggerAction(o.verticalScrollBar().SliderAction.SliderPageStepAdd)
    qtbot.wait(50)
    assert _view(v) == shown
    pane.set_side_by_side(True)
    qtbot.wait(200)
    _same_pixels(pane)
