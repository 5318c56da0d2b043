"""Databases that cannot be used give one clear sentence and are never damaged."""
from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from database import DatabaseError, SchemaTooNewError, open_database
from database import migrate as mig


def _one_sentence(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and "Traceback" not in msg and msg.endswith(".")
    return msg


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_corrupt_file_is_reported_and_left_alone(tmp_path: Path) -> None:
    bad = tmp_path / "station.sqlite"
    bad.write_bytes(b"this is not a database, just some text " * 200)
    before = _digest(bad)
    with pytest.raises(DatabaseError) as exc:
        open_database(f"sqlite:///{bad}")
    assert "is not a database or is damaged" in _one_sentence(exc)
    assert str(bad) in str(exc.value)
    assert _digest(bad) == before


def test_directory_instead_of_file(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(DatabaseError) as exc:
        open_database(f"sqlite:///{tmp_path / 'dir.sqlite'}")
    assert "is a folder, not a database file" in _one_sentence(exc)


def test_missing_parent_folder_is_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "station.sqlite"
    open_database(f"sqlite:///{path}").close()
    assert path.is_file()


def test_parent_that_is_a_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("x")
    with pytest.raises(DatabaseError) as exc:
        open_database(f"sqlite:///{tmp_path / 'blocker' / 'station.sqlite'}")
    assert "cannot create the folder" in _one_sentence(exc)


@pytest.mark.parametrize("url, expected", [
    ("not a url", "is not a database URL"),
    ("mysql://u@h/db", "'mysql' databases are not supported"),
    ("postgresql+nosuchdriver://u@h/db", "no driver for 'postgresql+nosuchdriver'"),
])
def test_bad_urls(url: str, expected: str) -> None:
    with pytest.raises(DatabaseError) as exc:
        open_database(url)
    assert expected in _one_sentence(exc)


def test_unreachable_postgres_server() -> None:
    # Port 1 on loopback: nothing listens there, the connection is refused at once.
    with pytest.raises(DatabaseError) as exc:
        open_database("postgresql+psycopg://someone:secret@127.0.0.1:1/station", connect_timeout_s=2)
    msg = _one_sentence(exc)
    assert msg.startswith("cannot reach the database 'station' on 127.0.0.1:1")
    assert "secret" not in msg


def test_a_server_that_answered_and_refused_is_not_taken_for_unreachable(pg_url: str) -> None:
    """A session-51 review: any driver error naming a connection was "cannot reach", so a server that answered and
    refused (role "ghost" does not exist) was offered Retry, "the server may be starting". Its refusal is said as
    the server gave it, and not as an UnreachableError."""
    from sqlalchemy.engine import make_url

    from database.errors import UnreachableError

    ghost = make_url(pg_url).set(username="ghost", password=None).render_as_string(hide_password=False)
    with pytest.raises(DatabaseError) as exc:
        open_database(ghost, connect_timeout_s=5)
    assert not isinstance(exc.value, UnreachableError)
    assert 'role "ghost" does not exist' in _one_sentence(exc) and "cannot reach" not in str(exc.value)


class _DriverError(Exception):
    def __init__(self, text: str, sqlstate: str | None) -> None:
        super().__init__(text)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(("text", "sqlstate", "unreachable"), [
    ('connection to server at "h", port 5432 failed: Connection refused', None, True),
    ("server closed the connection unexpectedly", None, True),
    ('connection to server at "h", port 5432 failed: timeout expired', None, True),
    ('connection to server at "h", port 5432 failed: FATAL:  role "ghost" does not exist', None, False),
    ('connection to server at "h", port 5432 failed: FATAL:  no pg_hba.conf entry for host "10.0.0.9"', None, False),
    ('connection to server at "h", port 5432 failed: FATAL:  the database system is starting up', None, True),
    ('connection to server at "h", port 5432 failed: FATAL:  sorry, too many clients already', None, True),
    ("the database system is starting up", "57P03", True),
    ("sorry, too many clients already", "53300", True),
    ("terminating connection due to administrator command", "57P01", True),
    ("terminating connection due to idle-session timeout", "57P05", False),
    ("permission denied to create a connection", "42501", False),
])
def test_unreachable_is_the_servers_absence_or_its_not_now(text: str, sqlstate: str | None,
                                                            unreachable: bool) -> None:
    """A session-51 review: UnreachableError (Retry: "the server may be starting") is a server that sent nothing,
    or sent "not now" (57P03 cannot connect now, 53300 too many connections, 57P01/57P02 shutting down): not one
    that answered and refused, which libpq words "SEVERITY:  message" at a connection, without its SQLSTATE."""
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.engine import make_url

    from database.errors import UnreachableError, translate

    error = sa_exc.OperationalError("SELECT 1", {}, _DriverError(text, sqlstate))
    found = translate(error, make_url("postgresql+psycopg://u@h/station"))
    assert isinstance(found, UnreachableError) is unreachable, str(found)


def _stamp_newer(path: Path) -> None:
    open_database(f"sqlite:///{path}").close()
    con = sqlite3.connect(path)
    con.execute("UPDATE alembic_version SET version_num = 'ffff_from_the_future'")
    con.commit()
    con.close()


def test_newer_schema_is_refused_and_file_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "station.sqlite"
    _stamp_newer(path)
    before = _digest(path)
    for migrate in (True, False):
        with pytest.raises(SchemaTooNewError) as exc:
            open_database(f"sqlite:///{path}", migrate=migrate)
        msg = _one_sentence(exc)
        assert "created by a newer version of the application" in msg and "refusing to modify it" in msg
        assert "ffff_from_the_future" in msg
    assert _digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["station.sqlite"]


@pytest.mark.postgres
def test_newer_schema_is_refused_on_postgres(pg_url: str) -> None:
    open_database(pg_url).close()
    engine = create_engine(pg_url)
    with engine.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = 'ffff_from_the_future'"))
    with pytest.raises(SchemaTooNewError):
        open_database(pg_url)
    with engine.connect() as c:
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalar() == "ffff_from_the_future"
        assert c.execute(text("SELECT count(*) FROM folders")).scalar() == 0
    engine.dispose()


def test_database_of_another_application_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    con.commit()
    con.close()
    before = _digest(path)
    with pytest.raises(DatabaseError) as exc:
        open_database(f"sqlite:///{path}")
    assert "holds tables of another application" in _one_sentence(exc)
    assert _digest(path) == before


def test_locked_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "station.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")  # a rollback-journal database, exclusively locked below
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(DatabaseError) as exc:
            open_database(f"sqlite:///{path}", busy_timeout_s=0.2)
        assert "is locked by another program" in _one_sentence(exc)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_write_waits_for_a_short_lock_instead_of_failing(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 's.sqlite'}", busy_timeout_s=5)
    holder = sqlite3.connect(tmp_path / "s.sqlite", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    threading.Timer(0.3, lambda: holder.execute("ROLLBACK")).start()
    try:
        assert db.folders.add("/parts").name == "parts"  # waited for the lock, then wrote
    finally:
        db.close()
        holder.close()


def test_lock_held_too_long_during_a_write_is_one_sentence(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 's.sqlite'}", busy_timeout_s=0.2)
    holder = sqlite3.connect(tmp_path / "s.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseError) as exc:
            db.folders.add("/parts")
        assert "is locked by another program" in _one_sentence(exc)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        db.close()
    assert open_database(f"sqlite:///{tmp_path / 's.sqlite'}").folders.list() == []


def test_read_only_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "ro.sqlite"
    sqlite3.connect(path).close()  # an empty database the station would need to migrate
    with pytest.raises(DatabaseError) as exc:
        open_database(f"sqlite:///file:{path}?mode=ro&uri=true")
    assert "is read-only" in _one_sentence(exc)


def test_check_writable_finds_a_read_only_file_before_any_label_and_writes_nothing(tmp_path: Path) -> None:
    """A session-52 audit: SQLite opens a file it may not write without a word, so a station on one learnt it at the
    inspector's first label. ``check_writable`` asks at once: ``ReadOnlyError`` there, nothing on a writable file."""
    from database import ReadOnlyError
    path = tmp_path / "s.sqlite"
    db = open_database(f"sqlite:///{path}")
    db.check_writable()
    db.close()
    before = path.stat().st_mtime_ns
    ro = open_database(f"sqlite:///file:{path}?mode=ro&uri=true")
    try:
        with pytest.raises(ReadOnlyError) as exc:
            ro.check_writable()
        assert "is read-only; the station needs to write to it." in _one_sentence(exc)
    finally:
        ro.close()
    assert path.stat().st_mtime_ns == before


@pytest.mark.postgres
def test_check_writable_finds_a_server_role_that_may_only_read(pg_url: str, pg_role) -> None:
    """A session-52 audit: on PostgreSQL a role granted only SELECT started the window without a word: the probe's
    write was refused with "permission denied for table alembic_version", a plain DatabaseError that the start takes
    for no answer, and the inspector learnt it at the first label. The role's privileges on what a label's save writes
    are asked: that one is said read-only, naming it; a role that may write labels but not alembic_version (only an
    upgrade writes it) is not."""
    from sqlalchemy.engine import make_url

    from database import ReadOnlyError
    open_database(pg_url).close()   # the schema, made by the test's user
    reader, writer = pg_role(), pg_role()
    admin = create_engine(pg_url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {make_url(reader).username}"))
            who = make_url(writer).username
            conn.execute(text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {who}"))
            conn.execute(text(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {who}"))
            conn.execute(text(f"REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM {who}"))
    finally:
        admin.dispose()
    ro = open_database(reader)
    try:
        with pytest.raises(ReadOnlyError) as exc:
            ro.check_writable()
        assert _one_sentence(exc) == (
            f"the database user '{make_url(reader).username}' may not write labels on the database "
            f"'{make_url(pg_url).database}' on {make_url(pg_url).host}:{make_url(pg_url).port} (not granted: INSERT on "
            "label_revisions, USAGE on the sequence of label_revisions.id, UPDATE on images, UPDATE on "
            "label_watermark); the station needs to write to it.")
    finally:
        ro.close()
    rw = open_database(writer)
    try:
        rw.check_writable()
        rw.folders.add("/parts")   # it does write
    finally:
        rw.close()


@pytest.mark.postgres
def test_check_writable_finds_a_server_whose_transactions_are_read_only(pg_url: str) -> None:
    """A session-52 audit: a PostgreSQL server that takes no writes at the transaction level (a hot standby, or
    ``default_transaction_read_only = on`` for the database or role) started the window without a word, the role's
    privileges being all there, and the inspector learnt it at the first label, refused. ``check_writable`` asks the
    server in the same read and says it read-only; nothing is written."""
    from sqlalchemy.engine import make_url

    from database import ReadOnlyError
    open_database(pg_url).close()   # the schema, made while the database takes writes
    name = make_url(pg_url).database
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
    finally:
        admin.dispose()
    ro = open_database(pg_url)   # sessions opened from now on start read-only
    try:
        with pytest.raises(ReadOnlyError) as exc:
            ro.check_writable()
        assert _one_sentence(exc) == (
            f"the database '{name}' on {make_url(pg_url).host}:{make_url(pg_url).port} is read-only: the PostgreSQL "
            "server starts every transaction read-only (default_transaction_read_only is on); labels cannot be saved "
            "here.")
    finally:
        ro.close()


def test_a_writable_file_in_a_read_only_folder_names_the_folder(tmp_path: Path) -> None:
    """A session-52 audit: an older database file the user may write, in a folder the user may not, was reported as
    "the database file …/station.sqlite is read-only" (SQLite cannot create its journal files beside it and says the
    database is read-only), sending the user to a file that was fine. The folder is named, and why."""
    import os

    from tests.database.old_rows import old_labelled_image

    folder = tmp_path / "share"
    folder.mkdir()
    path = folder / "station.sqlite"
    old_labelled_image(f"sqlite:///{path}", "0014_routed_promotion", "a.png", "scratch", "accepted")
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("this user writes into a read-only folder anyway (root with CAP_DAC_OVERRIDE)")
        with pytest.raises(DatabaseError) as exc:
            open_database(f"sqlite:///{path}")
        said = _one_sentence(exc)
        assert type(exc.value).__name__ == "ReadOnlyError"   # the window's read-only note, not an unreachable file
        assert f"the folder {folder} that holds the database file {path} is read-only" in said
        assert "SQLite needs to create its journal files" in said
    finally:
        folder.chmod(0o755)


def test_sqlite_connections_have_wal_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 's.sqlite'}", busy_timeout_s=3)
    try:
        with db.engine.connect() as c:
            assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() == 3000
        assert db.revision() == mig.head_revision()
    finally:
        db.close()


def test_truncated_database_is_reported_not_traced(tmp_path: Path) -> None:
    from database import FileEntry, ImageQuery
    path = tmp_path / "station.sqlite"
    db = open_database(f"sqlite:///{path}")
    folder = db.folders.add("/parts")
    db.images.sync(folder.id, [FileEntry(f"{i:05d}/{'x' * 200}.png", 1, i) for i in range(1500)])
    db.close()
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    with path.open("r+b") as fh:
        fh.truncate(path.stat().st_size // 2)
    with pytest.raises(DatabaseError) as exc:
        reopened = open_database(f"sqlite:///{path}")
        reopened.images.query(ImageQuery())
    assert "is not a database or is damaged" in _one_sentence(exc)


def test_a_short_wait_fails_fast_and_the_pooled_connection_gets_its_full_wait_back(tmp_path: Path) -> None:
    """``waiting_at_most``: a write inside gives up after the short wait (``LockedError``: the review
    window keeps and retries such a label), and the next writer on that pooled connection waits the
    database's own busy timeout again (the short wait must not leak through the pool)."""
    from database import LockedError
    db = open_database(f"sqlite:///{tmp_path / 's.sqlite'}", busy_timeout_s=7)
    holder = sqlite3.connect(tmp_path / "s.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with db.waiting_at_most(0.1), pytest.raises(LockedError) as exc:
            db.folders.add("/parts")
        assert "is locked by another program" in _one_sentence(exc)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with db.waiting_at_most(0.3), db.session(write=True) as s:
        assert s.execute(text("PRAGMA busy_timeout")).scalar() == 300
    with db.session(write=True) as s:
        assert s.execute(text("PRAGMA busy_timeout")).scalar() == 7000
    assert db.folders.add("/parts").name == "parts"
    db.close()


def test_a_short_wait_on_postgresql_is_the_transactions_lock_timeout(pg_url: str) -> None:
    db = open_database(pg_url)
    try:
        with db.waiting_at_most(0.25), db.session(write=True) as s:
            assert s.execute(text("SHOW lock_timeout")).scalar() == "250ms"
        with db.session(write=True) as s:
            assert s.execute(text("SHOW lock_timeout")).scalar() == "0"
    finally:
        db.close()


def test_a_lock_timeout_on_postgresql_reads_as_locked() -> None:
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.engine import make_url

    from database import LockedError
    from database.errors import translate
    orig = Exception("canceling statement due to lock timeout")
    err = translate(sa_exc.OperationalError("UPDATE ...", {}, orig), make_url("postgresql+psycopg://u@h/station"))
    assert isinstance(err, LockedError) and "is locked by another program" in str(err)
