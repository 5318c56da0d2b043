"""The first mask edit starts from the predicted targets (session 36, seen under Xvfb): one brush stroke on a frame
with predicted targets saved the stroke alone, and the eraser on a false target erased nothing, so Accept saved it."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt

from tests.gui.conftest import wait_saved
from tests.gui.test_main_window import _drag, _seeded_window, press

CTRL = Qt.KeyboardModifier.ControlModifier


def two_targets() -> np.ndarray:
    mask = np.zeros((64, 64), bool)
    mask[8:14, 8:14] = True      # a target
    mask[40:46, 40:46] = True    # a false alarm the inspector erases
    return mask


def targets_window(service, db, folder, artifacts, qtbot, answer: np.ndarray | None = None):
    """A window on the seeded folder whose current image's segmenter answer is ``answer`` (``two_targets``)."""
    from app.services.display import encode_mask_png
    from database.dto import PredictionIn

    win = _seeded_window(service, db, folder, artifacts, qtbot)
    image_id = win.review.image_id
    seg = db.model_versions.active("segmenter")
    answer = two_targets() if answer is None else answer
    db.predictions.upsert_many([PredictionIn(image_id, seg.id, mask_png=encode_mask_png(answer),
                                             target_count=int(answer.any()) * 2)])
    win.review.reload()
    qtbot.waitUntil(lambda: win.review.detail is not None and win.review.detail.prediction is not None
                    and np.array_equal(win.review.detail.prediction.mask, answer), timeout=5000)
    v = win.viewer
    v.one_to_one()
    v.centerOn(32, 32)
    v.set_brush_radius(5)
    return win, image_id


def saved_mask(service, image_id):
    return service.detail(image_id).label.mask


def stroke(qtbot, win, key, y: int, x0: int, x1: int) -> None:
    """Tool ``key`` (B, E), one horizontal stroke at image row ``y``, and wait for the save."""
    v = win.viewer
    press(qtbot, win, key)
    _drag(qtbot, v, v.mapFromScene(x0, y), v.mapFromScene(x1, y))
    wait_saved(win, qtbot)


def accepted(qtbot, win, service, image_id):
    press(qtbot, win, Qt.Key.Key_A)
    wait_saved(win, qtbot)
    return service.detail(image_id).label


def test_the_eraser_removes_a_false_target_and_accept_keeps_the_other(service, db, folder, artifacts, qtbot):
    win, image_id = targets_window(service, db, folder, artifacts, qtbot)
    assert saved_mask(service, image_id) is None
    stroke(qtbot, win, Qt.Key.Key_E, 43, 40, 46)
    mask = saved_mask(service, image_id)
    assert mask is not None and mask[8:14, 8:14].all() and not mask[40:46, 40:46].any()
    label = accepted(qtbot, win, service, image_id)
    assert label.review_state == "accepted"
    np.testing.assert_array_equal(label.mask, mask)  # the erased false alarm does not come back
    win.close()


def test_a_brushed_missed_target_keeps_the_predicted_ones(service, db, folder, artifacts, qtbot):
    win, image_id = targets_window(service, db, folder, artifacts, qtbot)
    stroke(qtbot, win, Qt.Key.Key_B, 55, 25, 28)
    mask = saved_mask(service, image_id)
    assert mask[8:14, 8:14].all() and mask[40:46, 40:46].all() and mask[55, 26]
    press(qtbot, win, Qt.Key.Key_Z, CTRL)  # undo: no mask of the label's own, the next edit starts over
    wait_saved(win, qtbot)
    assert saved_mask(service, image_id) is None
    assert not win.viewer.mask.to_bool().any()
    stroke(qtbot, win, Qt.Key.Key_E, 11, 8, 14)
    mask = saved_mask(service, image_id)
    assert not mask[8:14, 8:14].any() and mask[40:46, 40:46].all()
    win.close()


def test_erasing_every_target_is_an_answer_accept_keeps(service, db, folder, artifacts, qtbot):
    win, image_id = targets_window(service, db, folder, artifacts, qtbot)
    stroke(qtbot, win, Qt.Key.Key_E, 11, 8, 14)
    stroke(qtbot, win, Qt.Key.Key_E, 43, 40, 46)
    mask = saved_mask(service, image_id)
    assert mask is not None and not mask.any()  # stored as an empty mask, not as "not set"
    qtbot.waitUntil(lambda: win.label_panel.objects.count() == 1)  # the image alone: no predicted target listed
    label = accepted(qtbot, win, service, image_id)
    assert label.review_state == "accepted" and label.mask is not None and not label.mask.any()
    win.close()


def test_an_out_of_domain_segmenter_gives_no_start(service, db, folder, artifacts, qtbot):
    """The panel withholds the segmenter's answer on an image its model calls out of domain: so does the brush."""
    win, image_id = targets_window(service, db, folder, artifacts, qtbot)
    detail = win.review.detail
    from dataclasses import replace
    withheld = replace(detail, prediction=replace(detail.prediction,
                                                  out_of_domain=(*detail.prediction.out_of_domain, "segmenter")))
    assert service.mask_start(withheld, win.review.label) is None
    assert service.mask_start(detail, win.review.label) is not None
    assert win.review.objects.object_mask() is not None
    win.review.detail = withheld  # seen under Xvfb: "Objects (1)" and a tag over a withheld mask
    assert win.review.objects.object_mask() is None
    win.close()


def test_accepting_the_segmenters_no_target_saves_a_frame_without_targets(service, db, folder, artifacts, qtbot):
    """Seen at the station: 11 accepted infrared frames, "needs at least 10 reviewed frames with masks; there are
    9": the frames where the segmenter found nothing were accepted with no mask at all, lost as negatives."""
    win, image_id = targets_window(service, db, folder, artifacts, qtbot, np.zeros((64, 64), bool))
    label = accepted(qtbot, win, service, image_id)
    assert label.review_state == "accepted" and label.mask is not None and not label.mask.any()
    win.close()


def test_an_eraser_stroke_on_a_withheld_frame_says_it_holds_no_target(service, db, folder, artifacts, qtbot):
    """Accept on a frame whose segmenter answer is withheld (out of domain) saves no mask and says to give the
    targets; where the frame holds none, one eraser stroke says so: an empty mask, which a retraining counts."""
    from app.services.display import encode_mask_png
    from database.dto import PredictionIn

    win, image_id = targets_window(service, db, folder, artifacts, qtbot)
    seg = db.model_versions.active("segmenter")
    db.predictions.upsert_many([PredictionIn(image_id, seg.id, mask_png=encode_mask_png(two_targets()),
                                             target_count=2, in_domain=0.1)])
    win.review.reload()
    qtbot.waitUntil(lambda: win.review.detail is not None and win.review.detail.prediction is not None
                    and "segmenter" in win.review.detail.prediction.out_of_domain, timeout=5000)
    stroke(qtbot, win, Qt.Key.Key_E, 20, 20, 26)
    mask = saved_mask(service, image_id)
    assert mask is not None and not mask.any()   # "no target", not "not set"; the withheld targets not taken
    label = accepted(qtbot, win, service, image_id)
    assert label.mask is not None and not label.mask.any()
    assert service.withheld_from(win.review.detail, label) == ()   # nothing left out: no note
    win.close()
