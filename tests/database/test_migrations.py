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


def test_0014_lets_activations_record_a_routed_promotion_and_keeps_the_earlier_rows(url: str) -> None:
    """ADR 0060: the CHECK on ``model_activations.action`` gains 'route' (SQLite copies the table in batch
    mode: the rows must come through); a downgrade drops the 'route' rows and the old CHECK refuses them again."""
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from tests.database.old_rows import old_model_version

    engine = create_engine(url)
    insert = text("INSERT INTO model_activations (family, version_id, previous_id, version_name, previous_name, "
                  "action, author, note, created_at) VALUES ('classifier', 2, 1, 'v2', 'v1', :a, 'ann', NULL, "
                  "CURRENT_TIMESTAMP)")
    try:
        with engine.begin() as conn:
            mig.upgrade(conn, "0013_current_prediction")
            old_model_version(conn, 1, "classifier", True)
            old_model_version(conn, 2, "classifier", False)
            conn.execute(insert, {"a": "promote"})
        with engine.begin() as conn:
            mig.upgrade(conn)
            conn.execute(insert, {"a": "route"})
        with engine.connect() as conn:
            assert [r[0] for r in conn.execute(text("SELECT action FROM model_activations ORDER BY id"))] == [
                "promote", "route"]
        with engine.begin() as conn:
            mig.downgrade(conn, "0013_current_prediction")
        with engine.connect() as conn:
            assert [r[0] for r in conn.execute(text("SELECT action FROM model_activations"))] == ["promote"]
        try:
            with engine.begin() as conn:
                conn.execute(insert, {"a": "route"})
            refused = False
        except IntegrityError:
            refused = True
        assert refused
    finally:
        engine.dispose()


def test_0015_lets_each_parent_have_a_challenger_and_a_downgrade_keeps_the_newest(url: str) -> None:
    from sqlalchemy import text

    from tests.database.old_rows import old_model_version

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            mig.upgrade(conn)
            for vid in (1, 2, 3, 4):
                old_model_version(conn, vid, "classifier", vid == 1)
            conn.execute(text("UPDATE model_versions SET parent_id = 1, challenger = true WHERE id = 3"))
            conn.execute(text("UPDATE model_versions SET parent_id = 2, challenger = true WHERE id = 4"))
        with engine.begin() as conn:
            mig.downgrade(conn, "0014_routed_promotion")
        with engine.connect() as conn:
            assert [r[0] for r in conn.execute(text("SELECT id FROM model_versions WHERE challenger"))] == [4]
    finally:
        engine.dispose()


def test_a_dangling_reference_the_older_version_lived_with_does_not_refuse_the_upgrade(sqlite_url: str) -> None:
    """A session-46 probe: one job item pointing at a missing job, written with foreign keys off (the sqlite3 shell's
    default), refused every newer version for good ("would break 1 references", no table named)."""
    import sqlite3

    open_database(sqlite_url).close()
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:
        mig.downgrade(conn, "0012_inspector_flag")
    engine.dispose()
    path = sqlite_url.removeprefix("sqlite:///")
    raw = sqlite3.connect(path)
    raw.execute("INSERT INTO job_items (job_id, image_id, status, attempts) VALUES (999, 1, 'done', 0)")
    raw.commit()
    raw.close()
    db = open_database(sqlite_url)
    try:
        assert db.revision() == mig.head_revision()
    finally:
        db.close()


def test_two_processes_upgrading_a_server_database_at_once_both_succeed(pg_url: str) -> None:
    """A session-46 probe: two workers restarted together on an older PostgreSQL database ran the same migration
    twice; the second failed with "column label_class already exists", as if the database were broken."""
    import subprocess
    import sys

    engine = create_engine(pg_url)
    with engine.begin() as conn:
        mig.upgrade(conn, "0007_ood_in_domain")
        # rows enough for the migrations to take a moment, so the processes overlap
        conn.exec_driver_sql("INSERT INTO folders VALUES (1, '/parts', 'parts', now(), NULL)")
        conn.exec_driver_sql(
            "INSERT INTO images (id, folder_id, rel_path, size_bytes, mtime_ns, review_state, flagged, priority, "
            "missing, added_at, updated_at) SELECT i, 1, 'd' || mod(i, 50) || '/IMG_' || i || '.png', 10, 5, "
            "'unreviewed', false, 0, false, now(), now() FROM generate_series(1, 20000) i")
    engine.dispose()
    code = f"from database import open_database; open_database({pg_url!r}).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    db = open_database(pg_url)
    try:
        assert db.revision() == mig.head_revision()
    finally:
        db.close()


def test_each_database_has_its_own_id_kept_by_its_file(tmp_path) -> None:
    """Migration 0023 gives a database its own id (``Database.identity``), which a recovery file records: two
    databases differ, and the file's id is the same however often it is opened."""
    ids = []
    for name in ("a", "b", "a"):
        db = open_database(f"sqlite:///{tmp_path / name}.sqlite")
        ids.append(db.identity)
        db.close()
    assert all(isinstance(i, str) and len(i) == 32 for i in ids) and ids[0] == ids[2] != ids[1]
