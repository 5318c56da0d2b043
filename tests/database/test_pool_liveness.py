"""A pooled PostgreSQL connection is pinged only when it may be dead (ADR 0034): a save takes
connections from the pool back to back, and each ping is a round trip it would wait for."""
from __future__ import annotations

import time
from typing import Iterator

import pytest
from sqlalchemy import create_engine, text

from database import Database, open_database
from database import engine as engine_mod

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[Database]:
    database = open_database(pg_url)
    yield database
    database.close()


def _pings(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    seen: list[object] = []
    real = db.engine.dialect.do_ping

    def counting(dbapi_conn: object) -> bool:
        seen.append(dbapi_conn)
        return real(dbapi_conn)
    monkeypatch.setattr(db.engine.dialect, "do_ping", counting)
    return seen


def _backend_pid(db: Database) -> int:
    with db.session() as s:
        return int(s.scalar(text("SELECT pg_backend_pid()")))


def test_a_connection_used_a_moment_ago_is_not_pinged(pg_db: Database, monkeypatch) -> None:
    pid = _backend_pid(pg_db)
    pings = _pings(pg_db, monkeypatch)
    for _ in range(5):
        assert _backend_pid(pg_db) == pid  # the same pooled connection
        pg_db.model_versions.active_ids()
    assert pings == []


def test_a_connection_idle_too_long_is_pinged(pg_db: Database, monkeypatch) -> None:
    _backend_pid(pg_db)
    pings = _pings(pg_db, monkeypatch)
    monkeypatch.setattr(engine_mod, "PING_AFTER_IDLE_S", 0.0)
    _backend_pid(pg_db)
    assert len(pings) == 1


def test_a_connection_the_server_ended_is_replaced_before_use(pg_db: Database, pg_url: str, monkeypatch) -> None:
    """The server ends the session (a restart, an administrator): the next read still works."""
    with pg_db.session() as s:
        pid = int(s.scalar(text("SELECT pg_backend_pid()")))
        dbapi_conn = s.connection().connection.dbapi_connection
    assert not engine_mod._server_spoke(dbapi_conn)
    pings = _pings(pg_db, monkeypatch)
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            assert c.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        admin.dispose()
    deadline = time.monotonic() + 5
    while not engine_mod._server_spoke(dbapi_conn):
        assert time.monotonic() < deadline, "the ended session's socket never became readable"
        time.sleep(0.05)
    new_pid = _backend_pid(pg_db)  # no error: the dead connection was found and replaced
    assert new_pid != pid and len(pings) >= 1
    assert pg_db.model_versions.active_ids() == {}

