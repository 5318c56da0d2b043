"""Re-flagging stored predictions after a threshold change: flags and priorities follow the new settings, and
nothing else of a prediction is rewritten (its mask, its time), read without the masks (ADR 0060's speed work)."""
from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import pytest

from app.services.flags import FlagSettings
from app.services.indexing import index_folder
from app.services.project_settings import change_flag_settings, load_project_settings
from app.services.reflag import Reflagged
from database.dto import PredictionIn
from database.engine import open_database
from tests.database.conftest import pg_url, sqlite_url, url  # noqa: F401  (fixtures reused here)
from tests.services.model_fixtures import make_model_dir
from tests.worker.helpers import good_images


@pytest.fixture
def db(url: str):  # noqa: F811 - the imported fixture
    database = open_database(url)
    yield database
    database.close()


def _two_cracks(db, tmp_path) -> list[int]:
    """The ids of two images the active classifier calls crack at 0.7."""
    good_images(tmp_path / "imgs", 2)
    index_folder(db, tmp_path / "imgs")
    ids = sorted(im.id for im in db.images.query())
    clf = db.model_versions.register("classifier", "c", str(make_model_dir(tmp_path / "c")), activate=True)
    db.predictions.upsert_many(
        [PredictionIn(i, clf.id, class_scores={"crack": 0.7, "good": 0.3}, predicted_class="crack", confidence=0.7)
         for i in ids])
    return ids


def test_a_threshold_change_rewrites_flags_and_priorities_only(db, tmp_path) -> None:
    ids = _two_cracks(db, tmp_path)
    seg = db.model_versions.register("segmenter", "s", str(make_model_dir(tmp_path / "s", "segmenter", "mim_istd")),
                                     activate=True)
    mask = b"\x89PNG not really"
    db.predictions.upsert_many([PredictionIn(ids[0], seg.id, mask_png=mask, target_count=1)])
    before = {p.id: p for i in ids for p in db.predictions.for_image(i)}
    change_flag_settings(db, FlagSettings(min_confidence=0.5))
    low = {p.id: p for i in ids for p in db.predictions.for_image(i)}
    assert all(db.images.get(i).flagged for i in ids)
    assert any(p.flags for p in low.values())
    change_flag_settings(db, replace(FlagSettings(min_confidence=0.5), good_classes=("crack", "good"), min_targets=5))
    after = {p.id: p for i in ids for p in db.predictions.for_image(i)}
    assert not any(db.images.get(i).flagged for i in ids) and not any(p.flags for p in after.values())
    for pid, p in after.items():   # the answers, the mask and the time stay as the model stored them
        assert (p.mask_png, p.created_at, p.class_scores, p.target_count, p.current_family) == (
            before[pid].mask_png, before[pid].created_at, before[pid].class_scores, before[pid].target_count,
            before[pid].current_family)
    seen = db.predictions.flag_inputs(ids, family="segmenter")
    assert list(seen) == [ids[0]] and seen[ids[0]].mask_png is None and seen[ids[0]].target_count == 1


def test_a_reflag_counts_the_flags_it_changed_not_the_images_it_read(db, tmp_path) -> None:
    """Found by a session-49 audit: a threshold change that changed no image's flag said "Project thresholds saved:
    6 image(s) re-flagged." (every image read again was counted), and the Operating point dialog said the same."""
    ids = _two_cracks(db, tmp_path)
    assert change_flag_settings(db, FlagSettings(min_confidence=0.5)) == Reflagged(2, 2, 0)
    same = change_flag_settings(db, FlagSettings(min_confidence=0.51))
    assert same == Reflagged(2, 0, 0) and same.summary() == "no image changed flag (2 re-checked)"
    db.images.set_inspector_flag([ids[0]], True, by="ann")  # an inspector's flag stands: no change of the models'
    calm = change_flag_settings(db, replace(FlagSettings(min_confidence=0.5), good_classes=("crack", "good")))
    assert calm == Reflagged(2, 0, 1) and calm.summary() == "1 image no longer flagged (2 re-checked)"
    assert [db.images.get(i).flagged for i in ids] == [True, False]
    assert Reflagged(6, 2, 1).summary() == "2 images now flagged, 1 image no longer flagged (6 re-checked)"


def test_of_two_threshold_changes_at_once_the_flags_of_the_one_stored_last_stay(url, tmp_path, monkeypatch) -> None:  # noqa: F811
    """A session-52 audit: two re-flags at once (a threshold change at two stations; Settings' OK while the worker
    re-flags) each read the answers, then wrote, and the one that read first could write last: the flags of the
    older thresholds were left stored under the newer ones. Here station A's change is held after its re-flag read the
    answers; station B saves other thresholds and re-flags meanwhile (before, B ended and A then wrote over it; now B
    waits for A's write and reads after it). Both end, and the flags are those of what is stored."""
    a, b = open_database(url), open_database(url)
    try:
        ids = _two_cracks(a, tmp_path)
        calm = replace(FlagSettings(min_confidence=0.5), good_classes=("crack", "good"))   # crack 0.7: not flagged
        strict = FlagSettings(min_confidence=0.5)                                           # crack 0.7: flagged
        held, go_on = threading.Event(), threading.Event()
        read = a.predictions.flag_inputs

        def read_then_hold(*args: Any, **kwargs: Any) -> Any:
            rows = read(*args, **kwargs)
            if not held.is_set():
                held.set()
                go_on.wait(30)
            return rows
        monkeypatch.setattr(a.predictions, "flag_inputs", read_then_hold)
        out: dict[str, Any] = {}

        def change(name: str, db, flags: FlagSettings) -> None:
            try:
                out[name] = change_flag_settings(db, flags)
            except Exception as exc:  # noqa: BLE001 - reported by the assertion
                out[name] = exc
        first = threading.Thread(target=change, args=("A", a, calm))
        first.start()
        assert held.wait(30)
        second = threading.Thread(target=change, args=("B", b, strict))
        second.start()
        second.join(3)   # before: B ended here; now it waits for A's transaction
        go_on.set()
        first.join(30)
        second.join(30)
        assert out == {"A": Reflagged(2, 0, 0), "B": Reflagged(2, 2, 0)}, out
        assert load_project_settings(b).flags == strict
        assert [b.images.get(i).flagged for i in ids] == [True, True]
    finally:
        a.close()
        b.close()


def test_a_reflag_works_on_an_in_memory_database(tmp_path) -> None:
    """A session-52 audit: on an in-memory database (``sqlite://``, which the station opens with a warning that it
    keeps nothing) every re-flag failed with "DatabaseError the in-memory database cannot be used: cannot start a
    transaction within a transaction" — Settings' OK, an operating point, F's undo and the worker's re-flag after a
    batch alike: the re-flag read the thresholds, the answers and the anomaly model's card threshold through sessions
    of their own inside its write transaction, and there every session of a thread shares one connection. Now they are
    read through the re-flag's own transaction."""
    from app.services.operating_point import save_operating_point
    from app.services.reflag import reflag_where, stored_thresholds
    from app.services.review import ReviewService, ReviewSettings
    from app.services.review_types import FlagDecision

    db = open_database("sqlite://")
    try:
        ids = _two_cracks(db, tmp_path)
        anomaly = db.model_versions.register("anomaly", "a", str(tmp_path / "none"),
                                             card={"threshold": {"image": 0.5}}, activate=True)
        db.predictions.upsert_many([PredictionIn(i, anomaly.id, anomaly_score=0.3) for i in ids])
        calm = replace(FlagSettings(min_confidence=0.5), good_classes=("crack", "good"))
        assert change_flag_settings(db, calm) == Reflagged(2, 0, 0)
        folder = db.folders.list()[0].id
        assert save_operating_point(db, folder, anomaly.id, 0.2) == Reflagged(2, 2, 0)   # 0.3 > 0.2: flagged
        assert [db.images.get(i).flagged for i in ids] == [True, True]
        review = ReviewService(db, ReviewSettings(reviewer="ann"))
        assert not review.put_flag(ids[0], FlagDecision(False, override=False, by="ann")).flagged
        assert review.put_flag(ids[0], FlagDecision(True)).flagged   # F undone: the models' flag back
        assert reflag_where(db, ids, stored_thresholds(db)) == Reflagged(2, 0, 0)   # as the worker's after a batch
        assert [db.images.get(i).flagged for i in ids] == [True, True]
    finally:
        db.close()
