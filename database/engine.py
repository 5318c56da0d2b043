"""Opening a database: URL checks, SQLite pragmas, migration at start-up, session scopes.

``open_database`` is the only way the rest of the station gets at storage. It fails with one
``DatabaseError`` sentence instead of a driver trace, migrates an older schema to head, and
refuses (without writing a byte) a schema made by a newer version of the application.

A ``Database`` holds a connection pool: create one per process (a worker process opens its own
from the URL; never hand one across a fork).
"""
from __future__ import annotations

import logging
import select
import sqlite3
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from sqlalchemy import create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from database import migrate as mig
from database import path_map
from database.errors import (
    DatabaseError,
    FileReplacedError,
    PathMapUnusableError,
    ReadOnlyError,
    SchemaChangedError,
    SchemaTooNewError,
    UpgradeDeclinedError,
    mask_url,
    translate,
    unreadable,
    unreadable_row,
    where,
)

# What a label's save needs of a PostgreSQL server and role, asked by ``Database.check_writable`` in one read: a
# server that takes writes (not a standby in recovery, transactions not read-only by default: the database's, the
# role's or the server's ``default_transaction_read_only``), and the role's privileges (``database.labels``: the
# revision's row and its id from a serial column's sequence, the image's label keys, the watermark's raise).
_PG_LABEL_WRITES = text(
    "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on', "
    "current_user, has_table_privilege('label_revisions', 'INSERT'), "
    "has_sequence_privilege(pg_get_serial_sequence('label_revisions', 'id'), 'USAGE'), "
    "has_table_privilege('images', 'UPDATE'), has_table_privilege('label_watermark', 'UPDATE')")
_PG_LABEL_NEEDS = ("INSERT on label_revisions", "USAGE on the sequence of label_revisions.id", "UPDATE on images",
                   "UPDATE on label_watermark")

# How long a write begun in this context may wait for another program's lock (seconds; None: the
# database's own busy timeout). The review window's saves set it short (``Database.waiting_at_most``):
# the GUI thread must not stand still for the full busy timeout while another program holds the file.
_WRITE_WAIT_S: ContextVar[float | None] = ContextVar("write_wait_s", default=None)

if TYPE_CHECKING:
    from database.classes import ClassRepository
    from database.images import FolderRepository, ImageRepository
    from database.jobs import JobRepository
    from database.labels import LabelRepository
    from database.model_versions import ModelVersionRepository
    from database.predictions import PredictionRepository
    from database.project_settings import ProjectSettingRepository

log = logging.getLogger(__name__)
SUPPORTED = ("sqlite", "postgresql")
EXAMPLES = "sqlite:///path/to/station.sqlite or postgresql+psycopg://user@host/dbname"
PASSWORD_HELP = "PGPASSWORD, ~/.pgpass or a PGPASSFILE (see docs/database.md)"


def _parse(url: str) -> URL:
    """The parsed URL; every refusal shows it with the password masked (``mask_url``)."""
    try:
        parsed = make_url(url)
    except (sa_exc.ArgumentError, ValueError):
        raise DatabaseError(f"'{mask_url(url)}' is not a database URL; expected e.g. {EXAMPLES}.") from None
    if parsed.get_backend_name() not in SUPPORTED:
        raise DatabaseError(f"'{parsed.get_backend_name()}' databases are not supported; use {EXAMPLES}.")
    if parsed.get_backend_name() == "sqlite" and (parsed.database or "").startswith("~") and not parsed.query.get("uri"):
        # the one reading of the path (``sqlite_file``'s): a session-46 probe found sqlite:///~/line3.sqlite checked
        # at ~/line3.sqlite but opened (created empty) at ./~/line3.sqlite, the user's labels seemingly gone
        raw, home = Path(parsed.database or ""), Path(parsed.database or "").expanduser()
        if raw.exists() and not home.exists():  # what earlier versions opened: said, not passed over for a new file
            raise DatabaseError(f"'{mask_url(url)}' names {home}, which does not exist; earlier versions opened it as "
                                f"{raw.resolve()} (a folder named '~' in the working folder), which holds a "
                                f"database: move that file to {home}, or give its full path.")
        parsed = parsed.set(database=str(home))
    if "@" in (parsed.host or "") or "@" in (parsed.database or "") and parsed.get_backend_name() != "sqlite":
        raise DatabaseError(f"'{mask_url(url)}' has an '@' in its user name or password: write it as %40 "
                            f"there, or leave the password out of the URL and give it through {PASSWORD_HELP}.")
    return parsed


def _sqlite_path(url: URL) -> Path | None:
    """The file behind a SQLite URL, or None for in-memory / URI-style databases."""
    if not url.database or url.database == ":memory:" or url.query.get("uri"):
        return None
    return Path(url.database)


def _file_identity(path: Path) -> tuple[int, int] | None:
    """The (device, inode) of the file at ``path``; None where there is none."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names (``~`` expanded), or None: another kind of database, an in-memory or URI-style
    one, or a text that is not a URL (``open_database`` says what is wrong with it). The one reading of such a path
    for the commands and the station's child processes."""
    try:
        parsed = make_url(url)
    except (sa_exc.ArgumentError, ValueError):
        return None
    if parsed.get_backend_name() != "sqlite":
        return None
    path = _sqlite_path(parsed)
    return None if path is None else path.expanduser()


def sqlite_revision(url: str) -> str | None:
    """The schema revision of an existing SQLite file, read without changing anything: opened read-only, no pragma
    (``db current`` went through ``open_database``, whose pragmas turned an older file's journal to WAL, and on
    read-only media it could not say the revision; a session-46 probe). ``DatabaseError`` for a file that is not a
    database or cannot be read."""
    parsed = _parse(url)
    path = _sqlite_path(parsed)
    if path is None:
        raise DatabaseError(f"{where(parsed)} is not a SQLite file")
    target = f"{path.resolve().as_uri()}?mode=ro"
    try:
        return _file_revision(target, parsed, 5.0, uri=True)
    except SchemaTooNewError:
        raise
    except DatabaseError:  # a WAL file on read-only media (no -shm can be made): read as it stands on disk
        return _file_revision(f"{target}&immutable=1", parsed, 5.0, uri=True)


def _file_revision(target: str, url: URL, timeout_s: float, uri: bool = False) -> str | None:
    """A SQLite file's schema revision read on a plain connection (no pragma: nothing written); a file of another
    application's tables, or of a newer schema, is refused."""
    try:
        raw = sqlite3.connect(target, timeout=timeout_s, uri=uri)
        try:
            tables = {r[0] for r in raw.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
            row = raw.execute(f"SELECT version_num FROM {mig.VERSION_TABLE}").fetchone() \
                if mig.VERSION_TABLE in tables else None
        finally:
            raw.close()
    except sqlite3.Error as exc:  # (translated: a file locked meanwhile is a LockedError, which may pass)
        raise translate(exc, url) from None
    if row is None and tables - {mig.VERSION_TABLE}:
        raise _foreign(url)
    revision = None if row is None else str(row[0])
    _check_known(revision, url)
    return revision


def _prepare_sqlite_file(url: URL, busy_timeout_s: float) -> None:
    """Create the parent folder, and check an existing file before any pragma can change it."""
    path = _sqlite_path(url)
    if path is None:
        return
    if path.is_dir():
        raise DatabaseError(f"{where(url)} is a folder, not a database file.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(f"cannot create the folder {path.parent} for the database ({exc.strerror}).") from None
    if not path.exists() or path.stat().st_size == 0:
        return
    # A plain connection without pragmas: reading the header and the revision writes nothing.
    _file_revision(str(path), url, busy_timeout_s)


def _foreign(url: URL) -> DatabaseError:
    return DatabaseError(f"{where(url)} holds tables of another application; choose an empty database.")


def _check_known(revision: str | None, url: URL) -> None:
    if revision is not None and revision not in mig.known_revisions():
        raise SchemaTooNewError(
            f"{where(url)} was created by a newer version of the application (schema revision "
            f"{revision}); refusing to modify it. Update the station or choose another database."
        )


def _create_engine(url: URL, *, busy_timeout_s: float, connect_timeout_s: float,
                   foreign_keys: bool = True, pooled: bool = True) -> Engine:
    kwargs: dict[str, Any] = {} if pooled else {"poolclass": NullPool}
    try:
        if url.get_backend_name() == "sqlite":
            engine = create_engine(url, connect_args={"timeout": busy_timeout_s}, **kwargs)
            _install_sqlite_hooks(engine, busy_timeout_s, foreign_keys)
        else:
            engine = create_engine(url, connect_args={"connect_timeout": max(1, int(connect_timeout_s))},
                                   **kwargs)
            _install_liveness_check(engine)
    except sa_exc.NoSuchModuleError:
        raise DatabaseError(f"no driver for '{url.drivername}' is installed; for PostgreSQL install "
                            f"psycopg and use postgresql+psycopg://….") from None
    except (sa_exc.ArgumentError, ModuleNotFoundError) as exc:
        raise DatabaseError(f"cannot use the database URL for {where(url)}: {exc}.") from None
    return engine


# A pooled server connection idle longer than this is pinged before use (ADR 0034).
PING_AFTER_IDLE_S = 10.0


def _server_spoke(dbapi_conn: Any) -> bool:
    """Whether the server sent something while the connection sat idle in the pool: a server
    that restarts, or ends the session (administrator, idle timeout), sends its last message
    and closes, so the socket reads ready. No round trip: a local ``select`` with no wait."""
    try:
        ready, _, _ = select.select([dbapi_conn.fileno()], [], [], 0)
    except (OSError, ValueError, AttributeError, TypeError):  # closed or not a socket: ask the server
        return True
    return bool(ready)


def _install_liveness_check(engine: Engine) -> None:
    """Ping a pooled connection only when it may be dead (instead of ``pool_pre_ping`` on every
    checkout: a save takes two connections from the pool, and each ping is a round trip to the
    server that, on a busy station, waits for the server process to be scheduled; ADR 0034).

    It is pinged when it sat idle over ``PING_AFTER_IDLE_S`` or the server spoke meanwhile; a
    failed ping makes the pool replace it, as ``pool_pre_ping`` does."""
    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _idle_since(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _alive(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is not None and time.monotonic() - since < PING_AFTER_IDLE_S and not _server_spoke(dbapi_conn):
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # noqa: BLE001 - any failure means: not usable
            raise sa_exc.DisconnectionError(f"connection failed its ping: {exc}") from exc
        if not alive:
            raise sa_exc.DisconnectionError("connection failed its ping")


def _install_sqlite_hooks(engine: Engine, busy_timeout_s: float, foreign_keys: bool) -> None:
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        # Transactions are begun explicitly below, so pysqlite must not begin its own.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Writers take the write lock up front: two writers then queue on busy_timeout instead
        # of one failing with "database is locked" when it upgrades a read lock mid-transaction.
        write = bool(conn.get_execution_options().get("write"))
        if write:
            # Every writing BEGIN states its wait: a pooled connection a short-waiting save used
            # must not carry that short wait into the next writer's transaction.
            wait = _WRITE_WAIT_S.get()
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {int((busy_timeout_s if wait is None else wait) * 1000)}")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


@dataclass(frozen=True)
class Migration:
    """The schema change ``open_database`` made: from ``from_revision`` (None: an empty database given its schema) to
    ``to_revision``. Plain data, for the caller to say: the station upgraded an older database at start-up and said it
    only in an INFO log line, so on a shared database every station still on the older version was refused at its next
    start and the person who upgraded it never knew (a session-52 audit)."""

    from_revision: str | None
    to_revision: str


@dataclass(frozen=True)
class PendingUpgrade:
    """An upgrade ``open_database`` is about to make, for its ``upgrade_ok`` to decide on: ``users`` are the other users
    of the database seen now (``database.users.other_users``), who would go on with the older schema's ways until they
    are refused at their next start; ``server``: a server database, which stations not running now share too."""

    migration: Migration
    users: tuple[str, ...]
    server: bool


class Database:
    """An open, migrated database: session scopes plus the repositories built on them. ``migration``: the schema change
    opening it made, None where it made none."""

    def __init__(self, engine: Engine, url: URL, migration: Migration | None = None,
                 revision: str | None = None, identity: str | None = None) -> None:
        self.engine = engine
        self.sa_url = url
        self.migration = migration
        self._opened_at = revision   # the schema revision it was opened at (see schema_changed)
        self._newer: SchemaChangedError | None = None
        path = _sqlite_path(url) if url.get_backend_name() == "sqlite" else None
        self._file = path.absolute() if path is not None else None
        self._file_id = _file_identity(self._file) if self._file is not None else None
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(engine.execution_options(write=True), expire_on_commit=False)
        self._idle_write_limit_s: float | None = None  # see end_idle_writes_after
        self._identity = identity  # see identity

    @property
    def url(self) -> str:
        return self.sa_url.render_as_string(hide_password=True)

    @property
    def file(self) -> Path | None:
        """The SQLite file opened, as an absolute path (None: a server, an in-memory or URI-style database). One file
        is one database however its URL was spelled (relative, absolute, ``~``): what a record of "this database"
        kept outside it compares (a recovery file, ``ReviewService.recover``). Links are not followed: it is the path
        every new connection opens; a record that must name the file itself resolves it when written
        (``ReviewService._db_file``)."""
        return self._file

    @property
    def file_inode(self) -> tuple[int, int] | None:
        """(st_dev, st_ino) of the SQLite file opened, taken once when it was opened (None: not a SQLite file, or none
        was there). A recovery file records it beside the database's id: a file moved within its filesystem keeps
        it, while a copy (a backup) has its own, so a copy opened once the original has moved does not take the
        original's labels by the id they share (``ReviewService._this_database``)."""
        return self._file_id

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self, write: bool = False) -> Iterator[Session]:
        """One transaction: committed on leaving, rolled back on an exception.

        ``write=True`` takes SQLite's write lock at BEGIN; use it for every writing transaction.
        Driver errors leave as ``DatabaseError`` with one sentence.
        """
        factory = self._write if write else self._read
        if self._file_id is not None:
            self._check_same_file()
        if write and self._newer is not None:
            raise self._newer
        try:
            with factory.begin() as s:
                wait = _WRITE_WAIT_S.get()
                if write and wait is not None and self.dialect == "postgresql":
                    # SQLite's wait is set at BEGIN (the hook above); PostgreSQL waits on row locks
                    s.execute(text(f"SET LOCAL lock_timeout = '{max(1, int(wait * 1000))}ms'"))
                idle = self._idle_write_limit_s
                if write and idle is not None and self.dialect == "postgresql":
                    s.execute(text(f"SET LOCAL idle_in_transaction_session_timeout = '{max(1, int(idle * 1000))}ms'"))
                yield s
        except sa_exc.DBAPIError as exc:
            raise translate(exc, self.sa_url) from exc
        except ValueError as exc:
            if unreadable_row(exc):  # a tampered or hand-edited row: one sentence, rolled back
                raise unreadable(exc, self.sa_url) from exc
            raise

    @contextmanager
    def reading(self, s: Session | None = None) -> Iterator[Session]:
        """A read in the caller's transaction ``s`` (left open: the caller commits it), or without one in a
        transaction of its own (``session()``). Why: a reader called inside a write transaction must read through it,
        under its lock and in it: on an in-memory SQLite database every session of a thread shares one connection,
        and a second session's BEGIN inside the open one failed ("cannot start a transaction within a transaction":
        every re-flag, a session-52 audit)."""
        if s is not None:
            yield s
            return
        with self.session() as own:
            yield own

    def _check_same_file(self) -> None:
        """Raise ``FileReplacedError`` when the file at the opened path is not the one opened (one ``stat``)."""
        assert self._file is not None
        if _file_identity(self._file) != self._file_id:
            raise FileReplacedError(
                f"the database file {self._file} was deleted or replaced after this station opened it: nothing more is "
                "saved to it from here (labels not saved yet wait, and are kept when the station closes); start the "
                "station again to open the file now at that path")

    @contextmanager
    def waiting_at_most(self, seconds: float | None) -> Iterator[None]:
        """Writes begun inside wait at most ``seconds`` for another program's lock, then fail
        (``DatabaseError``: "... is locked by another program") instead of waiting the busy timeout.
        For callers that must not stand still, such as the review window's saves: they keep the
        refused label and retry it. ``None`` changes nothing."""
        token = _WRITE_WAIT_S.set(seconds)
        try:
            yield
        finally:
            _WRITE_WAIT_S.reset(token)

    def end_idle_writes_after(self, seconds: float | None) -> None:
        """On PostgreSQL, have the server end each of this process's write transactions that waits on the process
        over ``seconds`` between statements (``idle_in_transaction_session_timeout``): the session is closed and its
        row locks freed, and the process's next statement or commit fails (``DatabaseError``), nothing of the
        transaction kept. ``None``: no limit. SQLite needs none: a stopped writer's lock ends with its process, and
        no other writer takes one meanwhile anyway.

        Why: a worker frozen inside a transaction (SIGSTOP, a paused VM, a pulled cable) held the rows of the images
        it was saving, and ``requeue_stale`` skips locked rows, so nobody ever recovered them: the job sat at
        "running: 502/504" with no worker on it (a session-51 audit). Workers set this shorter than the time after
        which other workers call them stale (``app.worker.Worker``)."""
        self._idle_write_limit_s = seconds

    def schema_changed(self) -> SchemaChangedError | None:
        """Whether a newer version of the station upgraded the schema since this process opened the database (a small
        read of its revision): the error that says so, and from then on every write is refused with it, or None. Why:
        a station left running while a newer one upgraded the database went on writing without the newer version's
        bookkeeping (a session-52 audit). The window calls it on its label watch's poll, every few seconds."""
        if self._newer is None:
            found = self.revision()
            if found is not None and found != self._opened_at and found not in mig.known_revisions():
                self._newer = SchemaChangedError(
                    f"{where(self.sa_url)} was upgraded by a newer version of the station (schema revision {found}): "
                    "this station must be updated. Nothing more is saved from here (labels not saved yet wait, and "
                    "are kept when the station closes).", found)
        return self._newer

    @property
    def identity(self) -> str | None:
        """The SQLite database's own id (``database_identity``, a random UUID made once by migration 0023), read once by
        ``open_database`` and kept: a recovery file records it beside the file's path, and a start on the database
        moved to another folder still knows the labels kept for it (a session-52 audit: matched by the path alone,
        they were "another database's" for good). Never read again here: a recovery file is written on the GUI thread
        as the window closes, when the database may not answer at all (a session-52 audit: one read per file on a
        PostgreSQL server gone silent stood the window still 25 s and more), and a file moved under the running
        station refused the read, its files recording no id. None for a server database (its recovery files are
        matched by its URL), an in-memory one, a schema older than 0023 opened without migrating, or a read that
        failed at open."""
        return self._identity

    def revision(self) -> str | None:
        try:
            with self.engine.connect() as conn:
                return mig.current_revision(conn)
        except sa_exc.DBAPIError as exc:
            raise translate(exc, self.sa_url) from exc

    def check_writable(self) -> None:
        """Raise ``ReadOnlyError`` when the database refuses writes (a read-only file or medium), by a write that
        changes no row. Why: SQLite opens a file it may not write without a word and refuses only the first write,
        so a station found out at its inspector's first label (a session-52 audit). Another refusal (a lock: wrap
        the call in ``waiting_at_most``) leaves as the ``DatabaseError`` it is.

        On PostgreSQL the role's privileges on what a label's save writes are asked instead, nothing written: a role
        granted only SELECT had the probe's write refused ("permission denied for table alembic_version"), a plain
        ``DatabaseError``, and its window said nothing until the first label (a session-52 audit); and a role that may
        write labels but not ``alembic_version``, which only an upgrade writes, is not read-only. A server that takes
        no writes at all, a hot standby or one whose transactions are read-only by default (``default_transaction_read_
        only = on`` for the database, the role or the server), is said in the same read: it opened without a word and
        refused the first label (a session-52 audit)."""
        if self.dialect == "postgresql":
            with self.session() as s:
                standby, read_only, role, *granted = s.execute(_PG_LABEL_WRITES).one()
            if standby or read_only:
                why = ("is a standby, in recovery" if standby else
                       "starts every transaction read-only (default_transaction_read_only is on)")
                raise ReadOnlyError(f"{where(self.sa_url)} is read-only: the PostgreSQL server {why}; labels cannot "
                                    "be saved here.")
            missing = [need for need, ok in zip(_PG_LABEL_NEEDS, granted) if ok is False]
            if missing:
                raise ReadOnlyError(f"the database user '{role}' may not write labels on {where(self.sa_url)} (not "
                                    f"granted: {', '.join(missing)}); the station needs to write to it.")
            return
        with self.session(write=True) as s:
            s.execute(text(f"UPDATE {mig.VERSION_TABLE} SET version_num = version_num WHERE 1 = 0"))

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Repositories: Qt-free, each method one transaction, results are frozen DTOs.
    @cached_property
    def folders(self) -> FolderRepository:
        from database.images import FolderRepository
        return FolderRepository(self)

    @cached_property
    def images(self) -> ImageRepository:
        from database.images import ImageRepository
        return ImageRepository(self)

    @cached_property
    def classes(self) -> ClassRepository:
        from database.classes import ClassRepository
        return ClassRepository(self)

    @cached_property
    def model_versions(self) -> ModelVersionRepository:
        from database.model_versions import ModelVersionRepository
        return ModelVersionRepository(self)

    @cached_property
    def predictions(self) -> PredictionRepository:
        from database.predictions import PredictionRepository
        return PredictionRepository(self)

    @cached_property
    def labels(self) -> LabelRepository:
        from database.labels import LabelRepository
        return LabelRepository(self)

    @cached_property
    def jobs(self) -> JobRepository:
        from database.jobs import JobRepository
        return JobRepository(self)

    @cached_property
    def project_settings(self) -> ProjectSettingRepository:
        from database.project_settings import ProjectSettingRepository
        return ProjectSettingRepository(self)


# The advisory lock every migration of a server database takes first: two processes starting together on an older
# database (workers restarted after an update) ran the same migration twice, the second failing with "column
# label_class already exists", a message that made the database look broken (a session-46 probe).
MIGRATION_LOCK = 0x5354_4E4D  # any constant of this application's own


def _migrate(url: URL, engine: Engine, *, busy_timeout_s: float, connect_timeout_s: float) -> str | None:
    """Migrate to head; returns the revision found under the lock (another process may have migrated meanwhile)."""
    if url.get_backend_name() != "sqlite" or _sqlite_path(url) is None:
        with engine.begin() as conn:
            if url.get_backend_name() == "postgresql":  # held to the commit; the revision is read after it
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            found = mig.current_revision(conn)
            mig.upgrade(conn)
        return found
    # SQLite batch migrations copy tables; foreign keys must be off meanwhile (a pragma that
    # only takes effect outside a transaction), and are verified once the copy is done.
    mengine = _create_engine(url, busy_timeout_s=busy_timeout_s, connect_timeout_s=connect_timeout_s,
                             foreign_keys=False, pooled=False)
    try:
        with mengine.execution_options(write=True).begin() as conn:
            # only references the migration breaks refuse it: a dangling one the older version lived with (written
            # with foreign keys off, as the sqlite3 shell does) refused every newer version for good, blaming the
            # migration and naming no table (a session-46 probe)
            before = {tuple(r) for r in conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()}
            found = mig.current_revision(conn)
            mig.upgrade(conn)
            broken = [r for r in conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() if tuple(r) not in before]
            if broken:
                tables = ", ".join(sorted({str(r[0]) for r in broken}))
                raise DatabaseError(f"migrating {where(url)} would break {len(broken)} references (in {tables}); "
                                    f"it was left as it was.")
            if before:
                log.warning("%s: %d references point at rows that are gone (in %s), as before the upgrade",
                            where(url), len(before), ", ".join(sorted({str(r[0]) for r in before})))
    finally:
        mengine.dispose()
    return found


def open_database(url: str, migrate: bool = True, *, busy_timeout_s: float = 10.0,
                  connect_timeout_s: float = 5.0,
                  upgrade_ok: Callable[[PendingUpgrade], bool] | None = None) -> Database:
    """Open the database at ``url``; with ``migrate`` bring its schema to this version's head. ``upgrade_ok``, where
    given, is asked before an older schema is upgraded, with who else uses the database now (``PendingUpgrade``); a
    no is ``UpgradeDeclinedError``, nothing changed. (Not asked for an empty database given its schema.)

    Raises ``DatabaseError`` (one sentence) for a bad URL, an unreachable server, a file that is
    not a database, a locked or read-only file, or a schema from a newer application version
    (``SchemaTooNewError``, nothing written). The returned ``Database.migration`` says what it migrated.
    """
    try:  # this machine's path map (ADR 0065): a broken one is said before any folder path is read
        path_map.current()
    except path_map.PathMapError as exc:
        raise PathMapUnusableError(str(exc)) from None
    sa_url = _parse(url)
    if sa_url.get_backend_name() == "sqlite":
        _prepare_sqlite_file(sa_url, busy_timeout_s)
    engine = _create_engine(sa_url, busy_timeout_s=busy_timeout_s, connect_timeout_s=connect_timeout_s)
    migration = None
    try:
        with engine.connect() as conn:
            revision = mig.current_revision(conn)
            foreign = revision is None and mig.has_user_tables(conn)
        _check_known(revision, sa_url)
        if foreign:
            raise _foreign(sa_url)
        if migrate and revision != mig.head_revision():
            if upgrade_ok is not None and revision is not None:
                from database.users import other_users
                pending = PendingUpgrade(Migration(revision, mig.head_revision()),
                                         other_users(Database(engine, sa_url)), sa_url.get_backend_name() != "sqlite")
                if not upgrade_ok(pending):
                    raise UpgradeDeclinedError(f"{where(sa_url)} was not upgraded: it stays at schema revision "
                                               f"{revision}, which this version cannot use.", pending)
            engine.dispose()  # the migration must be the only connection on SQLite
            found = _migrate(sa_url, engine, busy_timeout_s=busy_timeout_s, connect_timeout_s=connect_timeout_s)
            if found != mig.head_revision():   # (not when another process migrated it first)
                migration = Migration(found, mig.head_revision())
            revision = mig.head_revision()
    except DatabaseError:
        engine.dispose()
        raise
    except (sa_exc.SQLAlchemyError, sqlite3.Error) as exc:
        engine.dispose()
        raise translate(exc, sa_url) from None
    sqlite_file_opened = sa_url.get_backend_name() == "sqlite" and _sqlite_path(sa_url) is not None
    return Database(engine, sa_url, migration, revision, _read_identity(engine) if sqlite_file_opened else None)


def _read_identity(engine: Engine) -> str | None:
    """The database's own id (``Database.identity``), read once as it is opened; None where it cannot be read (a schema
    older than 0023 opened without migrating, a failed read): its recovery files then record none and are matched by
    the file's path alone, as before the id."""
    try:
        with engine.connect() as conn:
            found = conn.execute(text("SELECT uid FROM database_identity WHERE id = 1")).scalar()
    except (sa_exc.SQLAlchemyError, sqlite3.Error) as exc:
        log.info("the database's id cannot be read: %s", exc)
        return None
    return None if found is None else str(found)
