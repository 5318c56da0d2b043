"""Who else is using a database now: what an upgrade of its schema would leave behind.

Why: a station started on an older shared database upgraded it while a station of the older version was still
connected, and that one went on writing without the newer version's bookkeeping (no watermark raised, no
``flag_decisions`` row, no model version on its revisions) until its next start refused it (a session-52 audit).
Before an upgrade the station looks for the other users it can see, so that a person decides (``open_database``'s
``upgrade_ok``). Nothing here writes.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text

if TYPE_CHECKING:
    from database.engine import Database

# PostgreSQL's other client sessions on this database, grouped by who and from where (a station keeps a few pooled).
# A role that is not a superuser (nor in pg_read_all_stats) sees another role's sessions with their details hidden:
# backend_type and client_addr NULL, the user name shown. Those count too (hidden: true), else an older station
# logging in as another role was not seen and `db upgrade` went ahead without asking (a session-52 audit); the
# server's own background processes (autovacuum and the like) are rows with no user.
_PG_SESSIONS = text(
    "SELECT usename, host(client_addr), application_name, backend_type IS NULL AS hidden, count(*) "
    "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND (backend_type = 'client backend' OR (backend_type IS NULL AND usename IS NOT NULL)) "
    "GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4")


def other_users(db: Database) -> tuple[str, ...]:
    """The users of ``db`` other than this process that can be seen now, a phrase each: workers whose heartbeat is
    fresh (``JobRepository.live_workers``, the staleness rule that requeues a gone worker's work); on PostgreSQL the
    other client sessions on the same database (``pg_stat_activity``); on SQLite another connection that has the file
    open (an exclusive lock cannot be had at once: a station's or a worker's pooled connection keeps a shared one).
    Closes ``db``'s pooled connections first (on SQLite they would hold the file open themselves)."""
    users = [f"the worker process {w.pid} on {w.host}" for w in db.jobs.live_workers()]
    if db.dialect == "postgresql":
        with db.session() as s:
            for user, addr, app, hidden, n in s.execute(_PG_SESSIONS):
                who = f"{n} connection{'' if n == 1 else 's'}"
                if hidden:   # the server shows this role only who, not from where
                    users.append(f"{who} of role {user}" + (f" ({app})" if app else ""))
                    continue
                who += f" of {user}" if user else ""
                users.append(who + (f" from {addr}" if addr else "") + (f" ({app})" if app else ""))
        db.engine.dispose()
        return tuple(users)
    db.engine.dispose()
    path = db.file
    if path is not None and _sqlite_file_open_elsewhere(path):
        users.append("another program that has the file open (a station or a worker)")
    return tuple(users)


def _sqlite_file_open_elsewhere(path: Path) -> bool:
    """Whether another connection has the SQLite file open: in WAL mode every open connection that has read keeps a
    shared lock on the file, so an exclusive one cannot be had at once. Any other failure (a read-only file or folder)
    is left for the migration to say."""
    try:
        raw = sqlite3.connect(str(path), timeout=0, isolation_level=None)
    except sqlite3.Error:
        return False
    try:
        raw.execute("PRAGMA locking_mode = EXCLUSIVE")
        raw.execute("BEGIN EXCLUSIVE")
        raw.execute("SELECT count(*) FROM sqlite_master").fetchone()
        raw.execute("ROLLBACK")
    except sqlite3.Error as exc:
        return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    finally:
        raw.close()
    return False
