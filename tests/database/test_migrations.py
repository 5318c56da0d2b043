"""Migrations: empty → head, head → base → head, and the ORM matches the migrated schema."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from database import migrate as mig
from database import open_database
from database.models import Base

TABLES = {"folders", "images", "classes", "model_versions", "predictions", "label_revisions", "jobs",
          "job_items", "workers"}


def _diff(engine) -> list:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_name": mig.mapped_name})
        return compare_metadata(ctx, Base.metadata)


def test_open_migrates_an_empty_database_to_head(url: str) -> None:
    db = open_database(url)
    try:
        assert db.revision() == mig.head_revision()
        assert TABLES <= set(inspect(db.engine).get_table_names())
        assert _diff(db.engine) == []
    finally:
        db.close()


def test_downgrade_to_base_and_upgrade_again(url: str) -> None:
    open_database(url).close()
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            mig.downgrade(conn, "base")
        with engine.connect() as conn:
            assert mig.current_revision(conn) is None
            assert not (TABLES & set(inspect(conn).get_table_names()))
        with engine.begin() as conn:
            mig.upgrade(conn)
        with engine.connect() as conn:
            assert mig.current_revision(conn) == mig.head_revision()
        assert _diff(engine) == []
    finally:
        engine.dispose()


def test_open_without_migrate_leaves_an_empty_database_empty(url: str) -> None:
    db = open_database(url, migrate=False)
    try:
        assert db.revision() is None
        assert not (TABLES & set(inspect(db.engine).get_table_names()))
    finally:
        db.close()


def test_migrations_form_one_line_from_base() -> None:
    script = mig.script_directory()
    assert len(script.get_heads()) == 1
    assert script.get_base() is not None
