"""Fixtures shared by the service tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.services.import_fixtures import OBJECT_CLASSES, make_folder, open_station


@pytest.fixture
def object_station(tmp_path: Path):
    """A labelled station whose classes include ``scratch``, a class regions get of their own."""
    root = make_folder(tmp_path / "lot1")
    db = open_station(tmp_path, "first", root)
    db.classes.set("classifier", OBJECT_CLASSES)
    yield db, root, tmp_path
    db.close()
