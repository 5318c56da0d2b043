"""Re-flagging stored predictions after a threshold change: flags and priorities follow the new settings, and
nothing else of a prediction is rewritten (its mask, its time), read without the masks (ADR 0060's speed work)."""
from __future__ import annotations

from dataclasses import replace

import pytest

from app.services.flags import FlagSettings
from app.services.indexing import index_folder
from app.services.project_settings import change_flag_settings
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


def test_a_threshold_change_rewrites_flags_and_priorities_only(db, tmp_path) -> None:
    good_images(tmp_path / "imgs", 2)
    index_folder(db, tmp_path / "imgs")
    ids = sorted(im.id for im in db.images.query())
    clf = db.model_versions.register("classifier", "c", str(make_model_dir(tmp_path / "c")), activate=True)
    seg = db.model_versions.register("segmenter", "s", str(make_model_dir(tmp_path / "s", "segmenter", "mim_istd")),
                                     activate=True)
    mask = b"\x89PNG not really"
    db.predictions.upsert_many(
        [PredictionIn(i, clf.id, class_scores={"crack": 0.7, "good": 0.3}, predicted_class="crack", confidence=0.7)
         for i in ids] + [PredictionIn(ids[0], seg.id, mask_png=mask, target_count=1)])
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
    assert db.predictions.set_flags({}) == 0
