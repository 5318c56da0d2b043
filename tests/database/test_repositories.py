"""Repositories: folders/images, classes, model versions, predictions, labels (SQLite and PostgreSQL)."""
from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import func, select

from database import (
    UNCHANGED,
    AnomalyVerdict,
    ConflictError,
    Database,
    FileEntry,
    ImageInfo,
    ImageQuery,
    LabelChange,
    LabelSource,
    PredictionIn,
    ReviewState,
)
from database.models import Image


def _entries(n: int, size: int = 100, prefix: str = "img") -> list[FileEntry]:
    return [FileEntry(f"{prefix}/{i:05d}.png", size, 1_000 + i, content_hash=f"h{i}") for i in range(n)]


def _folder_with_images(db: Database, n: int = 5) -> tuple[int, list[int]]:
    folder = db.folders.add("/data/parts")
    res = db.images.sync(folder.id, _entries(n))
    return folder.id, list(res.added_ids)


def test_folders(db: Database) -> None:
    a = db.folders.add("/data/parts", "Parts")
    assert db.folders.add("/data/parts").id == a.id  # adding again returns the same folder
    b = db.folders.add("/data/other")
    assert b.name == "other"
    assert [f.name for f in db.folders.list()] == ["Parts", "other"]  # in the order added
    assert db.folders.by_path("/data/parts") == a
    db.folders.remove(b.id)
    assert db.folders.get(b.id) is None


def test_sync_is_incremental_and_keeps_labels(db: Database) -> None:
    folder_id, ids = _folder_with_images(db, 4)
    mv = db.model_versions.register("classifier", "v1", "/ckpt/v1")
    db.predictions.upsert_many([PredictionIn(i, mv.id, predicted_class="ok") for i in ids])
    db.labels.append(ids[3], LabelChange(ReviewState.CORRECTED, class_name="scratch"), "ann")

    again = db.images.sync(folder_id, _entries(4))
    assert (again.added_ids, again.changed_ids, again.unchanged, again.missing) == ((), (), 4, 0)

    changed = _entries(4)
    changed[1] = FileEntry(changed[1].rel_path, 999, 5, content_hash="new", width=8, height=6)
    res = db.images.sync(folder_id, changed[:3] + [FileEntry("img/new.png", 1, 1)])
    assert res.changed_ids == (ids[1],) and res.missing == 1 and res.unchanged == 2 and len(res.added_ids) == 1
    assert db.predictions.get(ids[1], mv.id) is None          # stale prediction dropped
    assert db.predictions.get(ids[0], mv.id) is not None
    img = db.images.get(ids[1])
    assert (img.size_bytes, img.content_hash, img.width, img.height) == (999, "new", 8, 6)
    assert db.images.get(ids[3]).missing
    assert db.labels.current(ids[3]).class_name == "scratch"   # a missing file keeps its label
    assert db.images.count(ImageQuery(folder_id=folder_id)) == 4
    assert db.images.count(ImageQuery(folder_id=folder_id, include_missing=True)) == 5

    back = db.images.sync(folder_id, _entries(4), complete=False)
    assert back.restored == 1 and not db.images.get(ids[3]).missing
    assert db.images.get(ids[3]).review_state is ReviewState.CORRECTED


def test_bulk_index_of_ten_thousand_files(db: Database) -> None:
    folder = db.folders.add("/data/big")
    res = db.images.sync(folder.id, _entries(10_000))
    assert len(res.added_ids) == 10_000 and len(set(res.added_ids)) == 10_000
    assert db.images.count(ImageQuery(folder_id=folder.id)) == 10_000
    assert db.images.sync(folder.id, _entries(10_000)).unchanged == 10_000


def test_sync_unknown_folder_is_refused(db: Database) -> None:
    with pytest.raises(ConflictError):
        db.images.sync(12345, _entries(1))


def test_review_queue_filters_sorts_and_counts(db: Database) -> None:
    folder_id, ids = _folder_with_images(db, 6)
    mv = db.model_versions.register("anomaly", "v1", "/ckpt/a")
    scores = [0.9, 0.1, 0.5, None, 0.7, 0.3]
    db.predictions.upsert_many([PredictionIn(i, mv.id, anomaly_score=s, confidence=s,
                                             predicted_class="bad" if s and s > 0.4 else "good")
                                for i, s in zip(ids, scores) if s is not None])
    db.labels.append(ids[0], LabelChange(ReviewState.ACCEPTED), "ann")
    db.labels.append(ids[1], LabelChange(ReviewState.REJECTED), "ann")
    db.images.set_flagged([ids[2], ids[4]], True)
    db.images.set_priorities({ids[5]: 3.0, ids[2]: 2.0})
    db.images.set_error(ids[3], "cannot decode")

    def q(**kw) -> list[int]:
        return [im.id for im in db.images.query(ImageQuery(folder_id=folder_id, **kw))]

    assert q() == ids
    assert q(states=(ReviewState.UNREVIEWED,)) == [ids[2], ids[3], ids[4], ids[5]]
    assert q(flagged=True) == [ids[2], ids[4]]
    assert q(has_error=True) == [ids[3]]
    assert q(sort="priority", descending=True)[:2] == [ids[5], ids[2]]
    assert q(model_version_id=mv.id, sort="anomaly_score", descending=True) == [ids[0], ids[4], ids[2], ids[5],
                                                                                 ids[1], ids[3]]
    assert q(model_version_id=mv.id, sort="anomaly_score") == [ids[1], ids[5], ids[2], ids[4], ids[0], ids[3]]
    assert q(model_version_id=mv.id, min_anomaly_score=0.4) == [ids[0], ids[2], ids[4]]
    assert q(model_version_id=mv.id, predicted_class="good") == [ids[1], ids[5]]
    assert q(model_version_id=mv.id, min_confidence=0.2, max_confidence=0.6) == [ids[2], ids[5]]
    assert q(limit=2, offset=1) == ids[1:3]
    assert q(path_contains="00003") == [ids[3]]
    assert q(path_contains="%") == []  # wildcards are literal
    with pytest.raises(ValueError):
        q(sort="anomaly_score")
    counts = db.images.state_counts(folder_id)
    assert counts == {ReviewState.UNREVIEWED: 4, ReviewState.ACCEPTED: 1, ReviewState.CORRECTED: 0,
                      ReviewState.REJECTED: 1}
    assert db.images.count(ImageQuery(folder_id=folder_id, model_version_id=mv.id, sort="anomaly_score",
                                      min_anomaly_score=0.4)) == 3
    assert db.images.path_of(ids[0]) == "/data/parts/img/00000.png"
    assert [i.id for i in db.images.get_many([ids[2], 99999, ids[0]])] == [ids[2], ids[0]]
    assert db.images.by_path(folder_id, "img/00001.png").id == ids[1]


def test_classes(db: Database) -> None:
    got = db.classes.set("classifier", ["good", "scratch", "dent"])
    assert [(c.name, c.index) for c in got] == [("good", 0), ("scratch", 1), ("dent", 2)]
    assert db.classes.add("classifier", "crack").index == 3
    assert db.classes.add("classifier", "good").index == 0
    assert db.classes.names("classifier") == ["good", "scratch", "dent", "crack"]
    assert db.classes.names("segmenter") == []
    db.classes.set("classifier", ["dent", "good"])
    assert db.classes.names("classifier") == ["dent", "good"]
    with pytest.raises(ConflictError):
        db.classes.set("classifier", ["a", "a"])


def test_label_classes_are_counted_per_folder_and_subfolder_with_wildcards_taken_literally(db: Database) -> None:
    """The label panel offers the classes an unrouted subfolder's labels use (session 35): the path prefix is
    matched as text, so "lot_1/" does not take "lotX1/" and "a%/" does not take everything."""
    folder = db.folders.add("/data/parts")
    other = db.folders.add("/data/other")
    names = ["lot_1/a.png", "lot_1/b.png", "lotX1/c.png", "a%/d.png", "top.png"]
    ids = dict(zip(names, db.images.sync(folder.id, [FileEntry(n, 10, 1, content_hash=n) for n in names]).added_ids))
    (far,) = db.images.sync(other.id, [FileEntry("lot_1/e.png", 10, 1, content_hash="e")]).added_ids
    for name, cls in (("lot_1/a.png", "good"), ("lot_1/b.png", "broken"), ("lotX1/c.png", "crack"),
                      ("a%/d.png", "dent"), ("top.png", "good")):
        db.labels.append(ids[name], LabelChange(ReviewState.CORRECTED, class_name=cls), "ann")
    db.labels.append(far, LabelChange(ReviewState.CORRECTED, class_name="far"), "ann")
    assert db.images.label_class_counts(folder.id, "lot_1/") == {"good": 1, "broken": 1}
    assert db.images.label_class_counts(folder.id, "a%/") == {"dent": 1}
    assert db.images.label_class_counts(folder.id) == {"good": 2, "broken": 1, "crack": 1, "dent": 1}
    assert db.images.label_class_counts()["far"] == 1


def test_model_versions_one_active_per_family(db: Database) -> None:
    v1 = db.model_versions.register("classifier", "v1", "/ckpt/v1", config={"depth": 2}, bundled=True,
                                    activate=True)
    v2 = db.model_versions.register("classifier", "v2", "/ckpt/v2", metrics={"acc": 0.9}, parent_id=v1.id)
    s1 = db.model_versions.register("segmenter", "s1", "/ckpt/s1", activate=True)
    assert db.model_versions.active("classifier") == v1 and v1.bundled and v1.config == {"depth": 2}
    db.model_versions.activate(v2.id)
    assert db.model_versions.active("classifier").id == v2.id
    assert not db.model_versions.get(v1.id).active
    assert db.model_versions.active("segmenter").id == s1.id  # other families untouched
    assert db.model_versions.active("anomaly") is None
    assert [v.name for v in db.model_versions.list("classifier")] == ["v1", "v2"]
    assert db.model_versions.update_metrics(v2.id, {"f1": 0.8}).metrics == {"acc": 0.9, "f1": 0.8}
    assert db.model_versions.by_name("classifier", "v2").parent_id == v1.id
    with pytest.raises(ConflictError):
        db.model_versions.register("classifier", "v1", "/elsewhere")
    with pytest.raises(ConflictError):
        db.model_versions.activate(9999)


def test_database_enforces_a_single_active_version(db: Database) -> None:
    from database.models import ModelVersion
    db.model_versions.register("anomaly", "a1", "/a1", activate=True)
    with pytest.raises(ConflictError):
        with db.session(write=True) as s:
            s.add(ModelVersion(family="anomaly", name="a2", checkpoint_path="/a2", active=True))


def test_predictions_upsert_and_read(db: Database) -> None:
    _, ids = _folder_with_images(db, 3)
    mv = db.model_versions.register("segmenter", "s1", "/ckpt")
    mv2 = db.model_versions.register("segmenter", "s2", "/ckpt2")
    png = b"\x89PNG fake bytes"
    db.predictions.upsert_many([PredictionIn(ids[0], mv.id, mask_png=png, target_count=2, flags=("small",)),
                                PredictionIn(ids[1], mv.id, class_scores={"good": 0.2, "bad": 0.8},
                                             predicted_class="bad", confidence=0.8)])
    p = db.predictions.get(ids[0], mv.id)
    assert (p.mask_png, p.target_count, p.flags) == (png, 2, ("small",))
    db.predictions.upsert_many([PredictionIn(ids[0], mv.id, target_count=5, anomaly_map_ref="ab/cdef.npy"),
                                PredictionIn(ids[0], mv2.id, target_count=1)])
    p2 = db.predictions.get(ids[0], mv.id)
    assert p2.id == p.id and p2.target_count == 5 and p2.mask_png is None and p2.anomaly_map_ref == "ab/cdef.npy"
    assert db.predictions.get(ids[1], mv.id).class_scores == {"good": 0.2, "bad": 0.8}
    assert [x.model_version_id for x in db.predictions.for_image(ids[0])] == [mv.id, mv2.id]
    assert set(db.predictions.for_images(ids, mv.id)) == {ids[0], ids[1]}
    assert db.predictions.image_ids_with(mv.id) == {ids[0], ids[1]}
    assert db.predictions.image_ids_with(mv.id, among=[ids[1], ids[2]]) == {ids[1]}   # of these only (session 51)
    assert db.predictions.image_ids_with(mv.id, among=[*range(10**6, 10**6 + 1200), ids[0]]) == {ids[0]}  # chunked
    db.predictions.delete_for_model_version(mv.id)
    assert db.predictions.image_ids_with(mv.id) == set()


def test_label_revisions_append_carry_over_and_history(db: Database) -> None:
    _, ids = _folder_with_images(db, 2)
    mv = db.model_versions.register("classifier", "v1", "/ckpt")
    db.predictions.upsert_many([PredictionIn(ids[0], mv.id, predicted_class="good")])
    pred = db.predictions.get(ids[0], mv.id)
    assert db.labels.current(ids[0]) is None

    r1 = db.labels.append(ids[0], LabelChange(ReviewState.ACCEPTED, class_name="good", from_prediction_id=pred.id),
                          "alice")
    assert (r1.revision, r1.changed, r1.from_prediction_id) == (1, ("class", "state"), pred.id)
    mask = b"\x89PNG mask"
    r2 = db.labels.append(ids[0], LabelChange(ReviewState.CORRECTED, mask_png=mask), "bob")
    assert (r2.revision, r2.class_name, r2.mask_png, r2.changed) == (2, "good", mask, ("mask", "state"))
    r3 = db.labels.append(ids[0], LabelChange(ReviewState.CORRECTED, anomaly_verdict=AnomalyVerdict.ANOMALOUS,
                                              anomaly_mask_png=mask, class_name=None, note="edge crack"), "bob")
    assert r3.class_name is None and r3.mask_png == mask and r3.anomaly_verdict is AnomalyVerdict.ANOMALOUS
    assert db.images.get(ids[0]).review_state is ReviewState.CORRECTED
    assert [r.revision for r in db.labels.history(ids[0])] == [1, 2, 3]
    assert db.labels.current(ids[0]) == r3

    undo = db.labels.revert(ids[0], 1, "bob")
    assert (undo.revision, undo.class_name, undo.mask_png, undo.review_state) == (4, "good", None, ReviewState.ACCEPTED)
    assert db.images.get(ids[0]).review_state is ReviewState.ACCEPTED
    cleared = db.labels.revert(ids[0], 0, "bob")
    assert cleared.review_state is ReviewState.UNREVIEWED and cleared.class_name is None
    assert len(db.labels.history(ids[0])) == 5  # history is never rewritten

    db.labels.append(ids[1], LabelChange(ReviewState.ACCEPTED, class_name="dent"), "alice")
    assert {k: v.class_name for k, v in db.labels.current_many(ids).items()} == {ids[0]: None, ids[1]: "dent"}
    assert [r.image_id for r in db.labels.current_labels()] == [ids[1]]
    assert len(db.labels.current_labels(states=(ReviewState.UNREVIEWED,))) == 1
    with pytest.raises(ConflictError):
        db.labels.revert(ids[1], 7, "bob")
    with pytest.raises(ConflictError):
        db.labels.append(999999, LabelChange(ReviewState.ACCEPTED), "bob")
    with pytest.raises(ValueError):
        db.labels.append(ids[1], LabelChange(ReviewState.CORRECTED, anomaly_verdict="maybe"), "bob")


def test_dtos_are_frozen_plain_data(db: Database) -> None:
    _, ids = _folder_with_images(db, 1)
    img = db.images.get(ids[0])
    assert isinstance(img, ImageInfo)
    with pytest.raises(dataclasses.FrozenInstanceError):
        img.review_state = ReviewState.ACCEPTED  # type: ignore[misc]
    v = db.model_versions.register("classifier", "v1", "/c", config={"a": [1]})
    v.config["a"].append(2)  # the caller's copy; the stored config is untouched
    assert db.model_versions.get(v.id).config == {"a": [1]}
    assert repr(UNCHANGED) == "UNCHANGED" and not UNCHANGED


def test_non_finite_figures_are_stored_as_null(db: Database) -> None:
    """An AUROC without defect images is NaN in a card: PostgreSQL's JSON refuses NaN, so it is stored as null."""
    nan, inf = float("nan"), float("inf")
    v = db.model_versions.register("anomaly", "nan-card", "/m", card={"metrics": {"test": {"pixel_auroc": nan}}},
                                   metrics={"pro": nan, "by_type": [1.0, inf]}, config={"x": -inf})
    got = db.model_versions.get(v.id)
    assert got.card == {"metrics": {"test": {"pixel_auroc": None}}} and got.config == {"x": None}
    assert got.metrics == {"pro": None, "by_type": [1.0, None]}
    assert db.model_versions.update_metrics(v.id, {"image_auroc": nan}).metrics["image_auroc"] is None


def test_a_save_returns_the_stored_revision_and_sets_only_its_image(db: Database) -> None:
    """On PostgreSQL the revision's INSERT and the image's UPDATE are one statement (ADR 0034):
    the id handed back is the stored revision's, and only the saved image's keys move."""
    _, ids = _folder_with_images(db, 3)
    got = [db.labels.append(i, LabelChange(ReviewState.CORRECTED, class_name=f"c{k}"), "ann")
           for k, i in enumerate(ids[:2] * 2)]
    for rev in got:
        stored = next(r for r in db.labels.history(rev.image_id) if r.revision == rev.revision)
        assert (stored.id, stored.class_name, stored.changed) == (rev.id, rev.class_name, rev.changed)
    assert len({r.id for r in got}) == 4
    assert [db.images.get(x).review_state for x in ids] == [ReviewState.CORRECTED] * 2 + [ReviewState.UNREVIEWED]
    with db.session() as s:
        classes = dict(s.execute(select(Image.id, Image.label_class).where(Image.id.in_(ids))).all())
    assert classes == {ids[0]: "c2", ids[1]: "c3", ids[2]: None}


def test_labels_chosen_by_label_next_are_counted_per_class(db: Database) -> None:
    """A revision saved as a "label next" proposal keeps its source; the retrain command counts such images per
    class (reviewed, present, by their current class), whatever was saved after."""
    folder, ids = _folder_with_images(db, 5)
    other = db.folders.add("/data/other")
    far = db.images.sync(other.id, _entries(1, prefix="far")).added_ids[0]
    chosen = LabelChange(ReviewState.CORRECTED, class_name="dent", source=LabelSource.LABEL_NEXT)
    r = db.labels.append(ids[0], chosen, "alice")
    assert r.source == "label_next" and db.labels.current(ids[0]).source == "label_next"
    db.labels.append(ids[0], LabelChange(ReviewState.CORRECTED, class_name="scratch"), "bob")  # corrected later
    db.labels.append(ids[1], chosen, "alice")
    db.labels.append(ids[2], LabelChange(ReviewState.ACCEPTED, class_name="dent"), "alice")  # the queue's order
    db.labels.append(ids[3], chosen, "alice")
    db.labels.revert(ids[3], 0, "alice")  # undone: unreviewed again, not counted
    db.labels.append_many([(ids[4], chosen, 0), (far, chosen, 0)], "alice")
    assert db.labels.history(ids[4])[0].source == "label_next"
    assert db.labels.chosen_by_label_next(folder) == {"dent": 2, "scratch": 1}
    assert db.labels.chosen_by_label_next() == {"dent": 3, "scratch": 1}
    db.images.mark_missing(folder, ["img/00001.png"])
    assert db.labels.chosen_by_label_next(folder) == {"dent": 1, "scratch": 1}
    with pytest.raises(ValueError):
        db.labels.append(ids[2], LabelChange(ReviewState.CORRECTED, source="guess"), "bob")


def test_a_file_whose_bytes_changed_keeps_no_models_flag(db: Database) -> None:
    """A session-46 probe: a replaced file's answers were deleted but it stayed "flagged" (the flagged filter, its
    count and the chip) until a worker answered, never where none runs; an inspector's flag was cleared too (ADR 0056)
    while the image stayed flagged."""
    folder_id, ids = _folder_with_images(db, 3)
    db.images.set_flagged(ids[:2], True)                   # by the models
    db.images.set_inspector_flag([ids[2]], True, "ann")     # by a person
    changed = _entries(3)
    changed = [FileEntry(e.rel_path, 999, 5, content_hash=f"new{i}") for i, e in enumerate(changed)]
    db.images.sync(folder_id, [changed[0], changed[2], _entries(3)[1]])
    assert not db.images.get(ids[0]).flagged and not db.images.get(ids[2]).flagged
    assert db.images.get(ids[1]).flagged                  # unchanged: its answers and flag stand
    assert db.images.count(ImageQuery(folder_id=folder_id, flagged=True)) == 1


def test_a_row_follows_its_file_to_a_new_path(db: Database) -> None:
    """``ImageRepository.move`` (indexing finds a file moved or renamed inside its folder): the row keeps its
    id, labels and predictions, takes the new path, size and time, is no longer missing, and the queue's
    name key follows; a pair whose new path already has a row, or whose old row is gone, is skipped."""
    folder_id, ids = _folder_with_images(db, 3)
    mv = db.model_versions.register("classifier", "v1", "/ckpt/v1")
    db.predictions.upsert_many([PredictionIn(ids[0], mv.id, predicted_class="ok", confidence=0.5)])
    db.labels.append(ids[0], LabelChange(ReviewState.CORRECTED, class_name="scratch"), "ann")
    db.images.mark_missing(folder_id, ["img/00000.png"])
    moved = db.images.move(folder_id, [("img/00000.png", FileEntry("lot/Ä-00000.png", 101, 7, content_hash="h0")),
                                       ("img/00001.png", FileEntry("img/00002.png", 100, 7, content_hash="h1")),
                                       ("img/nope.png", FileEntry("img/else.png", 1, 1, content_hash="x"))])
    assert moved == {"lot/Ä-00000.png": ids[0]}
    img = db.images.get(ids[0])
    assert (img.rel_path, img.size_bytes, img.mtime_ns, img.missing) == ("lot/Ä-00000.png", 101, 7, False)
    assert db.labels.current(ids[0]).class_name == "scratch" and db.predictions.get(ids[0], mv.id) is not None
    assert db.images.get(ids[1]).rel_path == "img/00001.png"
    from database.models import Prediction
    with db.session() as s:
        key = s.scalar(select(Prediction.name_key).where(Prediction.image_id == ids[0]))
        assert key == s.scalar(select(func.lower(Image.rel_path)).where(Image.id == ids[0]))  # the database's lower()
