"""The prediction that counts (``predictions.current_family``, 0013_current_prediction).

Today's rule: the active version's predictions count. The marker must say exactly that after
every write that can change it — a worker storing predictions of the active version and of
another one (a challenger, a model folder run by hand), the same rows stored again, an
activation, a roll back — and the review queue must show the rows it marks. Upgrading a
database written at 0012 marks the active versions' rows already there.
"""
from __future__ import annotations

import random

import pytest
from sqlalchemy import create_engine, select

from database import ConflictError, Database, open_database
from database import migrate as mig
from database.dto import FileEntry, PredictionIn
from database.models import ModelVersion, Prediction
from database.review_queue import QueueQuery, queue_row, queue_rows
from tests.database.old_rows import old_labelled_image, old_model_version, old_prediction


def _marked(db: Database) -> dict[tuple[int, int], str | None]:
    with db.session() as s:
        return {(i, v): f for i, v, f in s.execute(select(Prediction.image_id, Prediction.model_version_id,
                                                          Prediction.current_family))}


def _rule(db: Database) -> dict[tuple[int, int], str | None]:
    """What the marker must say: the version's family when it is active, else None."""
    with db.session() as s:
        active = {i: f for i, f, a in s.execute(select(ModelVersion.id, ModelVersion.family, ModelVersion.active))
                  if a}
    return {key: active.get(key[1]) for key in _marked(db)}


def test_the_marker_follows_stores_activations_and_roll_backs(db: Database) -> None:
    rng = random.Random(3)
    folder = db.folders.add("/line")
    db.images.sync(folder.id, [FileEntry(f"p{k:02d}.png", 10, 1) for k in range(30)])
    ids = [r.image_id for r in queue_rows(db, QueueQuery(folder_id=folder.id))]
    versions = {f: [db.model_versions.register(f, f"{f}-{k}", "/m").id for k in range(3)]
                for f in ("classifier", "anomaly")}
    db.model_versions.activate(versions["classifier"][0])
    for step in range(120):
        family = rng.choice(("classifier", "anomaly"))
        version = rng.choice(versions[family])
        op = rng.random()
        if op < 0.6:  # a worker's batch (new rows and rows stored again)
            batch = rng.sample(ids, rng.randint(1, 8))
            db.predictions.upsert_many([PredictionIn(i, version, predicted_class="dent", confidence=rng.random(),
                                                     anomaly_score=rng.random()) for i in batch])
        elif op < 0.8:
            db.model_versions.activate(version)
        elif op < 0.9:
            active = db.model_versions.active(family)
            if active is not None and active.id == version:   # refused: it would replace itself (a session-50 audit)
                with pytest.raises(ConflictError):
                    db.model_versions.change_active(version, "ann", action="rollback", previous_becomes_challenger=True)
            else:
                db.model_versions.change_active(version, "ann", action="rollback", previous_becomes_challenger=True)
        else:
            db.predictions.delete_for_images(version, rng.sample(ids, 5))
        assert _marked(db) == _rule(db), step
    assert any(f for f in _marked(db).values()) and any(f is None for f in _marked(db).values())


def test_the_queue_shows_the_marked_rows_and_follows_an_activation(db: Database) -> None:
    folder = db.folders.add("/line")
    db.images.sync(folder.id, [FileEntry(f"p{k}.png", 10, 1) for k in range(4)])
    ids = [r.image_id for r in queue_rows(db, QueueQuery(folder_id=folder.id))]
    old = db.model_versions.register("classifier", "old", "/m", activate=True).id
    new = db.model_versions.register("classifier", "new", "/m").id  # a challenger's answers, stored beside
    db.predictions.upsert_many([PredictionIn(i, old, predicted_class="dent", confidence=0.5) for i in ids])
    db.predictions.upsert_many([PredictionIn(i, new, predicted_class="scratch", confidence=0.9) for i in ids[:3]])
    assert [r.predicted_class for r in queue_rows(db, QueueQuery(folder_id=folder.id))] == ["dent"] * 4
    assert queue_rows(db, QueueQuery(folder_id=folder.id, class_name="scratch")) == []
    db.model_versions.change_active(new, "ann", action="promote")
    rows = queue_rows(db, QueueQuery(folder_id=folder.id))
    assert [r.predicted_class for r in rows] == ["scratch", "scratch", "scratch", None]  # the new one did not run on p3
    row = queue_row(db, ids[3])
    assert row is not None and row.predicted_class is None
    assert len(queue_rows(db, QueueQuery(folder_id=folder.id, class_name="scratch"))) == 3
    db.model_versions.change_active(old, "ann", action="rollback")
    assert [r.predicted_class for r in queue_rows(db, QueueQuery(folder_id=folder.id))] == ["dent"] * 4


def test_upgrade_from_0012_marks_the_active_versions_rows(url: str) -> None:
    old_labelled_image(url, "0012_inspector_flag", "SN1.png", "crack", "corrected")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for vid, family, active in ((1, "classifier", True), (2, "classifier", False), (3, "anomaly", True)):
                old_model_version(conn, vid, family, active)
                old_prediction(conn, 7, vid)
    finally:
        engine.dispose()
    db = open_database(url)
    try:
        assert db.revision() == mig.head_revision()
        assert _marked(db) == {(7, 1): "classifier", (7, 2): None, (7, 3): "anomaly"}
    finally:
        db.close()


def test_a_named_versions_rows_keep_their_images_through_stores_and_activations(db: Database) -> None:
    """A routed job's rows (``counts``) take the marker; the active version's later rows and an
    activation leave those images alone; ``set_current`` re-marks and writes nothing the second time."""
    folder = db.folders.add("/line")
    db.images.sync(folder.id, [FileEntry(f"p{k}.png", 10, 1) for k in range(4)])
    ids = [r.image_id for r in queue_rows(db, QueueQuery(folder_id=folder.id))]
    steel = db.model_versions.register("classifier", "steel", "/m", activate=True).id
    tile = db.model_versions.register("classifier", "tile", "/m").id
    newer = db.model_versions.register("classifier", "steel-2", "/m").id
    db.predictions.upsert_many([PredictionIn(i, steel, predicted_class="dent") for i in ids])
    db.predictions.upsert_many([PredictionIn(i, tile, predicted_class="crack", counts=True) for i in ids[:2]])

    def shown() -> list[str | None]:
        return [r.predicted_class for r in queue_rows(db, QueueQuery(folder_id=folder.id))]

    assert shown() == ["crack", "crack", "dent", "dent"]
    db.predictions.upsert_many([PredictionIn(i, steel, predicted_class="pit") for i in ids])  # stored again
    db.predictions.upsert_many([PredictionIn(i, newer, predicted_class="scale") for i in ids])  # not active
    assert shown() == ["crack", "crack", "pit", "pit"]
    db.model_versions.activate(newer)
    assert shown() == ["crack", "crack", "scale", "scale"]
    with db.session() as s:  # one row counts per image
        assert sorted(s.scalars(select(Prediction.image_id).where(Prediction.current_family == "classifier"))) == ids
    assert db.predictions.set_current_images("classifier", {ids[0]: newer, ids[2]: tile, ids[3]: None}) == (
        4, {ids[0], ids[2], ids[3]})   # the images a re-mark re-flags
    assert shown() == ["scale", "crack", None, None]  # the tile model never ran on p2: nothing counts there
    assert db.predictions.set_current_images("classifier", {ids[0]: newer, ids[2]: tile, ids[3]: None}) == (0, set())
    db.predictions.upsert_many([PredictionIn(ids[2], tile, predicted_class="crack", counts=True)])
    assert shown() == ["scale", "crack", "crack", None]
