"""LabelRepository.append_many: a batch of revisions (an import) is written whole or not at all."""
from __future__ import annotations

import pytest

from database import ConflictError, FileEntry, LabelChange, ReviewState, open_database


@pytest.fixture
def db(url):
    db = open_database(url)
    folder = db.folders.add("/parts")
    db.images.sync(folder.id, [FileEntry(f"{n}.png", 1, 0) for n in "abc"])
    yield db
    db.close()


def ids_of(db) -> dict[str, int]:
    return {i.rel_path[0]: i.id for i in db.images.query()}


def test_batch_appends_revisions_like_single_saves(db) -> None:
    ids = ids_of(db)
    db.labels.append(ids["a"], LabelChange(ReviewState.CORRECTED, class_name="good", mask_png=b"m"), "ann")
    written = db.labels.append_many([
        (ids["a"], LabelChange(ReviewState.ACCEPTED, class_name="crack", note="imported from x"), 1),
        (ids["b"], LabelChange(ReviewState.CORRECTED, anomaly_verdict="normal"), 0),
    ], "imp")
    assert written == 2
    a = db.labels.history(ids["a"])
    assert [r.revision for r in a] == [1, 2]
    assert (a[1].class_name, a[1].mask_png, a[1].author, a[1].note) == ("crack", b"m", "imp", "imported from x")
    assert a[1].changed == ("class", "state")  # the mask carried over
    b = db.labels.current(ids["b"])
    assert b.revision == 1 and b.anomaly_verdict.value == "normal" and b.changed == ("verdict", "state")
    states = {i.id: i.review_state for i in db.images.query()}
    assert states[ids["a"]] == ReviewState.ACCEPTED and states[ids["b"]] == ReviewState.CORRECTED
    assert states[ids["c"]] == ReviewState.UNREVIEWED


@pytest.mark.parametrize("bad", ["stale", "missing", "twice"])
def test_one_bad_change_writes_nothing(db, bad: str) -> None:
    ids = ids_of(db)
    db.labels.append(ids["a"], LabelChange(ReviewState.CORRECTED, class_name="good"), "ann")
    batch = [(ids["b"], LabelChange(ReviewState.CORRECTED, class_name="crack"), 0),
             {"stale": (ids["a"], LabelChange(ReviewState.CORRECTED, class_name="crack"), 0),
              "missing": (999_999, LabelChange(ReviewState.CORRECTED, class_name="crack"), 0),
              "twice": (ids["b"], LabelChange(ReviewState.CORRECTED, class_name="good"), 0)}[bad]]
    with pytest.raises(ConflictError):
        db.labels.append_many(batch, "imp")
    assert db.labels.current(ids["b"]) is None
    assert [r.class_name for r in db.labels.history(ids["a"])] == ["good"]
    assert db.images.get(ids["b"]).review_state == ReviewState.UNREVIEWED


def test_a_single_save_based_on_an_old_revision_is_refused(db) -> None:
    """``append(..., expected_revision)``: the review window's save names the revision it was made on;
    one saved meanwhile (another station) refuses it, on SQLite and PostgreSQL alike."""
    from database import StaleLabelError

    a = ids_of(db)["a"]
    db.labels.append(a, LabelChange(ReviewState.ACCEPTED, class_name="good"), "me", expected_revision=0)
    db.labels.append(a, LabelChange(ReviewState.CORRECTED, class_name="crack"), "other", expected_revision=1)
    with pytest.raises(StaleLabelError) as caught:
        db.labels.append(a, LabelChange(ReviewState.REJECTED), "me", expected_revision=1)
    assert (caught.value.current, caught.value.author) == (2, "other") and isinstance(caught.value, ConflictError)
    assert db.labels.current(a).revision == 2 and db.labels.current(a).class_name == "crack"
    db.labels.append(a, LabelChange(ReviewState.REJECTED), "me")  # no expectation: saved as before
    assert db.labels.current(a).revision == 3
