"""Transaction-scoped locks for what two stations must not do at once and that has no row to lock yet (a task's
class list, one kind of job's submissions, a folder's index).

One home for the way it is done: SQLite's write transaction (BEGIN IMMEDIATE) holds the database's one write lock
already, so there is nothing to take; PostgreSQL takes an advisory lock on the name, held to the commit or rollback,
so the next transaction that asks for it waits and then reads what this one wrote.
"""
from __future__ import annotations

import zlib

from sqlalchemy import text
from sqlalchemy.orm import Session


def lock_for_transaction(s: Session, name: str) -> None:
    """Take ``name`` for the rest of the session's transaction (PostgreSQL; nothing to take on SQLite). Names hash to
    32 bits: two names that collide only wait for each other, never share what they guard."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": zlib.crc32(name.encode())})
