"""Heatmap → anomaly region in the window: the threshold slider and the grow tool (issue 23)."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from app.services.heat_region import threshold_region
from tests.gui.conftest import wait_saved
from tests.gui.test_main_window import _drag, _seeded_window, press

CTRL = Qt.KeyboardModifier.ControlModifier


def two_blob_heat() -> np.ndarray:
    """64 x 64 (the test images' size): a hot square with a warm tail, and a separate warm square."""
    heat = np.full((64, 64), 0.05, np.float32)
    heat[10:20, 10:20] = 0.9
    heat[14, 20:26] = 0.6
    heat[40:50, 40:50] = 0.7
    return heat


def heat_window(service, db, folder, artifacts, qtbot):
    """A window on the seeded folder whose current image's anomaly map is ``two_blob_heat``."""
    from database.dto import PredictionIn

    win = _seeded_window(service, db, folder, artifacts, qtbot)
    image_id = win.review.image_id
    anomaly = db.model_versions.active("anomaly")
    ref = artifacts.put_map(two_blob_heat())
    db.predictions.upsert_many([PredictionIn(image_id, anomaly.id, anomaly_score=0.9, anomaly_map_ref=ref)])
    heat = np.asarray(artifacts.get_map(ref), np.float32)  # as stored (the cache keeps float16)
    win.review.reload()
    qtbot.waitUntil(lambda: win.viewer.has_heat() and np.array_equal(win.viewer._heat, heat), timeout=5000)
    return win, image_id, heat


def region_on_screen(win) -> np.ndarray:
    return win.viewer.region.to_bool()


def test_slider_previews_while_dragging_saves_once_on_release_and_undo_restores(
        service, db, folder, artifacts, qtbot):
    win, image_id, heat = heat_window(service, db, folder, artifacts, qtbot)
    lp = win.layer_panel
    assert lp.heat_region_box.isVisibleTo(win) and win.actions["tool_grow"].isEnabled()
    wait_saved(win, qtbot)
    revisions = len(service.history(image_id))
    before = win.review.label
    slider = lp.threshold
    slider.setSliderDown(True)
    slider.setSliderDown(False)  # the handle only clicked: nothing previewed, nothing saved
    wait_saved(win, qtbot)
    assert len(service.history(image_id)) == revisions and win.review.undo_stack.count() == 0
    slider.setSliderDown(True)  # the inspector grabs the handle
    for value in (900, 700, 500):
        slider.setValue(value)
        level = lp.threshold_level()
        qtbot.waitUntil(lambda: np.array_equal(region_on_screen(win), threshold_region(heat, level)))  # noqa: B023 - awaited in this iteration
    assert 0.45 < level < 0.5 and region_on_screen(win)[14, 22]  # the tail is in at this level
    wait_saved(win, qtbot)
    assert len(service.history(image_id)) == revisions  # a preview saves nothing
    assert win.review.label.same_content(before)
    slider.setSliderDown(False)  # let go: one label change
    wait_saved(win, qtbot)
    saved = service.detail(image_id).label
    wait_saved(win, qtbot)
    assert len(service.history(image_id)) == revisions + 1
    np.testing.assert_array_equal(saved.anomaly_region, threshold_region(heat, level))
    assert saved.anomaly_verdict == "anomalous" and saved.review_state == "corrected"
    assert win.viewer.edit_target == "region"  # the brush and eraser refine the region next
    assert win.review.undo_stack.count() == 1
    press(qtbot, win, Qt.Key.Key_Z, CTRL)
    wait_saved(win, qtbot)
    restored = service.detail(image_id).label
    assert restored.anomaly_region is None and restored.same_content(before)
    assert not region_on_screen(win).any()
    win.close()


def test_apply_button_saves_the_region_at_a_keyboard_set_threshold(service, db, folder, artifacts, qtbot):
    win, image_id, heat = heat_window(service, db, folder, artifacts, qtbot)
    lp = win.layer_panel
    lp.threshold.setValue(800)  # keyboard / wheel: a preview, nothing saved until Apply
    level = lp.threshold_level()
    wait_saved(win, qtbot)
    assert service.detail(image_id).label.anomaly_region is None
    qtbot.mouseClick(lp.apply, Qt.MouseButton.LeftButton)
    wait_saved(win, qtbot)
    np.testing.assert_array_equal(service.detail(image_id).label.anomaly_region, threshold_region(heat, level))
    wait_saved(win, qtbot)
    assert service.detail(image_id).label.anomaly_region.sum() == 100  # only the hot square
    win.close()


def test_grow_adds_connected_blobs_then_brush_refines_and_accept_keeps_it(service, db, folder, artifacts, qtbot):
    win, image_id, heat = heat_window(service, db, folder, artifacts, qtbot)
    v = win.viewer
    v.one_to_one()
    v.centerOn(32, 32)
    press(qtbot, win, Qt.Key.Key_W)
    assert v.tool == "grow" and v.edit_target == "region"
    vp = v.viewport()
    qtbot.mouseClick(vp, Qt.MouseButton.LeftButton, pos=v.mapFromScene(15, 15))
    wait_saved(win, qtbot)
    first = service.detail(image_id).label.anomaly_region
    hot = np.zeros(heat.shape, bool)
    hot[10:20, 10:20] = True
    hot[14, 20:26] = True  # 0.6 >= 0.05 + 0.5 * (0.9 - 0.05): the tail is connected and warm enough
    np.testing.assert_array_equal(first, hot)
    qtbot.mouseClick(vp, Qt.MouseButton.LeftButton, pos=v.mapFromScene(45, 45))
    wait_saved(win, qtbot)
    both = service.detail(image_id).label.anomaly_region
    warm = np.zeros(heat.shape, bool)
    warm[40:50, 40:50] = True
    np.testing.assert_array_equal(both, hot | warm)
    qtbot.mouseClick(vp, Qt.MouseButton.LeftButton, pos=v.mapFromScene(60, 3))  # background: nothing
    wait_saved(win, qtbot)
    assert len(service.history(image_id)) == 2
    press(qtbot, win, Qt.Key.Key_E)  # refine: erase a stripe of the second blob
    v.set_brush_radius(1)
    _drag(qtbot, v, v.mapFromScene(40, 45), v.mapFromScene(49, 45))
    wait_saved(win, qtbot)
    refined = service.detail(image_id).label.anomaly_region
    assert refined[10:20, 10:20].all() and not refined[45, 42:48].any() and refined[41, 45]
    press(qtbot, win, Qt.Key.Key_A)  # accept keeps the inspector's region, not the model's threshold
    wait_saved(win, qtbot)
    saved = service.detail(image_id).label
    assert saved.review_state == "accepted" and saved.anomaly_verdict == "anomalous"
    np.testing.assert_array_equal(saved.anomaly_region, refined)
    win.close()


def test_a_grow_click_on_a_cold_map_floods_nothing_and_says_why(service, db, folder, artifacts, qtbot):
    """Seen under Xvfb (session 43): on a normal tile whose map lay wholly under the tile model's region threshold,
    one W click on plain surface made nearly the whole tile the anomaly region (and the image anomalous): the grow
    level runs from the map's minimum, so a flat cold map floods. Such a click now adds nothing and says why; a
    small warm blob under the threshold can still be grown."""
    from database.dto import PredictionIn
    win = _seeded_window(service, db, folder, artifacts, qtbot)
    image_id = win.review.image_id
    threshold = service.region_threshold()
    cold = np.linspace(threshold - 3.0, threshold - 2.0, 64 * 64, dtype=np.float32).reshape(64, 64)
    cold[50:53, 5:8] = threshold - 0.5  # a small warm spot, still under the threshold
    anomaly = db.model_versions.active("anomaly")
    ref = artifacts.put_map(cold)
    db.predictions.upsert_many([PredictionIn(image_id, anomaly.id, anomaly_score=0.1, anomaly_map_ref=ref)])
    shown = np.asarray(artifacts.get_map(ref), np.float32)
    win.review.reload()
    v = win.viewer
    qtbot.waitUntil(lambda: v.has_heat() and np.array_equal(v._heat, shown), timeout=5000)
    wait_saved(win, qtbot)
    revisions = len(service.history(image_id))
    said: list[str] = []
    v.said.connect(said.append)
    v.one_to_one()
    v.centerOn(32, 32)
    press(qtbot, win, Qt.Key.Key_W)
    qtbot.mouseClick(v.viewport(), Qt.MouseButton.LeftButton, pos=v.mapFromScene(32, 40))
    wait_saved(win, qtbot)
    assert len(service.history(image_id)) == revisions and not region_on_screen(win).any()
    assert said and "nothing hot here" in said[-1] and "% of the image" in said[-1]
    assert "nothing hot here" in win.statusBar().currentMessage()
    qtbot.mouseClick(v.viewport(), Qt.MouseButton.LeftButton, pos=v.mapFromScene(6, 51))
    wait_saved(win, qtbot)
    grown = service.detail(image_id).label.anomaly_region
    assert grown is not None and grown[50:53, 5:8].all() and grown.sum() < 0.1 * grown.size
    win.close()


def test_no_heatmap_hides_the_slider_and_disables_grow(window, qtbot):
    win = window
    assert not win.viewer.has_heat()
    assert not win.layer_panel.heat_region_box.isVisibleTo(win)
    assert not win.actions["tool_grow"].isEnabled()
    win.layer_panel.apply.click()  # nothing to threshold: no edit
    assert win.review.undo_stack.count() == 0


def test_accept_on_a_gallery_selection_stores_each_region_at_its_image_size(service, db, artifacts, qtbot, tmp_path):
    """Found by a session-44 probe: A on a gallery selection of 80 × 50 images scored by an anomaly model whose map is
    32 × 32 stored each region at 32 × 32 (the single A, with the pixels on screen, at 80 × 50), and the export then
    skipped those images ("anomaly region is 32x32 but the image is 80x50"). The size the worker recorded is used."""
    import cv2

    from app.services.review_types import QueueFilter
    from database.dto import PredictionIn
    from tests.gui.conftest import build_window, wait_shown
    root = tmp_path / "parts"
    root.mkdir()
    for i in range(3):
        cv2.imwrite(str(root / f"img_{i}.png"), np.full((50, 80), 100 + i, np.uint8))
    info = service.open_folder(root)
    ids = [it.image_id for it in service.queue(QueueFilter(folder_id=info.id))]
    version = db.model_versions.register("anomaly", "anom", "/nonexistent", activate=True, card={"threshold": 0.5})
    heat = np.zeros((32, 32), np.float32)
    heat[4:12, 4:12] = 2.0
    db.predictions.upsert_many([PredictionIn(i, version.id, anomaly_score=0.9, anomaly_map_ref=artifacts.put_map(heat))
                                for i in ids])
    db.images.set_decoded({i: (80, 50) for i in ids})  # as the worker records them
    service.refresh_models()
    win = build_window(service, qtbot)
    win.open_folder(str(root))
    wait_shown(win, qtbot)
    win.review.decide_many(ids[1:], "accept")
    qtbot.waitUntil(lambda: all(service.item(i).review_state == "accepted" for i in ids[1:]), timeout=5000)
    wait_saved(win, qtbot)
    for i in ids[1:]:
        region = service.detail(i).label.anomaly_region
        assert region is not None and region.shape == (50, 80)
    win.close()


def test_grow_is_never_left_on_unseen_and_shift_m_is_ticked_only_while_both_masks_show(
        service, db, folder, artifacts, qtbot, tmp_path):
    """Found by a session-44 probe: W on an image with a map, then a folder without predictions: Grow stayed the tool
    with its button hidden and its menu item greyed but ticked, and left-drag did nothing; View ▸ Labelled masks stayed
    ticked with the anomaly region unticked in the Layers panel (the next Shift+M hid the mask instead)."""
    import cv2
    win, _image_id, _heat = heat_window(service, db, folder, artifacts, qtbot)
    lp, actions = win.layer_panel, win.actions
    lp.checks["region"].setChecked(False)
    assert not actions["toggle_mask"].isChecked()
    lp.checks["region"].setChecked(True)
    assert actions["toggle_mask"].isChecked()
    press(qtbot, win, Qt.Key.Key_W)
    assert win.viewer.tool == "grow"
    plain = tmp_path / "plain"
    plain.mkdir()
    cv2.imwrite(str(plain / "a.png"), np.full((16, 16), 80, np.uint8))
    win.open_folder(str(plain))
    qtbot.waitUntil(lambda: win.review.detail is not None and win.review.detail.item.rel_path == "a.png", timeout=5000)
    qtbot.waitUntil(lambda: win.viewer.tool == "pan", timeout=5000)
    assert not actions["tool_grow"].isEnabled() and actions["tool_pan"].isChecked()


def test_letting_go_of_the_threshold_after_moving_on_saves_nothing_on_either_image(service, db, folder, artifacts,
                                                                                   qtbot):
    """Found by a session-45 probe: the handle dragged on image A, J pressed while it was held, then let go on B:
    B got a region at its default level, marked anomalous and "corrected", and A's previewed region was lost."""
    from PySide6.QtCore import QPoint
    from PySide6.QtWidgets import QStyle, QStyleOptionSlider

    from tests.gui.conftest import wait_shown
    win, a, _heat = heat_window(service, db, folder, artifacts, qtbot)
    wait_saved(win, qtbot)
    slider = win.layer_panel.threshold

    def handle() -> QPoint:
        opt = QStyleOptionSlider()
        slider.initStyleOption(opt)
        return slider.style().subControlRect(QStyle.ComplexControl.CC_Slider, opt, QStyle.SubControl.SC_SliderHandle,
                                             slider).center()
    at = handle()
    qtbot.mousePress(slider, Qt.MouseButton.LeftButton, pos=at)
    qtbot.mouseMove(slider, QPoint(at.x() - 40, at.y()))
    qtbot.wait(50)
    press(qtbot, win, Qt.Key.Key_J)
    qtbot.waitUntil(lambda: win.review.image_id != a, timeout=5000)
    wait_shown(win, qtbot)
    b = win.review.image_id
    qtbot.mouseRelease(slider, Qt.MouseButton.LeftButton, pos=handle())
    wait_saved(win, qtbot)
    assert service.history(b) == [] and service.history(a) == []
    win.close()


def test_accept_keeps_the_region_previewed_on_screen(service, db, folder, artifacts, qtbot):
    """Found by a session-45 probe: the threshold moved by keys (a preview of 100 px on screen), then A: the model's
    region (206 px) was stored and the window moved on, so nobody saw the difference."""
    win, image_id, _heat = heat_window(service, db, folder, artifacts, qtbot)
    wait_saved(win, qtbot)
    win.layer_panel.threshold.setValue(800)
    qtbot.waitUntil(lambda: region_on_screen(win).any(), timeout=3000)
    shown = region_on_screen(win).copy()
    press(qtbot, win, Qt.Key.Key_A)
    wait_saved(win, qtbot)
    stored = service.detail(image_id).label
    assert stored.anomaly_region is not None and np.array_equal(stored.anomaly_region, shown)
    win.close()


@pytest.mark.parametrize("flat", [0.1, float("nan")])
def test_a_map_without_a_range_offers_no_threshold_or_grow(service, db, folder, artifacts, qtbot, flat: float):
    """Found by a session-45 probe: on a flat map Apply made the whole of a good part the anomaly region (every level
    covers it all); on a map of NaN it saved an empty "corrected" revision. Neither offers the tools now."""
    from database.dto import PredictionIn
    win = _seeded_window(service, db, folder, artifacts, qtbot)
    image_id = win.review.image_id
    anomaly = db.model_versions.active("anomaly")
    db.predictions.upsert_many([PredictionIn(image_id, anomaly.id, anomaly_score=0.1,
                                             anomaly_map_ref=artifacts.put_map(np.full((64, 64), flat, np.float32)))])
    win.review.reload()
    qtbot.waitUntil(win.viewer.has_heat, timeout=5000)
    qtbot.wait(100)
    assert not win.layer_panel.heat_region_box.isVisibleTo(win) and not win.actions["tool_grow"].isEnabled()
    win.review.set_region(np.zeros((64, 64), bool))  # an empty region where none was: nothing changes
    wait_saved(win, qtbot)
    assert service.history(image_id) == []
    win.close()


def test_accept_after_a_preview_then_a_grow_and_an_eraser_stroke_keeps_the_refined_region(service, db, folder,
                                                                                          artifacts, qtbot):
    """The session-45 review: the threshold previewed by keys, then a grow and an eraser stroke (each saved); A put
    the bare threshold region back over them."""
    win, image_id, _heat = heat_window(service, db, folder, artifacts, qtbot)
    wait_saved(win, qtbot)
    v = win.viewer
    v.one_to_one()
    v.centerOn(32, 32)
    win.layer_panel.threshold.setValue(800)
    qtbot.waitUntil(lambda: region_on_screen(win).any(), timeout=3000)
    press(qtbot, win, Qt.Key.Key_W)
    qtbot.mouseClick(v.viewport(), Qt.MouseButton.LeftButton, pos=v.mapFromScene(45, 45))
    wait_saved(win, qtbot)
    press(qtbot, win, Qt.Key.Key_E)
    v.set_brush_radius(1)
    _drag(qtbot, v, v.mapFromScene(40, 45), v.mapFromScene(49, 45))
    wait_saved(win, qtbot)
    refined = service.detail(image_id).label.anomaly_region.copy()
    press(qtbot, win, Qt.Key.Key_A)
    wait_saved(win, qtbot)
    assert np.array_equal(service.detail(image_id).label.anomaly_region, refined)
    win.close()


def _show_anomaly_map(win, db, artifacts, image_id: int, heat: np.ndarray, qtbot) -> np.ndarray:
    """``heat`` stored as the active anomaly model's map of the image on screen, shown; the map as stored."""
    from database.dto import PredictionIn
    anomaly = db.model_versions.active("anomaly")
    ref = artifacts.put_map(heat)
    db.predictions.upsert_many([PredictionIn(image_id, anomaly.id, anomaly_score=0.9, anomaly_map_ref=ref)])
    shown = np.asarray(artifacts.get_map(ref), np.float32)
    win.review.reload()
    qtbot.waitUntil(lambda: win.viewer.has_heat() and np.array_equal(win.viewer._heat, shown), timeout=5000)
    wait_saved(win, qtbot)
    return shown


def test_apply_on_the_untouched_slider_saves_the_models_region(service, db, folder, artifacts, qtbot):
    """Found by a session-50 audit: on a 16-bit bottle whose map spans 70, the slider started at the nearest of its
    1,000 steps to the model's pixel threshold 5.3758 (the panel showed "5.36"), and Apply without moving it saved
    5,050 pixels where the model's region (the one Accept stores) is 5,045. The untouched slider now stands for the
    threshold itself: its label shows it and Apply saves exactly the model's region."""
    win = _seeded_window(service, db, folder, artifacts, qtbot)
    image_id = win.review.image_id
    threshold = service.region_threshold()
    heat = np.full((64, 64), threshold - 1.03, np.float32)  # a range of 70: a slider step of 0.07
    heat[0, 0] = threshold + 69.0
    heat[20:30, 20:30] = threshold + 0.002  # just over the threshold: the model's region
    heat[40:50, 40:50] = threshold - 0.002  # just under it
    shown = _show_anomaly_map(win, db, artifacts, image_id, heat, qtbot)
    lp = win.layer_panel
    assert lp.threshold_level() == pytest.approx(threshold, abs=1e-6)
    assert lp.threshold_value.text() == f"{threshold:.3g}"
    qtbot.mouseClick(lp.apply, Qt.MouseButton.LeftButton)
    wait_saved(win, qtbot)
    saved = service.detail(image_id).label.anomaly_region
    expected = threshold_region(shown, threshold)
    assert expected[20:30, 20:30].all() and not expected[40:50, 40:50].any()
    np.testing.assert_array_equal(saved, expected)
    win.close()


def test_apply_on_the_untouched_slider_of_a_map_cooler_than_the_threshold_saves_no_region(service, db, folder,
                                                                                           artifacts, qtbot):
    """Found by a session-50 audit: a tile whose map never reaches the model's pixel threshold (its hottest pixel
    2.753, the threshold 2.80) has an empty model region, but the slider's default was clamped to the hottest pixel
    and Apply without moving it saved that pixel as the region. The untouched slider stands for the threshold."""
    win = _seeded_window(service, db, folder, artifacts, qtbot)
    image_id = win.review.image_id
    threshold = service.region_threshold()
    heat = np.full((64, 64), threshold - 1.0, np.float32)
    heat[10:20, 10:20] = threshold - 0.05     # the hottest part, still under the threshold
    heat[15, 15] = threshold - 0.04
    shown = _show_anomaly_map(win, db, artifacts, image_id, heat, qtbot)
    lp = win.layer_panel
    assert lp.threshold_level() == pytest.approx(threshold, abs=1e-6)
    assert not threshold_region(shown, threshold).any()
    win.statusBar().clearMessage()
    qtbot.mouseClick(lp.apply, Qt.MouseButton.LeftButton)
    wait_saved(win, qtbot)
    saved = service.detail(image_id).label.anomaly_region
    assert saved is None or not np.asarray(saved).any()
    assert "no region to apply" in win.statusBar().currentMessage()   # said, not a silent click (Xvfb, session 50)
    win.close()


def test_accept_of_an_anomalous_tile_whose_map_reaches_no_region_says_the_region_is_to_draw_and_stays(
        service, db, folder, artifacts, qtbot):
    """A session-52 audit: A on a tile the model calls anomalous (score 0.9 over 0.5) whose map reaches the region
    threshold nowhere (at most 0.3) saved "anomalous" with no region, said nothing and moved on; the export then held
    an anomalous image without a mask. The verdict is kept, no region is made up from a map the model does not vouch
    for, the status bar says the region is to be drawn, and the image stays on screen to draw it. A selection's
    Accept counts such images."""
    from database.dto import PredictionIn

    win = _seeded_window(service, db, folder, artifacts, qtbot)
    try:
        anomaly = db.model_versions.active("anomaly")
        cool = np.full((64, 64), 0.05, np.float32)
        cool[20:30, 20:30] = 0.3
        shown = win.review.image_id
        ids = [shown, *[it.image_id for it in win.gallery_model.items() if it.image_id != shown][:2]]
        db.predictions.upsert_many([PredictionIn(i, anomaly.id, anomaly_score=0.9, anomaly_map_ref=artifacts.put_map(cool))
                                    for i in ids])
        win.review.reload()
        qtbot.waitUntil(lambda: win.review.detail.prediction.anomaly_score == pytest.approx(0.9), timeout=5000)
        qtbot.waitUntil(lambda: win.viewer.has_heat() and float(win.viewer._heat.max()) == pytest.approx(0.3, abs=1e-3))
        wait_saved(win, qtbot)
        said: list[str] = []
        win.review.note.connect(said.append)
        press(qtbot, win, Qt.Key.Key_A)
        wait_saved(win, qtbot)
        label = service.detail(ids[0]).label
        assert label.review_state == "accepted" and label.anomaly_verdict == "anomalous" and label.anomaly_region is None
        assert any("without a region: the model's map reaches its region threshold (0.5) nowhere" in s
                   and "W and a click on the hot spot" in s for s in said), said
        qtbot.wait(200)
        assert win.review.image_id == ids[0]   # not moved on: the region is drawn here
        assert "without a region" in win.statusBar().currentMessage()

        with qtbot.waitSignal(win.review.decided_many, timeout=10000):
            win.review.decide_many(ids[1:], "accept")
        wait_saved(win, qtbot)
        text = win.statusBar().currentMessage()
        assert 'Accepted 2 images' in text and '2 images "anomalous" without a region' in text, text
    finally:
        win.close()
