"""An upgrade of an older database while others use it, and a station that a newer one upgraded the database under.

A session-52 audit: ``db upgrade`` (and the window) migrated a 0014 database to head while a station of the older
version had it open; that station went on writing without the newer version's bookkeeping (no watermark raised, no
``flag_decisions`` row, no model version on its revision), and nothing said so anywhere.
"""
from __future__ import annotations

import re
import shlex
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from app.cli import main
from app.commands import upgrade_anyway
from app.paths import default_database_url
from database import migrate as mig
from database import open_database
from database.engine import PendingUpgrade
from database.errors import SchemaChangedError, UpgradeDeclinedError
from tests.database.old_rows import old_labelled_image

OLD = "0014_routed_promotion"


def _revision(url: str) -> str:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar())
    finally:
        engine.dispose()


def _worker_row(url: str, beat_s_ago: float, host: str = "lab-pc", pid: int = 4242) -> None:
    """A worker of the older station, as its registration writes it (the table is as old as the schema)."""
    engine = create_engine(url)
    beat = datetime.now(timezone.utc) - timedelta(seconds=beat_s_ago)
    try:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM workers"))
            conn.execute(text("INSERT INTO workers (id, host, pid, started_at, heartbeat_at) "
                              "VALUES (:id, :host, :pid, :t, :t)"),
                         {"id": f"{host}:{pid}:ab", "host": host, "pid": pid, "t": beat})
    finally:
        engine.dispose()


def _older_station(url: str) -> Engine:
    """An older station's engine on ``url``: a pooled connection that has read (in WAL mode on SQLite, as every
    station's connection sets it), kept open by its pool until the engine is disposed."""
    older_station = create_engine(url)
    with older_station.connect() as conn:
        if url.startswith("sqlite"):
            conn.exec_driver_sql("PRAGMA journal_mode = WAL")
        conn.execute(text("SELECT count(*) FROM images")).scalar()
    return older_station


def test_db_upgrade_refuses_while_an_older_station_has_the_database_open(url: str,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The older station (a pooled connection that has read, and its worker's fresh heartbeat) is named, the database
    left at its revision; --force upgrades; once it is gone (connection closed, heartbeat stale) no --force is needed."""
    old_labelled_image(url, OLD, "a.png", "scratch", "accepted")
    _worker_row(url, beat_s_ago=2)
    older_station = _older_station(url)
    try:
        assert main(["db", "upgrade", "--db", url]) == 2
        err = capsys.readouterr().err
        assert f"stays at schema revision {OLD}" in err and "the worker process 4242 on lab-pc" in err
        assert ("another program that has the file open" in err) if url.startswith("sqlite") else \
            ("1 connection of " in err)
        assert "pass --force to upgrade anyway" in err
        assert _revision(url) == OLD
        assert main(["db", "upgrade", "--db", url, "--force"]) == 0
        assert f"upgraded from schema {OLD} to {mig.head_revision()}" in capsys.readouterr().out
    finally:
        older_station.dispose()


@pytest.mark.postgres
def test_db_upgrade_sees_an_older_station_logged_in_as_another_role(pg_url: str, pg_role,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A session-52 audit: on PostgreSQL a role that is not a superuser sees another role's sessions with their
    details hidden (no backend type, no address), and the look for other users kept only rows typed "client backend":
    an older station logging in as another role was not seen, and `db upgrade` upgraded under it without asking."""
    station, older = pg_role(), pg_role()
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:   # the upgrading station's role owns the database, as a line's admin set it up
            conn.execute(text(f"ALTER DATABASE {make_url(station).database} OWNER TO {make_url(station).username}"))
    finally:
        admin.dispose()
    old_labelled_image(station, OLD, "a.png", "scratch", "accepted")
    owner = create_engine(station)
    try:
        with owner.begin() as conn:
            conn.execute(text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "
                              f"{make_url(older).username}"))
    finally:
        owner.dispose()
    older_station = create_engine(older)
    with older_station.connect() as conn:
        conn.execute(text("SELECT count(*) FROM images")).scalar()   # its pool keeps the connection open
    try:
        assert main(["db", "upgrade", "--db", station]) == 2
        assert f"1 connection of role {make_url(older).username}" in capsys.readouterr().err
        assert _revision(station) == OLD
    finally:
        older_station.dispose()


def test_other_commands_refuse_to_upgrade_under_an_older_station_as_db_upgrade_does(
        url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A session-52 audit: `worker`, `prelabel`, `retrain` and the other commands upgraded an older database without
    asking while an older station had it open, where the window asks and `db upgrade` refuses. They refuse in
    `db upgrade`'s words, naming who, and say how to upgrade it; the database is left as it was. Alone, a command
    upgrades it and says so on stderr."""
    monkeypatch.setenv("INSPECTION_STATION_HOME", str(tmp_path / "home"))
    old_labelled_image(url, OLD, "a.png", "scratch", "accepted")
    older_station = _older_station(url)
    try:
        for argv in (["worker", "--once", "--threads", "1"], ["classes", "list"],
                     ["retrain", "classifier", "--out", str(tmp_path / "models")]):
            assert main([*argv, "--db", url]) == 2, argv
            err = capsys.readouterr().err
            assert f"stays at schema revision {OLD}, which this version cannot use. It is in use now by: " in err, argv
            assert ("another program that has the file open" in err) if url.startswith("sqlite") else \
                ("1 connection of " in err)
            assert "or run `python main.py db upgrade --force --db " in err, argv
            assert "` to upgrade it anyway, then this command again" in err, argv
            assert _revision(url) == OLD
    finally:
        older_station.dispose()
    assert main(["classes", "list", "--db", url]) == 0
    assert f"note: The database was upgraded from schema {OLD} to {mig.head_revision()}" in capsys.readouterr().err
    assert _revision(url) == mig.head_revision()


def test_the_advice_of_a_refused_command_upgrades_the_database_it_was_given(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A session-52 audit: a command refused to upgrade an older database another program had open, and said to "run
    'python main.py db upgrade --force' … then this command again", without the --db it had been given: followed as
    written, `db upgrade` upgraded the default database (here it made a new, empty one) and the refused one stayed
    old. The advice names that --db (quoted for a shell), and run as it says it upgrades that database."""
    home = tmp_path / "home"
    monkeypatch.setenv("INSPECTION_STATION_HOME", str(home))
    monkeypatch.delenv("INSPECTION_STATION_DB", raising=False)
    (tmp_path / "line 2").mkdir()
    url = f"sqlite:///{(tmp_path / 'line 2' / 'project.sqlite').as_posix()}"
    old_labelled_image(url, OLD, "a.png", "scratch", "accepted")
    older_station = _older_station(url)
    try:
        assert main(["classes", "list", "--db", url]) == 2
        advice = re.search(r"or run [`'](python main\.py db upgrade .*?)[`'] to upgrade it anyway, then this command",
                           capsys.readouterr().err)
        assert advice is not None
        argv = shlex.split(advice.group(1))
        assert main(argv[2:]) == 0   # followed as it says
    finally:
        older_station.dispose()
    assert _revision(url) == mig.head_revision()
    assert not (home / "station.sqlite").exists()   # the default database was not made, nor touched
    assert argv == ["python", "main.py", "db", "upgrade", "--force", "--db", url]


def test_the_advice_names_no_db_for_the_default_database_and_hides_a_password(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default database needs no --db (a bare `db upgrade` opens it); a server URL's password is never printed."""
    monkeypatch.setenv("INSPECTION_STATION_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("INSPECTION_STATION_DB", raising=False)
    assert "`python main.py db upgrade --force` to upgrade" in upgrade_anyway(default_database_url())
    said = upgrade_anyway("postgresql+psycopg://inspector:s3cret@db-host/line2")
    assert "--db 'postgresql+psycopg://inspector:***@db-host/line2'" in said and "s3cret" not in said
    assert "with its password where *** stands" in said


def test_the_advice_quotes_the_db_for_cmd_on_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A session-52 audit: the advice quoted its --db for a POSIX shell only, in single quotes, which cmd.exe passes on
    as they are: on a Windows station `--db 'sqlite:///D:/line 2/a.sqlite'` reached `db upgrade` as two words, quotes
    and all. On Windows it is quoted as its programs read their command line (double quotes); elsewhere as before."""
    from inference import shell_words
    from inference.shell_words import shell_join

    monkeypatch.setenv("INSPECTION_STATION_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("INSPECTION_STATION_DB", raising=False)
    url = "sqlite:///D:/line 2/a.sqlite"
    assert "`python main.py db upgrade --force --db 'sqlite:///D:/line 2/a.sqlite'` to upgrade" in upgrade_anyway(url)
    monkeypatch.setattr(shell_words, "WINDOWS", True)
    assert '`python main.py db upgrade --force --db "sqlite:///D:/line 2/a.sqlite"` to upgrade' in upgrade_anyway(url)
    assert shell_join(["--db", "sqlite:///D:/lines/a.sqlite", ""]) == '--db sqlite:///D:/lines/a.sqlite ""'


def test_db_upgrade_goes_ahead_when_nobody_else_uses_the_database(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    old_labelled_image(url, OLD, "a.png", "scratch", "accepted")
    _worker_row(url, beat_s_ago=600)   # a worker that died long ago: stale by requeue_stale's rule
    assert main(["db", "upgrade", "--db", url]) == 0
    assert _revision(url) == mig.head_revision()


def test_a_worker_of_this_computer_whose_process_is_gone_is_no_user(url: str) -> None:
    """A session-52 audit: closing the older station kills its busy worker after 10 s without its sign-off, and the
    row it left, its heartbeat a few seconds old, counted as another user for up to a minute: the new version's start
    asked "Upgrade anyway" about a process that was gone, and `db upgrade` refused. A worker of this computer whose
    process has ended is gone (the rule by which a worker recovers its claims); one whose process runs still counts."""
    import os
    import socket
    import subprocess

    old_labelled_image(url, OLD, "a.png", "scratch", "accepted")
    ended = subprocess.Popen(["true"])
    ended.wait()
    _worker_row(url, beat_s_ago=5, host=socket.gethostname(), pid=ended.pid)
    asked: list[PendingUpgrade] = []
    with pytest.raises(UpgradeDeclinedError):
        open_database(url, upgrade_ok=lambda p: asked.append(p) or False)
    assert asked[0].users == ()
    _worker_row(url, beat_s_ago=5, host=socket.gethostname(), pid=os.getpid())   # this one runs
    with pytest.raises(UpgradeDeclinedError):
        open_database(url, upgrade_ok=lambda p: asked.append(p) or False)
    assert asked[1].users == (f"the worker process {os.getpid()} on {socket.gethostname()}",)
    _worker_row(url, beat_s_ago=5, host=socket.gethostname(), pid=ended.pid)
    assert main(["db", "upgrade", "--db", url]) == 0
    assert _revision(url) == mig.head_revision()


def test_upgrade_ok_is_asked_with_who_uses_it_and_a_no_changes_nothing(url: str) -> None:
    old_labelled_image(url, OLD, "a.png", "scratch", "accepted")
    asked: list[PendingUpgrade] = []
    with pytest.raises(UpgradeDeclinedError):
        open_database(url, upgrade_ok=lambda p: asked.append(p) or False)
    assert len(asked) == 1 and asked[0].migration.from_revision == OLD and asked[0].users == ()
    assert asked[0].server == (not url.startswith("sqlite"))
    assert _revision(url) == OLD
    with open_database(url, upgrade_ok=lambda p: True) as db:
        assert db.migration is not None and db.migration.from_revision == OLD


def test_a_station_notices_a_newer_station_upgraded_the_database_and_stops_writing(url: str) -> None:
    """The future side: a running station whose database a newer version upgrades (its revision unknown here) learns it
    from one small read and refuses its writes from then on, with a sentence that says it must be updated."""
    with open_database(url) as db:
        folder = db.folders.add("/parts")
        assert db.schema_changed() is None
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(text("UPDATE alembic_version SET version_num = '0099_from_a_newer_station'"))
        finally:
            engine.dispose()
        changed = db.schema_changed()
        assert isinstance(changed, SchemaChangedError)
        assert "upgraded by a newer version of the station (schema revision 0099_from_a_newer_station): this " \
               "station must be updated" in str(changed)
        with pytest.raises(SchemaChangedError):
            db.folders.add("/other")
        assert [f.id for f in db.folders.list()] == [folder.id]   # reading goes on


def test_the_older_file_probe_sees_a_plain_sqlite_connection(tmp_path: Path) -> None:
    """What the SQLite probe rests on: an open connection that has read keeps the file from an exclusive lock."""
    import sqlite3

    from database.users import _sqlite_file_open_elsewhere

    path = tmp_path / "s.sqlite"
    open_database(f"sqlite:///{path}").close()
    assert not _sqlite_file_open_elsewhere(path)
    holder = sqlite3.connect(path)
    holder.execute("SELECT count(*) FROM images").fetchone()
    try:
        assert _sqlite_file_open_elsewhere(path)
    finally:
        holder.close()
    assert not _sqlite_file_open_elsewhere(path)

