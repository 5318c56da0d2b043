"""Project ▸ Operating point…: the dialog shows the reviewed scores' optimum, the line can be
dragged, and "Use this threshold" saves the folder's threshold so the queue's flags follow."""
from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt

from database.dto import ImageQuery, LabelChange
from database.states import AnomalyVerdict, ReviewState
from tests.gui.conftest import build_window, tab_leaves, wait_shown
from tests.gui.fixtures import seed_predictions


def _review(db, fid: int, verdicts: dict[int, str]) -> None:
    ims = db.images.query(ImageQuery(folder_id=fid, sort="rel_path"))
    for k, verdict in verdicts.items():
        db.labels.append(ims[k].id, LabelChange(ReviewState.CORRECTED, anomaly_verdict=AnomalyVerdict(verdict)), "ann")


def test_the_dialog_saves_the_folders_threshold_and_the_queue_follows(service, db, folder, artifacts, qtbot):
    from app.services.flags import FlagSettings
    from app.services.project_settings import load_project_settings, save_flag_settings
    from tests.gui.fixtures import CLASSES

    # only the anomaly score flags: the seeded classifier and segmenter never do
    save_flag_settings(db, FlagSettings(min_targets=50, good_classes=CLASSES, min_confidence=0.0))
    win = build_window(service, qtbot)
    fid = win.open_folder(str(folder))
    versions = seed_predictions(db, fid, artifacts)   # scores 0.2, 0.35, 0.5, 0.65, 0.8, 0.95; card: 0.5
    _review(db, fid, {0: "normal", 1: "normal", 3: "normal", 2: "anomalous", 4: "anomalous"})
    win.refresh_models()
    wait_shown(win, qtbot)

    win.actions["operating_point"].trigger()
    dlg = win.operating_point_dialog
    qtbot.waitUntil(lambda: dlg.point is not None, timeout=10000)
    assert dlg.folder.currentData() == fid and dlg.version.currentData() == versions["anomaly"]
    win.actions["operating_point"].trigger()   # opened again on the same folder: this one is brought forward
    assert win.operating_point_dialog is dlg and dlg.opened_for == fid
    assert "5 reviewed images: 3 normal, 2 anomalous" in dlg.info.text()
    dlg.cost_escape.setValue(10.0)
    dlg.cost_false_call.setValue(1.0)
    best = dlg.point.best   # between 0.35 (normal) and 0.5 (anomalous): no escape, one false call (0.65)
    assert (best.escapes, best.false_calls) == (0, 1) and best.threshold == pytest.approx(0.425)
    assert dlg.table.item(1, 0).text() == "0.425" and dlg.table.item(1, 3).text() == "1"

    # drag the line low: the 0.35 normal image becomes a false call too
    x = round(dlg.histogram.x_of(0.3))
    qtbot.mousePress(dlg.histogram, Qt.MouseButton.LeftButton, pos=QPoint(x, 60))
    assert dlg.threshold.value() == pytest.approx(0.3, abs=0.02)
    assert [dlg.table.item(0, c).text() for c in (1, 2)] == ["0", "2"]
    dlg.to_optimum.click()
    assert dlg.threshold.value() == pytest.approx(0.425)

    dlg.use.click()
    qtbot.waitUntil(lambda: "saved" in dlg.info.text(), timeout=10000)
    flags = load_project_settings(db).flags
    assert flags.folder_threshold(fid, versions["anomaly"]).threshold == pytest.approx(0.425)
    assert flags.anomaly_threshold is None and flags.min_targets == 50  # the project-wide threshold is left as it was

    def queue_follows() -> None:
        items = win.gallery_model.items()
        assert items and all(it.flagged == (it.anomaly_score > 0.425) for it in items)
        assert sum(it.flagged for it in items) == 4
    qtbot.waitUntil(queue_follows, timeout=10000)
    qtbot.waitUntil(lambda: win.ctx.review.anomaly_threshold(fid) == pytest.approx(0.425), timeout=10000)
    dlg.close()
    win.close()


def test_without_reviewed_anomalous_images_the_dialog_says_so_and_saves_nothing(service, db, folder, artifacts,
                                                                                  qtbot):
    from app.services.project_settings import load_project_settings

    win = build_window(service, qtbot)
    fid = win.open_folder(str(folder))
    seed_predictions(db, fid, artifacts)
    _review(db, fid, {0: "normal"})
    win.actions["operating_point"].trigger()
    dlg = win.operating_point_dialog
    qtbot.waitUntil(lambda: "No operating point" in dlg.info.text(), timeout=10000)
    assert "reviewed as anomalous" in dlg.info.text() and not dlg.use.isEnabled()
    # No threshold is on offer: the box says "—", not a 0.0000 that reads like the threshold in force.
    assert dlg.threshold.text() == "—" and not dlg.threshold.isEnabled() and not dlg.to_optimum.isEnabled()
    dlg.save()
    assert load_project_settings(db).flags.folder_thresholds == ()
    dlg.close()
    win.close()


def test_saving_the_settings_dialog_keeps_the_folders_thresholds(qtbot):
    from app.gui.settings_dialog import SettingsDialog
    from app.gui.settings_store import StationSettings
    from app.services.flags import FlagSettings, FolderThreshold
    from app.services.project_settings import ProjectSettings

    own = (FolderThreshold(1, 2, 0.7, 10.0, 1.0),)
    dlg = SettingsDialog(StationSettings(), ProjectSettings(flags=FlagSettings(folder_thresholds=own)))
    qtbot.addWidget(dlg)
    dlg.use_card.setChecked(False)
    dlg.threshold.setValue(0.3)
    flags = dlg.result_project().flags
    assert flags.anomaly_threshold == 0.3 and flags.folder_thresholds == own


def test_ok_with_nothing_edited_keeps_the_stored_thresholds_to_the_last_digit(qtbot):
    """A session-47 audit: the boxes show 3 and 2 decimals, and OK with nothing edited wrote a stored 0.4843 / 0.655
    back as 0.484 / 0.66 for every station and re-flagged the project; an edit still takes the box's value."""
    from app.gui.settings_dialog import SettingsDialog
    from app.gui.settings_store import StationSettings
    from app.services.flags import FlagSettings
    from app.services.project_settings import ProjectSettings

    for threshold, confidence in ((0.4843, 0.655), (0.5625, 0.125)):  # halves: Qt rounds up, round() to even
        stored = ProjectSettings(flags=FlagSettings(anomaly_threshold=threshold, min_confidence=confidence))
        dlg = SettingsDialog(StationSettings(), stored)
        qtbot.addWidget(dlg)
        assert dlg.result_project() == stored
    dlg.threshold.setValue(0.52)
    dlg.min_conf.setValue(0.7)
    flags = dlg.result_project().flags
    assert (flags.anomaly_threshold, flags.min_confidence) == (0.52, 0.7)


def test_the_dialog_opens_on_the_version_whose_answers_count_in_the_folder(service, db, folder, artifacts, qtbot):
    """Seen under Xvfb: a folder of bottles routed to anomaly-bottle opened the dialog on the active tile model's
    scores, and saving anomaly-bottle's threshold said "it applies once this model version is the active one"
    while it re-flagged the folder."""
    from database.dto import ImageQuery, PredictionIn

    win = build_window(service, qtbot)
    fid = win.open_folder(str(folder))
    versions = seed_predictions(db, fid, artifacts)
    routed = db.model_versions.register("anomaly", "anomaly-bottle", "/nonexistent", card={"threshold": 5.0})
    ims = db.images.query(ImageQuery(folder_id=fid, sort="rel_path"))
    db.predictions.upsert_many([PredictionIn(im.id, routed.id, anomaly_score=2.0 + 2 * k) for k, im in enumerate(ims)])
    db.predictions.set_current("anomaly", {im.id: routed.id for im in ims})   # as a rule naming it does
    _review(db, fid, {0: "normal", 1: "normal", 3: "normal", 2: "anomalous", 4: "anomalous"})
    win.refresh_models()
    wait_shown(win, qtbot)

    win.actions["operating_point"].trigger()
    dlg = win.operating_point_dialog
    qtbot.waitUntil(lambda: dlg.point is not None and dlg.version.currentData() == routed.id, timeout=10000)
    assert dlg.version.currentText() == "anomaly-bottle" and dlg._scores.normal == (2.0, 4.0, 8.0)
    dlg.use.click()
    qtbot.waitUntil(lambda: "saved" in dlg.info.text(), timeout=10000)
    assert "re-checked)." in dlg.info.text() and "active one" not in dlg.info.text()
    # A version picked by hand stays picked; its threshold applies once its answers count here.
    active = dlg.version.findData(versions["anomaly"])
    dlg.version.setCurrentIndex(active)
    dlg.version.activated.emit(active)
    qtbot.waitUntil(lambda: dlg.point is not None and dlg._scores.model_version_id == versions["anomaly"],
                    timeout=10000)
    dlg.folder.currentIndexChanged.emit(dlg.folder.currentIndex())
    qtbot.wait(300)
    assert dlg.version.currentData() == versions["anomaly"]
    dlg.use.click()
    qtbot.waitUntil(lambda: "saved" in dlg.info.text() and "test-anom" in dlg.info.text(), timeout=10000)
    assert "applies once this model version's answers count here" in dlg.info.text()
    dlg.close()
    win.close()


def test_the_axis_tells_its_ends_apart_when_scores_saturate() -> None:
    """The tile model's scores of bottles lie between 0.99997 and 0.999999: the axis read "1" at both ends."""
    from app.gui.score_histogram import _digits

    lo, hi = 0.9999680519104004, 0.9999986886978149
    assert f"{lo:.{_digits(lo, hi)}g}" != f"{hi:.{_digits(lo, hi)}g}"
    assert _digits(0.2, 0.95) == 3 and _digits(5.0, 5.0) == 3


def test_the_optimum_is_saved_exactly_whatever_the_scale_of_the_scores(db, qtbot, tmp_path) -> None:
    """Found by a session-44 probe: scores of 0.00011-0.00018; the optimum (0.000145, no error) went into the
    4-decimal box as 0.0001, and Use saved that: every image flagged. The chosen threshold is kept exactly."""
    from app.gui.operating_point_dialog import OperatingPointDialog
    from app.services.indexing import index_folder
    from app.services.project_settings import load_project_settings
    from database.dto import ImageQuery, PredictionIn
    from database.states import AnomalyVerdict, ReviewState
    from tests.worker.helpers import good_images
    version = db.model_versions.register("anomaly", "anom-v1", str(tmp_path / "none"),
                                         card={"threshold": {"image": 0.001}}, activate=True)
    good_images(tmp_path / "a", 6, seed=0)
    fid = index_folder(db, tmp_path / "a").folder_id
    images = db.images.query(ImageQuery(folder_id=fid, sort="rel_path"))
    scores = [0.00011, 0.00012, 0.00013, 0.00016, 0.00017, 0.00018]
    db.predictions.upsert_many([PredictionIn(im.id, version.id, anomaly_score=s, counts=True)
                                for im, s in zip(images, scores)])
    for im, verdict in zip(images, ["normal"] * 3 + ["anomalous"] * 3):
        db.labels.append(im.id, LabelChange(ReviewState.CORRECTED, anomaly_verdict=AnomalyVerdict(verdict)), "ann")
    dlg = OperatingPointDialog(db, fid, author="ann")
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: dlg.point is not None, timeout=10000)
    dlg.to_optimum.click()
    assert dlg.table.item(0, 1).text() == "0" and dlg.table.item(0, 2).text() == "0"
    dlg.save()
    qtbot.waitUntil(lambda: "saved" in dlg.info.text(), timeout=10000)
    [saved] = load_project_settings(db).flags.folder_thresholds
    assert 0.00013 < saved.threshold < 0.00016
    assert [im.flagged for im in db.images.query(ImageQuery(folder_id=fid, sort="rel_path"))] == [False] * 3 + [True] * 3


def test_tab_leaves_the_thresholds_table(service, db, folder, qtbot) -> None:
    """Before (a session-49 audit): Tab moved from cell to cell and never left the table, so a keyboard user could not
    reach the buttons under it."""
    from app.gui.operating_point_dialog import OperatingPointDialog
    dlg = OperatingPointDialog(db, service.open_folder(folder).id, author="ann")
    qtbot.addWidget(dlg)
    assert tab_leaves(qtbot, dlg.table)
