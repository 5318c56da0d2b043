"""The export dialog on the export service: formats, split, progress, files match labels, bad folders."""
from __future__ import annotations

import csv
import os
import sys

import cv2
import numpy as np
import pytest

from app.gui.export_dialog import ExportDialog
from app.services.review_types import LabelState, QueueFilter


@pytest.fixture
def labelled(service, folder):
    info = service.open_folder(folder)
    items = service.queue(QueueFilter(folder_id=info.id))
    mask = np.zeros((64, 64), bool)
    mask[10:20, 30:40] = True
    service.save_label(items[0].image_id, LabelState(class_name="crazing", mask=mask, review_state="corrected"))
    service.save_label(items[1].image_id, LabelState(class_name="patches", anomaly_verdict="normal",
                                                     review_state="accepted"))
    service.save_label(items[2].image_id, LabelState(class_name="patches", review_state="rejected"))
    return info, items, mask


def _dialog(service, db, info, qtbot) -> ExportDialog:
    dlg = ExportDialog(db, info.id, info.name, service.counts(info.id), ("crazing", "patches"))
    qtbot.addWidget(dlg)
    for name, cb in dlg.formats.items():
        cb.setChecked(name in ("imagefolder", "masks", "csv"))
    return dlg


def test_export_writes_exactly_the_reviewed_labels(service, db, labelled, qtbot, tmp_path):
    info, items, mask = labelled
    dlg = _dialog(service, db, info, qtbot)
    out = tmp_path / "dataset"
    dlg.out.setText(str(out))
    with qtbot.waitSignal(dlg.finished_export, timeout=20000) as sig:
        assert dlg.start()
    result, error = sig.args
    assert error == "" and result.exported == 2
    assert dlg.bar.value() == dlg.bar.maximum() and "2 reviewed images" in dlg.status.text()
    # the status line is the summary's headline (it said "2 image(s) exported" of formats holding fewer: the review
    # of a session-48 fix)
    assert dlg.status.text() == f"Done: {result.summary_lines()[0]}"
    assert sorted(p.name for p in (out / "imagefolder").iterdir()) == ["crazing", "patches"]
    assert (out / "imagefolder" / "crazing" / items[0].name).read_bytes() == open(items[0].path, "rb").read()
    assert (out / "imagefolder" / "patches" / items[1].name).exists()
    assert not any(items[2].name in str(p) for p in out.rglob("*"))  # rejected stays out
    stem = items[0].name.rsplit(".", 1)[0]
    exported_mask = cv2.imread(str(out / "masks" / "masks" / f"{stem}.png"), cv2.IMREAD_UNCHANGED) > 0
    assert np.array_equal(exported_mask, mask)
    rows = list(csv.DictReader(open(next(out.rglob("*.csv")), newline="")))
    assert {r["class"] for r in rows} == {"crazing", "patches"} and len(rows) == 2


def test_export_with_split_and_progress(service, db, labelled, qtbot, tmp_path):
    info, *_ = labelled
    dlg = _dialog(service, db, info, qtbot)
    dlg.use_split.setChecked(True)
    dlg.split.setText("0.5,0.5")
    dlg.out.setText(str(tmp_path / "split"))
    with qtbot.waitSignal(dlg.finished_export, timeout=20000) as sig:
        dlg.start()
    assert sig.args[1] == "" and sum(sig.args[0].split_counts.values()) == 2


@pytest.mark.skipif(sys.platform == "win32" or (hasattr(os, "geteuid") and os.geteuid() == 0),
                    reason="needs a non-root POSIX user for a read-only folder")
def test_read_only_destination_gives_a_message_and_keeps_labels(service, db, labelled, qtbot, tmp_path):
    info, items, mask = labelled
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        dlg = _dialog(service, db, info, qtbot)
        dlg.out.setText(str(ro / "dataset"))
        with qtbot.waitSignal(dlg.finished_export, timeout=20000) as sig:
            dlg.start()
    finally:
        ro.chmod(0o700)
    assert sig.args[0] is None and "Export failed" in dlg.status.text()
    assert np.array_equal(service.detail(items[0].image_id).label.mask, mask)


def test_unwritable_destination_gives_a_message_and_keeps_labels(service, db, labelled, qtbot, tmp_path):
    info, items, mask = labelled
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    dlg = _dialog(service, db, info, qtbot)
    dlg.out.setText(str(blocker / "dataset"))  # a path below a file cannot be created, even as root
    with qtbot.waitSignal(dlg.finished_export, timeout=20000) as sig:
        dlg.start()
    assert sig.args[0] is None and "Nothing was written" in dlg.status.text()
    assert service.detail(items[0].image_id).label.class_name == "crazing"


def test_bad_split_and_no_format_are_refused_before_starting(service, db, labelled, qtbot, tmp_path):
    info, *_ = labelled
    dlg = _dialog(service, db, info, qtbot)
    dlg.out.setText(str(tmp_path / "x"))
    dlg.use_split.setChecked(True)
    dlg.split.setText("0.9,0.9")
    assert not dlg.start() and "sum" in dlg.status.text()
    dlg.use_split.setChecked(False)
    for cb in dlg.formats.values():
        cb.setChecked(False)
    assert not dlg.start() and "format" in dlg.status.text()


def test_replacing_a_folder_that_is_no_export_is_refused_and_said_once(service, db, labelled, qtbot, tmp_path):
    """Seen under Xvfb (session 42): "replace an earlier export" aimed at a folder of images was refused, but the line
    read "… nothing was changed. Nothing was written; no label was changed." It is said once now."""
    info, items, mask = labelled
    other = tmp_path / "photos"
    other.mkdir()
    (other / "keep.png").write_bytes(b"not touched")
    dlg = _dialog(service, db, info, qtbot)
    dlg.out.setText(str(other))
    dlg.overwrite.setChecked(True)
    with qtbot.waitSignal(dlg.finished_export, timeout=20000) as sig:
        dlg.start()
    text = dlg.status.text()
    assert sig.args[0] is None and "holds no export.json" in text and text.count("othing was") == 1, text
    assert text.endswith("No label was changed.") and (other / "keep.png").read_bytes() == b"not touched"


def test_export_and_import_wait_for_the_labels_still_being_saved(window, service, qtbot, tmp_path, monkeypatch):
    """Found by a session-44 probe (saves slowed as on a slow server): an export started right after a class key wrote
    the image's old label, and an import's preview missed the inspector's newer label, which the import then refused
    as "changed by root at another station". Both now wait until this window's labels are in the database, and say
    so."""
    from PySide6.QtCore import Qt

    from app.gui.export_dialog import open_export_dialog
    from app.gui.import_dialog import open_import_dialog
    from tests.gui.conftest import slow_saves, wait_saved
    from tests.gui.test_main_window import press
    slow_saves(service, monkeypatch, 1.5)
    press(qtbot, window, Qt.Key.Key_X)
    assert window.review.unsaved_count() == 1
    export = open_export_dialog(window)
    qtbot.addWidget(export)
    qtbot.waitUntil(lambda: not export.reading, timeout=5000)
    export.out.setText(str(tmp_path / "ds"))
    assert export.start() is False and "still being saved" in export.status.text()
    importer = open_import_dialog(window)
    qtbot.addWidget(importer)
    qtbot.waitUntil(lambda: not importer.reading, timeout=5000)
    importer.source.setText(str(tmp_path))
    assert importer.start_preview() is False and "still being saved" in importer.status.text()
    wait_saved(window, qtbot)
    assert window.review.unsaved_count() == 0
    assert export.start() is not False  # saved now: the export runs
    qtbot.waitUntil(lambda: not export._running, timeout=10000)
    assert "still being saved" not in export.status.text()


def test_a_second_export_can_be_cancelled_and_says_so_once(service, db, labelled, qtbot, tmp_path, monkeypatch):
    """Found by a session-44 probe: while a second export ran the button still read "Close" (pressing it cancelled),
    and a cancel read "Export failed: export cancelled; nothing was written. Nothing was written; No label was
    changed.", the progress bar left part way."""

    info, *_ = labelled
    dlg = _dialog(service, db, info, qtbot)
    dlg.out.setText(str(tmp_path / "one"))
    with qtbot.waitSignal(dlg.finished_export, timeout=20000):
        assert dlg.start()
    assert dlg.cancel_button.text() == "Close"
    held = _hold_exports(monkeypatch)
    dlg.out.setText(str(tmp_path / "two"))
    assert dlg.start()
    assert dlg.cancel_button.text() == "Cancel"
    with qtbot.waitSignal(dlg.finished_export, timeout=20000):
        dlg.cancel_button.click()
        held.set()
    assert dlg.status.text() == "Export cancelled: nothing was written, and no label was changed."
    assert not (tmp_path / "two").exists()


def test_closing_the_dialog_during_an_export_never_holds_the_window(service, db, labelled, qtbot, tmp_path,
                                                                     monkeypatch):
    """Found by a session-45 probe: Esc (or the title bar's X) while an export ran waited on the GUI thread until it
    stopped, up to 30 s, the station frozen (the export cannot be cancelled while it reads the labels). The dialog
    says it is cancelling and closes when the export answers; nothing is written."""
    import time

    info, *_ = labelled
    dlg = _dialog(service, db, info, qtbot)
    held = _hold_exports(monkeypatch)
    dlg.out.setText(str(tmp_path / "out"))
    dlg.show()
    assert dlg.start()
    started = time.monotonic()
    dlg.reject()  # Esc
    assert time.monotonic() - started < 1.0 and dlg.isVisible() and "Cancelling" in dlg.status.text()
    with qtbot.waitSignal(dlg.finished_export, timeout=20000):
        held.set()
    qtbot.waitUntil(lambda: not dlg.isVisible(), timeout=5000)
    assert not (tmp_path / "out").exists()


def _hold_exports(monkeypatch):
    """Each exported image waits for the returned event (set it to let the export go on)."""
    import threading

    from app.services import export as export_module
    held, real = threading.Event(), export_module.load

    def load_held(path):
        held.wait(10)
        return real(path)
    monkeypatch.setattr(export_module, "load", load_held)
    return held

