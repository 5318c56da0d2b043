"""The names' trigram indexes: PostgreSQL gets one, SQLite's fills in bulk (issue 22).

The queue's text filter finds the few images a rare text can match through a trigram index.
SQLite has one since ``0008_queue_keys`` (FTS5, ``database/review_queue.py``'s candidate step);
on PostgreSQL the filter walked every name (1M images: ~0.6 s per first page). This adds a GIN
index with ``pg_trgm``'s operator class on ``images.rel_path``: the planner reads it for the
filter's own ``ILIKE '%text%'`` when it expects few matches (ADR 0030).

``pg_trgm`` is an extension that ships with the server; ``CREATE EXTENSION`` needs the CREATE
privilege on the database (a trusted extension since PostgreSQL 13) or a superuser. A role that
may not create it, or a server without it, still migrates: the index is skipped, the reason is
logged, and the text filter walks the names as before (same rows, slower). An administrator
can add both later with the two statements the warning names.

SQLite (where 0008 made the FTS5 table): its per-row insert trigger made indexing a new folder
slower (~23 us a row even when a WHEN clause skips it; its FTS5 insert ~35 us more; one
``INSERT ... SELECT`` of a chunk's new rows ~4 us a row). The insert trigger is dropped:
``ImageRepository.sync``, the one writer of new image rows, fills the FTS5 table from each
chunk's new rows in its transaction. The delete and rename triggers stay. The text filter uses
the FTS5 table only while its newest document is the newest image (``_name_candidates``): rows
inserted any other way make it walk the names, never miss them.

Revision ID: 0009_pg_search
Revises: 0008_queue_keys
"""
from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = '0009_pg_search'
down_revision = '0008_queue_keys'
branch_labels = None
depends_on = None

log = logging.getLogger("database.migrate")

INDEX = "ix_images_name_trgm"  # database/review_queue.py looks for this name
FTS = "images_name_fts"
INSERT_TRIGGER = "images_name_fts_insert"


def _sqlite_has_fts() -> bool:
    return op.get_bind().exec_driver_sql(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (FTS,)).first() is not None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        if _sqlite_has_fts():
            op.execute(f"DROP TRIGGER IF EXISTS {INSERT_TRIGGER}")
        return
    if bind.dialect.name != "postgresql":
        return
    # Each step in a savepoint: a refusal must not abort the migration's transaction.
    for what, sql in (("create the pg_trgm extension", "CREATE EXTENSION IF NOT EXISTS pg_trgm"),
                      ("create the names' trigram index",
                       f"CREATE INDEX {INDEX} ON images USING gin (rel_path gin_trgm_ops)")):
        if what.endswith("extension") and bind.exec_driver_sql(
                "SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").first() is not None:
            continue  # already there (an administrator's): no privilege needed
        try:
            with bind.begin_nested():
                bind.exec_driver_sql(sql)
        except sa.exc.DBAPIError as exc:
            reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            log.warning("could not %s (%s): the queue's text filter walks the image names on this "
                        "database (slower at 100k+ images); a role with CREATE on the database can run: "
                        "CREATE EXTENSION pg_trgm; CREATE INDEX %s ON images USING gin (rel_path gin_trgm_ops)",
                        what, reason, INDEX)
            return


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {INDEX}")  # the extension stays: other objects may use it
    elif op.get_bind().dialect.name == "sqlite" and _sqlite_has_fts():
        op.execute(f"CREATE TRIGGER {INSERT_TRIGGER} AFTER INSERT ON images BEGIN "
                   f"INSERT INTO {FTS}(rowid, rel_path) VALUES (new.id, new.rel_path); END")
        op.execute(f"INSERT INTO {FTS}({FTS}) VALUES ('rebuild')")
