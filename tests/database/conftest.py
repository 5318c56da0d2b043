"""Database fixtures: a fresh SQLite file per test, and a fresh PostgreSQL database per test when
INSPECTION_TEST_POSTGRES_URL points at a reachable server (scripts/ci_postgres.sh starts one)."""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from database import Database, open_database

PG_ENV = "INSPECTION_TEST_POSTGRES_URL"
_pg_problem: str | None = None


def _admin_url() -> str:
    global _pg_problem
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (scripts/ci_postgres.sh starts a server)")
    if _pg_problem:
        pytest.skip(_pg_problem)
    return url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of a new, empty PostgreSQL database, dropped after the test."""
    global _pg_problem
    admin = _admin_url()
    name = f"station_test_{uuid.uuid4().hex[:12]}"
    try:
        eng = create_engine(admin, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with eng.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure means: no usable server
        _pg_problem = f"PostgreSQL at {make_url(admin).render_as_string(hide_password=True)} is not usable: " \
                      f"{str(exc).splitlines()[0]}"
        pytest.skip(_pg_problem)
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with eng.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        eng.dispose()


@pytest.fixture
def pg_role(pg_url: str) -> Iterator[Callable[[], str]]:
    """Makes login roles on the server of ``pg_url`` (neither superuser nor allowed to read every session's details):
    each call a new one, returning the URL of ``pg_url``'s database as that role. Whatever a role comes to own there
    is given back to the test's user and its grants dropped before the role is, at the end. Skips where the test's
    user may not create roles."""
    made: list[str] = []
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")

    def make() -> str:
        role = f"station_role_{uuid.uuid4().hex[:12]}"
        try:
            with admin.connect() as c:
                c.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD 'station'"))
        except Exception as exc:  # noqa: BLE001 - any refusal means: roles cannot be tested here
            pytest.skip(f"the test's PostgreSQL user may not create roles: {str(exc).splitlines()[0]}")
        made.append(role)
        return make_url(pg_url).set(username=role, password="station").render_as_string(hide_password=False)

    try:
        yield make
    finally:
        with admin.connect() as c:
            for role in made:
                c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r"), {"r": role})
                c.execute(text(f"REASSIGN OWNED BY {role} TO current_user"))
                c.execute(text(f"DROP OWNED BY {role}"))
                c.execute(text(f"DROP ROLE {role}"))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{(tmp_path / 'station.sqlite').as_posix()}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request) -> str:
    """Each test using this runs on SQLite and (when reachable) PostgreSQL."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
def db(url: str) -> Iterator[Database]:
    database = open_database(url)
    yield database
    database.close()
