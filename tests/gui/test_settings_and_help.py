"""Settings (saved, reloaded, applied), themes, the Help shortcut list, export on a full disk."""
from __future__ import annotations

import errno

from PySide6.QtWidgets import QApplication

from app.gui.help_dialog import ShortcutsDialog
from app.gui.settings_dialog import SettingsDialog, apply_settings
from app.gui.settings_store import StationSettings, load_settings, save_settings
from app.gui.shortcuts import SHORTCUTS
from app.services.reflag import Reflagged
from tests.gui.conftest import tab_leaves, wait_shown


def test_settings_round_trip_and_bad_values(tmp_path):
    s = StationSettings(reviewer="Ann", auto_advance=False, device="cpu", database_url="sqlite:///x.sqlite",
                        theme="dark")
    save_settings(s)
    assert load_settings() == s
    save_settings(StationSettings(device="tpu", theme="purple"))
    loaded = load_settings()
    assert loaded.device == "auto" and loaded.theme == "light"


def test_two_windows_keep_each_others_settings_and_a_file_that_cannot_be_written_is_said(_private_home, monkeypatch):
    """Found by a session-44 probe: window B's Settings wrote its whole copy back over what window A had saved (the
    reviewer, theme and path map), and a settings file that could not be written lost the reviewer name at the next
    start without a word. A save writes what it changes; a file it cannot write is an error the window says."""
    import pytest

    from app.gui.settings_store import SettingsStoreError
    start = load_settings()
    save_settings(StationSettings(reviewer="alice", theme="dark", path_map="/a=/b"), start)   # window A
    save_settings(StationSettings(auto_advance=False), start)                                  # window B, opened before
    loaded = load_settings()
    assert (loaded.reviewer, loaded.theme, loaded.path_map, loaded.auto_advance) == ("alice", "dark", "/a=/b", False)
    (_private_home / "settings.ini").unlink()
    (_private_home / "settings.ini").mkdir()
    with pytest.raises(SettingsStoreError, match="cannot be written"):
        save_settings(StationSettings(reviewer="bob"))


def test_a_hand_edited_value_with_a_comma_reads_as_written(_private_home):
    """Found by a session-44 probe: ``reviewer=Smith, John`` written by hand read as "['Smith', 'John']", the author
    then stored with every label; a value of another kind (@ByteArray) read as "b'bob'"."""
    (_private_home / "settings.ini").write_text("[General]\nreviewer=Smith, John\ntheme=@ByteArray(dark)\n")
    loaded = load_settings()
    assert loaded.reviewer == "Smith, John" and loaded.theme == "light"


def test_a_hand_edited_value_that_cannot_be_one_falls_back_and_is_said(_private_home):
    """A session-47 audit: a quote left open read every later line into the reviewer, stamped on label revisions as
    their author; auto_advance=maybe read False (default True); device=gpu and theme=blue went to their defaults; a
    section left open hid the lines after it. Each falls back to its default, said."""
    (_private_home / "settings.ini").write_text('[General]\nreviewer="Smith, John\ndevice=gpu\ntheme=blue\n'
                                                 'auto_advance=maybe\n')
    notes: list[str] = []
    loaded = load_settings(notes)
    assert loaded.reviewer == "" and "\n" not in loaded.reviewer
    assert any("reviewer not used" in n and "quote left open" in n for n in notes), notes
    (_private_home / "settings.ini").write_text("[General]\ndevice=gpu\ntheme=blue\nauto_advance=maybe\n[oops\n")
    notes = []
    loaded = load_settings(notes)
    assert (loaded.device, loaded.theme, loaded.auto_advance) == ("auto", "light", True)
    assert any("device 'gpu' not understood" in n for n in notes) and any("auto_advance not used" in n for n in notes)
    assert any("could not be read" in n for n in notes)
    (_private_home / "settings.ini").write_text("[General]\nreviewer=Smith\tJohn\n")  # a tab is no line break
    assert load_settings().reviewer == "Smith\tJohn"


def test_an_oversized_settings_file_is_set_aside_not_read(_private_home, monkeypatch):
    """A session-47 audit: settings.ini was read whole at every start whatever its size (311 MB for a 42 MB file).
    One past the bound is kept beside, named, and the settings start from the defaults."""
    from app.gui import settings_store
    from app.gui.settings_store import load_settings
    monkeypatch.setattr(settings_store, "MAX_SETTINGS_BYTES", 64)
    path = _private_home / "settings.ini"
    body = "[General]\nreviewer=Smith\n" + "#" * 100 + "\n"
    path.write_text(body)
    notes: list[str] = []
    loaded = load_settings(notes)
    assert loaded.reviewer == "" and len(notes) == 1
    assert f"held {len(body):,} bytes, more than a settings file this station writes (at most 64)" in notes[0]
    kept = list(_private_home.glob("settings.ini.oversized-*"))
    assert len(kept) == 1 and kept[0].read_text() == body and kept[0].name in notes[0]
    path.write_text("[General]\nreviewer=Smith\n")   # within the bound: read as before
    assert load_settings().reviewer == "Smith"


def test_a_settings_file_saved_as_utf16_is_set_aside_and_said(_private_home):
    """A session-51 audit: a settings.ini saved by Notepad as "Unicode" (UTF-16) was dropped without a word: reviewer,
    theme and device fell back to their defaults, labels were authored by the login name, and the layout saved at
    close wrote keys mangled with %00 into it. It is kept beside, named, and the settings start from the defaults,
    said as an oversized file is."""
    path = _private_home / "settings.ini"
    body = "[General]\r\nreviewer=Alice\r\ntheme=dark\r\n".encode("utf-16")
    path.write_bytes(body)
    notes: list[str] = []
    loaded = load_settings(notes)
    assert loaded.reviewer == "" and len(notes) == 1 and "was not UTF-8 text" in notes[0] and "UTF-16" in notes[0]
    kept = list(_private_home.glob("settings.ini.not-utf8-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == body and kept[0].name in notes[0]
    save_settings(StationSettings(reviewer="Bob"))   # the next save writes a file of its own
    assert load_settings().reviewer == "Bob" and b"\0" not in path.read_bytes()
    path.write_bytes("[General]\nreviewer=Alice\n".encode("utf-16-le"))   # no BOM: its NUL bytes tell
    notes = []
    assert load_settings(notes).reviewer == "" and len(notes) == 1 and "not UTF-8" in notes[0]


def test_a_data_folder_that_cannot_be_made_ends_the_start_in_one_line(tmp_path, monkeypatch, capsys):
    """Found by a session-44 probe: INSPECTION_STATION_HOME naming a file ended ``python main.py`` in a traceback
    (FileExistsError); the command-line tools said it in one line."""
    from app.cli import main
    (tmp_path / "home").write_text("a file")
    monkeypatch.setenv("INSPECTION_STATION_HOME", str(tmp_path / "home"))
    assert main(["gui", "--db", f"sqlite:///{tmp_path / 's.sqlite'}"]) == 2
    err = capsys.readouterr().err
    assert "cannot be made" in err and "Traceback" not in err


def test_settings_dialog_applies_theme_reviewer_and_threshold(window, qtbot):
    dlg = SettingsDialog(window.ctx.settings, window.project.current, window)
    qtbot.addWidget(dlg)
    dlg.reviewer.setText("Bea")
    dlg.show()
    # "model's own": no number stands beside it (each version's card has its own); unticked, the box comes back.
    assert dlg.use_card.isChecked() and not dlg.threshold.isVisible() and dlg.own_note.isVisible()
    dlg.use_card.setChecked(False)
    assert dlg.threshold.isVisible() and not dlg.own_note.isVisible()
    dlg.threshold.setValue(0.25)
    dlg.theme.setCurrentText("dark")
    apply_settings(window, dlg.result_settings(), dlg.result_project())
    assert QApplication.instance().property("station_theme") == "dark"
    qtbot.waitUntil(lambda: window.ctx.review.anomaly_threshold() == 0.25)  # saved on a helper thread
    assert window.ctx.review.settings.author == "Bea"
    assert load_settings().reviewer == "Bea"
    window.review.set_class("x")  # applied once the image's re-read (after the settings change) came
    qtbot.waitUntil(lambda: bool(window.ctx.review.history(window.review.image_id)))
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


def test_help_lists_the_gallery_keys_that_docs_shortcuts_lists(window):
    """A session-52 audit: Help → Keyboard shortcuts (F1) left out the gallery's own keys (the arrows, Home / End,
    Shift / Ctrl to choose several images) that docs/shortcuts.md lists, while the page says the dialog holds "the
    same list". Every row of the page is now a row of the dialog."""
    import re
    from pathlib import Path

    from app.gui.shortcuts import as_markdown
    dlg = ShortcutsDialog(window)
    shown = {(dlg.table.item(r, 1).text(), dlg.table.item(r, 2).text()) for r in range(dlg.table.rowCount())}
    page = Path(__file__).resolve().parents[2] / "docs" / "shortcuts.md"
    assert page.read_text(encoding="utf-8") == as_markdown()
    rows = re.findall(r"^\| (.+?) \| (.+?) \|$", as_markdown(), flags=re.M)
    listed = {(keys.replace("`", ""), text) for keys, text in rows if keys not in ("Keys", "---")}
    assert listed <= shown, sorted(listed - shown)
    assert any("Home" in keys and "End" in keys for keys, _ in shown)
    assert any("Shift" in keys and "several images" in text for keys, text in shown)


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


def test_project_thresholds_from_the_dialog_reach_the_database_and_the_queue(service, db, folder, artifacts, qtbot):
    """Item 4: the dialog writes the project's thresholds to the database (not this user's
    QSettings), stored predictions are re-flagged without a model, and the queue shows it."""
    from app.services.project_settings import load_project_settings
    from tests.gui.conftest import build_window
    from tests.gui.fixtures import CLASSES, seed_predictions

    win = build_window(service, qtbot)
    fid = win.open_folder(str(folder))
    seed_predictions(db, fid, artifacts)
    win.refresh_models()
    assert not any(it.flagged for it in win.gallery_model.items())

    def apply(threshold: float, reflagged: Reflagged) -> None:
        dlg = SettingsDialog(win.ctx.settings, win.project.current, win)
        qtbot.addWidget(dlg)
        dlg.use_card.setChecked(False)
        dlg.threshold.setValue(threshold)
        dlg.min_conf.setValue(0.0)
        dlg.min_targets.setValue(50)
        dlg.good_classes.setText(", ".join(CLASSES))
        with qtbot.waitSignal(win.project.reflagged, timeout=10000) as sig:
            apply_settings(win, dlg.result_settings(), dlg.result_project())
        assert sig.args[0] == reflagged   # what changed flag, not every image read (a session-49 audit)
        assert f"Project thresholds saved: {reflagged.summary()}." in win.status.currentMessage()

    apply(0.0, Reflagged(6, 6, 0))  # every seeded heatmap peaks above 0: every image is anomalous
    flags = load_project_settings(db).flags
    assert flags.anomaly_threshold == 0.0 and flags.min_targets == 50 and flags.good_classes == CLASSES
    qtbot.waitUntil(lambda: all(it.flagged for it in win.gallery_model.items()))
    assert win.ctx.review.anomaly_threshold() == 0.0
    # the open image's verdict follows too (its detail is re-read on a helper thread)
    qtbot.waitUntil(lambda: win.review.detail.prediction.anomalous, timeout=5000)
    apply(100.0, Reflagged(6, 0, 6))  # nothing comes near: no image is flagged any more
    qtbot.waitUntil(lambda: not any(it.flagged for it in win.gallery_model.items()))
    qtbot.waitUntil(lambda: not win.review.detail.prediction.anomalous, timeout=5000)
    assert "anomaly" not in win.review.detail.prediction.flags
    from app.gui.settings_store import legacy_thresholds
    assert legacy_thresholds() == {"anomaly_threshold": None, "min_confidence": 0.6}  # nothing per user
    win.close()


def test_thresholds_kept_per_user_by_an_older_station_move_into_the_project(tmp_path, qtbot):
    """One-time import at start-up: the QSettings thresholds the old dialog wrote become the
    project's, so the user loses nothing by updating."""
    from PySide6.QtCore import QSettings

    from app.commands.gui import build_window as build_station
    from app.paths import data_dir
    from app.services.project_settings import load_project_settings
    from app.services.station import open_station

    data_dir().mkdir(parents=True, exist_ok=True)
    q = QSettings(str(data_dir() / "settings.ini"), QSettings.Format.IniFormat)
    q.setValue("anomaly_threshold", 0.7)
    q.setValue("min_confidence", 0.4)
    q.sync()
    url = f"sqlite:///{(tmp_path / 'station.sqlite').as_posix()}"
    db = open_station(url)
    win = build_station(db, load_settings(), url, interactive=False, jobs=False)
    qtbot.addWidget(win)
    flags = load_project_settings(db).flags
    assert (flags.anomaly_threshold, flags.min_confidence) == (0.7, 0.4)
    assert win.project.current.flags == flags and win.ctx.review.anomaly_threshold() == 0.7
    win.close()
    db.close()


def _refused_then_accepted(dlg, field, bad: str, good: str, monkeypatch) -> tuple[list[str], bool]:
    """Type ``bad`` into ``field`` and press OK (the dialog must stay open: checked here), then ``good``;
    returns the warnings shown and whether the dialog accepted the second time."""
    from PySide6.QtWidgets import QMessageBox
    warned: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warned.append(a[2]))
    field.setText(bad)
    dlg._accept()
    assert dlg.result() != dlg.DialogCode.Accepted
    field.setText(good)
    dlg._accept()
    return warned, dlg.result() == dlg.DialogCode.Accepted


def test_the_settings_dialog_never_shows_nor_stores_a_database_password(qtbot, monkeypatch):
    """Issue 17: a saved URL's password is masked in the field and kept as saved when not edited;
    a new URL holding a password is refused (it would be stored in plain text), nothing saved."""

    saved = "postgresql+psycopg://inspector:s3cr@t@db.example/station"
    dlg = SettingsDialog(StationSettings(reviewer="ann", database_url=saved))
    qtbot.addWidget(dlg)
    assert "s3cr" not in dlg.db_url.text() and "t@db" not in dlg.db_url.text()
    assert dlg.result_settings().database_url == saved  # untouched: the real URL is kept
    warned, accepted = _refused_then_accepted(dlg, dlg.db_url, "postgresql+psycopg://inspector:other@db.example/station",
                                              "postgresql+psycopg://inspector@db.example/station", monkeypatch)
    assert warned and "pgpass" in warned[0]
    assert accepted
    assert dlg.result_settings().database_url == "postgresql+psycopg://inspector@db.example/station"


def test_the_path_map_is_checked_saved_and_taken_at_the_next_start(qtbot, monkeypatch):
    """ADR 0065: this computer's path map, in Settings ▸ You; one that cannot be used keeps the dialog open,
    a saved one is taken for this process and its worker at the next start unless the environment sets one."""

    from app.services.station import use_path_map
    from database.path_map import ENV

    dlg = SettingsDialog(StationSettings(reviewer="ann"))
    qtbot.addWidget(dlg)
    warned, accepted = _refused_then_accepted(dlg, dlg.path_map, "/mnt/parts", "/mnt/parts=/Volumes/parts",
                                              monkeypatch)
    assert warned and "STORED=LOCAL" in warned[0]
    assert accepted
    save_settings(dlg.result_settings())
    assert load_settings().path_map == "/mnt/parts=/Volumes/parts"

    monkeypatch.delenv(ENV, raising=False)
    assert use_path_map(load_settings().path_map) is None
    import os
    assert os.environ[ENV] == "/mnt/parts=/Volumes/parts"
    monkeypatch.setenv(ENV, "/a=/b")          # the environment wins
    assert use_path_map("/mnt/parts=/x") is None and os.environ[ENV] == "/a=/b"
    monkeypatch.delenv(ENV)
    assert "STORED=LOCAL" in (use_path_map("broken") or "") and ENV not in os.environ


def test_a_new_database_url_is_tried_at_once_and_an_unreachable_one_is_said(window, qtbot, tmp_path, monkeypatch):
    """Seen under Xvfb (session 42): a URL with a wrong port was saved without a word, and the next start showed no
    window. The Settings dialog's new URL is now tried on a helper thread (nothing written) and the answer said."""
    from PySide6.QtWidgets import QDialog

    from app.gui import settings_dialog

    warned: list[str] = []
    monkeypatch.setattr(window, "_warn", warned.append)
    said: list[str] = []
    monkeypatch.setattr(window, "_say", said.append)
    from database.engine import open_database
    open_database(f"sqlite:///{tmp_path}/shared.sqlite").close()
    urls = iter(["postgresql+psycopg://nobody@127.0.0.1:1/x", f"sqlite:///{tmp_path}/elsewhere.sqlite",
                 f"sqlite:///{tmp_path}/shared.sqlite"])

    def fake_exec(dlg) -> QDialog.DialogCode:
        dlg.db_url.setText(next(urls))
        return QDialog.DialogCode.Accepted
    monkeypatch.setattr(settings_dialog.SettingsDialog, "exec", fake_exec)
    window.actions["settings"].trigger()
    qtbot.waitUntil(lambda: bool(warned), timeout=15000)
    assert "cannot be opened now: cannot reach the database 'x' on 127.0.0.1:1" in warned[0]
    assert "at the next start the station will say so" in warned[0]
    assert load_settings().database_url == "postgresql+psycopg://nobody@127.0.0.1:1/x"   # saved, as the user asked
    # a file that does not exist yet (a typo in a shared file's name?): the next start creates a new, empty project
    # there, which read "answers" (a session-47 audit)
    window.actions["settings"].trigger()
    qtbot.waitUntil(lambda: len(warned) == 2, timeout=15000)
    assert f"there is no database at {tmp_path / 'elsewhere.sqlite'} yet" in warned[1]
    assert not (tmp_path / "elsewhere.sqlite").exists()
    window.actions["settings"].trigger()   # an existing project answers
    qtbot.waitUntil(lambda: any("answers" in s for s in said), timeout=15000)
    assert len(warned) == 2


def test_database_problem_reads_without_writing(tmp_path):
    from app.services.station import database_problem
    from database.engine import open_database

    assert "not a database" in (database_problem(_not_a_database(tmp_path)) or "")
    assert database_problem(f"sqlite:///{tmp_path}/new.sqlite") is None and not (tmp_path / "new.sqlite").exists()
    good = tmp_path / "good.sqlite"
    open_database(f"sqlite:///{good}").close()
    assert database_problem(f"sqlite:///{good}") is None
    assert "is not a database URL" in (database_problem("not a url at all") or "")


def _not_a_database(tmp_path) -> str:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database at all" * 10)
    return f"sqlite:///{bad}"


def test_ok_in_settings_changes_only_what_was_changed_never_another_stations_save(tmp_path, qtbot):
    """Found by a session-44 probe (two stations, one SQLite file): station B's Settings dialog, opened on a copy up
    to 20 s old, wrote its whole copy back on OK: a routing rule and a folder's own anomaly threshold (Operating
    point) saved at station A meanwhile were undone without a word. OK now changes what B changed, over what is
    stored."""
    from app.gui.project_settings_controller import ProjectSettingsController
    from app.services.operating_point import save_operating_point
    from app.services.project_settings import load_project_settings, save_routing
    from app.services.routing import Routing, RoutingRule
    from database import open_database
    url = f"sqlite:///{(tmp_path / 'shared.sqlite').as_posix()}"
    a, b = open_database(url), open_database(url)
    (tmp_path / "parts").mkdir()
    folder_id = a.folders.add(str(tmp_path / "parts")).id
    version_id = a.model_versions.register("anomaly", "anom-v1", str(tmp_path / "x"), activate=True).id
    controller = ProjectSettingsController(b, load_project_settings(b), author=lambda: "bob")
    dlg = SettingsDialog(StationSettings(), controller.current)  # B opens Settings
    qtbot.addWidget(dlg)
    save_routing(a, Routing((RoutingRule("ir/*", ("anomaly",)),)), by="alice")  # A saves meanwhile
    save_operating_point(a, folder_id, version_id, 0.42, by="alice")
    controller.reload()  # B's poll brings A's copy while the dialog is open
    qtbot.waitUntil(lambda: bool(controller.current.routing.rules), timeout=5000)
    dlg.min_conf.setValue(0.7)  # B changes one threshold and presses OK
    controller.save(dlg.result_project(), dlg.read_project)
    qtbot.waitUntil(lambda: not controller.calls.busy, timeout=10000)
    stored = load_project_settings(a)
    assert stored.flags.min_confidence == 0.7
    assert [r.pattern for r in stored.routing.rules] == ["ir/*"]
    assert [t.threshold for t in stored.flags.folder_thresholds] == [0.42]
    controller.close()
    a.close()
    b.close()


def test_a_database_url_that_keeps_nothing_or_depends_on_the_start_folder_is_said():
    from app.services.station import new_database_note
    assert "in-memory" in (new_database_note("sqlite://") or "")
    assert "in-memory" in (new_database_note("sqlite:///:memory:") or "")   # read "answers" (the review)
    assert "relative" in (new_database_note("sqlite:///station.sqlite") or "")
    assert new_database_note("postgresql+psycopg://u@h/db") is None


def test_dialogs_opened_and_closed_do_not_pile_up(window, qtbot, monkeypatch):
    """A session-48 probe left a review window open for a shift: every Settings, Routing, Classes and Operating point
    dialog opened stayed in memory (+6.6 MB a round), and each Routing one kept a thread."""
    import threading

    from PySide6.QtCore import QCoreApplication, QEvent
    from PySide6.QtWidgets import QDialog

    from app.gui.classes_dialog import ClassesDialog
    from app.gui.operating_point_dialog import OperatingPointDialog
    from app.gui.settings_dialog import SettingsDialog
    monkeypatch.setattr(QDialog, "exec", lambda self: (self.done(0), 0)[1])
    threads = threading.active_count()
    for _ in range(3):
        for action in ("settings", "project_classes", "operating_point", "model_routing", "export", "import_labels",
                       "help_shortcuts"):
            if window.actions[action].isEnabled():
                window.actions[action].trigger()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        qtbot.wait(50)
    assert len(window.findChildren(SettingsDialog)) == 0
    # Export, Import and Help too (a session-49 audit: each stayed a child of the window once closed)
    assert [type(d).__name__ for d in window.findChildren(QDialog)
            if type(d).__name__ in ("ExportDialog", "ImportDialog", "ShortcutsDialog")] == []
    assert len(window.findChildren(ClassesDialog)) <= 1 and len(window.findChildren(OperatingPointDialog)) <= 1
    qtbot.waitUntil(lambda: threading.active_count() <= threads + 3, timeout=5000)


def test_tab_leaves_the_help_table(window, qtbot):
    """Before (a session-49 audit): Tab moved from cell to cell and never left the table, so a keyboard user could not
    reach Close at all."""
    dlg = ShortcutsDialog(window)
    qtbot.addWidget(dlg)
    dlg.open()   # modal, as Help runs it: the window's own Tab (next target) does not act behind it
    assert tab_leaves(qtbot, dlg.table)


def test_the_waiting_labels_line_words_its_count(qtbot):
    """A session-49 audit: "⚠ 1 label(s) not saved yet" where the count is known."""
    from app.gui.status_bar import StationStatusBar
    bar = StationStatusBar()
    qtbot.addWidget(bar)
    bar.set_pending(1)
    assert "1 label not saved yet" in bar.pending.text()
    bar.set_pending(3)
    assert "3 labels not saved yet" in bar.pending.text()
