"""PostgreSQL's trigram index of the names (migration 0009_pg_search): created where the role may
create the pg_trgm extension; a role that may not still migrates, says why, and its text filter
walks the names with the same results."""
from __future__ import annotations

import logging
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

import database.review_queue as rq
from database import migrate as mig
from database import open_database
from database.dto import FileEntry

pytestmark = pytest.mark.postgres


def _has_index(url: str) -> bool:
    eng = create_engine(url)
    try:
        with eng.connect() as c:
            return bool(c.scalar(text("SELECT to_regclass(:n) IS NOT NULL"), {"n": rq.NAME_TRIGRAMS}))
    finally:
        eng.dispose()


def _text_filter_agrees(url: str) -> bool:
    """Names with a rare text among many: the filter's rows are the names that contain it (ASCII
    case folded). Returns whether the planner reads the trigram index for it (sequential scans
    off: on 300 rows it would rightly prefer them)."""
    db = open_database(url)
    try:
        folder = db.folders.add("/line")
        names = [f"lot{k % 3}/part_{k:04d}.png" for k in range(300)] + ["lot1/RARE_x.png", "Rare_y.png"]
        db.images.sync(folder.id, [FileEntry(p, 1, 1) for p in names])
        qq = rq.QueueQuery(folder_id=folder.id, path_contains="rare_")
        got = [r.rel_path for r in rq.queue_rows(db, qq)]
        assert got == sorted((n for n in names if "rare_" in n.lower()), key=str.lower)
        assert rq.queue_count(db, qq) == 2
        with db.session() as s:
            s.execute(text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(s.scalars(text("EXPLAIN SELECT id FROM images WHERE rel_path ILIKE '%rare\\_%'")))
        return rq.NAME_TRIGRAMS in plan
    finally:
        db.close()


def test_the_migration_adds_the_names_trigram_index_when_it_may(pg_url: str) -> None:
    assert _text_filter_agrees(pg_url)  # the index answers the filter's own ILIKE
    assert _has_index(pg_url)
    eng = create_engine(pg_url)
    try:
        with eng.begin() as c:
            mig.downgrade(c, "0008_queue_keys")
        assert not _has_index(pg_url)
        with eng.begin() as c:
            mig.upgrade(c)
        assert _has_index(pg_url)
    finally:
        eng.dispose()


def test_a_role_that_may_not_create_the_extension_still_migrates(pg_url: str, caplog) -> None:
    role = f"station_plain_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    name = make_url(pg_url).database
    with admin.connect() as c:
        c.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        c.execute(text(f'GRANT CONNECT ON DATABASE "{name}" TO "{role}"'))  # not CREATE: no extension
        c.execute(text(f'GRANT USAGE, CREATE ON SCHEMA public TO "{role}"'))
        c.execute(text("DROP EXTENSION IF EXISTS pg_trgm"))
    try:
        plain = make_url(pg_url).set(username=role, password=None).render_as_string(hide_password=False)
        with caplog.at_level(logging.WARNING, logger="database.migrate"):
            read_index = _text_filter_agrees(plain)
        assert not _has_index(plain) and not read_index  # the same rows, by the name walk
        assert any("pg_trgm" in r.getMessage() and "permission denied" in r.getMessage() for r in caplog.records)
        db = open_database(plain)
        try:
            assert db.revision() == mig.head_revision()
        finally:
            db.close()
    finally:
        with admin.connect() as c:
            c.execute(text(f'REASSIGN OWNED BY "{role}" TO CURRENT_USER'))
            c.execute(text(f'DROP OWNED BY "{role}"'))
            c.execute(text(f'DROP ROLE "{role}"'))
        admin.dispose()

