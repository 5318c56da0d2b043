"""The viewer at its edges: the last column and row of an image, zoom on images a fit leaves out of bounds, the
moment between two images, and the cursor readout when the view, the image or the cursor's place changes."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from app.gui.viewer import ImageViewer
from tests.gui.test_main_window import _seeded_window, press


def _move(viewer: ImageViewer, scene: QPointF) -> None:
    vp = viewer.mapFromScene(scene)
    viewer.mouseMoveEvent(QMouseEvent(QEvent.Type.MouseMove, QPointF(vp), QPointF(viewer.viewport().mapToGlobal(vp)),
                                      Qt.MouseButton.NoButton, Qt.MouseButton.NoButton,
                                      Qt.KeyboardModifier.NoModifier))


def _shown_viewer(qtbot, width: int, height: int) -> ImageViewer:
    """A viewer of that size, shown (a fit reads the viewport's size)."""
    v = ImageViewer()
    qtbot.addWidget(v)
    v.resize(width, height)
    v.show()
    return v


def test_the_cursor_past_the_last_column_or_row_reads_nothing_and_raises_nothing(qtbot) -> None:
    """Found by a session-44 probe: at 1:1 the viewport pixel past a 50 x 30 image's right edge mapped to x = 50.0,
    which the image rectangle counts as inside; the readout indexed column 50 and raised IndexError on every move
    there (the move then dropped for pan and brush). Past the edge it says the zoom alone (a session-51 audit)."""
    v = _shown_viewer(qtbot, 400, 300)
    v.show_image(np.zeros((30, 50, 3), np.uint8))
    v.one_to_one()
    said: list[str] = []
    v.cursor_moved.connect(said.append)
    _move(v, QPointF(10, 10))
    assert said and said[-1].startswith("x 10, y 10")
    _move(v, QPointF(50, 10))  # the viewport pixel past the last column
    _move(v, QPointF(10, 30))  # and past the last row
    assert said[1:] == ["zoom 100%", "zoom 100%"]


def test_zoom_in_never_shrinks_and_zoom_out_never_grows(qtbot) -> None:
    """Found by a session-44 probe: an 8 x 6 image fitted at 99x went to 64x on zoom in; a 60000 x 40 one fitted at
    0.013x went to 0.02x on zoom out."""
    v = _shown_viewer(qtbot, 800, 600)
    for shape in ((6, 8, 3), (40, 60000, 3)):
        v.show_image(np.full(shape, 128, np.uint8))
        qtbot.wait(20)
        fitted = v.zoom()
        v.zoom_by(1.25, anchor_under_mouse=False)
        assert v.zoom() >= fitted
        v.fit()
        qtbot.wait(20)
        fitted = v.zoom()
        v.zoom_by(0.8, anchor_under_mouse=False)
        assert v.zoom() <= fitted


def test_the_previous_image_does_not_stay_on_screen_while_the_next_is_read(service, db, folder, artifacts, qtbot,
                                                                            monkeypatch):
    """Found by a session-44 probe: decoding of the next image delayed (a large frame on a share), the label panel was
    on part 1 while the viewer kept part 0's pixels, heatmap and mask, and D then saved a verdict for a part not
    seen. Past a moment the viewer says the next image is being read and draws nothing of the previous one."""
    import time

    import app.gui.image_loader as loader
    win = _seeded_window(service, db, folder, artifacts, qtbot)
    first = win.review.image_id
    real = loader.load_for_viewer

    def slow(path):
        if "part_01" in str(path):
            time.sleep(1.5)
        return real(path)
    monkeypatch.setattr(loader, "load_for_viewer", slow)
    press(qtbot, win, Qt.Key.Key_J)
    qtbot.waitUntil(lambda: win.review.detail is not None and win.review.detail.item.image_id != first, timeout=3000)
    qtbot.wait(win.viewer_ctl.STALE_MS + 150)
    assert win.viewer._rgb is None and win.viewer._heat is None
    qtbot.waitUntil(lambda: win.viewer_ctl._shown_id == win.review.image_id, timeout=5000)
    assert win.viewer._rgb is not None
    win.close()


def test_the_viewer_reads_out_a_16_bit_files_own_value(service, tmp_path, qtbot) -> None:
    """The window end to end (loader, controller, viewer) on a real 16-bit file: the status text carries the file's
    value, not only the stretched level painted."""
    import cv2

    from tests.gui.conftest import build_window, wait_shown
    root = tmp_path / "deep"
    root.mkdir()
    img = np.zeros((30, 50), np.uint16)
    img[:, :] = np.linspace(1000, 60000, 50, dtype=np.uint16)[None, :]
    cv2.imwrite(str(root / "a.png"), img)
    win = build_window(service, qtbot)
    win.open_folder(str(root))
    wait_shown(win, qtbot)
    qtbot.waitUntil(lambda: win.viewer._rgb is not None, timeout=5000)
    win.viewer.one_to_one()
    said: list[str] = []
    win.viewer.cursor_moved.connect(said.append)
    _move(win.viewer, QPointF(10, 10))
    assert said and f"value {int(img[10, 10])} in the file" in said[-1]
    win.close()


def test_a_strip_far_longer_than_wide_is_fitted_visible_and_scrolled_along(qtbot) -> None:
    """A session-49 audit: a 4000 x 3 line-scan frame was fitted 576 x 0.43 screen pixels, the viewer empty (its
    masks too) and nothing said. Its short side is now shown 32 pixels across, from its start; an ordinary image is
    fitted whole as before."""
    from app.gui.viewer import FIT_MIN_SIDE_PX
    v = _shown_viewer(qtbot, 600, 400)
    for shape in ((3, 4000, 3), (4000, 3, 3)):
        v.show_image(np.full(shape, 200, np.uint8))
        qtbot.wait(20)
        assert abs(min(shape[:2]) * v.zoom() - FIT_MIN_SIDE_PX) < 1e-6
        start = v.mapFromScene(QPointF(0, 0))
        assert 0 <= start.x() < v.viewport().width() and 0 <= start.y() < v.viewport().height()
    v.show_image(np.full((300, 400, 3), 200, np.uint8))
    qtbot.wait(20)
    assert 400 * v.zoom() <= v.viewport().width() and 300 * v.zoom() <= v.viewport().height()


def test_the_cursor_readout_follows_the_zoom_the_image_and_the_cursor_leaving(qtbot) -> None:
    """A session-51 audit: the status bar's readout ("x 150, y 126 … zoom 104%") was said on a mouse move alone: after
    + / - / Ctrl+1 it kept the old zoom, after J the previous image's position and value; and the brush circle stayed
    painted where the cursor left the viewer. Each change is read out at the cursor now; leaving, the zoom alone."""
    v = _shown_viewer(qtbot, 400, 300)
    v.show_image(np.full((30, 50, 3), 10, np.uint8))
    v.one_to_one()
    said: list[str] = []
    v.cursor_moved.connect(said.append)
    v.set_tool("brush")
    _move(v, QPointF(20, 15))
    assert said[-1] == "x 20, y 15  rgb (10, 10, 10)  zoom 100%"
    v.zoom_by(2.0, anchor_under_mouse=False)   # about the centre: another pixel is under the cursor now
    assert said[-1].endswith("zoom 200%") and not said[-1].startswith("x 20, y 15")
    v.one_to_one()
    assert said[-1].endswith("zoom 100%")
    v.show_image(np.full((30, 50, 3), 200, np.uint8))
    assert "rgb (200, 200, 200)" in said[-1]
    _move(v, QPointF(20, 15))
    assert v._brush_item.isVisible()
    QApplication.sendEvent(v.viewport(), QEvent(QEvent.Type.Leave))
    assert said[-1] == f"zoom {v.zoom():.0%}" and not v._brush_item.isVisible()
