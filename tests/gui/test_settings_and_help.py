"""Settings (saved, reloaded, applied), themes, the Help shortcut list, export on a full disk."""
from __future__ import annotations

import errno

from PySide6.QtWidgets import QApplication

from app.gui.help_dialog import ShortcutsDialog
from app.gui.settings_dialog import SettingsDialog, apply_settings
from app.gui.settings_store import StationSettings, load_settings, save_settings
from app.gui.shortcuts import SHORTCUTS
from tests.gui.conftest import wait_shown


def test_settings_round_trip_and_bad_values(tmp_path):
    s = StationSettings(reviewer="Ann", anomaly_threshold=0.7, min_confidence=0.4, auto_advance=False,
                        device="cpu", database_url="sqlite:///x.sqlite", theme="dark")
    save_settings(s)
    assert load_settings() == s
    save_settings(StationSettings(device="tpu", theme="purple"))
    loaded = load_settings()
    assert loaded.device == "auto" and loaded.theme == "light" and loaded.anomaly_threshold is None


def test_settings_dialog_applies_theme_reviewer_and_threshold(window, qtbot):
    dlg = SettingsDialog(window.ctx.settings, window)
    qtbot.addWidget(dlg)
    dlg.reviewer.setText("Bea")
    dlg.use_card.setChecked(False)
    dlg.threshold.setValue(0.25)
    dlg.theme.setCurrentText("dark")
    apply_settings(window, dlg.result_settings())
    assert QApplication.instance().property("station_theme") == "dark"
    assert window.ctx.review.settings.author == "Bea" and window.ctx.review.anomaly_threshold() == 0.25
    assert load_settings().reviewer == "Bea"
    window.review.set_class("x")
    assert window.ctx.review.history(window.review.image_id)[-1].author == "Bea"
    window.apply_theme("light")


def test_help_lists_every_shortcut_and_menus_carry_them(window):
    dlg = ShortcutsDialog(window)
    texts = {dlg.table.item(r, 2).text() for r in range(dlg.table.rowCount())}
    for s in SHORTCUTS:
        if not s.id.startswith("class_"):
            assert s.text in texts
        assert window.actions[s.id].shortcut().toString() != ""
    menu_actions = {a for m in window.menus.values() for a in m.actions()}
    assert window.actions["accept"] in menu_actions and window.actions["export"] in menu_actions


def test_full_disk_during_export_gives_a_message_and_keeps_labels(service, db, folder, qtbot, tmp_path, monkeypatch):
    import app.services.export as export
    from app.gui.export_dialog import ExportDialog
    from app.services.review_types import LabelState, QueueFilter
    info = service.open_folder(folder)
    image_id = service.queue(QueueFilter(folder_id=info.id))[0].image_id
    service.save_label(image_id, LabelState(class_name="ok", review_state="corrected"))

    def disk_full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(export.shutil, "copyfile", disk_full)
    dlg = ExportDialog(db, info.id, info.name, service.counts(info.id), ("ok",))
    qtbot.addWidget(dlg)
    dlg.out.setText(str(tmp_path / "out"))
    with qtbot.waitSignal(dlg.finished_export, timeout=20000) as sig:
        dlg.start()
    assert sig.args[0] is None and "Export failed" in dlg.status.text()
    assert not (tmp_path / "out").exists()
    assert service.detail(image_id).label.class_name == "ok"


def test_window_survives_a_theme_switch_and_keeps_working(window, qtbot):
    window.apply_theme("dark")
    window.queue.step(1)
    wait_shown(window, qtbot)
    window.apply_theme("light")
    assert window.viewer.image_size() == (64, 64)


def test_help_table_shows_each_action_whole(window, qtbot):
    """Issue 16 item 8: the Action column wraps its text instead of cutting it."""
    from PySide6.QtCore import QRect, Qt
    dlg = ShortcutsDialog(window)
    qtbot.addWidget(dlg)
    dlg.show()
    qtbot.waitExposed(dlg)
    table = dlg.table
    width = table.columnWidth(2)
    assert table.columnViewportPosition(2) + width <= table.viewport().width()  # no horizontal scrolling
    fm = table.fontMetrics()
    for r in range(table.rowCount()):
        text = table.item(r, 2).text()
        need = fm.boundingRect(QRect(0, 0, width - 8, 10_000), int(Qt.TextFlag.TextWordWrap), text)
        assert need.height() <= table.rowHeight(r), text
