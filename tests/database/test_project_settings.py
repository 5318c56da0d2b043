"""The project settings table: one shared copy of thresholds, auto pre-label and routing."""
from __future__ import annotations

from sqlalchemy import create_engine, inspect

from database import Database, open_database
from database import migrate as mig


def test_values_round_trip_and_replace(db: Database) -> None:
    repo = db.project_settings
    assert repo.all() == {} and repo.get("flags", "absent") == "absent"
    repo.put("flags", {"min_confidence": 0.7, "anomaly_threshold": None}, by="ann")
    repo.put("auto_prelabel", False)
    assert repo.get("flags") == {"min_confidence": 0.7, "anomaly_threshold": None}
    assert repo.get("auto_prelabel") is False
    repo.put("flags", {"min_confidence": 0.2})
    assert repo.all() == {"flags": {"min_confidence": 0.2}, "auto_prelabel": False}


def test_put_missing_never_replaces_a_stored_value(db: Database) -> None:
    db.project_settings.put("routing", {"rules": []})
    written = db.project_settings.put_missing({"routing": {"rules": [{"pattern": "*", "families": []}]},
                                               "flags": {"min_targets": 2}})
    assert written == ["flags"]
    assert db.project_settings.get("routing") == {"rules": []}
    assert db.project_settings.put_missing({"flags": {"min_targets": 5}}) == []
    assert db.project_settings.get("flags") == {"min_targets": 2}


def test_a_database_of_the_first_schema_gains_the_table_and_keeps_its_rows(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            mig.upgrade(conn, "0001_initial")
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO folders (root_path, name, added_at) "
                                 "VALUES ('/data/a', 'a', '2026-01-01 00:00:00')")
        assert "project_settings" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()
    with open_database(url) as db:
        assert "project_settings" in inspect(db.engine).get_table_names()
        assert [f.name for f in db.folders.list()] == ["a"]
        db.project_settings.put("auto_prelabel", True)
        assert db.project_settings.get("auto_prelabel") is True
