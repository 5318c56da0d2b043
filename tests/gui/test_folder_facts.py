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
