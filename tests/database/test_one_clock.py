"""Revisions and model activations stamped by one clock on a shared server (a session-47 audit: a station whose clock
ran 2 minutes behind dated its revision before the one it follows, in the audit and in the import's "newer" check)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from database import FileEntry, LabelChange, PredictionIn, ReviewState, open_database


def _behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """This station's clock two minutes behind the server's."""
    import database.labels
    import database.models
    import database.predictions
    late = lambda: datetime.now(timezone.utc) - timedelta(minutes=2)  # noqa: E731
    for module in (database.labels, database.models, database.predictions):
        monkeypatch.setattr(module, "utcnow", late, raising=False)


def test_a_station_whose_clock_is_behind_stamps_by_the_servers(pg_url: str, monkeypatch) -> None:
    db = open_database(pg_url)
    try:
        folder = db.folders.add("/line")
        (image,) = db.images.sync(folder.id, [FileEntry("a.png", 1, 1, content_hash="h")]).added_ids
        first = db.labels.append(image, LabelChange(ReviewState.CORRECTED, class_name="crack"), "ann")
        version = db.model_versions.register("classifier", "v1", "/m")
        _behind(monkeypatch)
        second = db.labels.append(image, LabelChange(ReviewState.CORRECTED, class_name="dent"), "bob")
        many = db.labels.append_many([(image, LabelChange(ReviewState.CORRECTED, class_name="pit"), 2)], "cy")
        assert many == 1 and second.created_at >= first.created_at
        assert db.labels.current(image).created_at >= second.created_at
        record = db.model_versions.change_active(version.id, "bob")
        assert record.created_at >= first.created_at
        # versions and predictions too: "learnt before its retraining" and "own answers kept" compare them with
        # labels (the review of session 47: with labels on the server's clock and these on the station's, both fell)
        later = db.model_versions.register("classifier", "v2", "/m2")
        db.predictions.upsert_many([PredictionIn(image, later.id, predicted_class="dent", confidence=0.9)])
        assert later.created_at >= first.created_at
        assert db.predictions.for_image(image)[0].created_at >= first.created_at
    finally:
        db.close()
