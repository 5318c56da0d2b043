"""Content-addressed artifact cache."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.services.artifacts import ArtifactStore, artifact_root


def test_maps_round_trip_and_dedupe(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "cache")
    m = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    ref = store.put_map(m)
    assert store.put_map(m.copy()) == ref
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 1
    np.testing.assert_allclose(store.get_map(ref), m, atol=1e-3)
    assert store.put_map(m + 1) != ref


def test_refs_cannot_escape_the_cache(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "cache")
    with pytest.raises(ValueError):
        store.get_bytes("../../etc/passwd")


def test_root_sits_next_to_a_sqlite_file(tmp_path: Path) -> None:
    assert artifact_root(f"sqlite:///{tmp_path}/station.sqlite") == tmp_path / "station-artifacts"
    assert artifact_root("postgresql+psycopg://u@h/db").name == "artifacts"


def test_the_readme_names_the_folder_the_code_uses(tmp_path: Path) -> None:
    """Issue 17: the README said ``<database>-artifacts`` while the folder is ``<name>-artifacts``."""
    import re

    from app.paths import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    documented = re.search(r"`(\w+)\.sqlite` keeps them in\s+`([\w-]+)/`", readme)
    assert documented, "README no longer gives an example of the artifacts folder's name"
    stem, folder = documented.groups()
    assert artifact_root(f"sqlite:///{tmp_path}/{stem}.sqlite") == tmp_path / folder
    assert "<database>-artifacts" not in readme
