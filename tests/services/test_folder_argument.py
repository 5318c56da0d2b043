"""``--folder`` takes an id, a path or a name; an argument two folders answer to is refused, never guessed."""
from __future__ import annotations

from pathlib import Path

import pytest

from app.services.export_source import FolderNotFound, resolve_folder
from database import open_database


@pytest.fixture
def lots(tmp_path: Path, monkeypatch):
    """Folders named 3, 1 and 2, indexed in that order (ids 1, 2, 3), the working folder beside them."""
    db = open_database(f"sqlite:///{(tmp_path / 'station.sqlite').as_posix()}")
    for name in ("3", "1", "2"):
        (tmp_path / "lots" / name).mkdir(parents=True)
        db.folders.add(str(tmp_path / "lots" / name))
    monkeypatch.chdir(tmp_path / "lots")
    yield db
    db.close()


def test_a_number_that_is_one_folders_id_and_anothers_name_is_refused(lots) -> None:
    """Found by a session-44 probe: ``import lotds --folder 3`` took folder id 3 (the folder "2") and put lot 3's
    labels on lot 2's images without a word."""
    with pytest.raises(FolderNotFound) as refused:
        resolve_folder(lots, "3")
    assert "more than one" in str(refused.value) and "id:N" in str(refused.value)


def test_an_id_a_path_or_a_name_that_answers_once_is_taken(lots, tmp_path: Path) -> None:
    assert resolve_folder(lots, "id:3").name == "2"
    assert resolve_folder(lots, 3).name == "2"                      # a caller's id is an id
    assert resolve_folder(lots, str(tmp_path / "lots" / "3")).name == "3"
    assert resolve_folder(lots, "./3").name == "3"
    with pytest.raises(FolderNotFound, match="no indexed folder with id 9"):
        resolve_folder(lots, "id:9")
    with pytest.raises(FolderNotFound, match="no indexed folder 'elsewhere'"):
        resolve_folder(lots, "elsewhere")


def test_a_name_two_folders_have_is_said_to_be_theirs(lots, tmp_path: Path) -> None:
    """A session-46 probe: with `parts` and `other/parts` indexed, `--folder parts` read "no indexed folder 'parts'"."""
    for where in ("a", "b"):
        (tmp_path / where / "parts").mkdir(parents=True)
        lots.folders.add(str(tmp_path / where / "parts"))
    with pytest.raises(FolderNotFound, match="is the name of 2 indexed folders"):
        resolve_folder(lots, "parts")
