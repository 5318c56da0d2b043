"""A save reports its image's move between review states (issue 22): the shown per-state counts
move by it instead of re-counting the folder. After any sequence of saves the moved counts must
equal a straightforward COUNT of the images (SQLite and PostgreSQL)."""
from __future__ import annotations

import random

import pytest
from sqlalchemy import text, update

from app.services.review import ReviewService, ReviewSettings
from app.services.review_types import REVIEW_STATES, LabelState
from database import Database, FileEntry, LabelChange, ReviewState
from database.models import Image


def _straight_counts(db: Database, folder_id: int | None) -> dict[str, int]:
    """The review states counted the plain way: every row read, no index, no repository."""
    counts = dict.fromkeys(REVIEW_STATES, 0)
    with db.engine.connect() as c:
        for fid, state, missing in c.execute(text("SELECT folder_id, review_state, missing FROM images")):
            if not missing and folder_id in (None, fid):
                counts[state] += 1
    return counts


def _two_folders(db: Database) -> tuple[int, int, list[int]]:
    a, b = db.folders.add("/data/a"), db.folders.add("/data/b")
    ids = []
    for folder in (a, b):
        entries = [FileEntry(f"img/{i:03d}.png", 100, 1_000 + i, content_hash=f"h{i}") for i in range(12)]
        ids += list(db.images.sync(folder.id, entries).added_ids)
    return a.id, b.id, ids


def test_counts_moved_by_each_save_equal_a_straightforward_count(db: Database, tmp_path) -> None:
    fa, fb, ids = _two_folders(db)
    with db.session(write=True) as s:  # a missing image: saved like any other, never counted
        s.execute(update(Image).where(Image.id == ids[3]).values(missing=True))
    svc = ReviewService(db, ReviewSettings(reviewer="tester"))
    shown = {key: svc.counts(key) for key in (fa, fb, None)}
    assert shown[fa] == _straight_counts(db, fa)
    rng = random.Random(22)
    targets = [ids[3], ids[0], ids[0], ids[13]] + [rng.choice(ids) for _ in range(60)]
    for k, image_id in enumerate(targets):
        state = rng.choice(REVIEW_STATES)
        label = LabelState(class_name=rng.choice([None, "a", "b"]), review_state=state)
        saved = svc.save(image_id, label, f"step {k}")
        assert saved.moved is not None and saved.moved.image_id == image_id and saved.moved.after == state
        assert saved.label.revision == len(db.labels.history(image_id))
        shown = {key: saved.moved.applied(counts, key) for key, counts in shown.items()}
        for key, counts in shown.items():
            assert counts == _straight_counts(db, key), (k, key)
    assert shown[fa] != svc.counts(fb)  # the sequence moved both folders differently (not vacuous)
    assert sum(shown[None].values()) == 23  # 24 images, one missing


def test_the_move_is_read_under_the_saves_lock_not_from_a_stale_copy(db: Database) -> None:
    """The move's ``before`` is the state stored when the save ran, whatever changed it (another
    station, an import), and an undo's revert reports its move too."""
    fa, _fb, ids = _two_folders(db)
    db.labels.append(ids[1], LabelChange(ReviewState.REJECTED), "other station")
    rev = db.labels.append(ids[1], LabelChange(ReviewState.ACCEPTED), "here")
    assert rev.moved is not None
    assert (rev.moved.folder_id, rev.moved.before, rev.moved.after, rev.moved.counted) == \
        (fa, ReviewState.REJECTED, ReviewState.ACCEPTED, True)
    back = db.labels.revert(ids[1], 0, "here")
    assert back.moved is not None and (back.moved.before, back.moved.after) == \
        (ReviewState.ACCEPTED, ReviewState.UNREVIEWED)
    assert db.labels.current(ids[1]).moved is None  # a revision read back carries no move


def test_a_save_that_may_wait_briefly_is_refused_while_another_session_holds_the_image(db: Database) -> None:
    """The review window's saves wait ``wait_s`` for a lock another station or program holds, then are
    refused as busy (nothing written; the window keeps and retries the label), on both databases."""
    from sqlalchemy import select

    from app.services.review import StorageBusy
    _fa, _fb, ids = _two_folders(db)
    svc = ReviewService(db, ReviewSettings(reviewer="tester"))
    holder = db.engine.connect().execution_options(write=True)  # SQLite: BEGIN IMMEDIATE (the write lock)
    tx = holder.begin()
    holder.execute(select(Image.id).where(Image.id == ids[0]).with_for_update())  # PostgreSQL: the row lock
    try:
        with pytest.raises(StorageBusy, match="locked by another program"):
            svc.save(ids[0], LabelState(class_name="a", review_state="corrected"), "busy", wait_s=0.2)
    finally:
        tx.rollback()
        holder.close()
    assert db.labels.history(ids[0]) == []
    saved = svc.save(ids[0], LabelState(class_name="a", review_state="corrected"), "later", wait_s=0.2)
    assert saved.label.revision == 1 and svc.detail(ids[0]).label.class_name == "a"
