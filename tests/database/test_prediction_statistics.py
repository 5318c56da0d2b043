"""PostgreSQL's statistics of the predictions follow the rows a model writes (issue 22).

Without them, right after a model's predictions were written (before autovacuum's next round)
PostgreSQL planned the queue's page as nested loops over every prediction: a 10k folder's
name-descending first page took 0.3-1.9 s instead of 3 ms (benchmarks/results/scale-final.md).
Every ``ANALYZE_AFTER`` committed rows, however batched, the table's statistics are refreshed.
"""
from __future__ import annotations

from sqlalchemy import event, text

import database.predictions as predictions_module
from database import Database, FileEntry, PredictionIn, new_worker_id, open_database

BATCH = 10
EVERY = 50


def _rows_in_statistics(db: Database) -> float:
    """``pg_class.reltuples``: the rows ANALYZE last saw (-1, or 0 before PostgreSQL 14: never)."""
    with db.engine.connect() as conn:
        return float(conn.execute(text("SELECT reltuples FROM pg_class WHERE relname = 'predictions'")).scalar_one())


def _setup(db: Database, monkeypatch, n: int) -> tuple[list[int], int]:
    monkeypatch.setattr(predictions_module, "ANALYZE_AFTER", EVERY)
    folder = db.folders.add("/data/line")
    ids = list(db.images.sync(folder.id, [FileEntry(f"{i:03d}.png", 1, i) for i in range(n)]).added_ids)
    mv = db.model_versions.register("anomaly", "v1", "/a", activate=True)
    return ids, mv.id


def _analyzed(db: Database) -> bool:
    return _rows_in_statistics(db) >= 1


def test_statistics_are_refreshed_after_every_bulk_of_predictions_written(db: Database, monkeypatch) -> None:
    ids, mv = _setup(db, monkeypatch, 120)
    batches = [ids[k:k + BATCH] for k in range(0, len(ids), BATCH)]
    for k, batch in enumerate(batches[:EVERY // BATCH], start=1):
        db.predictions.upsert_many([PredictionIn(i, mv, anomaly_score=i / 1000) for i in batch])
        if db.dialect != "postgresql":
            continue
        if k * BATCH < EVERY:
            assert not _analyzed(db), k  # (autovacuum does not count 40 rows of a new table)
        else:
            assert _rows_in_statistics(db) == EVERY  # refreshed as the 50th row was committed
    # Rewriting the same rows counts too (a model run again); the next refresh sees all of them.
    for batch in batches[:EVERY // BATCH]:
        db.predictions.upsert_many([PredictionIn(i, mv, anomaly_score=0.5) for i in batch])
    db.predictions.upsert_many([PredictionIn(i, mv, anomaly_score=0.1) for i in batches[-1]])
    if db.dialect == "postgresql":
        assert _rows_in_statistics(db) == EVERY  # the 10 new rows are not due yet
    assert len(db.predictions.image_ids_with(mv)) == EVERY + BATCH


def test_a_job_writing_a_few_predictions_at_a_time_refreshes_them_too(db: Database, monkeypatch) -> None:
    ids, mv = _setup(db, monkeypatch, 60)
    db.jobs.create("prelabel", {"families": ["anomaly"]}, ids)
    worker = new_worker_id()
    written = 0
    while (batch := db.jobs.claim_items(worker, 7)) is not None:
        assert db.jobs.complete_items(worker, [it.id for it in batch.items],
                                      [PredictionIn(it.image_id, mv, anomaly_score=0.3) for it in batch.items])
        written += len(batch.items)
        if db.dialect == "postgresql":
            assert _analyzed(db) == (written >= EVERY), written
    assert written == 60 and len(db.predictions.image_ids_with(mv)) == 60


def test_sqlite_has_nothing_to_refresh(sqlite_url: str, monkeypatch) -> None:
    with open_database(sqlite_url) as db:
        ids, mv = _setup(db, monkeypatch, EVERY)
        seen: list[str] = []
        event.listen(db.engine, "before_cursor_execute", lambda c, cur, st, *rest: seen.append(st))
        db.predictions.upsert_many([PredictionIn(i, mv, anomaly_score=0.2) for i in ids])
        assert not [s for s in seen if "ANALYZE" in s.upper()]

