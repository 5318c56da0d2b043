"""Opening a folder and refreshing models read the class names and threshold off the GUI thread."""
from __future__ import annotations

import threading

from tests.gui.conftest import build_window


def test_open_folder_reads_classes_and_threshold_on_a_helper_thread(service, db, folder, artifacts, qtbot):
    from tests.gui.fixtures import CLASSES, seed_predictions

    gui_thread = threading.get_ident()
    calls: list[tuple[str, int]] = []
    for name in ("classes", "anomaly_threshold"):
        real = getattr(service, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            calls.append((_name, threading.get_ident()))
            return _real(*args, **kwargs)
        setattr(service, name, spy)

    win = build_window(service, qtbot)
    with qtbot.waitSignal(win.folder_facts.applied, timeout=10000):
        fid = win.open_folder(str(folder))
    seed_predictions(db, fid, artifacts)
    with qtbot.waitSignal(win.folder_facts.applied, timeout=10000):
        win.refresh_models()
    assert {name for name, _ in calls} == {"classes", "anomaly_threshold"}
    assert all(thread != gui_thread for _, thread in calls), calls
    assert tuple(b.text().split()[-1] for b in win.label_panel.class_group.buttons()) == tuple(CLASSES)


def test_an_answer_for_a_folder_no_longer_shown_is_dropped(service, folder, qtbot):
    win = build_window(service, qtbot)
    with qtbot.waitSignal(win.folder_facts.applied, timeout=10000):
        fid = win.open_folder(str(folder))
    win.gallery.delegate.anomaly_threshold = 0.123
    with qtbot.assertNotEmitted(win.folder_facts.applied):
        win.folder_facts.apply(fid + 1000, ["a"], 9.0)
    assert win.gallery.delegate.anomaly_threshold == 0.123


def test_score_chips_read_the_threshold_of_the_version_that_gave_the_score(service, db, folder, artifacts, qtbot):
    """Seen under Xvfb (session 39): bottles routed to the bottle model (threshold 9.7) had every score chip marked
    over the threshold, by the active tile model's 0.484, while the label panel said "normal"."""
    from app.services.counting_versions import remark
    from app.services.project_settings import save_routing
    from app.services.routing import Routing, RoutingRule
    from database.dto import ImageQuery, PredictionIn
    from tests.gui.fixtures import seed_predictions

    win = build_window(service, qtbot)
    with qtbot.waitSignal(win.folder_facts.applied, timeout=10000):
        fid = win.open_folder(str(folder))
    versions = seed_predictions(db, fid, artifacts)          # the active anomaly version: threshold 0.5
    bottle = db.model_versions.register("anomaly", "bottle", "/nonexistent", card={"threshold": 10.0})
    images = sorted(db.images.query(ImageQuery(folder_id=fid)), key=lambda im: im.rel_path)
    routed = images[0]
    db.predictions.upsert_many([PredictionIn(routed.id, bottle.id, anomaly_score=6.0)])
    routing = Routing((RoutingRule(routed.rel_path, ("classifier", "segmenter", "anomaly"), (("anomaly", "bottle"),)),))
    save_routing(db, routing)
    remark(db, routing)
    with qtbot.waitSignal(win.folder_facts.applied, timeout=10000):
        win.refresh_models()
    delegate = win.gallery.delegate
    assert delegate.anomaly_thresholds == {versions["anomaly"]: 0.5, bottle.id: 10.0}
    qtbot.waitUntil(lambda: any(it.anomaly_version == bottle.id for it in win.gallery_model.items()), timeout=10000)
    items = {it.image_id: it for it in win.gallery_model.items()}
    assert items[routed.id].anomaly_score == 6.0 and not delegate.over_threshold(items[routed.id])  # 6 < 10
    hot_elsewhere = [it for i, it in items.items() if i != routed.id and (it.anomaly_score or 0) > 0.5]
    assert hot_elsewhere and all(delegate.over_threshold(it) for it in hot_elsewhere)
    win.close()


def test_the_score_filter_starts_at_the_threshold_of_the_one_version_scoring_the_folder(service, db, folder, artifacts,
                                                                                       qtbot):
    """Known since session 39: on a line of bottles under the bottle model (9.7) the queue's "anomaly score from" box
    started at the active tile model's 0.484. Where one version's answers count for the whole folder, its threshold;
    where several do, the active one's as before."""
    from app.services.counting_versions import remark
    from app.services.project_settings import save_routing
    from app.services.routing import Routing, RoutingRule
    from database.dto import ImageQuery, PredictionIn
    from tests.gui.fixtures import seed_predictions

    win = build_window(service, qtbot)
    with qtbot.waitSignal(win.folder_facts.applied, timeout=10000):
        fid = win.open_folder(str(folder))
    seed_predictions(db, fid, artifacts)                       # the active anomaly version: threshold 0.5
    bottle = db.model_versions.register("anomaly", "bottle", "/nonexistent", card={"threshold": 10.0})
    images = db.images.query(ImageQuery(folder_id=fid))
    db.predictions.upsert_many([PredictionIn(im.id, bottle.id, anomaly_score=6.0) for im in images])
    routing = Routing((RoutingRule("*", ("classifier", "segmenter", "anomaly"), (("anomaly", "bottle"),)),))
    save_routing(db, routing)
    remark(db, routing)
    with qtbot.waitSignal(win.folder_facts.applied, timeout=10000):
        win.refresh_models()
    assert win.queue_panel.smin.value() == 10.0 and win.gallery.delegate.anomaly_threshold == 10.0
    routing = Routing((RoutingRule(images[0].rel_path, ("classifier", "segmenter", "anomaly"), (("anomaly", "bottle"),)),))
    save_routing(db, routing)
    remark(db, routing)                                        # the others count the active version's answers again
    with qtbot.waitSignal(win.folder_facts.applied, timeout=10000):
        win.refresh_models()
    assert win.queue_panel.smin.value() == 0.5
    win.close()


def test_new_thresholds_repaint_the_score_chips_on_screen(service, folder, qtbot):
    """Found by a session-43 probe (2 runs in 6): after an operating point was saved the chips kept their old
    colours until something else redrew the cells; the thresholds arrive from a helper thread, unpainted."""
    from PySide6.QtCore import QEvent, QObject

    from tests.gui.conftest import wait_shown
    win = build_window(service, qtbot)
    win.open_folder(str(folder))
    wait_shown(win, qtbot)
    qtbot.wait(200)
    painted: list[int] = []

    class Paints(QObject):
        def eventFilter(self, _obj, event):  # noqa: N802 - Qt's name
            if event.type() == QEvent.Type.Paint:
                painted.append(1)
            return False
    spy = Paints()
    win.gallery.viewport().installEventFilter(spy)
    qtbot.wait(200)
    painted.clear()
    win.folder_facts.apply(win.current_folder, [], 0.9, thresholds={1: 0.9})
    qtbot.waitUntil(lambda: bool(painted), timeout=2000)
    win.close()


def test_a_multi_page_tiff_says_only_its_first_page_is_shown(service, qtbot, tmp_path):
    """Left as found in session 43, seen under Xvfb in session 44: a two-page TIFF showed page 1 and nothing said
    there was a second page, which no one then looked at and no model read."""
    import cv2
    import numpy as np

    from inference.imageio import page_count
    from tests.gui.conftest import wait_shown
    root = tmp_path / "scans"
    root.mkdir()
    page = np.full((20, 30), 90, np.uint8)
    assert cv2.imwritemulti(str(root / "two.tiff"), [page, 255 - page])
    cv2.imwrite(str(root / "one.tiff"), page)
    assert page_count(root / "two.tiff") == 2 and page_count(root / "one.tiff") == 1
    win = build_window(service, qtbot)
    win.open_folder(str(root))
    wait_shown(win, qtbot)
    shown = {win.review.detail.item.rel_path: win.label_panel.title.text()}
    qtbot.keyClick(win, "j")
    qtbot.waitUntil(lambda: win.review.detail is not None and win.review.detail.item.rel_path not in shown, timeout=5000)
    shown[win.review.detail.item.rel_path] = win.label_panel.title.text()
    assert "Page 1 of 2 shown" in shown["two.tiff"] and "Page 1 of" not in shown["one.tiff"]
    win.close()
