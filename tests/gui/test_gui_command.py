"""``python main.py [FOLDER]`` / ``gui --db URL``: opens a window; a bad database is one line, exit 2."""
from __future__ import annotations

import argparse

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication

from app.commands import gui
from app.gui.main_window import MainWindow
from app.paths import default_database_url


def test_a_database_that_cannot_open_is_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database at all" * 10)
    code = gui.run(argparse.Namespace(folder=None, db=f"sqlite:///{bad}"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1 and "not a database" in err


def test_missing_folder_is_refused(tmp_path, capsys):
    code = gui.run(argparse.Namespace(folder=str(tmp_path / "nope"), db=f"sqlite:///{tmp_path}/s.sqlite"))
    assert code == 2 and "not a folder" in capsys.readouterr().err


def test_db_url_precedence():
    default = default_database_url()
    assert gui.resolve_db_url("sqlite:///explicit.sqlite", "sqlite:///saved.sqlite") == (
        "sqlite:///explicit.sqlite", "--db")
    assert gui.resolve_db_url(None, "sqlite:///saved.sqlite") == ("sqlite:///saved.sqlite", "Settings")
    assert gui.resolve_db_url(None, "") == (default, "default")
    assert gui.resolve_db_url(default, "sqlite:///saved.sqlite") == (default, "--db")


def test_a_db_spelled_like_the_default_file_is_opened_not_the_saved_url(folder, qtbot, monkeypatch):
    """A session-51 audit: with an unreachable URL saved in Settings, ``main.py --db sqlite:///<home>/station.sqlite
    FOLDER`` opened the saved URL and showed "Database cannot be opened": the command line fills an absent --db with
    the default file, so a --db spelled exactly like it was taken for none. The given --db is opened."""
    from app.cli import main
    from app.gui.settings_store import StationSettings, save_settings

    save_settings(StationSettings(database_url="postgresql+psycopg://nobody@127.0.0.1:1/x"))
    monkeypatch.setattr(gui, "ask_unreachable", lambda *a, **k: (_ for _ in ()).throw(AssertionError("asked")))
    default = default_database_url()
    seen = {}

    def close_soon():
        wins = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        if not wins:
            QTimer.singleShot(100, close_soon)
            return
        seen["url"] = wins[0].ctx.db_url
        wins[0].close()
    QTimer.singleShot(200, close_soon)
    assert main(["--db", default, str(folder)]) == 0 and seen == {"url": default}


def test_the_environments_database_outranks_the_one_saved_in_settings(monkeypatch):
    """Found by a session-44 probe: the README's ``export INSPECTION_STATION_DB=…; python main.py`` opened the URL saved
    in Settings in the window, while the command-line tools and workers used the variable's."""
    monkeypatch.setenv("INSPECTION_STATION_DB", "sqlite:///shared.sqlite")
    assert gui.resolve_db_url(None, "sqlite:///saved.sqlite") == ("sqlite:///shared.sqlite", "INSPECTION_STATION_DB")
    assert gui.resolve_db_url("sqlite:///explicit.sqlite", "sqlite:///saved.sqlite") == (
        "sqlite:///explicit.sqlite", "--db")


def test_run_opens_the_window_on_a_folder(folder, tmp_path, qtbot):
    seen = {}

    def close_soon():
        wins = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        if not wins or wins[0].gallery_model.rowCount() == 0:  # indexing runs in the background
            QTimer.singleShot(100, close_soon)
            return
        win = wins[0]
        seen["rows"] = win.gallery_model.rowCount()
        seen["title"] = win.windowTitle()
        win.close()
    QTimer.singleShot(200, close_soon)
    code = gui.run(argparse.Namespace(folder=str(folder), db=f"sqlite:///{tmp_path}/station.sqlite"))
    assert code == 0 and seen == {"rows": 6, "title": "Inspection Review Station"}


def test_the_window_says_it_upgraded_an_older_database(folder, tmp_path, qtbot, capsys):
    """A session-52 audit: starting the station on a 0014 database migrated it to head and said so only in an INFO
    log line on stderr; on a shared database every station still on the older version was refused at its next start
    and the person who upgraded it was never told. The window's status line says it, and the console."""
    from database.migrate import head_revision
    from tests.database.old_rows import old_labelled_image

    url = f"sqlite:///{tmp_path}/old.sqlite"
    old_labelled_image(url, "0014_routed_promotion", "a.png", "scratch", "accepted")
    seen = {}

    def close_soon():
        wins = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        if not wins:
            QTimer.singleShot(50, close_soon)
            return
        seen["status"] = wins[0].status.currentMessage()
        wins[0].close()
    QTimer.singleShot(0, close_soon)
    assert gui.run(argparse.Namespace(folder=str(folder), db=url)) == 0
    said = (f"The database was upgraded from schema 0014_routed_promotion to {head_revision()}; stations running an "
            "older version must be updated to open it.")
    assert said in seen["status"] and f"note: {said}" in capsys.readouterr().err


def test_the_window_asks_before_upgrading_a_database_an_older_station_has_open(folder, tmp_path, qtbot, monkeypatch):
    """A session-52 audit: the window upgraded a 0014 database while a station of that version had it open, and that
    station went on writing without the newer bookkeeping; nobody was asked. Now the window names who uses it and
    asks (Upgrade anyway / Quit): Quit leaves the database as it was."""
    from PySide6.QtWidgets import QMessageBox
    from sqlalchemy import create_engine, text

    from database.migrate import head_revision
    from tests.database.old_rows import old_labelled_image

    url = f"sqlite:///{tmp_path}/old.sqlite"
    old_labelled_image(url, "0014_routed_promotion", "a.png", "scratch", "accepted")
    older_station = create_engine(url)
    with older_station.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode = WAL")
        conn.execute(text("SELECT count(*) FROM images")).scalar()
    asked: list[tuple[str, list[str]]] = []
    choice = ["Quit"]
    monkeypatch.setattr(QMessageBox, "exec", lambda box: asked.append((box.text(), [b.text() for b in box.buttons()])))
    monkeypatch.setattr(QMessageBox, "clickedButton", lambda box: next(b for b in box.buttons()
                                                                       if b.text() == choice[0]))

    def revision() -> str:
        with older_station.connect() as conn:
            return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar())

    def close_when_shown():   # (the window the second start opens; the first opens none)
        wins = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        if not wins:
            QTimer.singleShot(50, close_when_shown)
            return
        wins[0].close()
    QTimer.singleShot(0, close_when_shown)
    try:
        assert gui.run(argparse.Namespace(folder=str(folder), db=url)) == 2
        assert len(asked) == 1 and asked[0][1] == ["Upgrade anyway", "Quit"]
        assert "another program that has the file open" in asked[0][0] and "0014_routed_promotion" in asked[0][0]
        assert revision() == "0014_routed_promotion"
        choice[0] = "Upgrade anyway"
        assert gui.run(argparse.Namespace(folder=str(folder), db=url)) == 0
        assert len(asked) == 2 and revision() == head_revision()
    finally:
        older_station.dispose()


def test_sigterm_closes_the_window_through_its_close_handler(folder, tmp_path, qtbot, monkeypatch):
    """``kill PID`` must run the close handler (which saves labels and ends the worker the station
    started); before, the process died in Qt's loop and left its pre-label worker running."""
    import os
    import signal

    closed = []
    real_close = MainWindow.closeEvent

    def spy(self, event):
        closed.append(True)
        real_close(self, event)
    monkeypatch.setattr(MainWindow, "closeEvent", spy)
    before = signal.getsignal(signal.SIGTERM)

    def terminate_soon():
        wins = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        if not wins:
            QTimer.singleShot(100, terminate_soon)
            return
        os.kill(os.getpid(), signal.SIGTERM)
    QTimer.singleShot(200, terminate_soon)
    code = gui.run(argparse.Namespace(folder=str(folder), db=f"sqlite:///{tmp_path}/station.sqlite"))
    assert code == 0 and closed == [True]
    assert signal.getsignal(signal.SIGTERM) == before  # the station's handler is gone with its window


def test_a_saved_database_that_cannot_be_opened_offers_this_computers_own(folder, tmp_path, qtbot, monkeypatch):
    """Seen under Xvfb (session 42): a wrong URL saved in Settings made every start print one line and show no
    window. Now the station asks (retry, this computer's database for this session, quit) and says which it opened."""
    from app.gui.settings_store import StationSettings, load_settings, save_settings

    saved = "postgresql+psycopg://nobody@127.0.0.1:1/x"
    save_settings(StationSettings(database_url=saved))
    local = f"sqlite:///{tmp_path}/local.sqlite"
    monkeypatch.setattr(gui, "default_database_url", lambda: local)
    asked: list[str] = []
    answers = iter(["retry", "local"])
    monkeypatch.setattr(gui, "ask_unreachable", lambda error, url, source: asked.append(str(error))
                        or next(answers))
    seen = {}

    def close_soon():
        wins = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        if not wins or wins[0].gallery_model.rowCount() == 0:
            QTimer.singleShot(100, close_soon)
            return
        seen["url"] = wins[0].ctx.db_url
        seen["title"] = wins[0].windowTitle()
        seen["saved"] = wins[0].ctx.settings.database_url   # what Settings shows and an OK there keeps
        wins[0].close()
    QTimer.singleShot(200, close_soon)
    code = gui.run(argparse.Namespace(folder=str(folder), db=None))
    assert code == 0 and len(asked) == 2 and "cannot reach the database 'x' on 127.0.0.1:1" in asked[0]
    assert seen["url"] == local and (tmp_path / "local.sqlite").exists()
    assert seen["title"].endswith("this computer's database (the saved one cannot be opened)")
    assert load_settings().database_url == saved == seen["saved"]   # this session only: the saved setting stays
    monkeypatch.setattr(gui, "ask_unreachable", lambda error, url, source: "quit")
    assert gui.run(argparse.Namespace(folder=str(folder), db=None)) == 2
    # --db on the command line stays one line and exit 2, no question
    monkeypatch.setattr(gui, "ask_unreachable",
                        lambda error, url, source: (_ for _ in ()).throw(AssertionError("asked")))
    assert gui.run(argparse.Namespace(folder=str(folder), db=saved)) == 2


def test_this_computers_own_database_failing_is_said_in_a_box_too(tmp_path, monkeypatch):
    """Started from a desktop icon there is no stderr: a damaged or locked default file is said in a box (retry or
    quit; no other database to offer), not only as one line."""
    bad = tmp_path / "station.sqlite"
    bad.write_bytes(b"this is not a database at all" * 10)
    monkeypatch.setattr(gui, "default_database_url", lambda: f"sqlite:///{bad}")
    asked: list[tuple[str, bool]] = []
    monkeypatch.setattr(gui, "ask_unreachable", lambda error, url, source: asked.append(
        (str(error), gui.offers_local(error, source))) or "quit")
    assert gui.run(argparse.Namespace(folder=None, db=None)) == 2
    assert len(asked) == 1 and "not a database" in asked[0][0] and asked[0][1] is False


def _boxes(monkeypatch) -> list[tuple[str, list[str]]]:
    """Each start-up box's text and buttons, answered with Quit."""
    from PySide6.QtWidgets import QMessageBox
    shown: list[tuple[str, list[str]]] = []

    def exec_(box):
        shown.append((box.text(), [b.text() for b in box.buttons()]))
        box._quit = next(b for b in box.buttons() if b.text() == "Quit")
        return 0
    monkeypatch.setattr(QMessageBox, "exec", exec_)
    monkeypatch.setattr(QMessageBox, "clickedButton", lambda box: box._quit)
    return shown


def test_the_start_up_box_names_the_variable_to_change_and_offers_retry_only_where_it_helps(qtbot, monkeypatch):
    """A session-51 audit: ``INSPECTION_STATION_DB`` naming an unreachable server or holding "station.sqlite",
    ``INSPECTION_PATH_MAP=foo`` and this computer's file that cannot be opened all gave "This computer's database (…) cannot be
    opened … Retry (another program may hold it)": the variable was never named and Retry could not help. The box
    names where the URL came from and the variable to change, and offers Retry only for a server not answering or a
    lock."""
    shown = _boxes(monkeypatch)
    start = argparse.Namespace(folder=None, db=None)
    monkeypatch.setenv("INSPECTION_STATION_DB", "station.sqlite")
    assert gui.run(start) == 2
    text, buttons = shown.pop()
    assert text.startswith("The database named by the environment variable INSPECTION_STATION_DB (station.sqlite)")
    assert "change or unset INSPECTION_STATION_DB" in text and buttons == ["Quit"]
    monkeypatch.setenv("INSPECTION_STATION_DB", "postgresql+psycopg://nobody@127.0.0.1:1/x")
    assert gui.run(start) == 2
    text, buttons = shown.pop()
    assert "variable INSPECTION_STATION_DB" in text and "Retry (the server may be starting" in text
    assert buttons == ["Retry", "Quit"]
    monkeypatch.delenv("INSPECTION_STATION_DB")
    monkeypatch.setenv("INSPECTION_PATH_MAP", "foo")
    assert gui.run(start) == 2
    text, buttons = shown.pop()
    assert text.startswith("The environment variable INSPECTION_PATH_MAP cannot be used, so no database was opened")
    assert "change or unset INSPECTION_PATH_MAP" in text and buttons == ["Quit"]
    monkeypatch.delenv("INSPECTION_PATH_MAP")
    from app.paths import data_dir
    (data_dir() / "station.sqlite").mkdir(parents=True)   # this computer's file cannot be opened, even by root
    assert gui.run(start) == 2
    text, buttons = shown.pop()
    assert text.startswith("This computer's database") and "is a folder" in text
    assert "change INSPECTION_STATION_HOME" in text
    assert buttons == ["Quit"]


def test_the_window_opens_as_it_was_left(folder, tmp_path, qtbot):
    """Size and docks come back at the next start (docs/settings.md keeps them per user). Before (a session-49 audit):
    they were saved at every close and never read back, so a window made lower with a taller Folders dock and Layers
    closed opened again at 1500×920 with every dock at its default size."""
    url = f"sqlite:///{tmp_path}/station.sqlite"
    seen: list[tuple] = []

    def when_listed(act):
        wins = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        if not wins or wins[0].gallery_model.rowCount() == 0:
            QTimer.singleShot(100, lambda: when_listed(act))
            return
        act(wins[0])

    def leave(win):
        win.resize(win.width(), 600)
        win.resizeDocks([win.folders_dock], [200], Qt.Orientation.Vertical)
        win.layer_dock.close()
        QTimer.singleShot(300, lambda: (seen.append((win.height(), win.folders_dock.height())), win.close()))

    def look(win):
        QApplication.processEvents()
        seen.append((win.height(), win.folders_dock.height(), win.layer_dock.isVisible(), win.label_dock.isVisible()))
        win.close()
    QTimer.singleShot(200, lambda: when_listed(leave))
    assert gui.run(argparse.Namespace(folder=str(folder), db=url)) == 0
    QTimer.singleShot(200, lambda: when_listed(look))
    assert gui.run(argparse.Namespace(folder=str(folder), db=url)) == 0
    left, back = seen
    assert left[0] == 600 and left[1] > 150   # the default Folders dock is 90 high
    assert back == (*left, False, True)


def test_a_database_locked_at_start_holds_no_window_and_the_labels_kept_from_before_wait_and_land(
        db_url, folder, artifacts, qtbot):
    """A session-52 audit: with the SQLite file still locked by another program at the next start and three labels
    left in recovery files, the GUI thread stood still 40 s before any window appeared (the busy timeout for each
    file's replay and for the settings' copy), then nothing said so, the images showed unreviewed and nothing tried
    the files again that session. Now the start waits briefly, the labels wait with the window's own ("not saved
    yet — retrying", said at start) and its retry saves them, under their author, once the database accepts writes."""
    import sqlite3
    import time

    from app.gui.settings_store import StationSettings
    from app.services.review import ReviewService, ReviewSettings, recovery_dir
    from app.services.review_types import LabelState, QueueFilter
    from database.engine import open_database
    db = open_database(db_url)   # the station's own busy timeout (10 s)
    alice = ReviewService(db, ReviewSettings(reviewer="alice"), artifacts=artifacts)
    info = alice.open_folder(folder)
    ids = [it.image_id for it in alice.queue(QueueFilter(folder_id=info.id))][:3]
    alice.write_recovery({i: LabelState(class_name="scratches", review_state="corrected") for i in ids},
                         bases={i: 0 for i in ids})
    holder = sqlite3.connect(db.sa_url.database, timeout=0.1, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")   # another program holds the write lock
    try:
        began = time.monotonic()
        win = gui.build_window(db, StationSettings(reviewer="bob"), db_url, interactive=False, jobs=False)
        took = time.monotonic() - began
        qtbot.addWidget(win)
        win.show()
        assert took < 5, took
        assert sorted(win.review.pending()) == sorted(ids)
        assert "3 labels not saved yet" in win.status.pending.text()
        assert "3 labels kept from an earlier session wait: the database is busy" in win.statusBar().currentMessage()
        assert len(list(recovery_dir().glob("*.json"))) == 3   # kept until saved
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    qtbot.waitUntil(lambda: not win.review.pending(), timeout=15000)   # the window's retry
    assert not list(recovery_dir().glob("*.*"))
    for image_id in ids:
        label = alice.detail(image_id).label
        assert (label.class_name, label.review_state, label.author) == ("scratches", "corrected", "alice")
    assert win.status.pending.text() == ""
    win.close()
    db.close()


def test_a_read_only_database_is_said_in_the_window_from_the_start(db_url, qtbot):
    """A session-52 audit: a station started on a read-only SQLite file (chmod 444) said so only on stderr ("project
    settings: the database file … is read-only"); the window looked as always, and the inspector learnt it from each
    label refused. Now its title and status bar say it at start. (Opened read-only by URL here: as root, a file's
    mode does not stop a write.)"""
    from sqlalchemy.engine import make_url

    from app.gui.settings_store import StationSettings
    from database.engine import open_database
    writable = open_database(db_url)   # a migrated file
    win = gui.build_window(writable, StationSettings(reviewer="bob"), db_url, interactive=False, jobs=False)
    qtbot.addWidget(win)
    assert "read-only" not in win.windowTitle() and "read-only" not in win.statusBar().currentMessage()
    win.close()
    writable.close()
    read_only_url = f"sqlite:///file:{make_url(db_url).database}?mode=ro&uri=true"
    db = open_database(read_only_url)
    win = gui.build_window(db, StationSettings(reviewer="bob"), read_only_url, interactive=False, jobs=False)
    qtbot.addWidget(win)
    assert win.windowTitle().endswith("— read-only database: nothing is saved")
    said = win.statusBar().currentMessage()
    assert said.startswith("The database file ") and "is read-only; the station needs to write to it." in said, said
    assert "Labels made now wait unsaved" in said
    win.close()
    db.close()


def test_the_start_says_how_many_recovery_files_belong_to_another_database(db_url, folder, artifacts, tmp_path,
                                                                           qtbot):
    """A session-52 audit: a recovery file of another database (one since moved, or opened through a link since
    repointed) was passed over at every start without a word, staying in recovery/ for good. Now the start says how
    many there are and where they are kept."""
    from app.gui.settings_store import StationSettings
    from app.services.review import ReviewService, ReviewSettings, recovery_dir
    from app.services.review_types import LabelState, QueueFilter
    from database.engine import open_database
    other = open_database(f"sqlite:///{tmp_path / 'line2.sqlite'}")
    alice = ReviewService(other, ReviewSettings(reviewer="alice"), artifacts=artifacts)
    ids = [it.image_id for it in alice.queue(QueueFilter(folder_id=alice.open_folder(folder).id))][:2]
    alice.write_recovery({i: LabelState(class_name="scratches", review_state="corrected") for i in ids},
                         bases={i: 0 for i in ids})
    other.close()
    db = open_database(db_url)
    win = gui.build_window(db, StationSettings(reviewer="bob"), db_url, interactive=False, jobs=False)
    qtbot.addWidget(win)
    assert (f"2 recovery files belong to another database: kept in {recovery_dir()} until the station opens the "
            "database they were written on.") in win.statusBar().currentMessage()
    assert len(list(recovery_dir().glob("*.json"))) == 2
    win.close()
    db.close()


def _label_kept_and_a_backup(tmp_path, folder, artifacts):
    """Alice's label kept in a recovery file for ``line3/station.sqlite``, then the file copied to
    ``restored/monday.sqlite`` (last night's backup, brought back to look at): (the database, the backup, the
    recovery folder, the image's id, the (st_dev, st_ino) the recovery file recorded)."""
    import json
    import shutil

    from app.services.review import recovery_dir
    from tests.gui.test_review_service import _label_kept_for
    for name in ("line3", "restored"):
        (tmp_path / name).mkdir()
    line3, restored, rec = (tmp_path / "line3" / "station.sqlite", tmp_path / "restored" / "monday.sqlite",
                            recovery_dir())
    image_id = _label_kept_for(line3, folder, artifacts, rec)
    recorded = json.loads(next(rec.glob("*.json")).read_text())["db_inode"]
    shutil.copy(line3, restored)
    return line3, restored, rec, image_id, recorded


def test_a_backup_given_the_moved_databases_inode_keeps_copies_of_the_labels_it_takes_and_says_so(
        folder, artifacts, tmp_path, qtbot, monkeypatch):
    """A session-52 audit (the session-53 review of c37eea3b): once a SQLite database had left its filesystem (archived
    to another one, or deleted), a backup restored afterwards often got its freed inode, was taken for the database
    moved (the same id, the same (st_dev, st_ino), nothing at the recorded path), and its start took and removed the
    labels kept for the database without a word, while docs/database.md said a copy leaves them. Now they are saved on
    the backup, a copy of each recovery file stays in recovery/replayed, and the start names both files."""
    import os
    import shutil
    from pathlib import Path

    from app.gui.settings_store import StationSettings
    from tests.gui.test_review_service import _service_on
    line3, restored, rec, image_id, recorded = _label_kept_and_a_backup(tmp_path, folder, artifacts)
    shm = Path("/dev/shm")
    archive = shm / f"a53-archive-{os.getpid()}.sqlite"
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != tmp_path.stat().st_dev:
        shutil.move(line3, archive)   # the database archived to another filesystem
    else:
        line3.unlink()                # (no other filesystem here: the database deleted leaves its path empty too)
    try:
        db, service = _service_on(restored, artifacts)
        # the backup given the freed inode, as ext4 often does (its own stat, which notices a replaced file, stays)
        monkeypatch.setattr(type(db), "file_inode",
                            property(lambda d: tuple(recorded) if d is db else d._file_id))
        win = gui.build_window(db, StationSettings(reviewer="bob"), f"sqlite:///{restored}", interactive=False,
                               jobs=False)
        qtbot.addWidget(win)
        assert [(r.class_name, r.author) for r in service.history(image_id)] == [("scratches", "alice")]
        assert list(rec.glob("*.json")) == []
        kept = sorted(p.suffix for p in (rec / "replayed").iterdir())
        assert kept == [".json", ".npz"]
        assert (f"1 label kept for {line3.resolve()} was saved on {restored.resolve()}, taken to be that database "
                f"moved; copies kept in {rec / 'replayed'}.") in win.statusBar().currentMessage()
        win.close()
        db.close()
    finally:
        archive.unlink(missing_ok=True)


def test_a_label_taken_for_the_moved_database_that_waits_at_a_locked_start_is_said_at_start(
        folder, artifacts, tmp_path, qtbot, monkeypatch):
    """A session-52 audit (the session-53 review of a5ddf12b): a recovery file taken to be the moved database's (the
    same id and (st_dev, st_ino), nothing at its recorded path) while another program held the file locked at start
    was copied to recovery/replayed and waited; the window's retry then saved it on the backup, and nothing, at start
    or after, said it was saved on a database taken to be the moved one. Now the start says it waits to be saved on
    the file opened, taken to be that database moved, and where the copies are."""
    import sqlite3

    from app.gui.settings_store import StationSettings
    from tests.gui.test_review_service import _service_on
    line3, restored, rec, image_id, recorded = _label_kept_and_a_backup(tmp_path, folder, artifacts)
    line3.unlink()
    db, service = _service_on(restored, artifacts)
    monkeypatch.setattr(type(db), "file_inode", property(lambda d: tuple(recorded) if d is db else d._file_id))
    blocker = sqlite3.connect(str(restored), timeout=0.1)
    blocker.execute("BEGIN EXCLUSIVE")   # another program holds the lock as the station starts
    win = gui.build_window(db, StationSettings(reviewer="bob"), f"sqlite:///{restored}", interactive=False, jobs=False)
    qtbot.addWidget(win)
    assert (f"1 label kept for {line3.resolve()} waits to be saved on {restored.resolve()}, taken to be that database "
            f"moved; copies kept in {rec / 'replayed'}.") in win.statusBar().currentMessage()
    assert sorted(p.suffix for p in (rec / "replayed").iterdir()) == [".json", ".npz"]
    blocker.rollback()
    blocker.close()
    qtbot.waitUntil(lambda: not win.review.pending(), timeout=15000)
    assert [(r.class_name, r.author) for r in service.history(image_id)] == [("scratches", "alice")]
    win.close()
    db.close()

@pytest.mark.parametrize("bases", ["known", "not known"])
def test_two_labels_of_one_image_kept_from_before_a_locked_start_are_both_replayed_once_it_answers(
        db_url, folder, artifacts, qtbot, bases):
    """A session-52 audit: with the database locked at start and two recovery files for one image (two inspectors'),
    the window took one (an image waits for one label at a time), said the other "stays in its file until the next
    start", and it did: once the database accepted writes, that label waited for another restart (a session-53 fix).
    Now both wait, and are replayed one after the other in the start's order (by file name), as a start with the
    database free replays them: the second, made on the revision the first is saved over, is set aside as someone
    else's newer label; files that do not say their revision (an older station's) are both saved, the later the
    newest revision and the earlier in the history."""
    import json
    import sqlite3

    from app.gui.settings_store import StationSettings
    from app.services.review import CONFLICTS, ReviewService, ReviewSettings, recovery_dir
    from app.services.review_types import LabelState, QueueFilter
    from database.engine import open_database
    db = open_database(db_url)
    alice = ReviewService(db, ReviewSettings(reviewer="alice"), artifacts=artifacts)
    image_id = alice.queue(QueueFilter(folder_id=alice.open_folder(folder).id))[0].image_id
    based = {image_id: 0} if bases == "known" else None
    alice.write_recovery({image_id: LabelState(class_name="scratches", review_state="corrected")}, bases=based)
    carol = ReviewService(db, ReviewSettings(reviewer="carol"), artifacts=artifacts)
    carol.write_recovery({image_id: LabelState(class_name="patches", review_state="corrected")}, bases=based)
    first, second = (json.loads(p.read_text())["author"] for p in sorted(recovery_dir().glob("*.json")))
    holder = sqlite3.connect(db.sa_url.database, timeout=0.1, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")   # another program holds the write lock
    try:
        win = gui.build_window(db, StationSettings(reviewer="bob"), db_url, interactive=False, jobs=False)
        qtbot.addWidget(win)
        said = win.statusBar().currentMessage()
        assert "2 labels kept from an earlier session wait: the database is busy" in said
        assert "until the next start" not in said
        assert "2 labels not saved yet" in win.status.pending.text()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    boxes: list[str] = []
    win.review.save_failed.connect(boxes.append)
    qtbot.waitUntil(lambda: not win.review.pending(), timeout=20000)
    assert not list(recovery_dir().glob("*.json"))   # nothing left for the next start
    saved = [r.author for r in alice.history(image_id)]   # oldest first
    aside = [json.loads(p.read_text())["author"] for p in (recovery_dir() / CONFLICTS).glob("*.json")]
    if bases == "known":
        assert saved == [first] and aside == [second]
        assert any("kept from an earlier session was not saved: someone labelled the image since" in b
                   for b in boxes), boxes
    else:
        assert saved == [first, second] and aside == []
    assert win.status.pending.text() == ""
    win.close()
    db.close()
