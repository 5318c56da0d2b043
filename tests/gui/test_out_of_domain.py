"""Out-of-domain images in the station: the label panel and the badges say "out of domain" instead
of the model's class or score, and the queue's "out of domain" filter keeps only those images.

Predictions are stored as the worker stores them (tests/worker/test_out_of_domain.py runs the real
worker with tiny models on an out-of-domain image)."""
from __future__ import annotations

from dataclasses import replace

from app.services.flags import OUT_OF_DOMAIN
from app.services.wording import plural
from database.dto import ImageQuery, PredictionIn
from tests.gui.conftest import open_window, wait_shown
from tests.gui.fixtures import seed_predictions

NOTE = "stored as colour with alpha (4 channels; training files: grey)"


def _mark_out_of_domain(db, folder_id: int, versions: dict[str, int], names: set[str],
                        families: tuple[str, ...] = ("classifier",)) -> list[int]:
    """``families``' models call ``names`` out of domain (score 0.1); every other prediction is in domain."""
    outside = []
    rows = []
    for im in db.images.query(ImageQuery(folder_id=folder_id)):
        far = im.rel_path in names
        if far:
            outside.append(im.id)
        for family, vid in versions.items():
            p = db.predictions.get(im.id, vid)
            score = 0.1 if far and family in families else 0.8
            flags = (OUT_OF_DOMAIN,) if far and family in families else p.flags
            rows.append(replace(PredictionIn(im.id, vid, class_scores=p.class_scores, predicted_class=p.predicted_class,
                                             confidence=p.confidence, mask_png=p.mask_png, target_count=p.target_count,
                                             anomaly_score=p.anomaly_score, anomaly_map_ref=p.anomaly_map_ref),
                                flags=flags, in_domain=score,
                                domain_note=NOTE if far and family in families else None))
    db.predictions.upsert_many(rows)
    db.images.set_flagged(outside, True)
    return outside


def test_out_of_domain_shows_instead_of_the_class_and_the_filter_keeps_those_images(service, db, folder, artifacts,
                                                                                    qtbot):
    info = service.open_folder(folder)
    versions = seed_predictions(db, info.id, artifacts)
    outside = _mark_out_of_domain(db, info.id, versions, {"part_01.png", "part_04.png"})
    win = open_window(service, qtbot, folder)
    try:
        items = {it.image_id: it for it in win.gallery_model.items()}
        assert {i for i, it in items.items() if it.out_of_domain} == set(outside)
        assert items[outside[0]].out_of_domain == ("classifier",)

        win.review.open_image(outside[0])
        wait_shown(win, qtbot, outside[0])
        panel = win.label_panel
        qtbot.waitUntil(lambda: "out of domain" in panel.pred_class.text())
        assert "%" not in panel.pred_class.text() and panel.pred_scores.text() == ""
        assert NOTE in panel.pred_class.text() and f"Why: {NOTE}." in panel.pred_class.toolTip()  # why, in words
        assert "out of domain" in panel.pred_models.text()  # the flag, named
        assert "out of domain" not in panel.pred_anomaly.text()  # the anomaly model is in its domain

        inside = next(i for i in items if i not in outside)
        win.review.open_image(inside)
        wait_shown(win, qtbot, inside)
        qtbot.waitUntil(lambda: "out of domain" not in panel.pred_class.text())
        assert "%" in panel.pred_class.text()

        win.queue_panel.out_of_domain.setChecked(True)
        qtbot.waitUntil(lambda: win.gallery_model.rowCount() == 2)
        assert {it.image_id for it in win.gallery_model.items()} == set(outside)
        win.queue_panel.out_of_domain.setChecked(False)
        qtbot.waitUntil(lambda: win.gallery_model.rowCount() == 6)
    finally:
        win.close()


def test_accept_takes_no_answer_the_panel_shows_as_out_of_domain(service, db, folder, artifacts, qtbot):
    """Every model calls part_04 (anomaly 0.8, over the 0.5 threshold; a class, a mask) out of domain:
    the panel says "out of domain" on all three lines, and Accept stores no class, mask or verdict
    (it used to store the hidden class and "anomalous" with its region)."""
    info = service.open_folder(folder)
    versions = seed_predictions(db, info.id, artifacts)
    (hot,) = _mark_out_of_domain(db, info.id, versions, {"part_04.png"},
                                 families=("classifier", "segmenter", "anomaly"))
    win = open_window(service, qtbot, folder)
    try:
        panel = win.label_panel
        win.review.open_image(hot)
        wait_shown(win, qtbot, hot)
        qtbot.waitUntil(lambda: "out of domain" in panel.pred_class.text())
        assert "out of domain" in panel.pred_anomaly.text() and "0.8" not in panel.pred_anomaly.text()
        assert "out of domain" in panel.pred_targets.text()
        detail = service.detail(hot)
        assert detail.prediction.predicted_class and detail.prediction.anomalous  # what the models said
        taken = service.accepted_label(detail, detail.label)
        assert taken.review_state == "accepted"
        assert taken.class_name is None and taken.mask is None and taken.anomaly_verdict is None
        assert taken.anomaly_region is None
        # the viewer draws no answer the panel withholds (it painted the heatmap over the whole frame), and says so
        assert win.viewer._heat is None and not win.layer_panel.heat_region_box.isVisibleTo(win.layer_panel)
        assert win.viewer.rings.targets == []  # no predicted mask, no target rings
        checks = win.layer_panel.checks
        assert "out of domain" in checks["heatmap"].text() and "out of domain" in checks["prediction"].text()
        assert checks["mask"].text() == "Defect mask"
        inside = next(it.image_id for it in win.gallery_model.items() if it.image_id != hot)
        win.review.open_image(inside)
        wait_shown(win, qtbot, inside)
        qtbot.waitUntil(lambda: win.viewer._heat is not None)
        assert checks["heatmap"].text() == "Heatmap" and checks["prediction"].text() == "Predicted mask"
    finally:
        win.close()


def test_accept_says_which_withheld_answers_it_left_out(service, db, folder, artifacts, qtbot):
    """Seen under Xvfb (session 37): A on an infrared frame the segmenter called foreign, two targets plainly
    visible, saved "accepted" with no mask and said nothing; the frame then did not count for the segmenter's
    retraining. The status bar now says what was left out and what to give instead; an in-domain image says nothing."""
    from PySide6.QtCore import Qt

    from tests.gui.conftest import wait_saved
    from tests.gui.test_main_window import press

    info = service.open_folder(folder)
    versions = seed_predictions(db, info.id, artifacts)
    (far,) = _mark_out_of_domain(db, info.id, versions, {"part_04.png"}, families=("segmenter",))
    win = open_window(service, qtbot, folder)
    said: list[str] = []
    win.review.message.connect(said.append)
    win.review.note.connect(said.append)
    try:
        win.review.open_image(far)
        wait_shown(win, qtbot, far)
        qtbot.waitUntil(lambda: "out of domain" in win.label_panel.pred_targets.text())
        press(qtbot, win, Qt.Key.Key_A)
        wait_saved(win, qtbot)
        assert any("Accepted without the segmenter's answer" in s and "its targets (B / L; one eraser stroke, E, says there are none)" in s for s in said), said
        # the move A makes next (to the next unreviewed image, or "none left") does not wipe it from the status bar
        qtbot.waitUntil(lambda: win.review.image_id != far or "No unreviewed" in win.statusBar().currentMessage())
        win._say("No unreviewed image left in this view.")
        assert "Accepted without the segmenter's answer" in win.statusBar().currentMessage()
        label = service.detail(far).label
        assert label.review_state == "accepted" and label.mask is None
        said.clear()
        inside = next(it.image_id for it in win.gallery_model.items() if it.image_id != far)
        win.review.open_image(inside)
        wait_shown(win, qtbot, inside)
        press(qtbot, win, Qt.Key.Key_A)
        wait_saved(win, qtbot)
        assert not any("Accepted without" in s for s in said)
    finally:
        win.close()


def test_accept_on_a_selection_says_how_many_withheld_answers_it_left_out(service, db, folder, artifacts, qtbot):
    """Seen under Xvfb (session 42): Ctrl+A, A on 30 infrared frames said only "Accepted 29 image(s)"; on a frame
    the segmenter called foreign the label kept no mask, so it does not count for the segmenter's retraining, and
    nothing said so (the single A has said it since session 37). The selection's message now counts, per family,
    the images whose answer was left out, and says what to give instead."""
    from PySide6.QtCore import Qt

    from tests.gui.conftest import wait_saved
    from tests.gui.test_main_window import press

    info = service.open_folder(folder)
    versions = seed_predictions(db, info.id, artifacts)
    far = _mark_out_of_domain(db, info.id, versions, {"part_01.png", "part_04.png"}, families=("segmenter",))
    win = open_window(service, qtbot, folder)
    try:
        win.gallery.setFocus()
        win.gallery.selectAll()
        n = win.gallery_model.rowCount()
        with qtbot.waitSignal(win.review.decided_many, timeout=10000):
            press(qtbot, win, Qt.Key.Key_A)
        wait_saved(win, qtbot)
        text = win.statusBar().currentMessage()
        assert f"Accepted {plural(n, 'image')}" in text, text
        assert f"Not taken, out of its model's domain: the segmenter's answer on 2 of the {n};" in text, text
        assert "give those yourself" in text and win.statusBar().toolTip() == text   # the whole of it, on hover
        assert all(service.detail(i).label.mask is None for i in far)
        win.review.undo_stack.undo()
        wait_saved(win, qtbot)
        inside = [it.image_id for it in win.gallery_model.items() if it.image_id not in far]
        win.gallery.clearSelection()
        win.gallery.selectAll()
        for i in far:   # only in-domain images selected: nothing is said of withheld answers
            row = next(r for r, it in enumerate(win.gallery_model.items()) if it.image_id == i)
            win.gallery.selectionModel().select(win.gallery_model.index(row, 0),
                                                win.gallery.selectionModel().SelectionFlag.Deselect)
        said: list[str] = []
        win.review.message.connect(said.append)
        win.review.note.connect(said.append)
        with qtbot.waitSignal(win.review.decided_many, timeout=10000):
            press(qtbot, win, Qt.Key.Key_A)
        wait_saved(win, qtbot)
        assert any(s.startswith(f"Accepted {plural(len(inside), 'image')}") for s in said), said
        assert not any("out of its model's domain" in s for s in said), said
    finally:
        win.close()
