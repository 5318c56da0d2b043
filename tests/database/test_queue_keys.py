"""The queue's cached keys (migration 0008_queue_keys, ADR 0024) never disagree with the truth.

``images.label_class`` caches the class of each image's newest label revision: after saves,
undo, imports (a batch, and a refused batch that writes nothing) and the writes around
retraining (predictions replaced, a model activated, a re-index that drops predictions) it
equals what the revision table says. ``predictions.name_key`` is its image's folded name.
Upgrading a database written at 0007 fills both from the rows already there.
"""
from __future__ import annotations

import random
import string

import pytest
from sqlalchemy import create_engine, select, text

from database import Database, open_database
from database import migrate as mig
from database.dto import FileEntry, LabelChange, PredictionIn
from database.errors import ConflictError
from database.models import Image, Prediction
from database.states import ReviewState
from tests.database.old_rows import old_labelled_image, old_model_version, old_prediction

CLASSES = ("scratch", "dent", None)


def _cached(db: Database) -> dict[int, str | None]:
    with db.session() as s:
        return {i: c for i, c in s.execute(select(Image.id, Image.label_class))}


def _truth(db: Database, image_ids: list[int]) -> dict[int, str | None]:
    """Each image's newest revision's class, read from the history (None: no revision)."""
    newest = db.labels.current_many(image_ids)
    return {i: newest[i].class_name if i in newest else None for i in image_ids}


def _assert_agrees(db: Database) -> None:
    cached = _cached(db)
    assert cached == _truth(db, sorted(cached))
    with db.session() as s:
        states = {i: st for i, st in s.execute(select(Image.id, Image.review_state))}
    newest = db.labels.current_many(sorted(states))
    assert states == {i: newest[i].review_state.value if i in newest else "unreviewed" for i in states}


def test_label_class_follows_saves_undo_imports_and_model_writes(db: Database) -> None:
    rng = random.Random(11)
    folder = db.folders.add("/line")
    names = [f"p{k:03d}.png" for k in range(40)]
    db.images.sync(folder.id, [FileEntry(p, 10, 1, content_hash=f"h{k}") for k, p in enumerate(names)])
    ids = sorted(_cached(db))
    mv = db.model_versions.register("classifier", "c1", "/m")
    for step in range(300):
        image_id = rng.choice(ids)
        op = rng.random()
        if op < 0.4:  # a save (some change only the state: the class carries over)
            cls = rng.choice(CLASSES) if rng.random() < 0.7 else None
            change = LabelChange(rng.choice(list(ReviewState)), class_name=cls) if cls or rng.random() < 0.5 \
                else LabelChange(rng.choice(list(ReviewState)))
            db.labels.append(image_id, change, "ann")
        elif op < 0.55:  # undo to an earlier revision (0: no label)
            history = db.labels.history(image_id)
            db.labels.revert(image_id, rng.randint(0, len(history)) if history else 0, "ann")
        elif op < 0.7:  # an import: one transaction over several images
            batch = rng.sample(ids, 6)
            current = db.labels.current_many(batch)
            changes = [(i, LabelChange(ReviewState.CORRECTED, class_name=rng.choice(CLASSES)),
                        current[i].revision if i in current else 0) for i in batch]
            if rng.random() < 0.3:  # a stale preview: the whole batch is refused, nothing written
                i, change, seen = changes[0]
                changes[0] = (i, change, seen + 1)
                with pytest.raises(ConflictError):
                    db.labels.append_many(changes, "import")
            else:
                db.labels.append_many(changes, "import")
        elif op < 0.8:  # pre-labelling / retraining: predictions replaced, a version activated
            db.predictions.upsert_many([PredictionIn(i, mv.id, predicted_class=rng.choice(("scratch", "dent")),
                                                     confidence=rng.random()) for i in rng.sample(ids, 8)])
            if step % 20 == 0:
                mv = db.model_versions.register("classifier", f"c{step + 2}", "/m", activate=True)
        elif op < 0.9:  # new pixels under a name: predictions dropped, labels kept
            k = ids.index(image_id)
            db.images.sync(folder.id, [FileEntry(names[k], 11, step, content_hash=f"x{step}")], complete=False)
        else:
            db.images.set_flagged([image_id], rng.random() < 0.5)
        if step % 25 == 0:
            _assert_agrees(db)
    _assert_agrees(db)
    assert {c for c in _cached(db).values()} >= {"scratch", "dent"}


def test_prediction_name_key_is_its_image_folded_name(db: Database) -> None:
    folder = db.folders.add("/line")
    db.images.sync(folder.id, [FileEntry(p, 10, 1) for p in ("Lot_A/Part1.PNG", "b.png", "ÄB.png")])
    mv = db.model_versions.register("anomaly", "a1", "/m", activate=True)
    ids = sorted(_cached(db))
    db.predictions.upsert_many([PredictionIn(i, mv.id, anomaly_score=0.5) for i in ids])
    db.predictions.upsert_many([PredictionIn(ids[0], mv.id, anomaly_score=0.7)])  # an update keeps it
    with db.session() as s:
        got = {i: k for i, k in s.execute(select(Prediction.image_id, Prediction.name_key))}
        want = {i: k for i, k in s.execute(select(Image.id, text("lower(images.rel_path)")).select_from(Image))}
    assert got == want and got[ids[0]] == "lot_a/part1.png"


def test_upgrade_from_0007_fills_the_keys_from_the_rows_there(url: str) -> None:
    old_labelled_image(url, "0007_ood_in_domain", "Lot1/SN1.png", "crack", "corrected")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO label_revisions (image_id, revision, author, created_at, changed, "
                              "class_name, review_state) VALUES (7, 2, 'bob', CURRENT_TIMESTAMP, 'class', "
                              "'dent', 'corrected')"))
            conn.execute(text("INSERT INTO images (id, folder_id, rel_path, size_bytes, mtime_ns, review_state, "
                              "flagged, priority, missing, added_at, updated_at) VALUES (8, 1, 'Other.png', 10, 5, "
                              "'unreviewed', false, 0, false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
            old_model_version(conn, 1, "segmenter", True)
            for image_id in (7, 8):
                old_prediction(conn, image_id, 1, target_count=2)
    finally:
        engine.dispose()
    db = open_database(url)
    try:
        assert db.revision() == mig.head_revision()
        assert _cached(db) == {7: "dent", 8: None}
        with db.session() as s:
            keys = {i: k for i, k in s.execute(select(Prediction.image_id, Prediction.name_key))}
        assert keys == {7: "lot1/sn1.png", 8: "other.png"}
        db.labels.append(7, LabelChange(ReviewState.ACCEPTED, class_name="scratch"), "ann")
        _assert_agrees(db)
    finally:
        db.close()


@pytest.mark.parametrize("bound", [3, 2000])  # few candidates: bound to them; many: the name walk
def test_text_filter_by_its_candidates_agrees_with_a_straightforward_filter(db: Database, monkeypatch,
                                                                            bound: int) -> None:
    import database.review_queue as rq
    monkeypatch.setattr(rq, "TEXT_CANDIDATES", bound)
    folder = db.folders.add("/line")
    other = db.folders.add("/other")
    names = [f"Lot{k % 4}/Part_{k:03d}.png" for k in range(60)] + ["lot9/ÄBC_part.png", "x%y_z.png"]
    db.images.sync(folder.id, [FileEntry(p, 10, 1) for p in names])
    db.images.sync(other.id, [FileEntry(p, 10, 1) for p in names[:10]])
    rows = rq.queue_rows(db, rq.QueueQuery(folder_id=folder.id))
    traces = {r.image_id: (f"SN{k % 7}", f"LOT-{k % 5}", None) for k, r in enumerate(rows)}
    db.images.set_traces(traces)
    for needle in ("part_01", "PART_00", "art", "lot1/", "sn3", "Lot-2", "ÄBC", "äbc", "x%y", "_z", "nothing", "p"):
        fold = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)  # as both databases fold
        low = needle.translate(fold)
        want = [r.image_id for r in rows   # a name: every letter's case folded (session 49), a serial or lot: ASCII
                if needle.lower() in r.rel_path.lower()
                or low in (traces[r.image_id][0].translate(fold), traces[r.image_id][1].translate(fold))]
        for sort, descending in (("name", False), ("name", True), ("state", False)):
            qq = rq.QueueQuery(folder_id=folder.id, path_contains=needle, sort=sort, descending=descending)
            got = [r.image_id for r in rq.queue_rows(db, qq, page_size=4)]
            assert sorted(got) == sorted(want) and rq.queue_count(db, qq) == len(want), (needle, sort)
            if sort == "name":
                assert got == (want[::-1] if descending else want), needle
            if want:
                assert [r.image_id for r in rq.queue_page(db, qq, 3, offset=len(want) // 2).rows] == \
                    got[len(want) // 2:len(want) // 2 + 3], needle


def test_names_index_follows_inserts_and_deletes(db: Database) -> None:
    """SQLite's trigram index of the names (0008; filled by ``sync`` since 0009, emptied by the
    delete trigger): a removed folder's names are gone from it, a new one's are found."""
    import database.review_queue as rq
    first = db.folders.add("/a")
    db.images.sync(first.id, [FileEntry("rare_name.png", 1, 1)])
    db.folders.remove(first.id)
    second = db.folders.add("/b")
    db.images.sync(second.id, [FileEntry("rare_name.png", 1, 1), FileEntry("other.png", 1, 1)])
    qq = rq.QueueQuery(folder_id=second.id, path_contains="rare_na")
    narrowed = rq._narrowed(db, qq)
    [row] = rq.queue_rows(db, qq)
    if db.dialect == "sqlite":  # PostgreSQL's planner reads its trigram index itself (0009)
        assert narrowed.within == (row.image_id,)


def _fts_agrees(db: Database) -> None:
    """FTS5's own check: its index holds exactly the content table's names (raises if not)."""
    with db.session(write=True) as s:
        s.execute(text("INSERT INTO images_name_fts(images_name_fts) VALUES ('integrity-check')"))


def test_sqlite_names_index_is_filled_per_chunk_and_a_row_written_otherwise_is_walked(sqlite_url: str) -> None:
    """0009 dropped the per-row insert trigger: ``sync`` fills SQLite's trigram index from each
    chunk's new rows. A row inserted any other way is not in it: the text filter then walks the
    names (and still finds it) instead of trusting the index."""
    import database.review_queue as rq
    db = open_database(sqlite_url)
    try:
        with db.session() as s:
            if s.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'images_name_fts'")).first() is None:
                pytest.skip("this SQLite library has no FTS5 trigram tokenizer")
            triggers = set(s.scalars(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")))
        assert "images_name_fts_insert" not in triggers
        assert {"images_name_fts_delete", "images_name_fts_update"} <= triggers
        folder = db.folders.add("/line")
        names = [f"lot{k % 3}/part_{k:04d}.png" for k in range(1200)]
        for k in range(0, len(names), 700):  # two chunks, as the indexer writes them
            db.images.sync(folder.id, [FileEntry(p, 1, 1) for p in names[k:k + 700]], complete=False)
        db.images.sync(folder.id, [FileEntry(p, 2, 2) for p in names[:5]], complete=False)  # changed, not new
        _fts_agrees(db)
        qq = rq.QueueQuery(folder_id=folder.id, path_contains="part_0101")
        assert rq._narrowed(db, qq).within is not None
        assert [r.rel_path for r in rq.queue_rows(db, qq)] == ["lot2/part_0101.png"]
        with db.session(write=True) as s:  # a writer that is not ``sync``
            s.execute(text("INSERT INTO images (folder_id, rel_path, size_bytes, mtime_ns, review_state, flagged, "
                           "priority, missing, added_at, updated_at) VALUES (:f, 'x/part_0101b.png', 1, 1, "
                           "'unreviewed', 0, 0, 0, '2026-01-01', '2026-01-01')"), {"f": folder.id})
        assert rq._narrowed(db, qq).within is None
        assert [r.rel_path for r in rq.queue_rows(db, qq)] == ["lot2/part_0101.png", "x/part_0101b.png"]
        with db.session(write=True) as s:
            s.execute(text("INSERT INTO images_name_fts(images_name_fts) VALUES ('rebuild')"))
        db.folders.remove(folder.id)  # the delete trigger empties the index
        _fts_agrees(db)
        with db.session() as s:
            assert s.scalar(text("SELECT count(*) FROM images_name_fts_docsize")) == 0
    finally:
        db.close()
