"""Revisions and model activations stamped by one clock on a shared server (a session-47 audit: a station whose clock
ran 2 minutes behind dated its revision before the one it follows, in the audit and in the import's "newer" check)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from database import FileEntry, LabelChange, ReviewState, open_database


def _behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """This station's clock two minutes behind the server's."""
    import database.labels
    import database.models
    late = lambda: datetime.now(timezone.utc) - timedelta(minutes=2)  # noqa: E731
    monkeypatch.setattr(database.labels, "utcnow", late)
    monkeypatch.setattr(database.models, "utcnow", late)


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
    finally:
        db.close()
